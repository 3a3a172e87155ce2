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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import make_buffer, op_name, pack_model, unpack_model
from joulefarm.tflite.graph import Graph, load_graph, subgraph_references
from joulefarm.tflite.schema import tfl

Shape = tuple[int, ...]


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


def split_model(model_bytes: bytes, shapes: Mapping[int, Shape] | None = None, *,
                check: Callable[[], None] = lambda: None) -> list[LayerModel]:
    """One ``LayerModel`` per layer (weight-preparing and setup nodes folded), in execution
    order.

    A control-flow layer (``IF``, ``WHILE``, ``CALL``) carries its bodies; a layer that reads or
    writes a resource variable carries the variable's handle and the model's one-time
    initialisation (``CALL_ONCE``); a custom op is copied with its options, for a runtime that
    resolves it. ``shapes`` (tensor index -> shape, e.g. what the runtime computed for the whole
    model) replaces the file's shapes, which converters sometimes leave as placeholders.
    Raises ``ModelError`` for models it cannot read. ``check`` is called before each layer
    (a model of 100,000 layers takes minutes); it may raise to give up.
    """
    graph = load_graph(model_bytes)
    models = []
    for n in graph.layer_nodes:
        check()
        models.append(_sub_model(graph, (n,), shapes=shapes))
    return models


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
        if n in graph.folded:
            raise ModelError(f"node {n} ({graph.ops[n]}) only prepares weights or state; it is "
                             "folded into its consumer and cannot be one of a pair")
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


def computed_shape_operands(model: bytes | Graph, layer: LayerModel) -> tuple[int, ...]:
    """Original indices of the layer's inputs that set an output shape and are computed at run
    time (not constants): freezing them (``freeze_inputs``) makes its outputs static. Given the
    parsed graph, for many layers of one model: parsing it for each was quadratic."""
    graph = model if isinstance(model, Graph) else load_graph(model)
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


def computed_shape_operands_of_model(model_bytes: bytes) -> tuple[int, ...]:
    """Tensors of the main subgraph that set an op's output shape and are computed at run time
    (``SHAPE_OPERANDS``): what makes a whole model's outputs dynamic tensors."""
    graph = load_graph(model_bytes)
    found: list[int] = []
    for n, operator in enumerate(graph.subgraph.operators or []):
        operands = operator.inputs or []
        for position in SHAPE_OPERANDS.get(graph.ops[n], ()):
            if position < len(operands):
                t = int(operands[position])
                if t >= 0 and not graph.is_constant(t) and t not in found:
                    found.append(t)
    return tuple(found)


def with_static_shape_operands(model_bytes: bytes, values: Mapping[int, np.ndarray]) -> bytes:
    """The whole model with each computed shape operand in ``values`` (tensor index -> the value
    one inference computed) read from a new constant holding that value instead, so that the
    ops it shapes have static outputs (the LiteRT C API cannot bind dynamic ones). The nodes that
    computed it stay in the graph and still run: the work is the model's, node for node, and
    node indices do not change."""
    model = unpack_model(model_bytes)
    graph = model.subgraphs[0]
    replaced: dict[int, int] = {}
    for t, value in values.items():
        array = np.ascontiguousarray(value)
        constant = copy.copy(graph.tensors[t])
        constant.shape, constant.shapeSignature = list(array.shape), None
        model.buffers.append(make_buffer(array.tobytes()))
        constant.buffer = len(model.buffers) - 1
        graph.tensors.append(constant)
        replaced[t] = len(graph.tensors) - 1
    for operator in graph.operators or []:
        name = op_name(model, operator)
        positions = SHAPE_OPERANDS.get(name, ())
        operator.inputs = [replaced.get(int(t), int(t)) if k in positions else int(t)
                           for k, t in enumerate(operator.inputs or [])]
    return pack_model(model)


