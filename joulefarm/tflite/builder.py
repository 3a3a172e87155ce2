"""Build small float32 TFLite models from layer specs, with seeded random weights.

No TensorFlow: the graph is written straight into the flatbuffer schema's object tree. Shapes are
NHWC like TFLite. The weights are He-scaled normal draws, so activations stay in a sane range
through a few layers, and the same seed always gives the same bytes.

    model = build_model((1, 32, 32, 3), [Conv2D(16), MaxPool2D(), Flatten(), FullyConnected(10)])

Each layer spec knows its op (``op``, the key of its ``joulefarm.tflite.ops`` entry, which holds
the op's MAC rule and quantisation facts), how to add itself to a graph (``add``), the shapes
its node will see (``op_shapes``, so its MACs are known before anything is built) and a short
description for sweep names (``describe``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import make_buffer, operator_codes, pack_model
from joulefarm.tflite.ops import OpShapes, op_entry
from joulefarm.tflite.schema import op_codes, tfl
from joulefarm.tflite.variants import ActivationRanges, quantize_int8

Pair = tuple[int, int]
Shape = tuple[int, ...]

_PADDINGS = ("SAME", "VALID")
_ACTIVATIONS = ("NONE", "RELU", "RELU6")


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
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [make_buffer()]  # buffer 0 is empty by convention
        self.operators: list[Any] = []
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


class LayerSpec(ABC):
    """One layer of a model to build: a single TFLite node (see the module docstring)."""

    op: ClassVar[str]
    """The builtin op the layer adds (its ``joulefarm.tflite.ops`` entry)."""

    @abstractmethod
    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        """The layer's output shape for an input of ``shape`` (``i``: its position, for
        errors); ``ValueError`` when the spec does not fit the shape."""

    def op_shapes(self, shape: Shape) -> OpShapes:
        """The shapes the layer's node sees on an input of ``shape`` (a second operand, where
        the layer has one, of the same shape)."""
        return OpShapes((shape,), (self.out_shape(shape),), (shape,))

    def macs(self, shape: Shape) -> int:
        """The layer's multiply-accumulates on an input of ``shape`` (the op registry's rule)."""
        macs = op_entry(self.op).macs(self.op_shapes(shape))
        if macs is None:  # every op the builder makes has a formula; its shapes must fit it
            raise ValueError(f"{self.op}: the MAC formula cannot read shape {shape}")
        return macs

    @abstractmethod
    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        """Append the layer reading tensor ``x`` to ``g``; returns its output tensor.
        ``outputs`` holds the output tensors of the layers before it."""

    @abstractmethod
    def describe(self) -> str:
        """A short text of the layer's settings, for sweep names."""

    def _label(self, i: int) -> str:
        return f"{i}_{type(self).__name__.lower()}"


def _nhwc(spec: LayerSpec, shape: Shape, i: int) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise ValueError(f"layer {i} ({type(spec).__name__}) needs an NHWC input, got {shape}")
    n, h, w, c = shape
    return n, h, w, c


@dataclass(frozen=True)
class Conv2D(LayerSpec):
    """CONV_2D with ``filters`` output channels; weights [filters, kh, kw, cin] and a bias."""

    op: ClassVar[str] = "CONV_2D"
    filters: int
    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: str = "SAME"
    activation: str = "RELU"

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        n, h, w, _ = _nhwc(self, shape, i)
        return (n, _out_size(h, self.kernel[0], self.stride[0], self.padding),
                _out_size(w, self.kernel[1], self.stride[1], self.padding), self.filters)

    def op_shapes(self, shape: Shape) -> OpShapes:
        weights = (self.filters, *self.kernel, shape[-1])
        return OpShapes((shape,), (self.out_shape(shape),), (shape, weights, (self.filters,)))

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        c = shape[-1]
        kh, kw = self.kernel
        options = tfl.Conv2DOptionsT()
        options.padding = _check_choice(self.padding, _PADDINGS, "padding")
        options.strideH, options.strideW = self.stride
        options.fusedActivationFunction = _check_choice(self.activation, _ACTIVATIONS,
                                                        "activation")
        out_shape = self.out_shape(shape, i)
        filt = g.weights([self.filters, kh, kw, c], kh * kw * c, f"{label}/filter")
        bias = g.bias(self.filters, f"{label}/bias")
        y = g.tensor(out_shape, label)
        g.op(self.op, [x, filt, bias], [y], tfl.BuiltinOptions.Conv2DOptions, options)
        return y

    def describe(self) -> str:
        return (f"conv(co={self.filters},k={self.kernel[0]}x{self.kernel[1]},"
                f"s={self.stride[0]}x{self.stride[1]},{self.padding},{self.activation})")


