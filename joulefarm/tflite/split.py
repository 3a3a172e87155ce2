"""Cut a model into single-layer sub-models that any runtime can load and loop on its own.

Each sub-model holds one node (``split_model``), or two data-dependent nodes (``pair_model``,
to see whether a runtime fuses them): its constant inputs are copied in (16-byte aligned), its
other inputs become the sub-model's inputs and its outputs the sub-model's outputs, with the
original tensor types, shapes, shape signatures and quantisation. Weight-preparing nodes
(``DEQUANTIZE``/``DENSIFY`` of constants) travel inside the sub-model of the node that uses
their output, where the runtime runs them once at the first invocation, as in the whole model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import make_buffer, pack_model
from joulefarm.tflite.graph import Graph, load_graph
from joulefarm.tflite.schema import tfl


@dataclass(frozen=True)
class LayerModel:
    """A sub-model of node ``index`` alone, or of the nodes ``nodes`` (a pair: ``index`` is the
    first, ``op`` reads "A+B")."""

    index: int
    """Node index in the original model (the first node of a pair)."""
    op: str
    model_bytes: bytes = field(repr=False)
    input_tensors: tuple[int, ...]
    """Original tensor indices of the non-constant inputs, in the sub-model's input order."""
    output_tensors: tuple[int, ...]
    """Original tensor indices of the outputs, in the sub-model's output order."""
    nodes: tuple[int, ...] = ()
    """Node indices of the layers it holds, in execution order (``(index,)`` for one layer)."""

    def __post_init__(self) -> None:
        if not self.nodes:
            object.__setattr__(self, "nodes", (self.index,))


def split_model(model_bytes: bytes) -> list[LayerModel]:
    """One ``LayerModel`` per layer (weight-preparing nodes folded), in execution order.

    Raises ``ModelError`` for models it cannot read or split (several subgraphs, custom ops,
    stateful ops).
    """
    graph = load_graph(model_bytes)
    return [_sub_model(graph, (n,)) for n in range(len(graph.ops)) if n not in graph.weight_prep]


def pair_model(model_bytes: bytes, first: int, second: int) -> LayerModel:
    """One sub-model holding nodes ``first`` and ``second``, where ``second`` consumes an
    output of ``first``: what a runtime that fuses the two ops would run.

    Its inputs are the non-constant tensors the two nodes take from outside the pair (the
    tensor passed from ``first`` to ``second`` stays inside). Its outputs are ``second``'s
    outputs, then those outputs of ``first`` that the original model also uses outside the pair
    (another consumer, or a model output): there the real model must materialise them too, and
    a fusing runtime (XNNPACK) cannot elide them, so neither may the pair. An intermediate
    only ``second`` reads stays internal, free to be fused away as in the model.

    Raises ``ModelError`` when a node does not exist, is a folded weight-preparing node, or
    when ``second`` reads no output of ``first``.
    """
    graph = load_graph(model_bytes)
    for n in (first, second):
        if not 0 <= n < len(graph.ops):
            raise ModelError(f"node {n} does not exist (the model has {len(graph.ops)} nodes)")
        if n in graph.weight_prep:
            raise ModelError(f"node {n} ({graph.ops[n]}) only prepares weights; it is folded "
                             "into its consumer and cannot be one of a pair")
    operators = graph.subgraph.operators
    passed = set(operators[first].outputs or []) & set(operators[second].inputs or [])
    if first == second or not passed:
        raise ModelError(f"node {second} ({graph.ops[second]}) reads no output of node {first} "
                         f"({graph.ops[first]}): not a data-dependent pair")
    used_outside = {int(t) for t in graph.subgraph.outputs or []}
    for n, operator in enumerate(operators):
        if n not in (first, second):
            used_outside.update(int(t) for t in operator.inputs or [] if t >= 0)
    kept = tuple(int(t) for t in operators[first].outputs or [] if t in used_outside)
    return _sub_model(graph, (first, second), kept)


# Operands that set an op's output shape. When one is computed at run time (a Keras model with
# a dynamic batch reshapes to SHAPE -> STRIDED_SLICE -> PACK), the op's output is a dynamic
# tensor: the Python runtimes allocate it at every invoke, but the LiteRT C API cannot bind it
# to an output buffer at all.
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "RESHAPE": (1,), "BROADCAST_TO": (1,), "EXPAND_DIMS": (1,), "TILE": (1,),
    "RESIZE_BILINEAR": (1,), "RESIZE_NEAREST_NEIGHBOR": (1,), "PAD": (1,), "PADV2": (1,),
    "MIRROR_PAD": (1,), "FILL": (0,), "SLICE": (1, 2), "STRIDED_SLICE": (1, 2, 3),
}


def computed_shape_operands(model_bytes: bytes, layer: LayerModel) -> tuple[int, ...]:
    """Original indices of the layer's inputs that set an output shape and are computed at run
    time (not constants): freezing them (``freeze_inputs``) makes its outputs static."""
    graph = load_graph(model_bytes)
    found: list[int] = []
    for n in layer.nodes:
        operands = graph.subgraph.operators[n].inputs or []
        for position in SHAPE_OPERANDS.get(graph.ops[n], ()):
            if position < len(operands):
                t = int(operands[position])
                if t >= 0 and t in layer.input_tensors and t not in found:
                    found.append(t)
    return tuple(found)


