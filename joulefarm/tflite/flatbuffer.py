"""Reading and writing TFLite flatbuffers with the schema's object API.

``unpack_model`` turns bytes into a ``ModelT`` and is the one place where bad input (truncated,
random, not TFLite) becomes a ``ModelError``. ``pack_model`` writes a ``ModelT`` back with every
constant buffer 16-byte aligned: the generated ``BufferT.Pack`` aligns data to 1 byte, and
the runtime's kernels may read unaligned weights slowly or refuse them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, SupportsInt

import flatbuffers
import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.schema import (
    FILE_IDENTIFIER,
    SchemaUnavailableError,
    op_names,
    tensor_type_names,
    tfl,
)

BUFFER_ALIGNMENT = 16
"""Byte alignment of constant data in the models we write."""

_NUMPY_TYPES = {
    "FLOAT32": np.float32, "FLOAT16": np.float16, "FLOAT64": np.float64, "INT8": np.int8,
    "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32,
    "UINT32": np.uint32, "INT64": np.int64, "UINT64": np.uint64, "BOOL": np.bool_,
    "COMPLEX64": np.complex64, "COMPLEX128": np.complex128,
}
# Sub-byte types: bits per element (packed two or four to a byte in buffers).
_SUB_BYTE_BITS = {"INT4": 4, "UINT4": 4, "INT2": 2}


def numpy_dtype(tensor_type: int) -> np.dtype | None:
    """The numpy dtype of a fixed-width TFLite tensor type; None for others (strings,
    sub-byte, resources)."""
    name = tensor_type_names().get(tensor_type)
    return np.dtype(_NUMPY_TYPES[name]) if name in _NUMPY_TYPES else None


def dtype_name(tensor_type: int) -> str:
    """Lower-case name of a TFLite tensor type, like ``"float32"`` or ``"int8"``."""
    return tensor_type_names().get(tensor_type, f"type{tensor_type}").lower()


def tensor_nbytes(tensor_type: int, shape: tuple[int, ...]) -> int:
    """Bytes a dense tensor of this type and shape occupies (sub-byte types rounded up)."""
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    bits = _SUB_BYTE_BITS.get(tensor_type_names().get(tensor_type, ""))
    if bits is not None:
        return (count * bits + 7) // 8
    dtype = numpy_dtype(tensor_type)
    if dtype is None:
        return 0
    return count * dtype.itemsize


def op_name(model: tfl.ModelT, operator: tfl.OperatorT) -> str:
    """Builtin op name of an operator (``"CONV_2D"``), or ``"CUSTOM"``.

    Older converters set only ``deprecatedBuiltinCode`` (values < 127) and newer ones set both,
    so the larger of the two fields is the real code.
    """
    code = model.operatorCodes[operator.opcodeIndex]
    value = max(code.builtinCode, code.deprecatedBuiltinCode)
    return op_names().get(value, f"UNKNOWN_{value}")


# How many times its own size a model may take to decode: a file with nothing shared decodes to
# about its size; one whose tables are referred to many times over (a "bomb") to far more.
MAX_DECODE_FACTOR = 4
_DECODE_SLACK_BYTES = 1 << 16
_TABLE_BYTES = 16  # what decoding one table costs, as bytes of vector


class _DecodeBudget:
    """Counts what the object API will materialise, and refuses a model past its budget."""

    def __init__(self, size: int) -> None:
        self.left = MAX_DECODE_FACTOR * size + _DECODE_SLACK_BYTES
        self.size = size

    def spend(self, nbytes: int) -> None:
        self.left -= nbytes
        if self.left < 0:
            raise ModelError(
                f"corrupt TFLite model: its {self.size} bytes decode to more than "
                f"{MAX_DECODE_FACTOR} times as much (tables or vectors referred to many times "
                "over); refused before decoding")


def _check_decoding_work(buf: bytes) -> None:
    """Refuse a model whose decoding would cost far more than its size, before decoding it.

    Each vector's length passes ``_check_vector_lengths``, yet one operator table listed 6,000
    times, each reading one shared vector of 6,000 inputs, is 48 kB that took 5.6 s and 334 MB
    to decode (quadratic: a 1 MB file would take hours). This walk reads lengths only, and stops
    as soon as the budget is spent, so its own cost is bounded by the file's size."""
    budget = _DecodeBudget(len(buf))
    model = tfl.Model.GetRootAs(buf, 0)
    for i in range(model.BuffersLength()):
        budget.spend(_TABLE_BYTES + model.Buffers(i).DataLength())
    budget.spend(_TABLE_BYTES * model.OperatorCodesLength())
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        budget.spend(_TABLE_BYTES + 4 * (graph.InputsLength() + graph.OutputsLength()))
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            budget.spend(_TABLE_BYTES + 4 * (tensor.ShapeLength() + tensor.ShapeSignatureLength()))
            quantization = tensor.Quantization()
            if quantization is not None:
                budget.spend(_TABLE_BYTES + 4 * (quantization.ScaleLength()
                                                 + quantization.MinLength()
                                                 + quantization.MaxLength())
                             + 8 * quantization.ZeroPointLength())
        for n in range(graph.OperatorsLength()):
            operator = graph.Operators(n)
            budget.spend(_TABLE_BYTES + 4 * (operator.InputsLength() + operator.OutputsLength()
                                             + operator.IntermediatesLength())
                         + operator.CustomOptionsLength())


