"""Configuration sweeps: seeded single-layer models for fitting latency and energy estimators.

nn-Meter and THOR measure each layer type as its own tiny model over a sample of realistic
configurations (channels, kernel, stride, input size) and fit a regressor per type. This module
draws those configurations: ``sample_configs`` returns ``SweepConfig`` objects (a layer spec list
plus the input shape), ``generate_sweep`` adds their TFLite bytes. Everything is float32 and
deterministic: the same arguments always give the same configurations and the same bytes.

Two range profiles:

- ``"mobile"``: square NHWC inputs and kernels, strides 1-2, channels of mobile CNNs
  (MobileNet/ResNet/EfficientNet sizes, nn-Meter's ranges).
- ``"broad"``: half of the draws from ``"mobile"``, half with rectangular inputs, non-square
  and long (1 x k) kernels, per-axis strides up to the kernel size: the shapes of audio and
  1-D models written as 2-D convolutions.

``sample_chains`` draws small multi-layer CNNs (stem, depthwise-separable blocks, residual
adds, pooling, a classifier), measured whole to learn how far a model's latency departs from the
sum of its isolated layers. ``reference_models`` is the fixed set every device measures once so
that an estimator can place it among the devices it knows (a HELP-style device embedding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from joulefarm.tflite.builder import (
    BINARY_OPS,
    OPERANDS,
    RECIPES,
    REDUCE_OPS,
    UNARY_OPS,
    Add,
    AveragePool2D,
    BatchMatMul,
    Binary,
    ComplexAbs,
    Concatenation,
    Conv2D,
    DepthwiseConv2D,
    Dequantize,
    Fill,
    FullyConnected,
    LayerSpec,
    MaxPool2D,
    Mean,
    Pad,
    Quantize,
    Reduce,
    Reshape,
    ResizeBilinear,
    Rfft2d,
    ShapeOf,
    Slice,
    Softmax,
    StridedSlice,
    Transpose,
    Unary,
    _out_size,  # the builder's own SAME/VALID rule
    build_model,
)

KINDS: tuple[str, ...] = (
    "conv", "dwconv", "fc", "maxpool", "avgpool", "add", "concat", "mean", "softmax", "pad",
)
"""Layer kinds the sampler draws, each named after the layer it measures."""

ELEMENTWISE_KINDS: tuple[str, ...] = ("unary", "binary", "reduce", "transpose", "slice",
                                      "resize")
"""Kinds of the ops that are neither convolutions nor pools, on tensors of rank 2-4 from a few
elements to ``max_elements``: the small ops real models are full of, whose cost is mostly the
call's fixed part. ``unary``, ``binary`` and ``reduce`` draw their op from the builder's
``UNARY_OPS``, ``BINARY_OPS`` and ``REDUCE_OPS``."""

ALL_KINDS: tuple[str, ...] = KINDS + ELEMENTWISE_KINDS
SIGNAL_KINDS: tuple[str, ...] = ("matmul", "slice_op", "fill", "fft", "quant")
"""Ops of audio front ends and mixed-precision models: BATCH_MATMUL by a constant, SLICE,
SHAPE then FILL, RFFT2D then COMPLEX_ABS, QUANTIZE then DEQUANTIZE (the two-op kinds measure
both ops). Kept out of ``ALL_KINDS``, whose draws stay what they were."""
KNOWN_KINDS: tuple[str, ...] = ALL_KINDS + SIGNAL_KINDS

PROFILES: tuple[str, ...] = ("mobile", "broad")

WEIGHTED_KINDS: tuple[str, ...] = (
    "conv", "dwconv", "conv", "fc", "conv", "maxpool", "dwconv", "conv", "avgpool", "add",
    "conv", "dwconv", "concat", "mean", "softmax", "pad",
)
"""Every kind, convolutions five times and depthwise three: in mobile CNNs they carry most of
the latency and have the widest configuration space (pass as ``kinds``)."""

# Mobile CNN sizes (nn-Meter samples HW in {1..224}, channels 3..2160, k in {1,3,5,7}).
_HW = (7, 14, 28, 56, 112, 224)
_CHANNELS = (3, 8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512,
             576, 640, 960, 1024, 1280)
_KERNELS = (1, 3, 5, 7)
_ACTIVATIONS = ("RELU", "RELU6", "NONE")

DEFAULT_MAX_MACS = 100_000_000
"""Cap on one layer's multiply-accumulates: keeps a sweep measurable in minutes on a board."""
DEFAULT_MAX_ELEMENTS = 2_000_000
"""Cap on any activation tensor's element count (8 MB in float32)."""


