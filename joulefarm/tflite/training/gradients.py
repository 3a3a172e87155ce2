"""The backward pass of each op, written in builtin ops.

A rule gets a ``Backward`` (the node's forward tensors in the train subgraph, which of its
inputs want a gradient) and the gradient of the loss with respect to the node's output before
its fused activation (``activation_gradient`` applies that first). It hands each wanted
gradient back with ``Backward.give``: activation inputs under the ``backward-input`` phase,
weights under ``backward-weights``.

Rules for convolutions and pooling live in ``spatial_gradients``; this module holds the dense,
elementwise and layout ops, and the registry ``RULES``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np

from joulefarm.tflite.schema import tfl
from joulefarm.tflite.training import emit
from joulefarm.tflite.training.source import Node
from joulefarm.tflite.training.writer import Shape, SubgraphWriter


class Backward:
    """What a gradient rule sees of one node in the train subgraph."""

    def __init__(self, g: SubgraphWriter, node: Node, layer: int, inputs: list[int],
                 output: int, wanted: set[int]) -> None:
        self.g = g
        self.node = node
        self.layer = layer
        self.inputs = inputs
        """The forward tensor at each input position (-1 where absent)."""
        self.output = output
        """The node's forward output (after its fused activation)."""
        self.wanted = wanted
        """Input positions whose gradient the train graph needs."""
        self.grads: dict[int, int] = {}

    def want(self, position: int) -> bool:
        return position in self.wanted

    def shape(self, position: int) -> Shape:
        return self.g.shapes[self.inputs[position]]

    def give(self, position: int, grad: int) -> None:
        if self.g.shapes[grad] != self.shape(position):
            raise AssertionError(f"{self.node.op}: gradient of input {position} has shape "
                                 f"{self.g.shapes[grad]}, the input {self.shape(position)}")
        self.grads[position] = grad

    @contextlib.contextmanager
    def input_phase(self) -> Iterator[None]:
        with self.g.phase(self.layer, "backward-input"):
            yield

    @contextlib.contextmanager
    def weights_phase(self) -> Iterator[None]:
        with self.g.phase(self.layer, "backward-weights"):
            yield


Rule = Callable[[Backward, int], None]


def activation_gradient(g: SubgraphWriter, activation: int, y: int, dy: int) -> int:
    """The gradient before a fused activation, from its output ``y``: RELU passes where
    y > 0, RELU6 where 0 < y < 6 (the same sets as on its input, read from the output the
    forward already holds)."""
    if activation == tfl.ActivationFunctionType.NONE:
        return dy
    zero = g.const(0.0)
    passes = emit.greater(g, y, zero, "relu_mask")
    if activation == tfl.ActivationFunctionType.RELU6:
        passes = emit.logical_and(g, passes, emit.less(g, y, g.const(6.0)),
                                  "relu6_mask")
    elif activation != tfl.ActivationFunctionType.RELU:
        raise ValueError(f"no gradient for fused activation {activation}")
    return emit.select(g, passes, dy, zero, "activation_grad")


def unbroadcast(g: SubgraphWriter, grad: int, shape: Shape) -> int:
    """Sum ``grad`` over the axes that broadcasting stretched to reach its shape from
    ``shape``."""
    out = g.shapes[grad]
    if out == shape:
        return grad
    lead = len(out) - len(shape)
    axes = [d for d in range(len(out))
            if d < lead or (shape[d - lead] == 1 and out[d] != 1)]
    summed = emit.reduce(g, "SUM", grad, axes, keep_dims=True, label="unbroadcast")
    return emit.reshape(g, summed, shape)