@dataclass(frozen=True)
class DepthwiseConv2D(LayerSpec):
    """DEPTHWISE_CONV_2D; output channels = input channels * ``depth_multiplier``."""

    op: ClassVar[str] = "DEPTHWISE_CONV_2D"
    kernel: Pair = (3, 3)
    stride: Pair = (1, 1)
    padding: str = "SAME"
    activation: str = "RELU"
    depth_multiplier: int = 1

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        n, h, w, c = _nhwc(self, shape, i)
        return (n, _out_size(h, self.kernel[0], self.stride[0], self.padding),
                _out_size(w, self.kernel[1], self.stride[1], self.padding),
                c * self.depth_multiplier)

    def op_shapes(self, shape: Shape) -> OpShapes:
        cout = shape[-1] * self.depth_multiplier
        return OpShapes((shape,), (self.out_shape(shape),), (shape, (1, *self.kernel, cout),
                                                             (cout,)))

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        kh, kw = self.kernel
        out_shape = self.out_shape(shape, i)
        cout = out_shape[-1]
        options = tfl.DepthwiseConv2DOptionsT()
        options.padding = _check_choice(self.padding, _PADDINGS, "padding")
        options.strideH, options.strideW = self.stride
        options.depthMultiplier = self.depth_multiplier
        options.fusedActivationFunction = _check_choice(self.activation, _ACTIVATIONS,
                                                        "activation")
        filt = g.weights([1, kh, kw, cout], kh * kw, f"{label}/filter")
        bias = g.bias(cout, f"{label}/bias")
        y = g.tensor(out_shape, label)
        g.op(self.op, [x, filt, bias], [y], tfl.BuiltinOptions.DepthwiseConv2DOptions, options)
        return y

    def describe(self) -> str:
        return (f"dwconv(k={self.kernel[0]}x{self.kernel[1]},s={self.stride[0]}x{self.stride[1]},"
                f"{self.padding},{self.activation})")


@dataclass(frozen=True)
class FullyConnected(LayerSpec):
    """FULLY_CONNECTED on a rank-2 [batch, in] input (flatten first); weights [units, in]."""

    op: ClassVar[str] = "FULLY_CONNECTED"
    units: int
    activation: str = "NONE"

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if len(shape) != 2:
            raise ValueError(f"layer {i} (FullyConnected) needs a [batch, features] input, got "
                             f"{shape}: add Flatten() first")
        return (shape[0], self.units)

    def op_shapes(self, shape: Shape) -> OpShapes:
        return OpShapes((shape,), (self.out_shape(shape),),
                        (shape, (self.units, shape[-1]), (self.units,)))

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        out_shape = self.out_shape(shape, i)
        features = shape[1]
        options = tfl.FullyConnectedOptionsT()
        options.fusedActivationFunction = _check_choice(self.activation, _ACTIVATIONS,
                                                        "activation")
        weights = g.weights([self.units, features], features, f"{label}/weights")
        bias = g.bias(self.units, f"{label}/bias")
        y = g.tensor(out_shape, label)
        g.op(self.op, [x, weights, bias], [y], tfl.BuiltinOptions.FullyConnectedOptions,
             options)
        return y

    def describe(self) -> str:
        return f"fc(units={self.units},{self.activation})"


