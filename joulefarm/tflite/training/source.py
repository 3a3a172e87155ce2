"""The inference model a trainable model is made from: its nodes, weights and shapes.

A trainable model starts from an ordinary float32 model (``builder.build_model``'s, a recipe's,
a sweep's): its nodes become the ``forward`` phase of ``infer`` and ``train``, and the float
constants that ``WEIGHT_INPUTS`` names become resource variables. Starting from the bytes
rather than from the layer specs keeps one definition of each layer (the builder's) and makes
``infer`` compute exactly what the inference model computes, seeded weights included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import decode_name, numpy_dtype, op_name, shape_of, unpack_model
from joulefarm.tflite.graph import STATEFUL_OPS
from joulefarm.tflite.schema import tfl
from joulefarm.tflite.training.writer import Shape

WEIGHT_INPUTS: dict[str, dict[int, str]] = {
    "FULLY_CONNECTED": {1: "weights", 2: "bias"},
    "CONV_2D": {1: "filter", 2: "bias"},
    "DEPTHWISE_CONV_2D": {1: "filter", 2: "bias"},
}
"""Input positions of each op that hold trainable weights, and the weights' names. Other float
constants (a ``Binary`` layer's operand, a ``Fill`` value) stay constants."""


@dataclass(frozen=True)
class Node:
    """One operator of the inference model (one layer, for the builder's models)."""

    index: int
    op: str
    options_type: int
    options: Any
    inputs: tuple[int, ...]
    """Tensor indices, -1 where an optional input is absent."""
    outputs: tuple[int, ...]

    @property
    def activation(self) -> int:
        """The fused activation (``ActivationFunctionType``), 0 (NONE) for ops without one."""
        return int(getattr(self.options, "fusedActivationFunction", 0) or 0)


@dataclass(frozen=True)
class Weight:
    """A trainable tensor: which node and input position holds it, and its initial value."""

    layer: int
    position: int
    name: str
    value: np.ndarray

    @property
    def variable(self) -> str:
        """The resource variable's shared name."""
        return f"{self.layer}/{self.name}"


class SourceModel:
    """A single-subgraph float32 model with one input and one output, read for training."""

    def __init__(self, model_bytes: bytes) -> None:
        self.model = unpack_model(model_bytes)
        if len(self.model.subgraphs) != 1:
            raise ModelError("a trainable model is made from a model of one subgraph, got "
                             f"{len(self.model.subgraphs)}")
        graph = self.model.subgraphs[0]
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise ModelError("a trainable model is made from a model of one input and one "
                             f"output, got {len(graph.inputs)} and {len(graph.outputs)}")
        self.tensors: list[Any] = graph.tensors
        self.input: int = graph.inputs[0]
        self.output: int = graph.outputs[0]
        self.nodes: list[Node] = []
        for n, operator in enumerate(graph.operators):
            name = op_name(self.model, operator)
            if name in STATEFUL_OPS or name == "CUSTOM":
                raise ModelError(f"node {n} ({name}): a model with state or custom ops cannot "
                                 "be made trainable")
            self.nodes.append(Node(n, name, int(operator.builtinOptionsType),
                                   operator.builtinOptions, tuple(operator.inputs),
                                   tuple(operator.outputs)))
        for t in (self.input, self.output):
            if self.tensors[t].type != tfl.TensorType.FLOAT32:
                raise ModelError(f"tensor {decode_name(self.tensors[t].name)}: training needs "
                                 "a float32 input and output")

    def shape(self, t: int) -> Shape:
        return tuple(shape_of(self.tensors[t]))

    def tensor_type(self, t: int) -> int:
        return int(self.tensors[t].type)

    def constant(self, t: int) -> np.ndarray | None:
        """The value of a constant tensor, or None for an activation."""
        data = self.model.buffers[self.tensors[t].buffer].data
        if data is None or len(data) == 0:
            return None
        dtype = numpy_dtype(self.tensors[t].type)
        if dtype is None:
            raise ModelError(f"tensor {t}: constants of type {self.tensors[t].type} are not "
                             "supported in training graphs")
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(self.shape(t))

    def weights(self, node: Node) -> list[Weight]:
        """The trainable float32 constants of a node (none for ops without weights)."""
        out = []
        for position, name in WEIGHT_INPUTS.get(node.op, {}).items():
            if position >= len(node.inputs) or node.inputs[position] < 0:
                continue
            value = self.constant(node.inputs[position])
            if value is not None and value.dtype == np.float32:
                out.append(Weight(node.index, position, name, value.copy()))
        return out