@dataclass(frozen=True)
class SweepConfig:
    """One generated model: ``layers`` applied to an input of ``input_shape`` (float32).

    ``kind`` is the layer kind it measures (one of ``KINDS``, or ``"chain"`` for a multi-layer
    model); some kinds carry a cheap helper layer first (``add`` and ``concat`` need a second
    operand, taken from a same-shape ``RESHAPE``).
    """

    kind: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    seed: int = 0

    @property
    def name(self) -> str:
        """A readable, unique name: kind, input shape and every layer's settings."""
        shape = "x".join(str(d) for d in self.input_shape)
        parts = " ".join(spec.describe() for spec in self.layers)
        return f"sweep:{self.kind} {shape} {parts} seed={self.seed}"

    def build(self) -> bytes:
        """The TFLite model (same bytes for the same config)."""
        return build_model(self.input_shape, list(self.layers), seed=self.seed,
                           name=f"sweep_{self.kind}")


# ------------------------------------------------------------------------------ drawing helpers


_T = TypeVar("_T")


def _pick(rng: np.random.Generator, values: Sequence[_T]) -> _T:
    return values[int(rng.integers(len(values)))]


def _log_int(rng: np.random.Generator, low: int, high: int) -> int:
    """An integer drawn log-uniformly in [low, high]: sizes matter by ratio, not difference."""
    return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))


def _spatial(rng: np.random.Generator, profile: str) -> tuple[int, int]:
    if profile == "broad" and rng.random() < 0.5:
        # Audio-like and 1-D shapes: one short axis (often 1), one long one.
        h = 1 if rng.random() < 0.4 else _log_int(rng, 1, 256)
        w = _log_int(rng, 8, 8192 if h == 1 else 512)
        return (h, w) if rng.random() < 0.8 else (w, h)
    hw = _pick(rng, _HW)
    return hw, hw


def _kernel(rng: np.random.Generator, profile: str, h: int, w: int) -> tuple[int, int]:
    if profile == "broad" and rng.random() < 0.5:
        kh = _pick(rng, (1, 1, 2, 3, 5, 7))
        long = rng.random() < 0.25
        kw = _pick(rng, (16, 32, 64, 128, 256)) if long else _pick(rng, (1, 3, 5, 7, 9))
        return min(kh, h), min(kw, w)
    k = _pick(rng, _KERNELS)
    return min(k, h), min(k, w)


def _stride(rng: np.random.Generator, profile: str, kernel: tuple[int, int]) -> tuple[int, int]:
    if profile == "broad" and rng.random() < 0.4:
        # Per-axis strides; framing layers use stride = kernel (non-overlapping windows).
        def axis(k: int) -> int:
            return k if k > 1 and rng.random() < 0.3 else _pick(rng, (1, 2, 3, 4))
        return axis(kernel[0]), axis(kernel[1])
    s = _pick(rng, (1, 1, 2))
    return s, s


def _padding(rng: np.random.Generator) -> str:
    return "SAME" if rng.random() < 0.75 else "VALID"


def _out_hw(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
            padding: str) -> tuple[int, int] | None:
    """Output size, or None where VALID does not fit."""
    try:
        return (_out_size(h, kernel[0], stride[0], padding),
                _out_size(w, kernel[1], stride[1], padding))
    except ValueError:
        return None


