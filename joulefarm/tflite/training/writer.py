"""Writing a TFLite model of several subgraphs, signatures and resource variables.

``builder.build_model`` writes one subgraph; a trainable model has several (``infer``,
``train``, ``weights`` and the initialisation subgraph ``CALL_ONCE`` runs), which share the
model's buffers and operator codes. ``ModelWriter`` holds what is shared; ``SubgraphWriter``
holds one subgraph's tensors and operators, and tags every operator with the layer and phase
it belongs to (``OpTag``), which is how the measuring side attributes per-op profiler events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from joulefarm.tflite.flatbuffer import make_buffer, operator_codes, pack_model
from joulefarm.tflite.schema import op_codes, tfl

Shape = tuple[int, ...]


PHASES = ("init", "forward", "loss", "backward-activation", "backward-input",
          "backward-weights", "update", "read")
"""What an operator of a trainable model does: ``init`` (CALL_ONCE and the variables'
initialisation), ``forward`` (a layer's inference work, its weights' reads included), ``loss``
(the loss and its gradient), ``backward-activation`` (the gradient through a layer's fused
activation, which both of the next two need), ``backward-input`` (a layer's gradient with
respect to its input), ``backward-weights`` (with respect to its weights), ``update`` (the
optimizer: new weights and slots, their assignment) and ``read`` (the ``weights`` signature's
reads)."""


@dataclass(frozen=True)
class OpTag:
    """The layer (index into the layer list; None for model-wide work) and phase of an op."""

    layer: int | None
    phase: str


def tensor_type_of(dtype: np.dtype[Any]) -> int:
    """The TFLite tensor type of a numpy dtype the training graphs use."""
    types = {np.dtype(np.float32): tfl.TensorType.FLOAT32,
             np.dtype(np.int32): tfl.TensorType.INT32,
             np.dtype(np.bool_): tfl.TensorType.BOOL}
    if dtype not in types:
        raise ValueError(f"no tensor type for dtype {dtype}")
    return int(types[dtype])


class SubgraphWriter:
    """The tensors and operators of one subgraph; buffers and op codes go to the model."""

    def __init__(self, model: ModelWriter, name: str) -> None:
        self.model = model
        self.name = name
        self.tensors: list[Any] = []
        self.shapes: list[Shape] = []
        self.types: list[int] = []
        self.operators: list[Any] = []
        self.tags: list[OpTag] = []
        self.inputs: list[int] = []
        self.outputs: list[int] = []
        self.tag = OpTag(None, "forward")
        self._constants: dict[tuple[bytes, Shape, str], int] = {}
        self._values: dict[int, np.ndarray] = {}

    @contextlib.contextmanager
    def phase(self, layer: int | None, phase: str) -> Iterator[None]:
        """Tag the operators added inside the block with ``layer`` and ``phase``."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        before = self.tag
        self.tag = OpTag(layer, phase)
        try:
            yield
        finally:
            self.tag = before

    def tensor(self, shape: Sequence[int], label: str, tensor_type: int | None = None,
               data: np.ndarray | None = None) -> int:
        """A new tensor (a constant when ``data`` is given); returns its index."""
        t = tfl.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = int(tfl.TensorType.FLOAT32 if tensor_type is None else tensor_type)
        t.name = f"{self.name}/{label}/{len(self.tensors)}"
        t.buffer = 0 if data is None else self.model.buffer(data)
        if data is not None:
            self._values[len(self.tensors)] = np.asarray(data)
        self.tensors.append(t)
        self.shapes.append(tuple(t.shape))
        self.types.append(t.type)
        return len(self.tensors) - 1

    def const(self, value: np.ndarray | Sequence[Any] | float | int, label: str = "const",
              dtype: type | None = None) -> int:
        """A constant tensor (float32 unless ``dtype`` or an integer/bool array says
        otherwise); the same value, shape and type give the same tensor."""
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        elif array.dtype == np.int64:
            array = array.astype(np.int32)
        array = array.copy(order="C")  # not ascontiguousarray: it makes a scalar 1-D
        key = (array.tobytes(), tuple(array.shape), array.dtype.str)
        if key not in self._constants:
            self._constants[key] = self.tensor(array.shape, label, tensor_type_of(array.dtype),
                                               array)
        return self._constants[key]

    def constant_value(self, t: int) -> np.ndarray:
        """The value of constant tensor ``t`` (``ValueError`` for an activation)."""
        if t not in self._values:
            raise ValueError(f"tensor {t} of subgraph {self.name} is not a constant")
        return self._values[t]

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int],
           options_type: int = 0, options: object = None) -> int:
        """Append an operator; returns its index in the subgraph."""
        operator = tfl.OperatorT()
        operator.opcodeIndex = self.model.opcode(name)
        operator.inputs = [int(i) for i in inputs]
        operator.outputs = [int(o) for o in outputs]
        operator.builtinOptionsType = options_type
        operator.builtinOptions = options
        self.operators.append(operator)
        self.tags.append(self.tag)
        return len(self.operators) - 1

    def emit(self, name: str, inputs: Sequence[int], shape: Sequence[int], label: str,
             options_type: int = 0, options: object = None,
             tensor_type: int | None = None) -> int:
        """Append an operator with one new output tensor of ``shape``; returns the tensor."""
        y = self.tensor(shape, label, tensor_type)
        self.op(name, inputs, [y], options_type, options)
        return y

    def pack(self) -> Any:
        graph = tfl.SubGraphT()
        graph.tensors = self.tensors
        graph.inputs = list(self.inputs)
        graph.outputs = list(self.outputs)
        graph.operators = self.operators
        graph.name = self.name
        return graph