def _fully_connected(b: Backward, dz: int) -> None:
    g = b.g
    x, w = b.inputs[0], b.inputs[1]
    features = b.shape(1)[1]
    if b.want(0):
        with b.input_phase():
            dx = emit.batch_matmul(g, dz, w, label="fc_dx")  # [batch, units] @ [units, in]
            b.give(0, emit.reshape(g, dx, b.shape(0)))
    if b.want(1):
        with b.weights_phase():
            x2 = emit.reshape(g, x, (math.prod(b.shape(0)) // features, features))
            b.give(1, emit.batch_matmul(g, dz, x2, adj_x=True, label="fc_dw"))
    if b.want(2):
        with b.weights_phase():
            b.give(2, emit.reduce(g, "SUM", dz, [0], label="fc_db"))


def _elementwise_add(b: Backward, dz: int, sign: tuple[float, float]) -> None:
    for position, factor in enumerate(sign):
        if b.want(position):
            with b.input_phase():
                grad = dz if factor == 1.0 else emit.scale(b.g, dz, factor, "neg")
                b.give(position, unbroadcast(b.g, grad, b.shape(position)))


def _add(b: Backward, dz: int) -> None:
    _elementwise_add(b, dz, (1.0, 1.0))


def _sub(b: Backward, dz: int) -> None:
    _elementwise_add(b, dz, (1.0, -1.0))


def _mul(b: Backward, dz: int) -> None:
    for position in (0, 1):
        if b.want(position):
            with b.input_phase():
                grad = emit.mul(b.g, dz, b.inputs[1 - position], "mul_grad")
                b.give(position, unbroadcast(b.g, grad, b.shape(position)))


def _relu(b: Backward, dz: int) -> None:
    if b.want(0):
        with b.input_phase():
            b.give(0, activation_gradient(b.g, tfl.ActivationFunctionType.RELU, b.output, dz))


def _relu6(b: Backward, dz: int) -> None:
    if b.want(0):
        with b.input_phase():
            b.give(0, activation_gradient(b.g, tfl.ActivationFunctionType.RELU6, b.output,
                                          dz))


def _reshape(b: Backward, dz: int) -> None:
    if b.want(0):
        with b.input_phase():
            b.give(0, emit.reshape(b.g, dz, b.shape(0), "reshape_grad"))


def _softmax(b: Backward, dz: int) -> None:
    # dx = y * (dz - sum(dz * y)) over the softmax axis; beta scales the logits, so dx too.
    if not b.want(0):
        return
    g = b.g
    with b.input_phase():
        y = b.output
        dot = emit.reduce(g, "SUM", emit.mul(g, dz, y), [-1], keep_dims=True)
        dx = emit.mul(g, y, emit.sub(g, dz, dot))
        beta = float(getattr(b.node.options, "beta", 1.0) or 1.0)
        b.give(0, dx if beta == 1.0 else emit.scale(g, dx, beta))


def _mean(b: Backward, dz: int) -> None:
    if not b.want(0):
        return
    g = b.g
    shape = b.shape(0)
    axes = sorted({a % len(shape) for a in _constant_ints(b, 1)})
    with b.input_phase():
        kept = tuple(1 if d in axes else s for d, s in enumerate(shape))
        count = math.prod(shape[d] for d in axes)
        dx = emit.scale(g, emit.reshape(g, dz, kept), 1.0 / count, "mean_grad")
        b.give(0, emit.tile(g, dx, [shape[d] if d in axes else 1 for d in range(len(shape))]))


def _pad(b: Backward, dz: int) -> None:
    if not b.want(0):
        return
    paddings = np.asarray(_constant_ints(b, 1)).reshape(-1, 2)
    with b.input_phase():
        b.give(0, emit.slice_(b.g, dz, [int(p) for p in paddings[:, 0]], b.shape(0),
                              "pad_grad"))


def _concatenation(b: Backward, dz: int) -> None:
    axis = int(b.node.options.axis) % len(b.g.shapes[dz])
    offset = 0
    for position in range(len(b.inputs)):
        shape = b.shape(position)
        if b.want(position):
            with b.input_phase():
                begin = [offset if d == axis else 0 for d in range(len(shape))]
                b.give(position, emit.slice_(b.g, dz, begin, shape, "concat_grad"))
        offset += shape[axis]


def _transpose(b: Backward, dz: int) -> None:
    if not b.want(0):
        return
    perm = _constant_ints(b, 1)
    inverse = [perm.index(d) for d in range(len(perm))]
    with b.input_phase():
        b.give(0, emit.transpose(b.g, dz, inverse, "transpose_grad"))


def _constant_ints(b: Backward, position: int) -> list[int]:
    """The value of an int32 constant input (axes, paddings, a permutation)."""
    value = b.g.constant_value(b.inputs[position])
    return [int(v) for v in np.asarray(value).ravel()]


RULES: dict[str, Rule] = {
    "FULLY_CONNECTED": _fully_connected,
    "ADD": _add,
    "SUB": _sub,
    "MUL": _mul,
    "RELU": _relu,
    "RELU6": _relu6,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
    "MEAN": _mean,
    "PAD": _pad,
    "CONCATENATION": _concatenation,
    "TRANSPOSE": _transpose,
}
"""Op name -> its gradient rule. An op without one cannot lie between a trainable layer and
the loss (``trainable_model`` says which)."""