def _check_vector_lengths(buf: bytes) -> None:
    """Reject absurd vector lengths before the object API loops over them.

    The Python flatbuffers reader does no verification: random bytes can claim vectors of
    billions of elements. Any vector whose elements cannot fit in the file is corrupt.
    """
    limit = len(buf) // 4
    model = tfl.Model.GetRootAs(buf, 0)
    lengths = [model.OperatorCodesLength(), model.SubgraphsLength(), model.BuffersLength()]
    if max(lengths) > limit:
        raise ModelError(f"corrupt TFLite model: a top-level vector claims {max(lengths)} entries")
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        sizes = [graph.TensorsLength(), graph.OperatorsLength(), graph.InputsLength(),
                 graph.OutputsLength()]
        if max(sizes) > limit:
            raise ModelError(f"corrupt TFLite model: subgraph {s} claims {max(sizes)} entries")


def unpack_model(model_bytes: bytes) -> tfl.ModelT:
    """Parse TFLite bytes into the schema's object tree, or raise ``ModelError``."""
    if not isinstance(model_bytes, bytes | bytearray | memoryview):
        raise ModelError(f"model must be bytes, got {type(model_bytes).__name__}")
    buf = bytes(model_bytes)
    if len(buf) < 8:
        raise ModelError(f"not a TFLite model: only {len(buf)} bytes")
    if buf[4:8] != FILE_IDENTIFIER:
        raise ModelError(
            f"not a TFLite model: file identifier is {buf[4:8]!r}, expected {FILE_IDENTIFIER!r}"
        )
    try:
        _check_vector_lengths(buf)
        _check_decoding_work(buf)
        model = tfl.ModelT.InitFromPackedBuf(buf, 0)
    except (ModelError, SchemaUnavailableError):
        raise
    except Exception as exc:  # the reader raises whatever indexing out of range raises
        raise ModelError(
            f"corrupt or truncated TFLite model ({len(buf)} bytes): {type(exc).__name__}: {exc}"
        ) from exc
    _normalise(model)
    _check_references(model, len(buf))
    return model


def _ints(values: Iterable[SupportsInt] | None) -> list[int] | None:
    return None if values is None else [int(v) for v in values]


def _normalise(model: tfl.ModelT) -> None:
    """Index vectors come back as numpy arrays; make them lists of ints once, here."""
    for graph in model.subgraphs or []:
        graph.inputs = _ints(graph.inputs) or []
        graph.outputs = _ints(graph.outputs) or []
        graph.tensors = graph.tensors or []
        graph.operators = graph.operators or []
        for operator in graph.operators:
            operator.inputs = _ints(operator.inputs) or []
            operator.outputs = _ints(operator.outputs) or []
            operator.intermediates = _ints(operator.intermediates)


def _check_references(model: tfl.ModelT, size: int) -> None:
    """Tensor -> buffer links and constant sizes must be consistent (catches truncation)."""
    if not model.subgraphs:
        raise ModelError("corrupt TFLite model: no subgraphs")
    buffers = model.buffers or []
    for s, graph in enumerate(model.subgraphs):
        tensors = graph.tensors or []
        for t, tensor in enumerate(tensors):
            if not 0 <= tensor.buffer < max(len(buffers), 1):
                raise ModelError(
                    f"corrupt TFLite model: subgraph {s} tensor {t} refers to buffer "
                    f"{tensor.buffer} of {len(buffers)}"
                )
            data = buffers[tensor.buffer].data if buffers else None
            if data is None or len(data) == 0 or tensor.sparsity is not None:
                continue
            expected = tensor_nbytes(tensor.type, tuple(shape_of(tensor)))
            if expected and len(data) != expected:
                raise ModelError(
                    f"corrupt TFLite model: tensor {t} ({decode_name(tensor.name)}) holds "
                    f"{len(data)} bytes, its shape needs {expected}"
                )
        for n, operator in enumerate(graph.operators or []):
            if not 0 <= operator.opcodeIndex < len(model.operatorCodes or []):
                raise ModelError(f"corrupt TFLite model: node {n} has opcode index "
                                 f"{operator.opcodeIndex}")
            for index in [*(operator.inputs or []), *(operator.outputs or [])]:
                if not -1 <= index < len(tensors):
                    raise ModelError(f"corrupt TFLite model: node {n} refers to tensor {index}")
    for b in buffers:
        if b.offset and b.offset + b.size > size:
            raise ModelError("truncated TFLite model: an external buffer lies past the end")