class ModelWriter:
    """Buffers, operator codes, subgraphs, signatures and metadata of one model."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.buffers: list[Any] = [make_buffer()]  # buffer 0 is empty by convention
        self.opcodes: dict[int, int] = {}
        self.subgraphs: list[SubgraphWriter] = []
        self.signatures: list[Any] = []
        self.metadata: list[tuple[str, bytes]] = []

    def buffer(self, data: np.ndarray | bytes) -> int:
        self.buffers.append(make_buffer(np.ascontiguousarray(data) if isinstance(
            data, np.ndarray) else data))
        return len(self.buffers) - 1

    def opcode(self, name: str) -> int:
        code = op_codes()[name]
        if code not in self.opcodes:
            self.opcodes[code] = len(self.opcodes)
        return self.opcodes[code]

    def subgraph(self, name: str) -> SubgraphWriter:
        """A new subgraph; its index is its position (the first is the model's main one)."""
        g = SubgraphWriter(self, name)
        self.subgraphs.append(g)
        return g

    def index(self, g: SubgraphWriter) -> int:
        return self.subgraphs.index(g)

    def signature(self, key: str, g: SubgraphWriter, inputs: dict[str, int],
                  outputs: dict[str, int]) -> None:
        """A SignatureDef ``key`` running ``g``; its inputs and outputs become the subgraph's
        (in the given order), named by the dict keys."""
        g.inputs = list(inputs.values())
        g.outputs = list(outputs.values())
        signature = tfl.SignatureDefT()
        signature.signatureKey = key
        signature.subgraphIndex = self.index(g)
        signature.inputs = [_tensor_map(n, t) for n, t in inputs.items()]
        signature.outputs = [_tensor_map(n, t) for n, t in outputs.items()]
        self.signatures.append(signature)

    def add_metadata(self, name: str, data: bytes) -> None:
        """A named metadata entry (its bytes in a buffer), readable without a runtime."""
        self.metadata.append((name, data))

    def finish(self) -> bytes:
        model = tfl.ModelT()
        model.version = 3
        model.description = self.description
        model.subgraphs = [g.pack() for g in self.subgraphs]
        model.signatureDefs = self.signatures
        entries = []
        for name, data in self.metadata:
            entry = tfl.MetadataT()
            entry.name = name
            entry.buffer = self.buffer(data)
            entries.append(entry)
        model.metadata = entries or None
        model.buffers = self.buffers
        model.operatorCodes = operator_codes(self.opcodes)
        return pack_model(model)


def _tensor_map(name: str, tensor: int) -> Any:
    entry = tfl.TensorMapT()
    entry.name = name
    entry.tensorIndex = tensor
    return entry