@dataclass(frozen=True)
class _Pool2D(LayerSpec):
    pool: Pair = (2, 2)
    stride: Pair | None = None
    padding: str = "VALID"
    kind: ClassVar[str]

    @property
    def strides(self) -> Pair:
        return self.stride or self.pool

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        n, h, w, c = _nhwc(self, shape, i)
        sh, sw = self.strides
        return (n, _out_size(h, self.pool[0], sh, self.padding),
                _out_size(w, self.pool[1], sw, self.padding), c)

    def _options(self) -> Any:
        options = tfl.Pool2DOptionsT()
        options.padding = _check_choice(self.padding, _PADDINGS, "padding")
        options.strideH, options.strideW = self.strides
        options.filterHeight, options.filterWidth = self.pool
        return options

    def op_shapes(self, shape: Shape) -> OpShapes:
        return OpShapes((shape,), (self.out_shape(shape),), (shape,), self._options())

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        out_shape = self.out_shape(shape, i)
        options = self._options()
        y = g.tensor(out_shape, label)
        g.op(self.op, [x], [y], tfl.BuiltinOptions.Pool2DOptions, options)
        return y

    def describe(self) -> str:
        stride = self.strides
        return (f"{self.kind}(k={self.pool[0]}x{self.pool[1]},s={stride[0]}x{stride[1]},"
                f"{self.padding})")


@dataclass(frozen=True)
class MaxPool2D(_Pool2D):
    """MAX_POOL_2D; ``stride`` defaults to the pool size."""

    op: ClassVar[str] = "MAX_POOL_2D"
    kind: ClassVar[str] = "maxpool"


@dataclass(frozen=True)
class AveragePool2D(_Pool2D):
    """AVERAGE_POOL_2D; ``stride`` defaults to the pool size."""

    op: ClassVar[str] = "AVERAGE_POOL_2D"
    kind: ClassVar[str] = "avgpool"


def _earlier_output(i: int, source: int, outputs: list[int]) -> int:
    if not 0 <= source < i:
        raise ValueError(f"layer {i}: source must be an earlier layer index (0..{i - 1}), "
                         f"got {source}")
    return outputs[source]


@dataclass(frozen=True)
class Branch(LayerSpec):
    """``layer`` applied to the output of the earlier layer ``source`` instead of the current
    tensor: how a cell's second and third edges leave the same node (a DAG in a layer list).

    ``out_shape`` and ``op_shapes`` take the *source's* shape, which only the caller knows.
    """

    source: int
    layer: LayerSpec

    @property
    def op(self) -> str:  # type: ignore[override]
        return self.layer.op

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        return self.layer.out_shape(shape, i)

    def op_shapes(self, shape: Shape) -> OpShapes:
        return self.layer.op_shapes(shape)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        return self.layer.add(g, i, _earlier_output(i, self.source, outputs), outputs)

    def describe(self) -> str:
        return f"from({self.source},{self.layer.describe()})"


@dataclass(frozen=True)
class Add(LayerSpec):
    """ADD of the current tensor and the output of the earlier layer ``source`` (a residual).

    ``source`` is the position of that layer in the ``layers`` list given to ``build_model``.
    """

    op: ClassVar[str] = "ADD"
    source: int
    activation: str = "NONE"

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        return shape

    def op_shapes(self, shape: Shape) -> OpShapes:
        return OpShapes((shape, shape), (shape,), (shape, shape))

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        other = _earlier_output(i, self.source, outputs)
        if g.shapes[other] != shape:
            raise ValueError(f"layer {i} (Add) cannot add shape {g.shapes[other]} of layer "
                             f"{self.source} to {shape}")
        options = tfl.AddOptionsT()
        options.fusedActivationFunction = _check_choice(self.activation, _ACTIVATIONS,
                                                        "activation")
        y = g.tensor(shape, label)
        g.op(self.op, [x, other], [y], tfl.BuiltinOptions.AddOptions, options)
        return y

    def describe(self) -> str:
        return f"add(src={self.source},{self.activation})"


