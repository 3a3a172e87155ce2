"""Graph facts shared by the parser and the splitter: what we accept, what is constant.

A tensor is *constant* when its buffer holds data, or when it is the output of a weight-preparing
node (``DEQUANTIZE`` of fp16/int8 weights, ``DENSIFY`` of sparse weights) whose inputs are all
constant. The runtime evaluates such nodes once and keeps the result, so they are no layer of
their own: they are folded into the layer that consumes their output.
"""

from __future__ import annotations

from dataclasses import dataclass

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import op_name, unpack_model
from joulefarm.tflite.schema import tfl

WEIGHT_PREP_OPS = frozenset({"DEQUANTIZE", "DENSIFY"})
"""Ops that, applied to constants, only prepare weights for the next op."""

# Ops whose meaning depends on state kept between invocations or on other subgraphs: a layer
# cut out of the graph would not behave as it does in place.
STATEFUL_OPS = frozenset({
    "CALL", "CALL_ONCE", "IF", "WHILE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE",
    "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "DELEGATE",
    "STABLEHLO_WHILE", "STABLEHLO_CASE", "STABLEHLO_COMPOSITE", "STABLEHLO_CUSTOM_CALL",
    "RANDOM_STANDARD_NORMAL", "RANDOM_UNIFORM", "MULTINOMIAL",
})


@dataclass
class Graph:
    """A checked single-subgraph model with its constant analysis."""

    model: tfl.ModelT
    subgraph: tfl.SubGraphT
    ops: list[str]
    """Op name of every node, by node index."""
    constants: set[int]
    """Constant tensor indices (with buffer data, or produced by a folded weight-prep node)."""
    weight_prep: set[int]
    """Node indices of weight-preparing nodes folded into their consumers."""
    producer: dict[int, int]
    """Tensor index -> index of the node that writes it."""

    def is_constant(self, tensor: int) -> bool:
        return tensor in self.constants


def load_graph(model_bytes: bytes) -> Graph:
    """Parse and check a model: one subgraph, builtin ops only, no state between invocations."""
    model = unpack_model(model_bytes)
    if len(model.subgraphs) != 1:
        raise ModelError(
            f"model has {len(model.subgraphs)} subgraphs; only single-subgraph models are "
            "supported (control flow such as WHILE/IF keeps its bodies in extra subgraphs)"
        )
    graph = model.subgraphs[0]
    tensors = graph.tensors or []
    buffers = model.buffers or []
    ops = []
    for n, operator in enumerate(graph.operators or []):
        name = op_name(model, operator)
        if name == "CUSTOM":
            custom = model.operatorCodes[operator.opcodeIndex].customCode
            custom = custom.decode() if isinstance(custom, bytes) else custom
            raise ModelError(f"node {n} is a custom op ({custom!r}); custom ops are not "
                             "supported")
        if name.startswith("UNKNOWN_"):
            raise ModelError(f"node {n} has an op code this schema does not know ({name})")
        if name in STATEFUL_OPS:
            raise ModelError(f"node {n} ({name}) is not supported: it keeps state or calls "
                             "other subgraphs, so it cannot be measured on its own")
        for t in operator.inputs or []:
            if t >= 0 and tensors[t].isVariable:
                raise ModelError(f"node {n} ({name}) reads variable tensor {t}: stateful "
                                 "graphs are not supported")
        ops.append(name)

    constants = {t for t, tensor in enumerate(tensors) if _has_data(buffers, tensor.buffer)}
    weight_prep: set[int] = set()
    producer: dict[int, int] = {}
    for n, operator in enumerate(graph.operators or []):
        inputs = [t for t in operator.inputs or [] if t >= 0]
        outputs = list(operator.outputs or [])
        if ops[n] in WEIGHT_PREP_OPS and inputs and all(t in constants for t in inputs):
            weight_prep.add(n)
            constants.update(outputs)
        for t in outputs:
            producer[t] = n
    return Graph(model, graph, ops, constants, weight_prep, producer)


def _has_data(buffers: list[tfl.BufferT], index: int) -> bool:
    """Whether buffer ``index`` holds constant data (inline, or past the flatbuffer for >2 GB)."""
    if not buffers or index == 0:
        return False
    buffer = buffers[index]
    inline = buffer.data is not None and len(buffer.data) > 0
    return inline or buffer.offset > 1
