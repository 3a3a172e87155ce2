"""Variants of a float model that change how its weights and activations are stored.

- ``float16_weights`` stores conv/fc weights as fp16 behind ``DEQUANTIZE`` nodes, the layout the
  TFLite converter writes for float16 post-training quantisation. It exercises the weight-prep
  folding of the parser and the splitter.
- ``quantize_int8`` turns a float model made of the builder's ops into a full-integer int8
  model (int8 inputs and outputs), calibrated on seeded random inputs, following the TFLite
  int8 quantisation spec: per-channel symmetric conv weights, per-tensor asymmetric
  activations, int32 biases.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import make_buffer, pack_model, unpack_model
from joulefarm.tflite.graph import load_graph
from joulefarm.tflite.ops import OPS, op_entry
from joulefarm.tflite.schema import op_codes, tfl

_DEQUANTIZE_FP16_VERSION = 3  # DEQUANTIZE gained float16 inputs in op version 3


def float16_weights(model_bytes: bytes) -> bytes:
    """The model with the float32 weights of weighted ops (``ops.OpEntry.weighted``) stored as
    float16 and expanded by a ``DEQUANTIZE`` node placed just before each consumer."""
    graph = load_graph(model_bytes)
    graph.require_rewritable("float16_weights")
    model = graph.model
    subgraph = graph.subgraph
    tensors = subgraph.tensors
    code = op_codes()["DEQUANTIZE"]
    dequantize = tfl.OperatorCodeT()
    dequantize.builtinCode = dequantize.deprecatedBuiltinCode = code
    dequantize.version = _DEQUANTIZE_FP16_VERSION
    model.operatorCodes.append(dequantize)
    dequantize_index = len(model.operatorCodes) - 1

    operators = []
    expanded: dict[int, int] = {}  # float32 weight tensor -> its DEQUANTIZE output
    for n, operator in enumerate(subgraph.operators):
        weights = operator.inputs[1] if len(operator.inputs) > 1 else -1
        if (op_entry(graph.ops[n]).weighted and weights >= 0 and weights in graph.constants
                and weights not in graph.producer
                and tensors[weights].type == tfl.TensorType.FLOAT32):
            if weights not in expanded:
                source = tensors[weights]
                data = np.frombuffer(model.buffers[source.buffer].data.tobytes(), np.float32)
                half = copy.copy(source)
                half.type = tfl.TensorType.FLOAT16
                shared = sum(t.buffer == source.buffer for t in tensors) > 1
                half.buffer = len(model.buffers) if shared else source.buffer
                if shared:
                    model.buffers.append(make_buffer())
                model.buffers[half.buffer] = make_buffer(data.astype(np.float16))
                tensors[weights] = half  # the stored tensor becomes fp16 ...
                full = copy.copy(source)
                full.buffer = 0
                full.name = f"{_name(source.name)}/dequantized"
                tensors.append(full)  # ... and a new float32 tensor holds the expansion
                expanded[weights] = len(tensors) - 1
                node = tfl.OperatorT()
                node.opcodeIndex = dequantize_index
                node.inputs = [weights]
                node.outputs = [expanded[weights]]
                operators.append(node)
            operator.inputs = [operator.inputs[0], expanded[weights], *operator.inputs[2:]]
        operators.append(operator)
    subgraph.operators = operators
    return pack_model(model)


def _name(name: bytes | str | None) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    return name or "weights"


# ------------------------------------------------------------------------- int8

_SOFTMAX_OUTPUT = (1.0 / 256.0, -128)  # fixed by the TFLite int8 spec


def _quant(scales: np.ndarray | list[float], zero_points: np.ndarray | list[int],
           dimension: int = 0) -> tfl.QuantizationParametersT:
    q = tfl.QuantizationParametersT()
    q.scale = [float(v) for v in np.atleast_1d(scales)]
    q.zeroPoint = [int(v) for v in np.atleast_1d(zero_points)]
    q.quantizedDimension = dimension
    return q


def _activation_params(low: float, high: float) -> tuple[float, int]:
    """Asymmetric int8 scale and zero point covering [low, high] and 0."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255.0 or 1e-8
    zero_point = int(np.clip(round(-128 - low / scale), -128, 127))
    return scale, zero_point


