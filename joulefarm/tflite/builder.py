"""Build small float32 TFLite models from layer specs, with seeded random weights.

No TensorFlow: the graph is written straight into the flatbuffer schema's object tree. Shapes are
NHWC like TFLite. The weights are He-scaled normal draws, so activations stay in a sane range
through a few layers, and the same seed always gives the same bytes.

    model = build_model((1, 32, 32, 3), [Conv2D(16), MaxPool2D(), Flatten(), FullyConnected(10)])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import make_buffer, pack_model
from joulefarm.tflite.schema import op_codes, tfl
from joulefarm.tflite.variants import ActivationRanges, quantize_int8

Pair = tuple[int, int]

_PLACEHOLDER_CODE = 127  # BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
_PADDINGS = ("SAME", "VALID")
_ACTIVATIONS = ("NONE", "RELU", "RELU6")


@dataclass(frozen=True)
class Conv2D:
    """CONV_2D with ``filters`` output channels; weights [filters, kh, kw, cin] and a bias."""

    filters: int
    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: str = "SAME"
    activation: str = "RELU"


@dataclass(frozen=True)
class DepthwiseConv2D:
    """DEPTHWISE_CONV_2D; output channels = input channels * ``depth_multiplier``."""

    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: str = "SAME"
    activation: str = "RELU"
    depth_multiplier: int = 1


@dataclass(frozen=True)
class FullyConnected:
    """FULLY_CONNECTED on a rank-2 [batch, in] input (flatten first); weights [units, in]."""

    units: int
    activation: str = "NONE"


@dataclass(frozen=True)
class MaxPool2D:
    """MAX_POOL_2D; ``stride`` defaults to the pool size."""

    pool: Pair = (2, 2)
    stride: Pair | None = None
    padding: str = "VALID"


@dataclass(frozen=True)
class AveragePool2D:
    """AVERAGE_POOL_2D; ``stride`` defaults to the pool size."""

    pool: Pair = (2, 2)
    stride: Pair | None = None
    padding: str = "VALID"


@dataclass(frozen=True)
class Add:
    """ADD of the current tensor and the output of the earlier layer ``source`` (a residual).

    ``source`` is the position of that layer in the ``layers`` list given to ``build_model``.
    """

    source: int
    activation: str = "NONE"


@dataclass(frozen=True)
class Concatenation:
    """CONCATENATION of the current tensor and the output of the earlier layer ``source``."""

    source: int
    axis: int = -1


@dataclass(frozen=True)
class Reshape:
    """RESHAPE to ``shape``; ``None`` flattens to [batch, -1]. ``-1`` entries are inferred."""

    shape: tuple[int, ...] | None = None


def Flatten() -> Reshape:  # noqa: N802 - reads like the other layer constructors
    """RESHAPE to [batch, features]."""
    return Reshape()


@dataclass(frozen=True)
class Pad:
    """PAD with zeros: ``paddings`` holds (before, after) per dimension."""

    paddings: tuple[Pair, ...]


@dataclass(frozen=True)
class Mean:
    """MEAN over ``axes`` (e.g. (1, 2) for global average pooling of NHWC)."""

    axes: tuple[int, ...] = (1, 2)
    keep_dims: bool = False


@dataclass(frozen=True)
class Softmax:
    """SOFTMAX over the last dimension."""

    beta: float = 1.0


LayerSpec = (
    Conv2D | DepthwiseConv2D | FullyConnected | MaxPool2D | AveragePool2D | Add | Concatenation
    | Reshape | Pad | Mean | Softmax
)


def _out_size(size: int, kernel: int, stride: int, padding: str) -> int:
    """TensorFlow's output length for SAME/VALID padding (dilation 1)."""
    if padding == "SAME":
        return math.ceil(size / stride)
    if kernel > size:
        raise ValueError(f"VALID window {kernel} is larger than the input ({size})")
    return math.ceil((size - kernel + 1) / stride)


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> int:
    """The schema's enum value for ``value`` (a padding or activation name)."""
    if value not in choices:
        raise ValueError(f"{what} must be one of {sorted(choices)}, got {value!r}")
    enum = tfl.Padding if what == "padding" else tfl.ActivationFunctionType
    return int(getattr(enum, value))


