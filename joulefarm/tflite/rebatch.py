"""Running a generated model at another batch size: ``rebatch(model_bytes, batch)``.

On-device training measures a step at a batch of 8, 16, 32...; ``builder.build_model`` (its
recipes, the sweeps' single layers) writes a model at one batch b0, usually 1. ``rebatch`` sets
dimension 0 of every activation (every non-constant tensor) to the new batch.

Why that is safe for the builder's models: every activation the builder makes is batch-first
(NHWC, [batch, features], [batch, ...]) and every layer computes each batch row on its own, so
dimension 0 of an activation is always the batch. The only constants that spell it out are
RESHAPE's new shape and the extent of a SLICE or STRIDED_SLICE over the whole batch on axis 0:
those are rewritten. Filters, weights, biases, pool and resize sizes, FFT lengths, PAD's
paddings and MEAN's axes of other dimensions never describe the batch, and the constant operand
of a broadcasting op (ADD, MUL, BATCH_MATMUL...) holds batch 1, so it applies to every row.

What it refuses with ``ModelError`` (naming the node and op at fault) rather than guess: models of
several subgraphs or inputs, or with buffers outside the flatbuffer; ops it does not know; ops
that act across the batch (a reduce, concatenation or transpose involving axis 0, padding of
axis 0, a slice of part of the batch, SOFTMAX on a rank-1 tensor, FULLY_CONNECTED flattening a
rank-3+ input, RFFT2D of rank < 3, BATCH_MATMUL of two activations or over the batch); a
constant operand holding one value per batch row (leading dimension b0 > 1); a computed RESHAPE
shape or a RESHAPE of a constant; FILL of dims other than a SHAPE's; an op that reads no
activation; and any activation whose dimension 0 is not b0.
"""

from __future__ import annotations

import operator as _operator
from typing import Any

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.builder import BINARY_OPS, REDUCE_OPS, UNARY_OPS
from joulefarm.tflite.flatbuffer import (
    decode_name,
    make_buffer,
    numpy_dtype,
    op_name,
    pack_model,
    shape_of,
    unpack_model,
)

_PER_ROW = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESIZE_BILINEAR",
    "COMPLEX_ABS", "QUANTIZE", "DEQUANTIZE", "SHAPE", *UNARY_OPS,
})
"""Ops that compute each row of an NHWC (or any) batch alone and whose constants (filters,
biases, sizes) never describe the batch."""

_BROADCASTING = frozenset({*BINARY_OPS, "BATCH_MATMUL"})
_REDUCING = frozenset(REDUCE_OPS)
_INPUTS_READ = {"SLICE": 3, "STRIDED_SLICE": 4, "TRANSPOSE": 2, "PAD": 2, "RESHAPE": 1,
                **dict.fromkeys(REDUCE_OPS, 2)}
"""How many inputs the checks below read, for the ops whose constants they read."""


class _Graph:
    """The one subgraph of a model, read: which tensors are constants, their values, shapes."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.graph = model.subgraphs[0]
        self.tensors: list[Any] = self.graph.tensors

    def is_constant(self, t: int) -> bool:
        data = self.model.buffers[self.tensors[t].buffer].data
        return data is not None and len(data) > 0

    def shape(self, t: int) -> list[int]:
        return shape_of(self.tensors[t])

    def ints(self, t: int) -> list[int] | None:
        """An integer constant's values, flattened; None for an activation."""
        if not self.is_constant(t):
            return None
        tensor = self.tensors[t]
        dtype = numpy_dtype(tensor.type)
        if dtype is None or dtype.kind not in "iu":
            raise ModelError(f"tensor {t} ({decode_name(tensor.name)}): expected an integer "
                             "constant")
        raw = np.asarray(self.model.buffers[tensor.buffer].data, np.uint8).tobytes()
        return [int(v) for v in np.frombuffer(raw, dtype)]

    def write_ints(self, t: int, values: list[int]) -> None:
        """Give constant ``t`` new values, in a buffer of its own if it shares one."""
        tensor = self.tensors[t]
        data = np.asarray(values, numpy_dtype(tensor.type))
        users = sum(1 for other in self.tensors if other.buffer == tensor.buffer)
        if users == 1:
            self.model.buffers[tensor.buffer] = make_buffer(data)
        else:
            tensor.buffer = len(self.model.buffers)
            self.model.buffers.append(make_buffer(data))