class _Groups:
    """Union-find over tensors that must share quantisation parameters."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, t: int) -> int:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


ActivationRanges = Mapping[int, tuple[float, float]]
"""Observed (low, high) of each float32 activation tensor of a model, by tensor index."""


def quantize_int8(model_bytes: bytes, ranges: ActivationRanges, *, label: str = "") -> bytes:
    """A full-integer int8 version of a float32 model built from the builder's ops.

    ``ranges`` are the activation ranges seen when running the float model on calibration
    inputs (a TFLite runtime computes them: ``agent.local.calibration_ranges``), so the same
    float model and ranges always give the same bytes; ``label`` goes into the model's
    description. Raises ``ModelError`` for ops outside the builder's set or non-float32 models.
    """
    graph = load_graph(model_bytes)
    graph.require_rewritable("quantize_int8")
    int8_ops = sorted(name for name, entry in OPS.items() if entry.int8_version is not None)
    for n, op in enumerate(graph.ops):
        if op_entry(op).int8_version is None:
            raise ModelError(f"node {n} ({op}): quantize_int8 supports only "
                             f"{', '.join(int8_ops)}")
    low = {t: float(lo) for t, (lo, _) in ranges.items()}
    high = {t: float(hi) for t, (_, hi) in ranges.items()}

    model = unpack_model(model_bytes)
    subgraph = model.subgraphs[0]
    tensors = subgraph.tensors
    groups = _Groups()
    fixed: dict[int, tuple[float, int]] = {}
    for n, operator in enumerate(subgraph.operators):
        op = graph.ops[n]
        if op_entry(op).int8_same_scale:
            out = operator.outputs[0]
            for t in operator.inputs:
                if t >= 0 and t in low:
                    groups.union(t, out)
        if op == "SOFTMAX":
            fixed[operator.outputs[0]] = _SOFTMAX_OUTPUT
    params: dict[int, tuple[float, int]] = {}
    members: dict[int, list[int]] = {}
    for t in low:
        members.setdefault(groups.find(t), []).append(t)
    for group in members.values():
        pinned = [fixed[t] for t in group if t in fixed]
        value = pinned[0] if pinned else _activation_params(min(low[t] for t in group),
                                                            max(high[t] for t in group))
        for t in group:
            params[t] = value

    def const(t: int) -> np.ndarray:
        tensor = tensors[t]
        data = model.buffers[tensor.buffer].data.tobytes()
        return np.frombuffer(data, np.float32).reshape([int(d) for d in tensor.shape])

    def set_const(t: int, values: np.ndarray, tensor_type: int,
                  quantization: tfl.QuantizationParametersT) -> None:
        tensor = tensors[t]
        tensor.type = tensor_type
        tensor.quantization = quantization
        model.buffers[tensor.buffer] = make_buffer(values)

    for t, (scale, zero_point) in params.items():
        tensors[t].type = tfl.TensorType.INT8
        tensors[t].quantization = _quant([scale], [zero_point])
    done: set[int] = set()
    for n, operator in enumerate(subgraph.operators):
        op = graph.ops[n]
        entry = op_entry(op)
        if entry.weighted:
            x, w, b = operator.inputs[:3]
            if w in done or (b >= 0 and b in done):
                raise ModelError(f"node {n} ({op}) shares weights with an earlier node")
            weights = const(w)
            axis = entry.weights_axis
            if axis is None:  # fully connected: one scale for the whole matrix
                w_scale = np.array([np.abs(weights).max()]) / 127.0
                per_axis = w_scale[0]
            else:
                other = tuple(d for d in range(weights.ndim) if d != axis)
                w_scale = np.abs(weights).max(axis=other) / 127.0
                shape = [1] * weights.ndim
                shape[axis] = -1
                per_axis = w_scale.reshape(shape)
            w_scale = np.maximum(w_scale, 1e-12)
            per_axis = np.maximum(per_axis, 1e-12)
            q_weights = np.clip(np.round(weights / per_axis), -127, 127).astype(np.int8)
            set_const(w, q_weights, tfl.TensorType.INT8,
                      _quant(w_scale, np.zeros(len(w_scale), np.int64), axis or 0))
            done.add(w)
            if b >= 0:
                b_scale = params[x][0] * w_scale
                q_bias = np.round(const(b) / b_scale).astype(np.int32)
                set_const(b, q_bias, tfl.TensorType.INT32,
                          _quant(b_scale, np.zeros(len(b_scale), np.int64)))
                done.add(b)
        code = model.operatorCodes[operator.opcodeIndex]
        code.version = max(code.version, op_entry(op).int8_version or 1)
    model.description = f"{model.description or ''} (int8{', ' + label if label else ''})"
    return pack_model(model)