class _Graph:
    """Accumulates tensors, buffers and operators of one subgraph."""

    def __init__(self, name: str, rng: np.random.Generator) -> None:
        self.name = name
        self.rng = rng
        self.tensors: list[tfl.TensorT] = []
        self.buffers: list[tfl.BufferT] = [make_buffer()]  # buffer 0 is empty by convention
        self.operators: list[tfl.OperatorT] = []
        self.opcodes: dict[int, int] = {}
        self.shapes: list[tuple[int, ...]] = []

    def tensor(self, shape: Sequence[int], label: str, data: np.ndarray | None = None,
               tensor_type: int | None = None) -> int:
        t = tfl.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = tfl.TensorType.FLOAT32 if tensor_type is None else tensor_type
        t.name = f"{self.name}/{label}"
        t.buffer = 0
        if data is not None:
            t.buffer = len(self.buffers)
            self.buffers.append(make_buffer(np.ascontiguousarray(data)))
        self.tensors.append(t)
        self.shapes.append(tuple(t.shape))
        return len(self.tensors) - 1

    def weights(self, shape: Sequence[int], fan_in: int, label: str) -> int:
        scale = math.sqrt(2.0 / max(fan_in, 1))
        data = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        return self.tensor(shape, label, data)

    def bias(self, n: int, label: str) -> int:
        data = self.rng.uniform(-0.1, 0.1, size=n).astype(np.float32)
        return self.tensor([n], label, data)

    def int_const(self, values: Sequence[int] | np.ndarray, label: str) -> int:
        data = np.asarray(values, dtype=np.int32)
        return self.tensor(data.shape, label, data, tfl.TensorType.INT32)

    def op(self, op: str, inputs: list[int], outputs: list[int], options_type: int = 0,
           options: object = None) -> None:
        code = op_codes()[op]
        if code not in self.opcodes:
            self.opcodes[code] = len(self.opcodes)
        operator = tfl.OperatorT()
        operator.opcodeIndex = self.opcodes[code]
        operator.inputs = inputs
        operator.outputs = outputs
        operator.builtinOptionsType = options_type
        operator.builtinOptions = options
        self.operators.append(operator)


