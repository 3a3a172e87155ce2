"""Small TFLite models with what real streaming, control-flow and audio models carry, built with
the schema's object API: an ``IF`` with its two bodies in other subgraphs, a running sum kept in
a resource variable (``CALL_ONCE`` initialiser, ``VAR_HANDLE``, ``READ_VARIABLE``,
``ASSIGN_VARIABLE``), as TensorFlow exports a streaming model's state, and a custom op the
runtime resolves.
"""

from __future__ import annotations

import numpy as np

from joulefarm.tflite.flatbuffer import make_buffer, pack_model
from joulefarm.tflite.schema import op_codes, tfl

_GREATER = 127  # PLACEHOLDER_FOR_GREATER_OP_CODES: deprecated_builtin_code of codes > 127


class _Model:
    def __init__(self) -> None:
        self.model = tfl.ModelT()
        self.model.version = 3
        self.model.buffers = [make_buffer()]
        self.model.operatorCodes = []
        self.model.subgraphs = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        if name not in self._codes:
            code = tfl.OperatorCodeT()
            value = op_codes()[name]
            code.builtinCode = value
            code.deprecatedBuiltinCode = value if value < _GREATER else _GREATER
            code.version = 1
            self.model.operatorCodes.append(code)
            self._codes[name] = len(self.model.operatorCodes) - 1
        return self._codes[name]

    def subgraph(self, name: str) -> tfl.SubGraphT:
        graph = tfl.SubGraphT()
        graph.name = name
        graph.tensors, graph.operators, graph.inputs, graph.outputs = [], [], [], []
        self.model.subgraphs.append(graph)
        return graph

    def tensor(self, graph: tfl.SubGraphT, name: str, shape: list[int],
               kind: int = tfl.TensorType.FLOAT32, data: np.ndarray | None = None) -> int:
        tensor = tfl.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = name, shape, kind, 0
        if data is not None:
            self.model.buffers.append(make_buffer(np.ascontiguousarray(data).tobytes()))
            tensor.buffer = len(self.model.buffers) - 1
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    def op(self, graph: tfl.SubGraphT, name: str, inputs: list[int], outputs: list[int],
           options_type: int = 0, options: object = None) -> None:
        operator = tfl.OperatorT()
        operator.opcodeIndex = self.code(name)
        operator.inputs, operator.outputs = inputs, outputs
        operator.builtinOptionsType, operator.builtinOptions = options_type, options
        graph.operators.append(operator)

    def binary(self, graph: tfl.SubGraphT, name: str, a: int, b: int, out: int) -> None:
        options_type = getattr(tfl.BuiltinOptions, f"{name.title()}Options")
        options = getattr(tfl, f"{name.title()}OptionsT")()
        self.op(graph, name, [a, b], [out], options_type, options)

    def bytes(self) -> bytes:
        return pack_model(self.model)


def if_model(width: int = 4) -> bytes:
    """``y = x + 1 if cond else x * 2``: inputs ``cond`` (bool [1]) and ``x`` (float [1, width]);
    the two branches are subgraphs 1 and 2."""
    m = _Model()
    main, then, other = m.subgraph("main"), m.subgraph("then"), m.subgraph("else")
    for graph, op, value in ((then, "ADD", 1.0), (other, "MUL", 2.0)):
        x = m.tensor(graph, "x", [1, width])
        c = m.tensor(graph, "c", [1, width], data=np.full((1, width), value, np.float32))
        y = m.tensor(graph, "y", [1, width])
        m.binary(graph, op, x, c, y)
        graph.inputs, graph.outputs = [x], [y]
    cond = m.tensor(main, "cond", [1], tfl.TensorType.BOOL)
    x = m.tensor(main, "x", [1, width])
    y = m.tensor(main, "y", [1, width])
    options = tfl.IfOptionsT()
    options.thenSubgraphIndex, options.elseSubgraphIndex = 1, 2
    m.op(main, "IF", [cond, x], [y], tfl.BuiltinOptions.IfOptions, options)
    main.inputs, main.outputs = [cond, x], [y]
    return m.bytes()