@dataclass(frozen=True)
class Concatenation(LayerSpec):
    """CONCATENATION of the current tensor and the output of the earlier layer ``source``."""

    op: ClassVar[str] = "CONCATENATION"
    source: int
    axis: int = -1

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        return self._joined(shape, shape, i)

    def _joined(self, shape: Shape, other: Shape, i: int) -> Shape:
        axis = self.axis % len(shape)
        if len(other) != len(shape) or any(
            a != b for d, (a, b) in enumerate(zip(shape, other, strict=True)) if d != axis
        ):
            raise ValueError(f"layer {i} (Concatenation) cannot join {shape} and {other} "
                             f"on axis {self.axis}")
        out = list(shape)
        out[axis] += other[axis]
        return tuple(out)

    def op_shapes(self, shape: Shape) -> OpShapes:
        return OpShapes((shape, shape), (self.out_shape(shape),), (shape, shape))

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        other = _earlier_output(i, self.source, outputs)
        out_shape = self._joined(shape, g.shapes[other], i)
        options = tfl.ConcatenationOptionsT()
        options.axis = self.axis % len(shape)
        y = g.tensor(out_shape, label)
        g.op(self.op, [x, other], [y], tfl.BuiltinOptions.ConcatenationOptions, options)
        return y

    def describe(self) -> str:
        return f"concat(src={self.source},axis={self.axis})"


