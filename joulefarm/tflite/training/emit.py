"""One function per builtin op the training graphs use: each appends the operator to a subgraph,
works out its output shape, and returns the output tensor.

Shapes are all static: a trainable model is written for one batch size, so every tensor's shape
is known here and the runtime never has to resize anything between ``infer`` and ``train``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from joulefarm.tflite.schema import tfl
from joulefarm.tflite.training.writer import SubgraphWriter


def _bool() -> int:
    # A function, not a constant: the schema loads at its first use, not at import.
    return int(tfl.TensorType.BOOL)


def _axes(rank: int, axes: Sequence[int]) -> list[int]:
    return sorted({a % rank for a in axes})


# ---------------------------------------------------------------- resource variables


def var_handle(g: SubgraphWriter, name: str) -> int:
    """VAR_HANDLE of the variable ``name``: subgraphs that name the same variable share it."""
    options = tfl.VarHandleOptionsT()
    options.container = ""
    options.sharedName = name
    return g.emit("VAR_HANDLE", [], [], f"{name}/handle", tfl.BuiltinOptions.VarHandleOptions,
                  options, int(tfl.TensorType.RESOURCE))


def read_variable(g: SubgraphWriter, handle: int, var_shape: Sequence[int], name: str) -> int:
    return g.emit("READ_VARIABLE", [handle], var_shape, f"{name}/read")


def assign_variable(g: SubgraphWriter, handle: int, value: int) -> None:
    g.op("ASSIGN_VARIABLE", [handle, value], [], tfl.BuiltinOptions.AssignVariableOptions,
         tfl.AssignVariableOptionsT())


def call_once(g: SubgraphWriter, init_subgraph: int) -> None:
    options = tfl.CallOnceOptionsT()
    options.initSubgraphIndex = init_subgraph
    g.op("CALL_ONCE", [], [], tfl.BuiltinOptions.CallOnceOptions, options)


# ---------------------------------------------------------------- elementwise


def _binary(g: SubgraphWriter, name: str, a: int, b: int, label: str,
            tensor_type: int | None = None) -> int:
    out = np.broadcast_shapes(g.shapes[a], g.shapes[b])
    return g.emit(name, [a, b], out, label, tensor_type=tensor_type)


def add(g: SubgraphWriter, a: int, b: int, label: str = "add") -> int:
    return _binary(g, "ADD", a, b, label)


def sub(g: SubgraphWriter, a: int, b: int, label: str = "sub") -> int:
    return _binary(g, "SUB", a, b, label)


def mul(g: SubgraphWriter, a: int, b: int, label: str = "mul") -> int:
    return _binary(g, "MUL", a, b, label)


def div(g: SubgraphWriter, a: int, b: int, label: str = "div") -> int:
    return _binary(g, "DIV", a, b, label)


def scale(g: SubgraphWriter, x: int, factor: float, label: str = "scale") -> int:
    """``x * factor`` (a scalar constant)."""
    return mul(g, x, g.const(float(factor)), label)


def greater(g: SubgraphWriter, a: int, b: int, label: str = "greater") -> int:
    return _binary(g, "GREATER", a, b, label, _bool())


def less(g: SubgraphWriter, a: int, b: int, label: str = "less") -> int:
    return _binary(g, "LESS", a, b, label, _bool())


def equal(g: SubgraphWriter, a: int, b: int, label: str = "equal") -> int:
    return _binary(g, "EQUAL", a, b, label, _bool())


def logical_and(g: SubgraphWriter, a: int, b: int, label: str = "and") -> int:
    return _binary(g, "LOGICAL_AND", a, b, label, _bool())


def select(g: SubgraphWriter, condition: int, a: int, b: int, label: str = "select") -> int:
    """SELECT_V2: ``a`` where ``condition``, else ``b`` (broadcasting)."""
    out = np.broadcast_shapes(g.shapes[condition], g.shapes[a], g.shapes[b])
    return g.emit("SELECT_V2", [condition, a, b], out, label)


def unary(g: SubgraphWriter, name: str, x: int, label: str = "") -> int:
    """An elementwise op of one input without options (SQUARE, SQRT, EXP, ...)."""
    return g.emit(name, [x], g.shapes[x], label or name.lower())


def softmax(g: SubgraphWriter, x: int, beta: float = 1.0, label: str = "softmax") -> int:
    options = tfl.SoftmaxOptionsT()
    options.beta = float(beta)
    return g.emit("SOFTMAX", [x], g.shapes[x], label, tfl.BuiltinOptions.SoftmaxOptions,
                  options)


def log_softmax(g: SubgraphWriter, x: int, label: str = "log_softmax") -> int:
    return g.emit("LOG_SOFTMAX", [x], g.shapes[x], label, tfl.BuiltinOptions.LogSoftmaxOptions,
                  tfl.LogSoftmaxOptionsT())


# ---------------------------------------------------------------- reductions and layout


def reduce(g: SubgraphWriter, name: str, x: int, axes: Sequence[int], keep_dims: bool = False,
           label: str = "") -> int:
    """SUM or MEAN over ``axes``."""
    rank = len(g.shapes[x])
    axes = _axes(rank, axes)
    out = tuple(1 if d in axes else s for d, s in enumerate(g.shapes[x])
                if keep_dims or d not in axes)
    options = tfl.ReducerOptionsT()
    options.keepDims = keep_dims
    return g.emit(name, [x, g.const(np.asarray(axes, np.int32))], out, label or name.lower(),
                  tfl.BuiltinOptions.ReducerOptions, options)


def reshape(g: SubgraphWriter, x: int, new_shape: Sequence[int], label: str = "reshape") -> int:
    new_shape = [int(d) for d in new_shape]
    if math.prod(new_shape) != math.prod(g.shapes[x]):
        raise ValueError(f"cannot reshape {g.shapes[x]} to {tuple(new_shape)}")
    if tuple(new_shape) == g.shapes[x]:
        return x
    options = tfl.ReshapeOptionsT()
    options.newShape = new_shape
    return g.emit("RESHAPE", [x, g.const(np.asarray(new_shape, np.int32))], new_shape, label,
                  tfl.BuiltinOptions.ReshapeOptions, options)


def transpose(g: SubgraphWriter, x: int, perm: Sequence[int], label: str = "transpose") -> int:
    out = tuple(g.shapes[x][p] for p in perm)
    return g.emit("TRANSPOSE", [x, g.const(np.asarray(perm, np.int32))], out, label,
                  tfl.BuiltinOptions.TransposeOptions, tfl.TransposeOptionsT())


def pad(g: SubgraphWriter, x: int, paddings: Sequence[tuple[int, int]], value: float = 0.0,
        label: str = "pad") -> int:
    """PAD with zeros, or PADV2 with ``value``; ``paddings`` holds (before, after) per axis."""
    if not any(a or b for a, b in paddings):
        return x
    out = tuple(d + a + b for d, (a, b) in zip(g.shapes[x], paddings, strict=True))
    amounts = g.const(np.asarray(paddings, np.int32).reshape(-1, 2))
    if value == 0.0:
        return g.emit("PAD", [x, amounts], out, label, tfl.BuiltinOptions.PadOptions,
                      tfl.PadOptionsT())
    return g.emit("PADV2", [x, amounts, g.const(float(value))], out, label,
                  tfl.BuiltinOptions.PadV2Options, tfl.PadV2OptionsT())


def slice_(g: SubgraphWriter, x: int, begin: Sequence[int], size: Sequence[int],
           label: str = "slice") -> int:
    if tuple(size) == g.shapes[x]:
        return x
    return g.emit("SLICE", [x, g.const(np.asarray(begin, np.int32)),
                            g.const(np.asarray(size, np.int32))], size, label,
                  tfl.BuiltinOptions.SliceOptions, tfl.SliceOptionsT())


def strided_slice(g: SubgraphWriter, x: int, begin: Sequence[int], end: Sequence[int],
                  strides: Sequence[int], label: str = "strided_slice") -> int:
    out = tuple(-(-(e - b) // s) for b, e, s in zip(begin, end, strides, strict=True))
    return g.emit("STRIDED_SLICE", [x, g.const(np.asarray(begin, np.int32)),
                                    g.const(np.asarray(end, np.int32)),
                                    g.const(np.asarray(strides, np.int32))], out, label,
                  tfl.BuiltinOptions.StridedSliceOptions, tfl.StridedSliceOptionsT())


def tile(g: SubgraphWriter, x: int, multiples: Sequence[int], label: str = "tile") -> int:
    out = tuple(d * m for d, m in zip(g.shapes[x], multiples, strict=True))
    return g.emit("TILE", [x, g.const(np.asarray(multiples, np.int32))], out, label,
                  tfl.BuiltinOptions.TileOptions, tfl.TileOptionsT())


# ---------------------------------------------------------------- matrix and convolution


def batch_matmul(g: SubgraphWriter, a: int, b: int, adj_x: bool = False, adj_y: bool = False,
                 label: str = "matmul") -> int:
    """BATCH_MATMUL of two rank-2 (or equal-batch) tensors, either side transposed."""
    sa, sb = g.shapes[a], g.shapes[b]
    rows = sa[-1] if adj_x else sa[-2]
    cols = sb[-2] if adj_y else sb[-1]
    options = tfl.BatchMatMulOptionsT()
    options.adjX, options.adjY = adj_x, adj_y
    return g.emit("BATCH_MATMUL", [a, b], (*sa[:-2], rows, cols), label,
                  tfl.BuiltinOptions.BatchMatMulOptions, options)


def conv_out(size: int, kernel: int, stride: int, dilation: int, same: bool) -> int:
    """TensorFlow's output length of a convolution or pooling window."""
    if same:
        return -(-size // stride)
    return -(-(size - (kernel - 1) * dilation) // stride)


def conv2d(g: SubgraphWriter, x: int, w: int, b: int, *, stride: tuple[int, int] = (1, 1),
           dilation: tuple[int, int] = (1, 1), same: bool = False, activation: int = 0,
           label: str = "conv") -> int:
    """CONV_2D of NHWC ``x`` by ``w`` [cout, kh, kw, cin]; ``b`` -1: no bias (zeros)."""
    n, h, wd, _ = g.shapes[x]
    cout, kh, kw, _ = g.shapes[w]
    options = tfl.Conv2DOptionsT()
    options.padding = tfl.Padding.SAME if same else tfl.Padding.VALID
    options.strideH, options.strideW = stride
    options.dilationHFactor, options.dilationWFactor = dilation
    options.fusedActivationFunction = activation
    out = (n, conv_out(h, kh, stride[0], dilation[0], same),
           conv_out(wd, kw, stride[1], dilation[1], same), cout)
    if b < 0:  # the float kernel needs a bias: neither -1 nor two inputs pass its Prepare
        b = g.const(np.zeros(cout, np.float32), "zero_bias")
    return g.emit("CONV_2D", [x, w, b], out, label, tfl.BuiltinOptions.Conv2DOptions, options)


def depthwise_conv2d(g: SubgraphWriter, x: int, w: int, b: int, *, multiplier: int = 1,
                     stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
                     same: bool = False, activation: int = 0, label: str = "dwconv") -> int:
    """DEPTHWISE_CONV_2D of NHWC ``x`` by ``w`` [1, kh, kw, c * multiplier]; ``b`` -1: no
    bias."""
    n, h, wd, c = g.shapes[x]
    _, kh, kw, _ = g.shapes[w]
    options = tfl.DepthwiseConv2DOptionsT()
    options.padding = tfl.Padding.SAME if same else tfl.Padding.VALID
    options.strideH, options.strideW = stride
    options.dilationHFactor, options.dilationWFactor = dilation
    options.depthMultiplier = multiplier
    options.fusedActivationFunction = activation
    out = (n, conv_out(h, kh, stride[0], dilation[0], same),
           conv_out(wd, kw, stride[1], dilation[1], same), c * multiplier)
    if b < 0:  # as CONV_2D
        b = g.const(np.zeros(c * multiplier, np.float32), "zero_bias")
    inputs = [x, w, b]
    return g.emit("DEPTHWISE_CONV_2D", inputs, out, label,
                  tfl.BuiltinOptions.DepthwiseConv2DOptions, options)


def transpose_conv(g: SubgraphWriter, x: int, w: int, out_shape: Sequence[int], *,
                   stride: tuple[int, int], same: bool, label: str = "transpose_conv") -> int:
    """TRANSPOSE_CONV of ``x`` by ``w`` [cout, kh, kw, cin] to ``out_shape`` (no bias)."""
    options = tfl.TransposeConvOptionsT()
    options.padding = tfl.Padding.SAME if same else tfl.Padding.VALID
    options.strideH, options.strideW = stride
    size = g.const(np.asarray(out_shape, np.int32))
    return g.emit("TRANSPOSE_CONV", [size, w, x], out_shape, label,
                  tfl.BuiltinOptions.TransposeConvOptions, options)