class _SubModel:
    """Builds one sub-model, copying tensors on first use."""

    def __init__(self, graph: Graph, frozen: Mapping[int, np.ndarray] | None = None,
                 shapes: Mapping[int, Shape] | None = None) -> None:
        self.graph = graph
        self.frozen = dict(frozen or {})
        self.shapes = dict(shapes or {})
        self.buffer_index: dict[int, int] = {}  # original buffer -> sub-model buffer
        self.subgraph_index: dict[int, int] = {}  # original subgraph -> sub-model subgraph
        self.subgraphs: list[tfl.SubGraphT] = []  # the sub-model's subgraphs after the first
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
        tensor = self._runtime_shaped(t, copy.copy(original))
        tensor.buffer = 0
        # A variable tensor is state the op keeps between invocations: not an input either.
        if graph.is_constant(t) or original.isVariable:
            tensor.buffer = self._buffer(original.buffer, f"tensor {t}")
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
            tensor = self._runtime_shaped(t, copy.copy(self.graph.subgraph.tensors[t]))
            tensor.buffer = 0
            self.tensors.append(tensor)
            self.mapped[t] = len(self.tensors) - 1
            outputs.append(self.mapped[t])
        operator = self._operator(original)
        operator.inputs = inputs
        operator.outputs = outputs
        if original.intermediates is not None:
            operator.intermediates = [self._scratch(t) for t in original.intermediates]
        self.operators.append(operator)
        return outputs

    def _operator(self, original: tfl.OperatorT) -> tfl.OperatorT:
        """A copy of ``original`` with its op code and the subgraphs it names remapped."""
        operator = copy.copy(original)
        operator.opcodeIndex = self._code(original.opcodeIndex)
        for attribute in ("builtinOptions", "builtinOptions2"):
            options = getattr(original, attribute, None)
            references = subgraph_references(options)
            if not references:
                continue
            options = copy.copy(options)  # never edit the original graph's options
            for name, _ in references:
                value = getattr(options, name)
                if isinstance(value, int):
                    setattr(options, name, self._subgraph(value))
                else:
                    setattr(options, name, [self._subgraph(int(v)) for v in value])
            setattr(operator, attribute, options)
        return operator

    def _subgraph(self, index: int) -> int:
        """Sub-model index of original subgraph ``index`` (a control-flow body or an
        initialiser), copied whole on first use with the subgraphs it names in turn."""
        if index in self.subgraph_index:
            return self.subgraph_index[index]
        self.subgraph_index[index] = 1 + len(self.subgraphs)
        original = self.graph.model.subgraphs[index]
        copied = copy.copy(original)
        self.subgraphs.append(copied)
        copied.tensors = []
        for k, tensor in enumerate(original.tensors or []):
            tensor = copy.copy(tensor)
            tensor.buffer = self._buffer(tensor.buffer, f"subgraph {index} tensor {k}")
            copied.tensors.append(tensor)
        copied.operators = [self._operator(op) for op in original.operators or []]
        return self.subgraph_index[index]

    def _buffer(self, index: int, what: str) -> int:
        """Sub-model buffer holding the data of original buffer ``index`` (0: none)."""
        source = self.graph.model.buffers[index] if index > 0 else None
        if source is None or ((source.data is None or len(source.data) == 0)
                              and source.offset <= 1):
            return 0
        if index not in self.buffer_index:
            if source.data is None:  # stored past the flatbuffer (models over 2 GB)
                raise ModelError(f"{what} keeps its data outside the flatbuffer; such models "
                                 "cannot be split")
            self.buffer_index[index] = len(self.buffers)
            self.buffers.append(make_buffer(source.data.tobytes()))
        return self.buffer_index[index]

    def _runtime_shaped(self, t: int, tensor: tfl.TensorT) -> tfl.TensorT:
        """The tensor with the shape the runtime computed for it, where that differs from the
        file's (whose shape is then a converter's placeholder, not a fact)."""
        shape = self.shapes.get(t)
        if shape is not None and tuple(tensor.shape if tensor.shape is not None else ()) != (
                tuple(shape)):
            tensor.shape = [int(d) for d in shape]
            tensor.shapeSignature = None
        return tensor

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


def _uses_variables(graph: Graph, nodes: tuple[int, ...]) -> bool:
    """Whether any of ``nodes`` reads a resource handle made by ``VAR_HANDLE``."""
    return any(graph.ops[graph.producer[t]] == "VAR_HANDLE"
               for n in nodes for t in graph.subgraph.operators[n].inputs or []
               if t >= 0 and t in graph.producer)


def _sub_model(graph: Graph, nodes: tuple[int, ...], extra_outputs: tuple[int, ...] = (),
               frozen: Mapping[int, np.ndarray] | None = None,
               shapes: Mapping[int, Shape] | None = None) -> LayerModel:
    """The sub-model of ``nodes`` (in execution order): the last node's outputs, then
    ``extra_outputs`` (original indices of tensors the earlier nodes write), are its outputs;
    inputs in ``frozen`` become constants holding the given values; ``shapes`` replace the
    file's shapes of the tensors they name."""
    sub = _SubModel(graph, frozen, shapes)
    if _uses_variables(graph, nodes):
        # The variable must hold what the model's initialiser gives it before the layer reads
        # it: the CALL_ONCE nodes come first (they run at the first invocation only).
        for n in sorted(graph.setup):
            if graph.ops[n] == "CALL_ONCE":
                sub.node(n)
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
    model.subgraphs = [subgraph, *sub.subgraphs]
    model.buffers = sub.buffers
    return LayerModel(
        index=nodes[0],
        op=names,
        model_bytes=pack_model(model),
        input_tensors=tuple(int(t) for t in sub.inputs),
        output_tensors=original_outputs,
        nodes=nodes,
    )