def _add_layer(g: _Graph, i: int, spec: LayerSpec, x: int, outputs: list[int]) -> int:
    """Append the ops of one layer reading tensor ``x``; returns the layer's output tensor."""
    shape = g.shapes[x]
    label = f"{i}_{type(spec).__name__.lower()}"
    if isinstance(spec, Conv2D | DepthwiseConv2D | MaxPool2D | AveragePool2D):
        if len(shape) != 4:
            raise ValueError(f"layer {i} ({type(spec).__name__}) needs an NHWC input, got {shape}")
        n, h, w, c = shape
    if isinstance(spec, Conv2D):
        kh, kw = spec.kernel
        sh, sw = spec.stride
        options = tfl.Conv2DOptionsT()
        options.padding = _check_choice(spec.padding, _PADDINGS, "padding")
        options.strideH, options.strideW = sh, sw
        options.fusedActivationFunction = _check_choice(spec.activation, _ACTIVATIONS,
                                                        "activation")
        filt = g.weights([spec.filters, kh, kw, c], kh * kw * c, f"{label}/filter")
        bias = g.bias(spec.filters, f"{label}/bias")
        out_shape = (n, _out_size(h, kh, sh, spec.padding), _out_size(w, kw, sw, spec.padding),
                     spec.filters)
        y = g.tensor(out_shape, label)
        g.op("CONV_2D", [x, filt, bias], [y], tfl.BuiltinOptions.Conv2DOptions, options)
    elif isinstance(spec, DepthwiseConv2D):
        kh, kw = spec.kernel
        sh, sw = spec.stride
        cout = c * spec.depth_multiplier
        options = tfl.DepthwiseConv2DOptionsT()
        options.padding = _check_choice(spec.padding, _PADDINGS, "padding")
        options.strideH, options.strideW = sh, sw
        options.depthMultiplier = spec.depth_multiplier
        options.fusedActivationFunction = _check_choice(spec.activation, _ACTIVATIONS,
                                                        "activation")
        filt = g.weights([1, kh, kw, cout], kh * kw, f"{label}/filter")
        bias = g.bias(cout, f"{label}/bias")
        out_shape = (n, _out_size(h, kh, sh, spec.padding), _out_size(w, kw, sw, spec.padding),
                     cout)
        y = g.tensor(out_shape, label)
        g.op("DEPTHWISE_CONV_2D", [x, filt, bias], [y],
             tfl.BuiltinOptions.DepthwiseConv2DOptions, options)
    elif isinstance(spec, FullyConnected):
        if len(shape) != 2:
            raise ValueError(f"layer {i} (FullyConnected) needs a [batch, features] input, got "
                             f"{shape}: add Flatten() first")
        batch, features = shape
        options = tfl.FullyConnectedOptionsT()
        options.fusedActivationFunction = _check_choice(spec.activation, _ACTIVATIONS,
                                                        "activation")
        weights = g.weights([spec.units, features], features, f"{label}/weights")
        bias = g.bias(spec.units, f"{label}/bias")
        y = g.tensor((batch, spec.units), label)
        g.op("FULLY_CONNECTED", [x, weights, bias], [y],
             tfl.BuiltinOptions.FullyConnectedOptions, options)
    elif isinstance(spec, MaxPool2D | AveragePool2D):
        kh, kw = spec.pool
        sh, sw = spec.stride or spec.pool
        options = tfl.Pool2DOptionsT()
        options.padding = _check_choice(spec.padding, _PADDINGS, "padding")
        options.strideH, options.strideW = sh, sw
        options.filterHeight, options.filterWidth = kh, kw
        out_shape = (n, _out_size(h, kh, sh, spec.padding), _out_size(w, kw, sw, spec.padding), c)
        y = g.tensor(out_shape, label)
        op = "MAX_POOL_2D" if isinstance(spec, MaxPool2D) else "AVERAGE_POOL_2D"
        g.op(op, [x], [y], tfl.BuiltinOptions.Pool2DOptions, options)
    elif isinstance(spec, Add):
        other = _earlier_output(i, spec.source, outputs)
        if g.shapes[other] != shape:
            raise ValueError(f"layer {i} (Add) cannot add shape {g.shapes[other]} of layer "
                             f"{spec.source} to {shape}")
        options = tfl.AddOptionsT()
        options.fusedActivationFunction = _check_choice(spec.activation, _ACTIVATIONS,
                                                        "activation")
        y = g.tensor(shape, label)
        g.op("ADD", [x, other], [y], tfl.BuiltinOptions.AddOptions, options)
    elif isinstance(spec, Concatenation):
        other = _earlier_output(i, spec.source, outputs)
        axis = spec.axis % len(shape)
        other_shape = g.shapes[other]
        if len(other_shape) != len(shape) or any(
            a != b for d, (a, b) in enumerate(zip(shape, other_shape, strict=True)) if d != axis
        ):
            raise ValueError(f"layer {i} (Concatenation) cannot join {shape} and {other_shape} "
                             f"on axis {spec.axis}")
        options = tfl.ConcatenationOptionsT()
        options.axis = axis
        out_shape = list(shape)
        out_shape[axis] += other_shape[axis]
        y = g.tensor(out_shape, label)
        g.op("CONCATENATION", [x, other], [y], tfl.BuiltinOptions.ConcatenationOptions, options)
    elif isinstance(spec, Reshape):
        # Flatten keeps the batch free (-1) so that a runtime resize of the batch still works.
        target = list(spec.shape) if spec.shape is not None else [-1, math.prod(shape[1:])]
        out_shape = _resolve_reshape(shape, target, i)
        new_shape = g.int_const(target, f"{label}/shape")
        options = tfl.ReshapeOptionsT()
        options.newShape = target
        y = g.tensor(out_shape, label)
        g.op("RESHAPE", [x, new_shape], [y], tfl.BuiltinOptions.ReshapeOptions, options)
    elif isinstance(spec, Pad):
        if len(spec.paddings) != len(shape):
            raise ValueError(f"layer {i} (Pad) needs {len(shape)} (before, after) pairs")
        paddings = g.int_const(np.asarray(spec.paddings, np.int32).reshape(-1, 2),
                               f"{label}/paddings")
        out_shape = [d + a + b for d, (a, b) in zip(shape, spec.paddings, strict=True)]
        y = g.tensor(out_shape, label)
        g.op("PAD", [x, paddings], [y], tfl.BuiltinOptions.PadOptions, tfl.PadOptionsT())
    elif isinstance(spec, Mean):
        axes = sorted({a % len(shape) for a in spec.axes})
        axis = g.int_const(axes, f"{label}/axes")
        options = tfl.ReducerOptionsT()
        options.keepDims = spec.keep_dims
        out_shape = [1 if d in axes else s for d, s in enumerate(shape)
                     if spec.keep_dims or d not in axes]
        y = g.tensor(out_shape, label)
        g.op("MEAN", [x, axis], [y], tfl.BuiltinOptions.ReducerOptions, options)
    elif isinstance(spec, Softmax):
        options = tfl.SoftmaxOptionsT()
        options.beta = float(spec.beta)
        y = g.tensor(shape, label)
        g.op("SOFTMAX", [x], [y], tfl.BuiltinOptions.SoftmaxOptions, options)
    else:
        raise TypeError(f"layer {i}: unknown layer spec {spec!r}")
    return y