def _refuse(n: int, op: str, why: str) -> ModelError:
    return ModelError(f"node {n} ({op}): cannot rebatch: {why}")


def _node_rewrites(g: _Graph, n: int, op: str, node: Any, b0: int, batch: int,
                   shape_outputs: set[int]) -> dict[int, list[int]]:
    """Check one node; the constants it needs rewritten (tensor -> new values)."""
    inputs = [t for t in node.inputs if t >= 0]
    if len(inputs) < _INPUTS_READ.get(op, 1):
        raise _refuse(n, op, f"it has {len(inputs)} inputs")
    if op == "FILL":
        if inputs[0] not in shape_outputs:
            raise _refuse(n, op, "its dims are not a SHAPE of an activation")
        return {}
    if any(t in shape_outputs for t in inputs):
        raise _refuse(n, op, "it reads a SHAPE output (only FILL may)")
    if not any(not g.is_constant(t) for t in inputs):
        raise _refuse(n, op, "it reads no activation")
    rank = len(g.shape(inputs[0]))
    options = node.builtinOptions
    if op in _PER_ROW:
        return {}
    if op == "SOFTMAX":
        if rank < 2:
            raise _refuse(n, op, "a rank-1 input is the batch itself")
        return {}
    if op == "FULLY_CONNECTED":
        if rank < 2 or (rank > 2 and not getattr(options, "keepNumDims", False)):
            raise _refuse(n, op, f"a rank-{rank} input does not keep the batch apart")
        return {}
    if op == "RFFT2D":
        if rank < 3:
            raise _refuse(n, op, "its FFT runs over the batch dimension")
        return {}
    if op in _BROADCASTING:
        out_rank = len(g.shape(node.outputs[0]))
        if op == "BATCH_MATMUL" and (not g.is_constant(inputs[1]) or (
                rank == 2 and getattr(options, "adjX", False))):
            raise _refuse(n, op, "it multiplies two activations or contracts over the batch")
        for t in inputs:
            shape = g.shape(t)
            per_row = len(shape) == out_rank and (op != "BATCH_MATMUL" or out_rank >= 3)
            if g.is_constant(t) and per_row and shape[0] != 1:
                raise _refuse(n, op, f"constant {decode_name(g.tensors[t].name)} of shape "
                                     f"{shape} holds one value per batch row")
        return {}
    if op == "CONCATENATION":
        if any(g.is_constant(t) for t in inputs) or int(options.axis) % rank == 0:
            raise _refuse(n, op, "it joins on the batch axis or joins a constant")
        return {}
    if op in _REDUCING or op in ("TRANSPOSE", "PAD"):
        values = g.ints(inputs[1])
        if values is None:
            raise _refuse(n, op, "its axes, perm or paddings are computed")
        across = {
            "TRANSPOSE": values[:1] != [0],
            "PAD": values[:2] != [0, 0],
        }.get(op, any(a % rank == 0 for a in values))
        if across:
            raise _refuse(n, op, f"{values} moves, pads or reduces the batch axis")
        return {}
    if op == "RESHAPE":
        target = g.ints(inputs[1]) if len(inputs) > 1 else []
        if g.is_constant(inputs[0]) or target is None:
            raise _refuse(n, op, "it reshapes a constant or to a computed shape")
        return {inputs[1]: [batch, *target[1:]]} if target[:1] == [b0] else {}
    if op == "SLICE":
        begin, size = g.ints(inputs[1]), g.ints(inputs[2])
        if begin is None or size is None or begin[0] != 0 or size[0] not in (b0, -1):
            raise _refuse(n, op, f"begin {begin} size {size} do not take the whole batch")
        return {inputs[2]: [batch, *size[1:]]} if size[0] == b0 else {}
    if op == "STRIDED_SLICE":
        begin, end, strides = (g.ints(t) for t in inputs[1:4])
        if begin is None or end is None or strides is None:
            raise _refuse(n, op, "its begin, end or strides are computed")
        whole = ((options.beginMask & 1 or begin[0] == 0) and strides[0] == 1
                 and (options.endMask & 1 or end[0] == b0))
        if not whole or options.ellipsisMask or options.newAxisMask or (
                options.shrinkAxisMask & 1) or getattr(options, "offset", False):
            raise _refuse(n, op, f"[{begin[0]}:{end[0]}:{strides[0]}] (masks "
                                 f"{options.beginMask}/{options.endMask}) does not take the "
                                 "whole batch")
        return {} if options.endMask & 1 else {inputs[2]: [batch, *end[1:]]}
    raise _refuse(n, op, "rebatch does not know whether its constants depend on the batch")