def running_sum_model(width: int = 4) -> bytes:
    """``state += x; y = state * 1`` with ``state`` a resource variable, zero at first (set by a
    ``CALL_ONCE`` initialiser): each invocation returns the sum of all inputs so far."""
    m = _Model()
    main, init = m.subgraph("main"), m.subgraph("init")

    def handle(graph: tfl.SubGraphT) -> int:
        h = m.tensor(graph, "state_handle", [], tfl.TensorType.RESOURCE)
        options = tfl.VarHandleOptionsT()
        options.container, options.sharedName = "", "state"
        m.op(graph, "VAR_HANDLE", [], [h], tfl.BuiltinOptions.VarHandleOptions, options)
        return h

    h0 = handle(init)
    zeros = m.tensor(init, "zeros", [1, width], data=np.zeros((1, width), np.float32))
    m.op(init, "ASSIGN_VARIABLE", [h0, zeros], [], tfl.BuiltinOptions.AssignVariableOptions,
         tfl.AssignVariableOptionsT())

    once = tfl.CallOnceOptionsT()
    once.initSubgraphIndex = 1
    m.op(main, "CALL_ONCE", [], [], tfl.BuiltinOptions.CallOnceOptions, once)
    h = handle(main)
    x = m.tensor(main, "x", [1, width])
    state = m.tensor(main, "state", [1, width])
    total = m.tensor(main, "total", [1, width])
    one = m.tensor(main, "one", [1, width], data=np.ones((1, width), np.float32))
    y = m.tensor(main, "y", [1, width])
    m.op(main, "READ_VARIABLE", [h], [state], tfl.BuiltinOptions.ReadVariableOptions,
         tfl.ReadVariableOptionsT())
    m.binary(main, "ADD", state, x, total)
    m.op(main, "ASSIGN_VARIABLE", [h, total], [], tfl.BuiltinOptions.AssignVariableOptions,
         tfl.AssignVariableOptionsT())
    m.binary(main, "MUL", total, one, y)
    main.inputs, main.outputs = [x], [y]
    return m.bytes()


def assign_then_read_model(width: int = 4) -> bytes:
    """``state = x; y = read(state) + 1`` with no initialiser: the variable holds a value only
    because the model assigns it before reading it, so its read cannot run on its own."""
    m = _Model()
    main = m.subgraph("main")
    h = m.tensor(main, "state_handle", [], tfl.TensorType.RESOURCE)
    options = tfl.VarHandleOptionsT()
    options.container, options.sharedName = "", "state"
    m.op(main, "VAR_HANDLE", [], [h], tfl.BuiltinOptions.VarHandleOptions, options)
    x = m.tensor(main, "x", [1, width])
    state = m.tensor(main, "state", [1, width])
    one = m.tensor(main, "one", [1, width], data=np.ones((1, width), np.float32))
    y = m.tensor(main, "y", [1, width])
    m.op(main, "ASSIGN_VARIABLE", [h, x], [], tfl.BuiltinOptions.AssignVariableOptions,
         tfl.AssignVariableOptionsT())
    m.op(main, "READ_VARIABLE", [h], [state], tfl.BuiltinOptions.ReadVariableOptions,
         tfl.ReadVariableOptionsT())
    m.binary(main, "ADD", state, one, y)
    main.inputs, main.outputs = [x], [y]
    return m.bytes()


def spectrogram_model(samples: int = 1024) -> bytes:
    """One custom op the runtime resolves itself (TFLite registers ``AudioSpectrogram`` among
    its custom ops): audio [samples, 1] -> spectrogram [1, frames, 129], window 256, stride
    128, its options a flexbuffer as converters write them."""
    from flatbuffers import flexbuffers

    m = _Model()
    main = m.subgraph("main")
    frames = 1 + (samples - 256) // 128
    x = m.tensor(main, "audio", [samples, 1])
    y = m.tensor(main, "spectrogram", [1, frames, 129])
    code = tfl.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = op_codes()["CUSTOM"]
    code.customCode, code.version = "AudioSpectrogram", 1
    m.model.operatorCodes.append(code)
    operator = tfl.OperatorT()
    operator.opcodeIndex = len(m.model.operatorCodes) - 1
    operator.inputs, operator.outputs = [x], [y]
    operator.customOptions = list(flexbuffers.Dumps(
        {"window_size": 256, "stride": 128, "magnitude_squared": True}))
    main.operators.append(operator)
    main.inputs, main.outputs = [x], [y]
    return m.bytes()