def _earlier_output(i: int, source: int, outputs: list[int]) -> int:
    if not 0 <= source < i:
        raise ValueError(f"layer {i}: source must be an earlier layer index (0..{i - 1}), "
                         f"got {source}")
    return outputs[source]


def _resolve_reshape(shape: tuple[int, ...], target: list[int], i: int) -> tuple[int, ...]:
    total = math.prod(shape)
    known = math.prod(d for d in target if d != -1)
    if target.count(-1) > 1 or (target.count(-1) == 1 and total % known) or (
        target.count(-1) == 0 and known != total
    ):
        raise ValueError(f"layer {i} (Reshape) cannot reshape {shape} to {tuple(target)}")
    return tuple(total // known if d == -1 else d for d in target)


def build_model(input_shape: Sequence[int], layers: Sequence[LayerSpec], *, seed: int = 0,
                name: str = "model") -> bytes:
    """A float32 TFLite model applying ``layers`` in order to one input of ``input_shape``.

    Each layer reads the previous layer's output (``Add``/``Concatenation`` also read an
    earlier one). The model output is the last layer's output. Raises ``ValueError`` for specs
    that do not fit the shapes.
    """
    if not layers:
        raise ValueError("a model needs at least one layer")
    g = _Graph(name, np.random.default_rng(seed))
    x = g.tensor(tuple(input_shape), "input")
    model_input = x
    outputs: list[int] = []
    for i, spec in enumerate(layers):
        x = _add_layer(g, i, spec, x, outputs)
        outputs.append(x)

    graph = tfl.SubGraphT()
    graph.tensors = g.tensors
    graph.inputs = [model_input]
    graph.outputs = [x]
    graph.operators = g.operators
    graph.name = "main"
    model = tfl.ModelT()
    model.version = 3
    model.description = f"joulefarm builder: {name} (seed {seed})"
    model.subgraphs = [graph]
    model.buffers = g.buffers
    codes = []
    for code in sorted(g.opcodes, key=g.opcodes.__getitem__):
        opcode = tfl.OperatorCodeT()
        opcode.builtinCode = code
        # Readers that predate extended codes look only at the deprecated field (capped at 127).
        opcode.deprecatedBuiltinCode = min(code, _PLACEHOLDER_CODE)
        opcode.version = 1
        codes.append(opcode)
    model.operatorCodes = codes
    return pack_model(model)


# ---------------------------------------------------------------- recipes
# Sized so that a whole inference takes roughly 0.2-5 ms on one x86 core with the builtin
# kernels, with layers of clearly different cost (per-layer energies must be distinguishable).


def tiny_cnn(seed: int = 0) -> bytes:
    """1x64x64x3 image -> conv, depthwise conv, 1x1 conv, strided conv, pool, fc, softmax."""
    return build_model((1, 64, 64, 3), [
        Conv2D(32, (3, 3)),
        DepthwiseConv2D((3, 3), stride=(2, 2)),
        Conv2D(64, (1, 1)),
        Conv2D(64, (3, 3), stride=(2, 2)),
        AveragePool2D((16, 16)),
        Flatten(),
        FullyConnected(10),
        Softmax(),
    ], seed=seed, name="tiny_cnn")


def mlp(seed: int = 0) -> bytes:
    """A batch of 16 x 256 features -> fc 1024 -> fc 1024 -> fc 10 -> softmax.

    A batch, because one row through fully connected layers is over in microseconds.
    """
    return build_model((16, 256), [
        FullyConnected(1024, "RELU"),
        FullyConnected(1024, "RELU"),
        FullyConnected(10),
        Softmax(),
    ], seed=seed, name="mlp")


def res_block(seed: int = 0) -> bytes:
    """1x32x32x16 -> stem conv, two convs with a residual add, pool, 1x1 conv, mean, fc."""
    return build_model((1, 32, 32, 16), [
        Conv2D(32, (3, 3)),                       # 0: stem
        Conv2D(32, (3, 3)),                       # 1
        Conv2D(32, (3, 3), activation="NONE"),    # 2
        Add(source=0, activation="RELU"),         # 3: residual from the stem
        MaxPool2D((2, 2)),                        # 4
        Conv2D(64, (1, 1)),                       # 5
        Mean((1, 2)),                             # 6: global average pool
        FullyConnected(10),                       # 7
        Softmax(),                                # 8
    ], seed=seed, name="res_block")


def concat_pad(seed: int = 0) -> bytes:
    """Branches joined by concatenation, with explicit padding and a VALID conv."""
    return build_model((1, 48, 48, 8), [
        Conv2D(16, (1, 1)),                                  # 0
        Pad(((0, 0), (1, 1), (1, 1), (0, 0))),               # 1
        Conv2D(16, (3, 3), padding="VALID", activation="RELU6"),  # 2
        Concatenation(source=0),                             # 3: 32 channels
        MaxPool2D((3, 3), stride=(2, 2), padding="SAME"),    # 4
        DepthwiseConv2D((5, 5), activation="RELU6"),         # 5
        Mean((1, 2), keep_dims=True),                        # 6
        Reshape((1, 32)),                                    # 7
        FullyConnected(10),                                  # 8
        Softmax(),                                           # 9
    ], seed=seed, name="concat_pad")


Calibrate = Callable[[bytes, int], ActivationRanges]
"""``(float model bytes, seed) -> activation ranges``: runs the float model on seeded random
inputs in a TFLite runtime (``agent.local.calibration_ranges``)."""


@dataclass(frozen=True)
class Recipe:
    """A named model: ``recipe(seed)`` gives its TFLite bytes, the same for the same seed.

    Float recipes need nothing but this module. An ``int8`` recipe quantises its float model
    with activation ranges measured in a TFLite runtime, which the caller passes as
    ``calibrate`` (``agent.local.build_recipe`` does).
    """

    name: str
    float_model: Callable[[int], bytes]
    int8: bool = False

    def __call__(self, seed: int = 0, *, calibrate: Calibrate | None = None) -> bytes:
        model = self.float_model(seed)
        if not self.int8:
            return model
        if calibrate is None:
            raise ModelError(f"recipe {self.name!r} is int8: its activation ranges come from "
                             "running the float model in a TFLite runtime; pass calibrate= "
                             "(agent.local.calibration_ranges), or use agent.local.build_recipe")
        return quantize_int8(model, calibrate(model, seed), label=f"calibration seed {seed}")


RECIPES: dict[str, Recipe] = {
    "tiny_cnn": Recipe("tiny_cnn", tiny_cnn),
    "mlp": Recipe("mlp", mlp),
    "res_block": Recipe("res_block", res_block),
    "concat_pad": Recipe("concat_pad", concat_pad),
    "tiny_cnn_int8": Recipe("tiny_cnn_int8", tiny_cnn, int8=True),
    "mlp_int8": Recipe("mlp_int8", mlp, int8=True),
    "res_block_int8": Recipe("res_block_int8", res_block, int8=True),
}
"""Named model recipes. ``*_int8`` recipes need a calibrating runtime (see ``Recipe``)."""