def rebatch(model_bytes: bytes, batch: int) -> bytes:
    """The model with its batch dimension set to ``batch``: dimension 0 of every activation
    (shape and shape signature), RESHAPE's new shape and whole-batch slices.

    See the module docstring for the rule and what it refuses (``ModelError``). ``batch`` < 1
    is a ``ValueError``. When ``batch`` is the model's batch already, the model is checked and
    ``model_bytes`` come back unchanged.
    """
    batch = _operator.index(batch)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    model = unpack_model(model_bytes)
    if len(model.subgraphs) != 1 or len(model.subgraphs[0].inputs) != 1:
        raise ModelError(f"rebatch needs a model of one subgraph and one input, got "
                         f"{len(model.subgraphs)} subgraphs and "
                         f"{len(model.subgraphs[0].inputs)} inputs")
    if any(b.offset for b in model.buffers or []):
        raise ModelError("rebatch reads constants inside the flatbuffer; this model keeps "
                         "buffers after it")
    g = _Graph(model)
    input_shape = g.shape(g.graph.inputs[0])
    if not input_shape or input_shape[0] < 1 or g.is_constant(g.graph.inputs[0]):
        raise ModelError(f"rebatch needs an input with a batch dimension, got {input_shape}")
    b0 = input_shape[0]

    shape_outputs: set[int] = set()
    made_by: dict[int, str] = {}
    for n, node in enumerate(g.graph.operators):
        op = op_name(model, node)
        made_by.update((t, f"node {n} ({op})") for t in node.outputs if t >= 0)
        if op == "SHAPE":
            shape_outputs.update(t for t in node.outputs if t >= 0)
    activations = [t for t in range(len(g.tensors))
                   if not g.is_constant(t) and t not in shape_outputs]
    for t in activations:
        shape = g.shape(t)
        if shape[:1] != [b0]:
            where = made_by.get(t, "the graph")
            raise ModelError(f"{where}: cannot rebatch: tensor {t} "
                             f"({decode_name(g.tensors[t].name)}) of shape {shape} does not "
                             f"lead with the batch {b0}")
    rewrites: dict[int, list[int]] = {}
    for n, node in enumerate(g.graph.operators):
        rewrites.update(_node_rewrites(g, n, op_name(model, node), node, b0, batch,
                                       shape_outputs))
    if batch == b0:
        return model_bytes

    for t in activations:
        tensor = g.tensors[t]
        tensor.shape = [batch, *g.shape(t)[1:]]
        signature = tensor.shapeSignature
        if signature is not None and len(signature) and int(signature[0]) == b0:
            tensor.shapeSignature = [batch, *(int(d) for d in signature[1:])]
    for t, values in rewrites.items():
        g.write_ints(t, values)
    for node in g.graph.operators:
        new_shape = getattr(node.builtinOptions, "newShape", None)
        if op_name(model, node) == "RESHAPE" and new_shape is not None and len(new_shape):
            values = [int(d) for d in new_shape]
            if values[0] == b0:
                node.builtinOptions.newShape = [batch, *values[1:]]
    return pack_model(model)