def freeze_inputs(model_bytes: bytes, layer: LayerModel,
                  values: Mapping[int, np.ndarray]) -> LayerModel:
    """``layer`` rebuilt with the inputs in ``values`` (original tensor index -> the value the
    real model computed for it) made constants: e.g. a reshape's computed target shape, fixed
    at what this inference gives. The work the op does is the same; its output becomes static."""
    graph = load_graph(model_bytes)
    unknown = set(values) - set(layer.input_tensors)
    if unknown:
        raise ModelError(f"node {layer.index} ({layer.op}) has no inputs {sorted(unknown)}")
    last_outputs = len(graph.subgraph.operators[layer.nodes[-1]].outputs or [])
    return _sub_model(graph, layer.nodes, layer.output_tensors[last_outputs:], values)


class _SubModel:
    """Builds one sub-model, copying tensors on first use."""

    def __init__(self, graph: Graph, frozen: Mapping[int, np.ndarray] | None = None) -> None:
        self.graph = graph
        self.frozen = dict(frozen or {})
        self.tensors: list[tfl.TensorT] = []
        self.buffers: list[tfl.BufferT] = [make_buffer()]
        self.operators: list[tfl.OperatorT] = []
        self.codes: list[tfl.OperatorCodeT] = []
        self.code_index: dict[int, int] = {}
        self.mapped: dict[int, int] = {}
        self.inputs: list[int] = []  # original indices of the sub-model inputs

    def tensor(self, t: int) -> int:
        """Sub-model index of original tensor ``t`` (-1 stays -1: an omitted optional input)."""
        if t < 0:
            return t
        if t in self.mapped:
            return self.mapped[t]
        graph = self.graph
        if graph.is_constant(t) and t in graph.producer:
            # A folded weight-prep output: bring its producer along (it maps our tensor).
            self.node(graph.producer[t])
            return self.mapped[t]
        original = graph.subgraph.tensors[t]
        tensor = copy.copy(original)
        tensor.buffer = 0
        if graph.is_constant(t):
            source = graph.model.buffers[original.buffer]
            tensor.buffer = len(self.buffers)
            if source.data is None:  # stored past the flatbuffer (models over 2 GB)
                raise ModelError(f"tensor {t} keeps its data outside the flatbuffer; such "
                                 "models cannot be split")
            self.buffers.append(make_buffer(source.data.tobytes()))
        elif t in self.frozen:
            value = np.ascontiguousarray(self.frozen[t])
            tensor.shape = list(value.shape)
            tensor.shapeSignature = None
            tensor.buffer = len(self.buffers)
            self.buffers.append(make_buffer(value.tobytes()))
        else:
            self.inputs.append(t)
        self.tensors.append(tensor)
        self.mapped[t] = len(self.tensors) - 1
        return self.mapped[t]

    def node(self, n: int) -> list[int]:
        """Copy node ``n`` (its inputs first); returns the sub-model indices of its outputs."""
        original = self.graph.subgraph.operators[n]
        inputs = [self.tensor(t) for t in original.inputs or []]
        outputs = []
        for t in original.outputs or []:
            tensor = copy.copy(self.graph.subgraph.tensors[t])
            tensor.buffer = 0
            self.tensors.append(tensor)
            self.mapped[t] = len(self.tensors) - 1
            outputs.append(self.mapped[t])
        operator = copy.copy(original)
        operator.opcodeIndex = self._code(original.opcodeIndex)
        operator.inputs = inputs
        operator.outputs = outputs
        if original.intermediates is not None:
            operator.intermediates = [self._scratch(t) for t in original.intermediates]
        self.operators.append(operator)
        return outputs

    def _scratch(self, t: int) -> int:
        tensor = copy.copy(self.graph.subgraph.tensors[t])
        tensor.buffer = 0
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def _code(self, index: int) -> int:
        if index not in self.code_index:
            self.code_index[index] = len(self.codes)
            self.codes.append(copy.copy(self.graph.model.operatorCodes[index]))
        return self.code_index[index]


def _sub_model(graph: Graph, nodes: tuple[int, ...], extra_outputs: tuple[int, ...] = (),
               frozen: Mapping[int, np.ndarray] | None = None) -> LayerModel:
    """The sub-model of ``nodes`` (in execution order): the last node's outputs, then
    ``extra_outputs`` (original indices of tensors the earlier nodes write), are its outputs;
    inputs in ``frozen`` become constants holding the given values."""
    sub = _SubModel(graph, frozen)
    for n in nodes:
        sub.node(n)
    last = graph.subgraph.operators[nodes[-1]]
    original_outputs = tuple(int(t) for t in last.outputs or []) + extra_outputs
    names = "+".join(graph.ops[n] for n in nodes)

    subgraph = tfl.SubGraphT()
    subgraph.tensors = sub.tensors
    subgraph.inputs = [sub.mapped[t] for t in sub.inputs]
    subgraph.outputs = [sub.mapped[t] for t in original_outputs]
    subgraph.operators = sub.operators
    subgraph.name = "node_" + "_".join(str(n) for n in nodes)
    model = tfl.ModelT()
    model.version = graph.model.version or 3
    model.description = (f"joulefarm split: node{'s' if len(nodes) > 1 else ''} "
                         f"{'+'.join(str(n) for n in nodes)} ({names})")
    model.operatorCodes = sub.codes
    model.subgraphs = [subgraph]
    model.buffers = sub.buffers
    return LayerModel(
        index=nodes[0],
        op=names,
        model_bytes=pack_model(model),
        input_tensors=tuple(int(t) for t in sub.inputs),
        output_tensors=original_outputs,
        nodes=nodes,
    )
