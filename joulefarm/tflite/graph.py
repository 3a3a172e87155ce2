"""Graph facts shared by the parser and the splitter: what is constant, what is folded.

A tensor is *constant* when its buffer holds data, or when it is the output of a weight-preparing
node (``DEQUANTIZE`` of fp16/int8 weights, ``DENSIFY`` of sparse weights) whose inputs are all
constant. The runtime evaluates such nodes once and keeps the result, so they are no layer of
their own: they are folded into the layer that consumes their output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import op_name, unpack_model
from joulefarm.tflite.schema import tfl

WEIGHT_PREP_OPS = frozenset({"DEQUANTIZE", "DENSIFY"})
"""Ops that, applied to constants, only prepare weights for the next op."""

SETUP_OPS = frozenset({"VAR_HANDLE", "CALL_ONCE"})
"""Ops that set up state rather than compute: ``VAR_HANDLE`` names a resource variable (its
output is a handle, no data), ``CALL_ONCE`` runs an initialisation subgraph at the first
invocation only. Like weight preparation they are no layer of their own: they travel inside
the sub-model of each layer that reads or writes a variable."""

# Ops whose meaning depends on state kept between invocations or on other subgraphs. A whole
# model with them runs as it is; a layer cut out of it brings its bodies (control flow) or its
# variable's handle and initialisation along (see split.py); model rewrites refuse them.
STATEFUL_OPS = frozenset({
    "CALL", "CALL_ONCE", "IF", "WHILE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE",
    "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "DELEGATE",
    "STABLEHLO_WHILE", "STABLEHLO_CASE", "STABLEHLO_COMPOSITE", "STABLEHLO_CUSTOM_CALL",
    "RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM", "MULTINOMIAL",
})


@dataclass
class Graph:
    """A model's main subgraph (the one ``invoke`` runs) with its constant analysis.

    Any model the schema reads is accepted: custom ops, control flow with bodies in other
    subgraphs, resource variables, variable tensors. What a *rewrite* of the model cannot
    handle is listed in ``rewrite_problems``.
    """

    model: tfl.ModelT
    subgraph: tfl.SubGraphT
    ops: list[str]
    """Op name of every node, by node index (``"CUSTOM:name"`` for custom ops)."""
    constants: set[int]
    """Constant tensor indices (with buffer data, produced by a folded weight-prep node, or a
    resource handle from ``VAR_HANDLE``)."""
    weight_prep: set[int]
    """Node indices of weight-preparing nodes folded into their consumers."""
    producer: dict[int, int]
    """Tensor index -> index of the node that writes it."""
    setup: set[int] = field(default_factory=set)
    """Node indices of ``VAR_HANDLE`` and ``CALL_ONCE`` nodes (``SETUP_OPS``), folded too."""
    subgraph_refs: dict[int, tuple[int, ...]] = field(default_factory=dict)
    """Node index -> the other subgraphs it runs (control-flow bodies, initialisers)."""
    rewrite_problems: list[str] = field(default_factory=list)
    """Why ``float16_weights`` and ``quantize_int8`` cannot rewrite this model (empty: they
    can): several subgraphs, custom ops, state."""

    def is_constant(self, tensor: int) -> bool:
        return tensor in self.constants

    @property
    def folded(self) -> set[int]:
        """Nodes that are no layer of their own (weight preparation and state setup)."""
        return self.weight_prep | self.setup

    @property
    def layer_nodes(self) -> list[int]:
        """The nodes that are layers, in execution order."""
        folded = self.folded
        return [n for n in range(len(self.ops)) if n not in folded]

    def require_rewritable(self, what: str) -> None:
        """Raise ``ModelError`` when ``what`` (a model rewrite) cannot handle this model."""
        if self.rewrite_problems:
            raise ModelError(f"{what} cannot rewrite this model: {self.rewrite_problems[0]}")


def subgraph_references(options: object) -> list[tuple[str, int]]:
    """(attribute, subgraph index) of every subgraph an op's options name: control-flow bodies
    (``IF``, ``WHILE``, ``CALL``, ``CALL_ONCE`` and the StableHLO ones)."""
    found: list[tuple[str, int]] = []
    if options is None:
        return found
    for name, value in vars(options).items():
        if not (name.endswith("SubgraphIndex") or name.endswith("SubgraphIndices")
                or name == "subgraph"):
            continue
        if isinstance(value, int):
            found.append((name, value))
        elif value is not None:
            found.extend((name, int(v)) for v in value)
    return found


def _op_label(model: tfl.ModelT, operator: tfl.OperatorT) -> str:
    name = op_name(model, operator)
    if name != "CUSTOM":
        return name
    custom = model.operatorCodes[operator.opcodeIndex].customCode
    custom = custom.decode() if isinstance(custom, bytes) else custom
    return f"CUSTOM:{custom}"


def load_graph(model_bytes: bytes) -> Graph:
    """Parse a model and analyse its main subgraph (subgraph 0)."""
    model = unpack_model(model_bytes)
    if not model.subgraphs:
        raise ModelError("model has no subgraph")
    graph = model.subgraphs[0]
    tensors = graph.tensors or []
    buffers = model.buffers or []
    problems = []
    if len(model.subgraphs) > 1:
        problems.append(f"it has {len(model.subgraphs)} subgraphs (control flow or "
                        "initialisers keep their bodies in extra subgraphs)")
    ops = []
    refs: dict[int, tuple[int, ...]] = {}
    for n, operator in enumerate(graph.operators or []):
        name = _op_label(model, operator)
        if name.startswith("UNKNOWN_"):
            raise ModelError(f"node {n} has an op code this schema does not know ({name})")
        if name.startswith("CUSTOM:"):
            problems.append(f"node {n} is a custom op ({name[7:]!r})")
        elif name in STATEFUL_OPS:
            problems.append(f"node {n} ({name}) keeps state or calls other subgraphs")
        for options in (operator.builtinOptions, getattr(operator, "builtinOptions2", None)):
            for _, index in subgraph_references(options):
                if not 0 < index < len(model.subgraphs):
                    raise ModelError(f"node {n} ({name}) names subgraph {index}, which the "
                                     f"model does not have ({len(model.subgraphs)} subgraphs)")
                refs[n] = (*refs.get(n, ()), index)
        if any(t >= 0 and tensors[t].isVariable for t in operator.inputs or []):
            problems.append(f"node {n} ({name}) reads a variable tensor")
        ops.append(name)

    constants = {t for t, tensor in enumerate(tensors) if _has_data(buffers, tensor.buffer)}
    weight_prep: set[int] = set()
    setup: set[int] = set()
    producer: dict[int, int] = {}
    for n, operator in enumerate(graph.operators or []):
        inputs = [t for t in operator.inputs or [] if t >= 0]
        outputs = list(operator.outputs or [])
        if ops[n] in WEIGHT_PREP_OPS and inputs and all(t in constants for t in inputs):
            weight_prep.add(n)
            constants.update(outputs)
        elif ops[n] in SETUP_OPS:
            setup.add(n)
            constants.update(outputs)  # a resource handle: travels with its readers
        for t in outputs:
            producer[t] = n
    # An empty tensor nothing writes (RESHAPE's optional shape operand stored as shape [0]) is
    # a constant with no bytes: its buffer holds nothing because there is nothing to hold.
    model_inputs = {int(t) for t in graph.inputs or []}
    constants.update(t for t, tensor in enumerate(tensors)
                     if t not in producer and t not in model_inputs and not tensor.isVariable
                     and tensor.shape is not None and 0 in list(tensor.shape))
    return Graph(model, graph, ops, constants, weight_prep, producer, setup, refs, problems)

def _has_data(buffers: list[tfl.BufferT], index: int) -> bool:
    """Whether buffer ``index`` holds constant data (inline, or past the flatbuffer for >2 GB)."""
    if not buffers or index == 0:
        return False
    buffer = buffers[index]
    inline = buffer.data is not None and len(buffer.data) > 0
    return inline or buffer.offset > 1