def _tensor_shape(rng: np.random.Generator, max_elements: int) -> tuple[int, ...]:
    """A rank 2-4 activation shape, batch 1, its element count log-uniform in
    [2, max_elements]: channels (last dimension) log-uniform up to 1024, the rest spread over
    the other dimensions."""
    rank = _pick(rng, (2, 3, 4, 4))
    total = _log_int(rng, 2, max_elements)
    c = min(_log_int(rng, 1, 1024), total)
    rest = max(total // c, 1)
    if rank == 2:
        return (1, c * rest) if rng.random() < 0.5 else (1, c)
    if rank == 3:
        return (1, rest, c)
    h = _log_int(rng, 1, rest)
    return (1, h, max(rest // h, 1), c)


def _draw_elementwise(rng: np.random.Generator, kind: str, max_elements: int
                      ) -> tuple[tuple[int, ...], tuple[LayerSpec, ...], int]:
    shape = _tensor_shape(rng, max_elements)
    rank = len(shape)
    spec: LayerSpec
    if kind == "unary":
        spec = Unary(_pick(rng, UNARY_OPS))
    elif kind == "binary":
        name = _pick(rng, BINARY_OPS)
        # PRELU's alpha is a constant; x ** x and x / x on the input itself say little.
        operand = "channel" if name == "PRELU" else _pick(rng, OPERANDS)
        if name in ("POW", "DIV", "FLOOR_DIV") and operand == "input":
            operand = "channel"
        spec = Binary(name, operand)
    elif kind == "reduce":
        axes = _pick(rng, [(a,) for a in range(1, rank)] + ([(1, 2)] if rank == 4 else []))
        spec = Reduce(_pick(rng, REDUCE_OPS), axes, bool(rng.random() < 0.5))
    elif kind == "transpose":
        perm = tuple(int(p) for p in rng.permutation(rank - 1) + 1)
        spec = Transpose((0, *perm))
    elif kind == "slice":
        begin, end, strides = [0], [1], [1]
        for d in shape[1:]:
            b = int(rng.integers(0, max(d // 4, 1)))
            e = int(rng.integers(b + 1, d + 1))
            begin.append(b)
            end.append(e)
            strides.append(_pick(rng, (1, 1, 1, 2)) if e - b > 1 else 1)
        spec = StridedSlice(tuple(begin), tuple(end), tuple(strides))
    elif kind == "resize":
        if rank != 4:
            shape = (1, *_spatial(rng, "mobile"), _pick(rng, _CHANNELS[:12]))
        factor = _pick(rng, (0.5, 2.0, 2.0, 4.0))
        spec = ResizeBilinear((max(int(shape[1] * factor), 1), max(int(shape[2] * factor), 1)))
    else:
        raise ValueError(f"unknown sweep kind {kind!r} (known: {', '.join(ALL_KINDS)})")
    return shape, (spec,), spec.macs(shape)


def _draw_signal(rng: np.random.Generator, kind: str, max_elements: int
                 ) -> tuple[tuple[int, ...], tuple[LayerSpec, ...], int]:
    shape = _tensor_shape(rng, max_elements)
    layers: tuple[LayerSpec, ...]
    if kind == "matmul":  # [1, frames, bins] x [bins, n]: a filter bank
        frames, bins = _log_int(rng, 1, 512), _log_int(rng, 2, 1024)
        shape = (1, frames, bins)
        layers = (BatchMatMul(_log_int(rng, 1, 512)),)
    elif kind == "slice_op":
        begin = tuple(int(rng.integers(0, max(d // 4, 1))) if d > 1 else 0 for d in shape)
        size = tuple(int(rng.integers(1, d - b + 1)) for d, b in zip(shape, begin, strict=True))
        layers = (Slice(begin, size),)
    elif kind == "fill":
        layers = (ShapeOf(), Fill(shape))
    elif kind == "fft":  # the last two dimensions powers of two, as RFFT2D needs
        window = 2 ** int(rng.integers(3, 12))
        if rng.random() < 0.5:  # [1, frames, 1, window]: one 1-D FFT per frame (a spectrogram)
            shape = (1, _log_int(rng, 1, 256), 1, window)
        else:  # [1, rows, window]: one 2-D FFT
            shape = (1, 2 ** int(rng.integers(0, 8)), window)
        layers = (Rfft2d(), ComplexAbs())
    elif kind == "quant":
        layers = (Quantize(float(_pick(rng, (0.005, 0.02, 0.1)))), Dequantize())
    else:
        raise ValueError(f"unknown sweep kind {kind!r} (known: {', '.join(KNOWN_KINDS)})")
    return shape, layers, layers[0].macs(shape)


def _draw(rng: np.random.Generator, kind: str, profile: str,
          max_elements: int = DEFAULT_MAX_ELEMENTS
          ) -> tuple[tuple[int, ...], tuple[LayerSpec, ...], int]:
    """One candidate (input shape, layers, MACs of the measured layer); MACs -1 where the
    drawn layer does not fit its input."""
    if kind in ELEMENTWISE_KINDS:
        return _draw_elementwise(rng, kind, max_elements)
    if kind in SIGNAL_KINDS:
        return _draw_signal(rng, kind, max_elements)
    h, w = _spatial(rng, profile)
    if kind == "conv":
        cin = _pick(rng, _CHANNELS)
        cout = _pick(rng, _CHANNELS[1:])
        if profile == "broad" and rng.random() < 0.25:
            # Audio front ends and heads: one to four channels in or out.
            if rng.random() < 0.5:
                cin = _pick(rng, (1, 2, 4))
            else:
                cout = _pick(rng, (1, 2, 4))
        kernel = _kernel(rng, profile, h, w)
        stride = _stride(rng, profile, kernel)
        padding = _padding(rng)
        out = _out_hw(h, w, kernel, stride, padding)
        if out is None:
            return (), (), -1
        spec = Conv2D(cout, kernel, stride, padding, _pick(rng, _ACTIVATIONS))
        return (1, h, w, cin), (spec,), spec.macs((1, h, w, cin))
    if kind == "dwconv":
        c = _pick(rng, _CHANNELS[1:])
        kernel = _kernel(rng, profile, h, w)
        if profile == "mobile" or kernel == (1, 1):
            k = _pick(rng, (3, 5, 7))
            kernel = (min(k, h), min(k, w))
        stride = _stride(rng, profile, kernel)
        padding = _padding(rng)
        out = _out_hw(h, w, kernel, stride, padding)
        if out is None:
            return (), (), -1
        dw = DepthwiseConv2D(kernel, stride, padding, _pick(rng, _ACTIVATIONS))
        return (1, h, w, c), (dw,), dw.macs((1, h, w, c))
    if kind == "fc":
        batch = _pick(rng, (1, 1, 1, 2, 4, 8, 16, 32))
        features = _log_int(rng, 16, 4096)
        units = _log_int(rng, 8, 4096)
        fc = FullyConnected(units, _pick(rng, _ACTIVATIONS))
        return (batch, features), (fc,), fc.macs((batch, features))
    if kind in ("maxpool", "avgpool"):
        c = _pick(rng, _CHANNELS[1:])
        if rng.random() < 0.15:  # global pooling
            pool = (h, w)
            stride = pool
            padding = "VALID"
        else:
            k = _pick(rng, (2, 2, 3, 3, 5))
            pool = (min(k, h), min(k, w))
            s = _pick(rng, (1, 2, 2))
            stride = (min(s, h), min(s, w))
            padding = _padding(rng)
        out = _out_hw(h, w, pool, stride, padding)
        if out is None:
            return (), (), -1
        cls = MaxPool2D if kind == "maxpool" else AveragePool2D
        pooling = cls(pool, stride, padding)
        return (1, h, w, c), (pooling,), pooling.macs((1, h, w, c))
    if kind in ("add", "concat"):
        c = _pick(rng, _CHANNELS[1:])
        shape = (1, h, w, c)
        second: LayerSpec = (Add(0, _pick(rng, ("NONE", "RELU"))) if kind == "add"
                             else Concatenation(0, -1))
        # The second operand comes from a same-shape RESHAPE (a metadata op, near free).
        return shape, (Reshape(shape), second), second.macs(shape)
    if kind == "mean":
        c = _pick(rng, _CHANNELS[1:])
        mean = Mean((1, 2), keep_dims=bool(rng.random() < 0.5))
        return (1, h, w, c), (mean,), mean.macs((1, h, w, c))
    if kind == "softmax":
        batch = _pick(rng, (1, 1, 4, 16))
        n = _log_int(rng, 10, 20000)
        return (batch, n), (Softmax(),), Softmax().macs((batch, n))
    if kind == "pad":
        c = _pick(rng, _CHANNELS[1:])
        ph, pw = int(rng.integers(0, 4)), int(rng.integers(1, 4))
        pad = Pad(((0, 0), (ph, ph), (pw, pw), (0, 0)))
        return (1, h, w, c), (pad,), pad.macs((1, h, w, c))
    raise ValueError(f"unknown sweep kind {kind!r} (known: {', '.join(KINDS)})")


def _max_elements(shape: tuple[int, ...], layers: tuple[LayerSpec, ...]) -> int:
    """A cheap upper bound on the largest activation: input or (for convs) the output."""
    largest = math.prod(shape)
    for spec in layers:
        if isinstance(spec, Conv2D) and len(shape) == 4:
            largest = max(largest, shape[1] * shape[2] * spec.filters)
        if isinstance(spec, Concatenation):
            largest = max(largest, 2 * math.prod(shape))
        if isinstance(spec, ResizeBilinear) and len(shape) == 4:
            largest = max(largest, shape[0] * spec.size[0] * spec.size[1] * shape[3])
        if isinstance(spec, FullyConnected):
            largest = max(largest, shape[0] * spec.units, spec.units * shape[-1])
    return largest


def sample_configs(
    n: int,
    *,
    seed: int = 0,
    kinds: Sequence[str] = KINDS,
    profile: str = "mobile",
    max_macs: int = DEFAULT_MAX_MACS,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> list[SweepConfig]:
    """``n`` distinct single-layer configurations, kinds taken in turn, drawn with ``seed``.

    Draws that exceed ``max_macs`` or ``max_elements`` are redrawn (never clipped, so the
    accepted ones keep the sampler's proportions). Raises ``ValueError`` for unknown kinds or
    profiles.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown sweep profile {profile!r} (known: {', '.join(PROFILES)})")
    unknown = [k for k in kinds if k not in KNOWN_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown sweep kinds {unknown} (known: {', '.join(KNOWN_KINDS)})")
    rng = np.random.default_rng(seed)
    configs: list[SweepConfig] = []
    seen: set[str] = set()
    attempts = 0
    while len(configs) < n:
        attempts += 1
        if attempts > 200 * max(n, 1):
            raise ValueError(f"could not draw {n} distinct configurations within the caps "
                             f"(max_macs={max_macs}, max_elements={max_elements})")
        kind = kinds[len(configs) % len(kinds)]
        shape, layers, macs = _draw(rng, kind, profile, max_elements)
        if macs < 0 or macs > max_macs or _max_elements(shape, layers) > max_elements:
            continue
        config = SweepConfig(kind, shape, layers, seed=len(configs))
        key = config.name.rsplit(" seed=", 1)[0]
        if key in seen:
            continue
        seen.add(key)
        configs.append(config)
    return configs


def generate_sweep(n: int, *, seed: int = 0, kinds: Sequence[str] = KINDS,
                   profile: str = "mobile", max_macs: int = DEFAULT_MAX_MACS
                   ) -> list[tuple[SweepConfig, bytes]]:
    """``sample_configs`` with each configuration's TFLite bytes."""
    return [(c, c.build()) for c in sample_configs(n, seed=seed, kinds=kinds, profile=profile,
                                                   max_macs=max_macs)]


# ------------------------------------------------------------------------------ chains


def _chain(rng: np.random.Generator, index: int, max_macs: int) -> SweepConfig | None:
    hw = _pick(rng, (28, 56, 96, 112))
    c = _pick(rng, (8, 16, 24, 32))
    cin = _pick(rng, (1, 3))
    layers: list[LayerSpec] = [Conv2D(c, (3, 3), (2, 2))]
    size = math.ceil(hw / 2)
    for _ in range(int(rng.integers(1, 5))):
        stride = _pick(rng, (1, 1, 2))
        cout = c * 2 if stride == 2 else c
        start = len(layers) - 1
        k = _pick(rng, (3, 5))
        layers.append(DepthwiseConv2D((k, k), (stride, stride)))
        size = math.ceil(size / stride)
        layers.append(Conv2D(cout, (1, 1), activation="NONE"))
        if stride == 1 and cout == c and rng.random() < 0.6:
            layers.append(Add(start, "RELU"))
        c = cout
    if rng.random() < 0.5 and size >= 2:
        layers.append(MaxPool2D((2, 2)))
        size //= 2
    layers += [Mean((1, 2)), FullyConnected(_pick(rng, (10, 100, 1000))), Softmax()]
    if total_macs((1, hw, hw, cin), layers) > max_macs:
        return None
    return SweepConfig("chain", (1, hw, hw, cin), tuple(layers), seed=index)


def total_macs(input_shape: tuple[int, ...], layers: Sequence[LayerSpec]) -> int:
    """Multiply-accumulates of a chain of layers (the op registry's rule for each)."""
    total, shape = 0, tuple(input_shape)
    for i, spec in enumerate(layers):
        total += spec.macs(shape)
        shape = spec.out_shape(shape, i)
    return total


def sample_chains(n: int, *, seed: int = 0, max_macs: int = DEFAULT_MAX_MACS
                  ) -> list[SweepConfig]:
    """``n`` small multi-layer CNNs (3-16 layers), deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    configs: list[SweepConfig] = []
    while len(configs) < n:
        config = _chain(rng, len(configs), max_macs)
        if config is not None:
            configs.append(config)
    return configs


REPEATS: tuple[int, ...] = (1, 2, 4, 8)
"""Copies of the op in each model of a repetition set."""
REPEAT_MAX_ELEMENTS = 8192
"""Repetition sets measure small ops: the ones whose cost a call or the profiler hides."""


def sample_repeats(n: int, *, seed: int = 0) -> list[tuple[SweepConfig, ...]]:
    """``n`` repetition sets: one small elementwise op (unary, or binary on a constant or the
    input itself), as models of 1, 2, 4 and 8 copies in a row (``REPEATS``; kind
    ``repeat``, the copies' count in the name). The slope of whole latency over the copies is
    what the op costs inside a model, free of the call's and the profiler's own costs (THOR's
    subtraction method, for inference)."""
    rng = np.random.default_rng(seed)
    sets: list[tuple[SweepConfig, ...]] = []
    seen: set[str] = set()
    while len(sets) < n:
        shape, layers, _ = _draw_elementwise(rng, _pick(rng, ("unary", "binary")),
                                             REPEAT_MAX_ELEMENTS)
        spec = layers[0]
        key = f"{shape} {spec.describe()}"
        if key in seen or spec.out_shape(shape) != shape:
            continue
        seen.add(key)
        sets.append(tuple(SweepConfig("repeat", shape, (spec,) * k, seed=len(sets))
                          for k in REPEATS))
    return sets


# ------------------------------------------------------------------------------ reference set

_REFERENCE_LAYERS: tuple[tuple[str, tuple[int, ...], tuple[LayerSpec, ...]], ...] = (
    ("conv3x3_56x56x64", (1, 56, 56, 64), (Conv2D(64, (3, 3)),)),
    ("conv1x1_28x28x128to256", (1, 28, 28, 128), (Conv2D(256, (1, 1)),)),
    ("dwconv3x3_112x112x32", (1, 112, 112, 32), (DepthwiseConv2D((3, 3)),)),
    ("fc_1x1024to1000", (1, 1024), (FullyConnected(1000),)),
    ("maxpool2x2_56x56x64", (1, 56, 56, 64), (MaxPool2D((2, 2)),)),
    ("add_56x56x64", (1, 56, 56, 64), (Reshape((1, 56, 56, 64)), Add(0))),
)
REFERENCE_RECIPES: tuple[str, ...] = ("tiny_cnn", "mlp", "res_block", "concat_pad")


def reference_names() -> list[str]:
    """Model names of the reference set, in embedding order (``ref:`` prefixed)."""
    return ([f"ref:{r}" for r in REFERENCE_RECIPES]
            + [f"ref:{name}" for name, _, _ in _REFERENCE_LAYERS])


def reference_model(name: str) -> bytes:
    """One member of the reference set by its ``ref:`` name (``KeyError`` for any other)."""
    member = name.removeprefix("ref:")
    if name.startswith("ref:") and member in REFERENCE_RECIPES:
        return RECIPES[member](0)
    for layer_name, shape, layers in _REFERENCE_LAYERS:
        if name == f"ref:{layer_name}":
            return build_model(shape, list(layers), seed=0, name=layer_name)
    raise KeyError(name)


def reference_models() -> list[tuple[str, bytes]]:
    """The fixed reference set (10 float32 models): the four float recipes and six single
    layers of common types. Every device measures each once (``whole`` mode); the results
    place the device among known ones. Never change a member: old embeddings would no longer
    compare; add a new set instead."""
    return [(name, reference_model(name)) for name in reference_names()]


__all__ = [
    "ALL_KINDS",
    "KNOWN_KINDS",
    "SIGNAL_KINDS",
    "DEFAULT_MAX_MACS",
    "ELEMENTWISE_KINDS",
    "KINDS",
    "PROFILES",
    "REFERENCE_RECIPES",
    "WEIGHTED_KINDS",
    "SweepConfig",
    "generate_sweep",
    "reference_model",
    "reference_models",
    "reference_names",
    "sample_chains",
    "sample_configs",
    "sample_repeats",
]
