"""Structurally hostile TFLite flatbuffers: valid by every vector length, yet costly to decode.

A flatbuffer refers to tables and vectors by offset, so one table can be referred to many
times: a file of 1 MB can hold a graph of 100,000 operators that are all the same table, each
listing the same 100,000 inputs. Decoding it (the schema's object API) materialises every
reference: a "bomb". Written with the schema's builder functions, byte for byte a file the
runtime's reader would accept.
"""

from __future__ import annotations

import flatbuffers

from joulefarm.tflite.flatbuffer import FILE_IDENTIFIER
from joulefarm.tflite.schema import tfl


def _int_vector(b: flatbuffers.Builder, values: list[int]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(v)
    return int(b.EndVector())


def _offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return int(b.EndVector())


def shared_table_bomb(operators: int, fanout: int) -> bytes:
    """A model whose one subgraph lists ``operators`` operators that are one shared table,
    reading one shared vector of ``fanout`` inputs (all tensor 0)."""
    b = flatbuffers.Builder(1024)
    name = b.CreateString("x")
    shape = _int_vector(b, [1, 4])
    tfl.TensorStart(b)
    tfl.TensorAddShape(b, shape)
    tfl.TensorAddName(b, name)
    tfl.TensorAddBuffer(b, 0)
    tensor = tfl.TensorEnd(b)
    inputs = _int_vector(b, [0] * fanout)
    outputs = _int_vector(b, [0])
    tfl.OperatorStart(b)
    tfl.OperatorAddOpcodeIndex(b, 0)
    tfl.OperatorAddInputs(b, inputs)
    tfl.OperatorAddOutputs(b, outputs)
    operator = tfl.OperatorEnd(b)
    ops = _offset_vector(b, [operator] * operators)
    tensors = _offset_vector(b, [tensor])
    io = _int_vector(b, [0])
    tfl.SubGraphStart(b)
    tfl.SubGraphAddTensors(b, tensors)
    tfl.SubGraphAddInputs(b, io)
    tfl.SubGraphAddOutputs(b, io)
    tfl.SubGraphAddOperators(b, ops)
    subgraph = tfl.SubGraphEnd(b)
    tfl.OperatorCodeStart(b)
    tfl.OperatorCodeAddBuiltinCode(b, 0)  # ADD
    tfl.OperatorCodeAddDeprecatedBuiltinCode(b, 0)
    tfl.OperatorCodeAddVersion(b, 1)
    code = tfl.OperatorCodeEnd(b)
    tfl.BufferStart(b)
    buffer = tfl.BufferEnd(b)
    codes, subgraphs, buffers = (_offset_vector(b, [code]), _offset_vector(b, [subgraph]),
                                 _offset_vector(b, [buffer]))
    tfl.ModelStart(b)
    tfl.ModelAddVersion(b, 3)
    tfl.ModelAddOperatorCodes(b, codes)
    tfl.ModelAddSubgraphs(b, subgraphs)
    tfl.ModelAddBuffers(b, buffers)
    b.Finish(tfl.ModelEnd(b), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())
