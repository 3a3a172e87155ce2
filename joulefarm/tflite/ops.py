"""The op registry: what joulefarm knows about each TFLite builtin op, one entry per op.

An entry says what family of work the op does, how many multiply-accumulates (MACs) one node
performs and which kernel window it has (from its shapes and options), and how the model
variants treat it (int8 kernel version, shared quantisation scale, fp16-storable weights). The
parser (``parse.py``), the variants (``variants.py``), the configuration sweeps and the
estimators' features all read it here; the builder's layer specs name their op
(``builder.LayerSpec.op``). Adding an op is adding its entry (and, to build it, a spec).

MACs, per inference with the batch included, by family:

- ``conv`` (``CONV_2D``): batch * out_h * out_w * cout * kh * kw * cin (cin per group)
- ``depthwise`` (``DEPTHWISE_CONV_2D``): batch * out_h * out_w * cout * kh * kw
- ``transpose_conv``: batch * in_h * in_w * cin * kh * kw * cout
- ``conv3d``: output elements * kd * kh * kw * cin
- ``fully_connected``: batch * out * in (batch = input elements / in)
- ``matmul`` (``BATCH_MATMUL``): output elements * the contracted dimension
- ``pool``: output elements * kh * kw, the count of input elements the windows visit (not a
  multiply, but the work that scales)
- ``metadata`` (``RESHAPE``, ``SQUEEZE``...): 0
- ``elementwise`` (arithmetic, activations, comparisons, reductions, data movement such as
  ``CONCATENATION``, ``PAD``, ``GATHER``, ``TRANSPOSE``, resizing; each listed in ``OPS``): the
  larger of the op's activation input and output element counts, so elementwise ops count their
  output and reductions count their input.
- ``fft`` (``RFFT2D``): transforms * (n / 2) * log2(n), n = the product of the last two input
  dimensions (the FFT length) and transforms the rest: a real FFT's butterflies
- ``unknown`` (every op without an entry: custom ops, control flow, ...): no
  formula, so no count. The parser reports ``macs = None`` and measurements carry the flag
  ``no_cost_formula``; a count is never made up. A formula that cannot read a node's shapes
  gives None too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpShapes:
    """What the rules see of one node: the shapes of its activation (non-constant) inputs and
    its outputs, the shape at every input position (constant or not; ``()`` where the position
    is unused), and its builtin options object (or None)."""

    inputs: tuple[Shape, ...]
    outputs: tuple[Shape, ...]
    operands: tuple[Shape, ...]
    options: Any = None

    def operand(self, position: int) -> Shape:
        return self.operands[position] if position < len(self.operands) else ()


def elements(shape: Sequence[int]) -> int:
    """Element count of a shape (1 for a scalar)."""
    return math.prod(shape) if shape else 1


def _out(s: OpShapes) -> Shape:
    return s.outputs[0] if s.outputs else ()


def _conv(s: OpShapes) -> int | None:
    w, out = s.operand(1), _out(s)  # w: [cout, kh, kw, cin]
    return elements(out) * w[1] * w[2] * w[3] if len(out) == 4 and len(w) == 4 else None


def _depthwise(s: OpShapes) -> int | None:
    w, out = s.operand(1), _out(s)  # w: [1, kh, kw, cout]
    return elements(out) * w[1] * w[2] if len(out) == 4 and len(w) == 4 else None


def _transpose_conv(s: OpShapes) -> int | None:
    w, x = s.operand(1), s.operand(2)  # w: [cout, kh, kw, cin]; input 2 is the activation
    return elements(x) * w[0] * w[1] * w[2] if len(x) == 4 and len(w) == 4 else None


def _conv3d(s: OpShapes) -> int | None:
    w = s.operand(1)  # [kd, kh, kw, cin, cout]
    return elements(_out(s)) * w[0] * w[1] * w[2] * w[3] if len(w) == 5 else None


def _fully_connected(s: OpShapes) -> int | None:
    w, x = s.operand(1), s.operand(0)  # w: [out, in]
    return (elements(x) // w[1]) * w[0] * w[1] if len(w) == 2 and w[1] else None


def _matmul(s: OpShapes) -> int | None:
    x = s.operand(0)
    adj_x = bool(getattr(s.options, "adjX", False))
    return elements(_out(s)) * (x[-2] if adj_x else x[-1]) if len(x) >= 2 else None


def _pool(s: OpShapes) -> int | None:
    kernel = _pool_kernel(s)
    return elements(_out(s)) * kernel[0] * kernel[1] if kernel else None


def _metadata(s: OpShapes) -> int | None:
    return 0


def _elementwise(s: OpShapes) -> int | None:
    return max((elements(x) for x in (*s.inputs, *s.outputs)), default=0)


def _fft(s: OpShapes) -> int | None:
    x = s.operand(0)
    if len(x) < 2:
        return None
    n = x[-1] * x[-2]
    return (elements(x) // n) * (n // 2) * max(int(math.log2(n)), 1) if n > 1 else 0


def _unknown(s: OpShapes) -> int | None:
    return None


def _weight_kernel(s: OpShapes) -> tuple[int, int] | None:
    w = s.operand(1)
    return (w[1], w[2]) if len(w) == 4 else None


def _pool_kernel(s: OpShapes) -> tuple[int, int] | None:
    if s.options is None or not hasattr(s.options, "filterHeight"):
        return None
    return int(s.options.filterHeight), int(s.options.filterWidth)


def _no_kernel(s: OpShapes) -> tuple[int, int] | None:
    return None


@dataclass(frozen=True)
class Family:
    """A kind of work: its MAC rule and where its kernel window comes from."""

    name: str
    macs: Callable[[OpShapes], int | None]
    kernel: Callable[[OpShapes], tuple[int, int] | None] = _no_kernel


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("conv", _conv, _weight_kernel),
    Family("depthwise", _depthwise, _weight_kernel),
    Family("transpose_conv", _transpose_conv, _weight_kernel),
    Family("conv3d", _conv3d),
    Family("fully_connected", _fully_connected),
    Family("matmul", _matmul),
    Family("pool", _pool, _pool_kernel),
    Family("metadata", _metadata),
    Family("elementwise", _elementwise),
    Family("fft", _fft),
    Family("unknown", _unknown),
)}


@dataclass(frozen=True)
class OpEntry:
    """What joulefarm knows about one builtin op.

    ``weighted``: input 1 holds weights and input 2 a bias (quantised by ``quantize_int8``,
    stored as float16 behind a ``DEQUANTIZE`` by ``float16_weights``); ``weights_axis``: the
    weights' output-channel axis, quantised per channel (None: one scale for all).
    ``int8_version``: the op version whose kernel takes int8 tensors (None: ``quantize_int8``
    does not handle the op); ``int8_same_scale``: its int8 kernel needs the output to share the
    input's scale and zero point.
    """

    name: str
    family: str
    weighted: bool = False
    weights_axis: int | None = None
    int8_version: int | None = None
    int8_same_scale: bool = False

    def macs(self, shapes: OpShapes) -> int | None:
        """Multiply-accumulates of one node (see the module docstring); None where the op has
        no formula or its formula cannot read the node's shapes."""
        value = FAMILIES[self.family].macs(shapes)
        return None if value is None else int(value)

    def kernel(self, shapes: OpShapes) -> tuple[int, int] | None:
        """(kh, kw) of convolutions and pools; None for other ops."""
        return FAMILIES[self.family].kernel(shapes)