def shape_of(tensor: tfl.TensorT) -> list[int]:
    """The tensor's static shape as a list of Python ints (empty for scalars)."""
    return [int(d) for d in (tensor.shape if tensor.shape is not None else [])]


def per_tensor_quantization(tensor: Any) -> tuple[float, int] | None:
    """(scale, zero point) of a tensor quantised with one scale, or None (float tensors,
    per-channel weights)."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1 or not q.scale[0] > 0:
        return None
    zero_point = int(q.zeroPoint[0]) if q.zeroPoint is not None else 0
    return float(q.scale[0]), zero_point


def decode_name(name: bytes | str | None) -> str:
    """Tensor names come back from the object API as bytes."""
    if name is None:
        return ""
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


@functools.cache
def _aligned_buffer_class() -> type:
    """A ``BufferT`` whose data vector ``Pack`` aligns to ``BUFFER_ALIGNMENT`` bytes (made at
    first use: the schema module is loaded lazily)."""

    # The generated schema is untyped (tfl is Any), so the base class is Any.
    class AlignedBufferT(tfl.BufferT):  # type: ignore[misc]
        def Pack(self, builder: flatbuffers.Builder) -> int:  # noqa: N802 - generated API name
            payload = b"" if self.data is None else np.asarray(self.data, np.uint8).tobytes()
            data = None
            if payload:
                builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
                builder.head -= len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                data = builder.EndVector()
            tfl.BufferStart(builder)
            if data is not None:
                tfl.BufferAddData(builder, data)
            tfl.BufferAddOffset(builder, self.offset)
            tfl.BufferAddSize(builder, self.size)
            end: int = tfl.BufferEnd(builder)  # the untyped generated schema returns an offset
            return end

    return AlignedBufferT


_PLACEHOLDER_CODE = 127  # BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES


def operator_codes(opcodes: dict[int, int]) -> list[tfl.OperatorCodeT]:
    """``ModelT.operatorCodes`` for builtin codes numbered as ``opcodes`` says (code -> its
    index in the table), version 1 each."""
    codes = []
    for code in sorted(opcodes, key=opcodes.__getitem__):
        opcode = tfl.OperatorCodeT()
        opcode.builtinCode = code
        # Readers that predate extended codes look only at the deprecated field (capped at 127).
        opcode.deprecatedBuiltinCode = min(code, _PLACEHOLDER_CODE)
        opcode.version = 1
        codes.append(opcode)
    return codes


def make_buffer(data: bytes | np.ndarray | None = None) -> tfl.BufferT:
    """A buffer for ``ModelT.buffers``; ``None`` or empty means "no constant data"."""
    buffer = _aligned_buffer_class()()
    if data is not None:
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
        buffer.data = np.frombuffer(raw, np.uint8) if raw else None
    return buffer


def pack_model(model: tfl.ModelT) -> bytes:
    """Serialise a ``ModelT`` with the ``TFL3`` identifier and 16-byte aligned constants."""
    original = model.buffers
    model.buffers = [
        b if isinstance(b, _aligned_buffer_class()) else _copy_buffer(b) for b in original or []
    ]
    try:
        size = sum(0 if b.data is None else len(b.data) + BUFFER_ALIGNMENT for b in model.buffers)
        builder = flatbuffers.Builder(size + 65536)
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    finally:
        model.buffers = original  # the caller's tree is left as it was
    return bytes(builder.Output())


def _copy_buffer(buffer: Any) -> Any:
    aligned = _aligned_buffer_class()()
    aligned.data = None if buffer.data is None or len(buffer.data) == 0 else buffer.data
    aligned.offset = buffer.offset
    aligned.size = buffer.size
    return aligned


def buffer_data_offsets(model_bytes: bytes) -> list[int]:
    """File offsets of every non-empty constant buffer's data (to check alignment)."""
    model = tfl.Model.GetRootAs(model_bytes, 0)
    offsets = []
    for i in range(model.BuffersLength()):
        buffer = model.Buffers(i)
        if buffer.DataLength():
            slot = buffer._tab.Offset(4)  # field 0 of table Buffer: data
            offsets.append(buffer._tab.Vector(slot))
    return offsets
