"""Initial values for the resource variables of a converted trainable model.

TensorFlow's converter writes an on-device training model (``train``/``infer`` signatures,
``experimental_enable_resource_variables``) whose signatures read their variables (weights,
the optimizer's slots and step counter) without ever assigning them: the app is expected to
restore a checkpoint first, and the first ``READ_VARIABLE`` of a fresh interpreter fails. To
time a step the values do not matter (no kernel here costs more or less for other numbers),
only their shapes. ``initialise_variables`` gives the subgraph an initialisation subgraph, run
once by a ``CALL_ONCE`` put first, as joulefarm's own trainable models have: small seeded
values for floats, zeros for integers (counters).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import decode_name, make_buffer, numpy_dtype, op_name
from joulefarm.tflite.schema import tfl

_VARIABLE_OPS = ("READ_VARIABLE", "ASSIGN_VARIABLE")


def _opcode(model: tfl.ModelT, name: str) -> int:
    """The index of builtin ``name`` in the model's operator codes, added if missing."""
    code = getattr(tfl.BuiltinOperator, name)
    for i, known in enumerate(model.operatorCodes):
        if max(int(known.builtinCode), int(known.deprecatedBuiltinCode)) == code:
            return i
    opcode = tfl.OperatorCodeT()
    opcode.builtinCode = code
    opcode.deprecatedBuiltinCode = min(code, 127)  # readers of the old field: the placeholder
    opcode.version = 1
    model.operatorCodes.append(opcode)
    return len(model.operatorCodes) - 1


def _tensor(graph: Any, shape: tuple[int, ...], tensor_type: int, buffer: int, name: str) -> int:
    tensor = tfl.TensorT()
    tensor.shape = list(shape)
    tensor.type = tensor_type
    tensor.buffer = buffer
    tensor.name = name
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _operator(opcode: int, inputs: list[int], outputs: list[int], options_type: int = 0,
              options: Any = None) -> Any:
    op = tfl.OperatorT()
    op.opcodeIndex = opcode
    op.inputs, op.outputs = inputs, outputs
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def variables_read(model: tfl.ModelT, graph: Any) -> dict[tuple[str, str], tuple[Any, Any]]:
    """(container, shared name) -> (the VAR_HANDLE's options, a value tensor of the variable:
    what a READ_VARIABLE gives or an ASSIGN_VARIABLE stores) of each variable ``graph`` uses."""
    handles: dict[int, Any] = {}
    for op in graph.operators or []:
        if op_name(model, op) == "VAR_HANDLE":
            handles[int(op.outputs[0])] = op.builtinOptions
    found: dict[tuple[str, str], tuple[Any, Any]] = {}
    for op in graph.operators or []:
        name = op_name(model, op)
        if name not in _VARIABLE_OPS or int(op.inputs[0]) not in handles:
            continue
        options = handles[int(op.inputs[0])]
        value = graph.tensors[int(op.outputs[0] if name == "READ_VARIABLE" else op.inputs[1])]
        key = (decode_name(getattr(options, "container", None)),
               decode_name(getattr(options, "sharedName", None)))
        found.setdefault(key, (options, value))
    return found


def needs_initialisation(model: tfl.ModelT, subgraph: int) -> bool:
    """The subgraph reads variables and runs no initialiser of its own (no CALL_ONCE)."""
    graph = model.subgraphs[subgraph]
    ops = {op_name(model, op) for op in graph.operators or []}
    return "READ_VARIABLE" in ops and "CALL_ONCE" not in ops


def initialise_variables(model: tfl.ModelT, subgraph: int, seed: int = 0) -> int:
    """Give ``subgraph`` an initialisation subgraph assigning every variable it uses, run by a
    CALL_ONCE put first (in place); returns how many variables it assigns. ``ModelError`` for
    a variable of a type no value can be made for."""
    graph = model.subgraphs[subgraph]
    rng = np.random.default_rng(seed)
    init = tfl.SubGraphT()
    init.tensors, init.operators, init.inputs, init.outputs = [], [], [], []
    init.name = "joulefarm_variable_init"
    var_handle, assign = _opcode(model, "VAR_HANDLE"), _opcode(model, "ASSIGN_VARIABLE")
    variables = variables_read(model, graph)
    for n, ((container, shared), (options, value)) in enumerate(sorted(variables.items())):
        dtype = numpy_dtype(value.type)
        shape = tuple(int(d) for d in (value.shape if value.shape is not None else []))
        if dtype is None or any(d < 0 for d in shape):
            raise ModelError(f"variable {shared or container!r}: no initial value can be made "
                             f"for tensor type {value.type}, shape {list(shape)}")
        data = (rng.uniform(-0.1, 0.1, shape) if np.issubdtype(dtype, np.floating)
                else np.zeros(shape)).astype(dtype)
        model.buffers.append(make_buffer(data))
        constant = _tensor(init, shape, value.type, len(model.buffers) - 1, f"init/{n}")
        model.buffers.append(make_buffer())
        handle = _tensor(init, (), tfl.TensorType.RESOURCE, len(model.buffers) - 1,
                         f"init/{n}/handle")
        init.operators.append(_operator(var_handle, [], [handle],
                                        tfl.BuiltinOptions.VarHandleOptions, options))
        init.operators.append(_operator(assign, [handle, constant], []))
    model.subgraphs.append(init)
    call = tfl.CallOnceOptionsT()
    call.initSubgraphIndex = len(model.subgraphs) - 1
    graph.operators.insert(0, _operator(_opcode(model, "CALL_ONCE"), [], [],
                                        tfl.BuiltinOptions.CallOnceOptions, call))
    return len(variables)