OPS: dict[str, OpEntry] = {e.name: e for e in (
    OpEntry("CONV_2D", "conv", weighted=True, weights_axis=0, int8_version=3),
    OpEntry("DEPTHWISE_CONV_2D", "depthwise", weighted=True, weights_axis=3, int8_version=3),
    OpEntry("TRANSPOSE_CONV", "transpose_conv"),
    OpEntry("CONV_3D", "conv3d"),
    OpEntry("FULLY_CONNECTED", "fully_connected", weighted=True, int8_version=4),
    OpEntry("BATCH_MATMUL", "matmul"),
    OpEntry("RFFT2D", "fft"),
    OpEntry("MAX_POOL_2D", "pool", int8_version=2, int8_same_scale=True),
    OpEntry("AVERAGE_POOL_2D", "pool", int8_version=2, int8_same_scale=True),
    OpEntry("L2_POOL_2D", "pool"),
    OpEntry("RESHAPE", "metadata", int8_version=1, int8_same_scale=True),
    OpEntry("SQUEEZE", "metadata"),
    OpEntry("EXPAND_DIMS", "metadata"),
    OpEntry("SHAPE", "metadata"),
    OpEntry("RANK", "metadata"),
    OpEntry("ADD", "elementwise", int8_version=2),
    OpEntry("SOFTMAX", "elementwise", int8_version=2),
    OpEntry("CONCATENATION", "elementwise", int8_version=2, int8_same_scale=True),
    OpEntry("PAD", "elementwise", int8_version=2, int8_same_scale=True),
    OpEntry("MEAN", "elementwise", int8_version=2),
    # Work that scales with the elements touched (see the module docstring), by name.
    *(OpEntry(name, "elementwise") for name in (
        "SUB", "MUL", "DIV", "FLOOR_DIV", "FLOOR_MOD", "MAXIMUM", "MINIMUM",
        "SQUARED_DIFFERENCE", "POW", "ADD_N", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1",
        "LEAKY_RELU", "PRELU", "LOGISTIC", "TANH", "HARD_SWISH", "GELU", "ELU", "EXP", "LOG",
        "SQRT", "RSQRT", "SQUARE", "ABS", "NEG", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "SIGN",
        "LOG_SOFTMAX", "QUANTIZE", "DEQUANTIZE", "CAST", "SUM", "REDUCE_MAX", "REDUCE_MIN",
        "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL", "PADV2", "MIRROR_PAD", "STRIDED_SLICE",
        "SLICE", "GATHER", "GATHER_ND", "TRANSPOSE", "SPLIT", "SPLIT_V", "PACK", "UNPACK",
        "TILE", "BROADCAST_TO", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
        "L2_NORMALIZATION", "LOCAL_RESPONSE_NORMALIZATION", "DEPTH_TO_SPACE",
        "SPACE_TO_DEPTH", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "ARG_MAX", "ARG_MIN",
        "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "EQUAL", "NOT_EQUAL", "LOGICAL_AND",
        "LOGICAL_OR", "LOGICAL_NOT", "SELECT", "SELECT_V2", "ZEROS_LIKE", "ONES_LIKE", "FILL",
        "CUMSUM", "COMPLEX_ABS", "REAL", "IMAG", "READ_VARIABLE", "ASSIGN_VARIABLE")),
)}


def op_entry(name: str) -> OpEntry:
    """The registry entry of ``name``; an op without one has no cost formula."""
    return OPS.get(name) or OpEntry(name, "unknown")


def kernel_area(family: str, macs: int, inputs: Sequence[Shape], outputs: Sequence[Shape]
                ) -> float:
    """kh * kw recovered from a layer's MACs and shapes (the inverse of the family's MAC
    rule), for layers known only by what ``layer_measurements`` stores; 1 for other ops."""
    if not outputs or not inputs:
        return 1.0
    out_elements = max(elements(outputs[0]), 1)
    channels_in = max(int(inputs[0][-1]), 1) if inputs[0] else 1
    if family == "conv":
        return max(macs / (out_elements * channels_in), 1.0)
    if family == "transpose_conv":  # MACs = input elements * kh * kw * cout
        cout = max(int(outputs[0][-1]), 1) if outputs[0] else 1
        return max(macs / (max(elements(inputs[-1]), 1) * cout), 1.0)
    if family in ("depthwise", "pool"):
        return max(macs / out_elements, 1.0)
    return 1.0