@dataclass(frozen=True)
class Reshape(LayerSpec):
    """RESHAPE to ``shape``; ``None`` flattens to [batch, -1]. ``-1`` entries are inferred."""

    op: ClassVar[str] = "RESHAPE"
    shape: tuple[int, ...] | None = None

    def _target(self, shape: Shape) -> list[int]:
        # Flatten keeps the batch free (-1) so that a runtime resize of the batch still works.
        return list(self.shape) if self.shape is not None else [-1, math.prod(shape[1:])]

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        target = self._target(shape)
        total = math.prod(shape)
        known = math.prod(d for d in target if d != -1)
        if target.count(-1) > 1 or (target.count(-1) == 1 and total % known) or (
            target.count(-1) == 0 and known != total
        ):
            raise ValueError(f"layer {i} (Reshape) cannot reshape {shape} to {tuple(target)}")
        return tuple(total // known if d == -1 else d for d in target)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        target = self._target(shape)
        out_shape = self.out_shape(shape, i)
        new_shape = g.int_const(target, f"{label}/shape")
        options = tfl.ReshapeOptionsT()
        options.newShape = target
        y = g.tensor(out_shape, label)
        g.op(self.op, [x, new_shape], [y], tfl.BuiltinOptions.ReshapeOptions, options)
        return y

    def describe(self) -> str:
        return "reshape" if self.shape is None else f"reshape({'x'.join(map(str, self.shape))})"


def Flatten() -> Reshape:  # noqa: N802 - reads like the other layer constructors
    """RESHAPE to [batch, features]."""
    return Reshape()


@dataclass(frozen=True)
class Pad(LayerSpec):
    """PAD with zeros: ``paddings`` holds (before, after) per dimension."""

    op: ClassVar[str] = "PAD"
    paddings: tuple[Pair, ...]

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if len(self.paddings) != len(shape):
            raise ValueError(f"layer {i} (Pad) needs {len(shape)} (before, after) pairs")
        return tuple(d + a + b for d, (a, b) in zip(shape, self.paddings, strict=True))

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        out_shape = self.out_shape(shape, i)
        paddings = g.int_const(np.asarray(self.paddings, np.int32).reshape(-1, 2),
                               f"{label}/paddings")
        y = g.tensor(out_shape, label)
        g.op(self.op, [x, paddings], [y], tfl.BuiltinOptions.PadOptions, tfl.PadOptionsT())
        return y

    def describe(self) -> str:
        return f"pad({','.join(f'{a}:{b}' for a, b in self.paddings)})"


@dataclass(frozen=True)
class Mean(LayerSpec):
    """MEAN over ``axes`` (e.g. (1, 2) for global average pooling of NHWC)."""

    op: ClassVar[str] = "MEAN"
    axes: tuple[int, ...] = (1, 2)
    keep_dims: bool = False

    def _axes(self, shape: Shape) -> list[int]:
        return sorted({a % len(shape) for a in self.axes})

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        axes = self._axes(shape)
        return tuple(1 if d in axes else s for d, s in enumerate(shape)
                     if self.keep_dims or d not in axes)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        axis = g.int_const(self._axes(shape), f"{label}/axes")
        options = tfl.ReducerOptionsT()
        options.keepDims = self.keep_dims
        y = g.tensor(self.out_shape(shape, i), label)
        g.op(self.op, [x, axis], [y], tfl.BuiltinOptions.ReducerOptions, options)
        return y

    def describe(self) -> str:
        return f"mean(axes={','.join(map(str, self.axes))},keep={int(self.keep_dims)})"


@dataclass(frozen=True)
class Softmax(LayerSpec):
    """SOFTMAX over the last dimension."""

    op: ClassVar[str] = "SOFTMAX"
    beta: float = 1.0

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        return shape

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        options = tfl.SoftmaxOptionsT()
        options.beta = float(self.beta)
        y = g.tensor(shape, label)
        g.op(self.op, [x], [y], tfl.BuiltinOptions.SoftmaxOptions, options)
        return y

    def describe(self) -> str:
        return "softmax"


UNARY_OPS: tuple[str, ...] = (
    "LOGISTIC", "TANH", "RELU", "RELU6", "LEAKY_RELU", "HARD_SWISH", "ELU", "EXP", "LOG",
    "SQRT", "RSQRT", "SQUARE", "ABS", "NEG", "SIN", "COS", "FLOOR",
)
"""Float32 ops of one input, output of the same shape, no required options: ``Unary``."""

BINARY_OPS: tuple[str, ...] = (
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "POW",
    "FLOOR_DIV", "PRELU",
)
"""Float32 ops of two inputs (the second a constant broadcast to the first): ``Binary``."""

OPERANDS: tuple[str, ...] = ("scalar", "channel", "full", "input")
"""``Binary``'s second operand: a constant of one value, of one per channel (last dimension;
what PRELU's alpha and a bias-like MUL hold) or of the input's whole shape; or the input
itself (two activation inputs, as in x * x or a gate times a signal)."""

REDUCE_OPS: tuple[str, ...] = ("SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "MEAN")


@dataclass(frozen=True)
class Unary(LayerSpec):
    """One of ``UNARY_OPS`` applied elementwise (the op is a field: one spec for all)."""

    name: str

    @property
    def op(self) -> str:  # type: ignore[override]
        return self.name

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if self.name not in UNARY_OPS:
            raise ValueError(f"layer {i}: {self.name} is not one of {UNARY_OPS}")
        return shape

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape = self.out_shape(g.shapes[x], i)
        y = g.tensor(shape, self._label(i))
        g.op(self.name, [x], [y])
        return y

    def describe(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Binary(LayerSpec):
    """One of ``BINARY_OPS`` of the input and a constant of ``operand`` shape (``OPERANDS``)."""

    name: str
    operand: str = "full"

    @property
    def op(self) -> str:  # type: ignore[override]
        return self.name

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if self.name not in BINARY_OPS:
            raise ValueError(f"layer {i}: {self.name} is not one of {BINARY_OPS}")
        if self.operand not in OPERANDS:
            raise ValueError(f"layer {i}: operand must be one of {OPERANDS}")
        return shape

    def op_shapes(self, shape: Shape) -> OpShapes:
        if self.operand == "input":
            return OpShapes((shape, shape), (self.out_shape(shape),), (shape, shape))
        return super().op_shapes(shape)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = self.out_shape(g.shapes[x], i), self._label(i)
        if self.operand == "input":
            y = g.tensor(shape, label)
            g.op(self.name, [x, x], [y])
            return y
        const_shape = {"scalar": (), "channel": (shape[-1],), "full": shape}[self.operand]
        if self.name == "PRELU" and not const_shape:
            const_shape = (1,)  # PRELU's alpha needs a rank of at least one
        # Positive values: POW, DIV, FLOOR_DIV, SQRT-like ops stay finite on random inputs.
        data = g.rng.uniform(0.5, 1.5, size=const_shape).astype(np.float32)
        other = g.tensor(const_shape, f"{label}/operand", data)
        y = g.tensor(shape, label)
        g.op(self.name, [x, other], [y])
        return y

    def describe(self) -> str:
        return f"{self.name.lower()}({self.operand})"


@dataclass(frozen=True)
class Reduce(LayerSpec):
    """One of ``REDUCE_OPS`` over ``axes``."""

    name: str
    axes: tuple[int, ...] = (-1,)
    keep_dims: bool = False

    @property
    def op(self) -> str:  # type: ignore[override]
        return self.name

    def _axes(self, shape: Shape) -> list[int]:
        return sorted({a % len(shape) for a in self.axes})

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if self.name not in REDUCE_OPS:
            raise ValueError(f"layer {i}: {self.name} is not one of {REDUCE_OPS}")
        axes = self._axes(shape)
        return tuple(1 if d in axes else s for d, s in enumerate(shape)
                     if self.keep_dims or d not in axes)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        axis = g.int_const(self._axes(shape), f"{label}/axes")
        options = tfl.ReducerOptionsT()
        options.keepDims = self.keep_dims
        y = g.tensor(self.out_shape(shape, i), label)
        g.op(self.name, [x, axis], [y], tfl.BuiltinOptions.ReducerOptions, options)
        return y

    def describe(self) -> str:
        return (f"{self.name.lower()}(axes={','.join(map(str, self.axes))},"
                f"keep={int(self.keep_dims)})")


@dataclass(frozen=True)
class Transpose(LayerSpec):
    """TRANSPOSE by ``perm``."""

    op: ClassVar[str] = "TRANSPOSE"
    perm: tuple[int, ...]

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if sorted(self.perm) != list(range(len(shape))):
            raise ValueError(f"layer {i} (Transpose): {self.perm} is no permutation of "
                             f"{len(shape)} axes")
        return tuple(shape[p] for p in self.perm)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        perm = g.int_const(self.perm, f"{label}/perm")
        y = g.tensor(self.out_shape(shape, i), label)
        g.op(self.op, [x, perm], [y], tfl.BuiltinOptions.TransposeOptions,
             tfl.TransposeOptionsT())
        return y

    def describe(self) -> str:
        return f"transpose({','.join(map(str, self.perm))})"


@dataclass(frozen=True)
class StridedSlice(LayerSpec):
    """STRIDED_SLICE with ``begin``, ``end`` and ``strides`` (one each per dimension)."""

    op: ClassVar[str] = "STRIDED_SLICE"
    begin: tuple[int, ...]
    end: tuple[int, ...]
    strides: tuple[int, ...]

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if not len(self.begin) == len(self.end) == len(self.strides) == len(shape):
            raise ValueError(f"layer {i} (StridedSlice): begin, end and strides need "
                             f"{len(shape)} entries")
        out = []
        for d, b, e, s in zip(shape, self.begin, self.end, self.strides, strict=True):
            if not (0 <= b < e <= d and s >= 1):
                raise ValueError(f"layer {i} (StridedSlice): [{b}:{e}:{s}] does not fit {d}")
            out.append(-(-(e - b) // s))
        return tuple(out)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        consts = [g.int_const(v, f"{label}/{n}") for n, v in
                  (("begin", self.begin), ("end", self.end), ("strides", self.strides))]
        y = g.tensor(self.out_shape(shape, i), label)
        g.op(self.op, [x, *consts], [y], tfl.BuiltinOptions.StridedSliceOptions,
             tfl.StridedSliceOptionsT())
        return y

    def describe(self) -> str:
        return ("slice(" + ",".join(f"{b}:{e}:{s}" for b, e, s in
                                    zip(self.begin, self.end, self.strides, strict=True)) + ")")


@dataclass(frozen=True)
class BatchMatMul(LayerSpec):
    """BATCH_MATMUL of the input [..., M, K] and a constant [K, ``columns``] (broadcast over
    the batch dimensions): a mel filter bank or a projection, as audio front ends use it."""

    op: ClassVar[str] = "BATCH_MATMUL"
    columns: int

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if len(shape) < 2 or self.columns < 1:
            raise ValueError(f"layer {i} (BatchMatMul) needs an input of rank >= 2, got {shape}")
        return (*shape[:-1], self.columns)

    def op_shapes(self, shape: Shape) -> OpShapes:
        return OpShapes((shape,), (self.out_shape(shape),),
                        (shape, (shape[-1], self.columns)), tfl.BatchMatMulOptionsT())

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        weights = g.weights((shape[-1], self.columns), shape[-1], f"{label}/rhs")
        y = g.tensor(self.out_shape(shape, i), label)
        g.op(self.op, [x, weights], [y], tfl.BuiltinOptions.BatchMatMulOptions,
             tfl.BatchMatMulOptionsT())
        return y

    def describe(self) -> str:
        return f"batch_matmul(n={self.columns})"


@dataclass(frozen=True)
class Slice(LayerSpec):
    """SLICE from ``begin`` taking ``size`` (one each per dimension)."""

    op: ClassVar[str] = "SLICE"
    begin: tuple[int, ...]
    size: tuple[int, ...]

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if not len(self.begin) == len(self.size) == len(shape) or any(
                b < 0 or n < 1 or b + n > d for b, n, d in zip(self.begin, self.size, shape,
                                                               strict=True)):
            raise ValueError(f"layer {i} (Slice): begin {self.begin} size {self.size} does not "
                             f"fit {shape}")
        return self.size

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        begin = g.int_const(self.begin, f"{label}/begin")
        size = g.int_const(self.size, f"{label}/size")
        y = g.tensor(self.out_shape(shape, i), label)
        g.op(self.op, [x, begin, size], [y], tfl.BuiltinOptions.SliceOptions,
             tfl.SliceOptionsT())
        return y

    def describe(self) -> str:
        return f"slice_op(begin={self.begin},size={self.size})"


@dataclass(frozen=True)
class ShapeOf(LayerSpec):
    """SHAPE: the input's shape as an int32 vector (what a FILL or RESHAPE of a dynamic size
    reads)."""

    op: ClassVar[str] = "SHAPE"

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        return (len(shape),)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        options = tfl.ShapeOptionsT()
        options.outType = tfl.TensorType.INT32
        y = g.tensor(self.out_shape(g.shapes[x], i), self._label(i),
                     tensor_type=tfl.TensorType.INT32)
        g.op(self.op, [x], [y], tfl.BuiltinOptions.ShapeOptions, options)
        return y

    def describe(self) -> str:
        return "shape"


@dataclass(frozen=True)
class Fill(LayerSpec):
    """FILL of a float32 tensor of ``dims``, reading its dims from the current tensor (a
    ``ShapeOf`` of an input of those dims: the size is known only when the model runs)."""

    op: ClassVar[str] = "FILL"
    dims: tuple[int, ...]

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if shape != (len(self.dims),):
            raise ValueError(f"layer {i} (Fill) reads dims of rank {len(self.dims)}, got a "
                             f"tensor of shape {shape}")
        return self.dims

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        label = self._label(i)
        value = g.tensor((), f"{label}/value", np.asarray(0.5, dtype=np.float32))
        y = g.tensor(self.out_shape(g.shapes[x], i), label)
        g.op(self.op, [x, value], [y], tfl.BuiltinOptions.FillOptions, tfl.FillOptionsT())
        return y

    def describe(self) -> str:
        return f"fill({'x'.join(map(str, self.dims))})"


@dataclass(frozen=True)
class Rfft2d(LayerSpec):
    """RFFT2D over the last two dimensions (each a power of two): complex64 output of
    [..., H, W / 2 + 1], as a spectrogram front end computes it."""

    op: ClassVar[str] = "RFFT2D"

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if len(shape) < 2 or any(d < 1 or d & (d - 1) for d in shape[-2:]):
            raise ValueError(f"layer {i} (Rfft2d) needs its last two dimensions powers of two, "
                             f"got {shape}")
        return (*shape[:-1], shape[-1] // 2 + 1)

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        length = g.int_const(shape[-2:], f"{label}/fft_length")
        y = g.tensor(self.out_shape(shape, i), label, tensor_type=tfl.TensorType.COMPLEX64)
        g.op(self.op, [x, length], [y], tfl.BuiltinOptions.Rfft2dOptions, tfl.Rfft2dOptionsT())
        return y

    def describe(self) -> str:
        return "rfft2d"


class _ToFloat(LayerSpec):
    """One input to a float32 tensor of its shape, no options: ``describe`` is the op."""

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        return shape

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        y = g.tensor(g.shapes[x], self._label(i))
        g.op(self.op, [x], [y])
        return y

    def describe(self) -> str:
        return self.op.lower()


@dataclass(frozen=True)
class ComplexAbs(_ToFloat):
    """COMPLEX_ABS of a complex64 tensor (an ``Rfft2d``'s output): float32 magnitudes."""

    op: ClassVar[str] = "COMPLEX_ABS"


@dataclass(frozen=True)
class Dequantize(_ToFloat):
    """DEQUANTIZE of an int8 tensor (a ``Quantize``'s output) back to float32."""

    op: ClassVar[str] = "DEQUANTIZE"


@dataclass(frozen=True)
class Quantize(LayerSpec):
    """QUANTIZE float32 to int8 at ``scale`` (zero point 0): a float model's int8 island, or
    an int8 model's entry."""

    op: ClassVar[str] = "QUANTIZE"
    scale: float = 0.02

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        return shape

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        y = g.tensor(g.shapes[x], self._label(i), tensor_type=tfl.TensorType.INT8)
        quantization = tfl.QuantizationParametersT()
        quantization.scale, quantization.zeroPoint = [float(self.scale)], [0]
        g.tensors[y].quantization = quantization
        g.op(self.op, [x], [y])
        return y

    def describe(self) -> str:
        return f"quantize({self.scale:g})"


@dataclass(frozen=True)
class ResizeBilinear(LayerSpec):
    """RESIZE_BILINEAR of an NHWC input to ``size`` (height, width)."""

    op: ClassVar[str] = "RESIZE_BILINEAR"
    size: Pair

    def out_shape(self, shape: Shape, i: int = 0) -> Shape:
        if len(shape) != 4:
            raise ValueError(f"layer {i} (ResizeBilinear) needs an NHWC input, got {shape}")
        return (shape[0], self.size[0], self.size[1], shape[3])

    def add(self, g: _Graph, i: int, x: int, outputs: list[int]) -> int:
        shape, label = g.shapes[x], self._label(i)
        size = g.int_const(self.size, f"{label}/size")
        y = g.tensor(self.out_shape(shape, i), label)
        g.op(self.op, [x, size], [y], tfl.BuiltinOptions.ResizeBilinearOptions,
             tfl.ResizeBilinearOptionsT())
        return y

    def describe(self) -> str:
        return f"resize({self.size[0]}x{self.size[1]})"


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
        if not isinstance(spec, LayerSpec):
            raise TypeError(f"layer {i}: unknown layer spec {spec!r}")
        x = spec.add(g, i, x, outputs)
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
    model.operatorCodes = operator_codes(g.opcodes)
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
