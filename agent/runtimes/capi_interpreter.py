"""The part of ``tf.lite.Interpreter``'s API this project uses, over the LiteRT C API.

``CApiInterpreter`` runs a model through a standalone ``libLiteRt.so``
(``agent.runtimes.litert_capi``)
so that a device needs no Python TFLite runtime at all (Android/Termux has no wheel of one).
Tensor indices are the model's subgraph tensor indices, as the Python ``Interpreter`` reports
them; details come from the model file (``joulefarm.tflite.flatbuffer``), shapes from the runtime.

What differs from the Python ``Interpreter``, and why:

- Only model inputs and outputs can be read: the C API binds the signature's tensors to
  buffers and exposes nothing else. ``get_tensor`` of another tensor raises ``ValueError``.
- Loading (and ``allocate_tensors`` after a resize) compiles the model and runs it twice on
  zeros. Outputs that the kernels turn into dynamic tensors (a RESHAPE to a shape computed at
  run time) are never written to the bound buffers: the first inference silently leaves them
  unwritten and the second fails. Running twice up front turns that into a ``ModelError`` at
  load instead of wrong numbers later.
- ``invoke`` is ``CompiledModel.run`` itself, bound once: a resize recompiles the same
  ``CompiledModel`` in place, so invokers bound earlier stay valid.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.runtimes import litert_capi
from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import decode_name, numpy_dtype, shape_of, unpack_model


@dataclass(frozen=True)
class _Tensor:
    index: int
    name: str
    dtype: np.dtype
    signature: tuple[int, ...] | None
    """``shape_signature`` from the file (-1 for dynamic dimensions), None if it has none."""
    scales: np.ndarray
    zero_points: np.ndarray
    quantized_dimension: int


def _tensors(model_bytes: bytes) -> tuple[list[_Tensor], list[_Tensor], dict[int, tuple[int, ...]],
                                          dict[str, int], dict[str, int]]:
    """Inputs, outputs, file shapes by tensor index, and signature keys -> tensor index."""
    model = unpack_model(model_bytes)
    if not model.subgraphs:
        raise ModelError("model has no subgraph")
    graph = model.subgraphs[0]
    tensors = graph.tensors or []

    def tensor(t: int) -> _Tensor:
        info = tensors[t]
        dtype = numpy_dtype(info.type)
        if dtype is None:
            raise ModelError(f"tensor {t} ({decode_name(info.name)!r}) has a type the LiteRT C "
                             f"API backend cannot pass ({info.type})")
        q = info.quantization
        scales = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zeros = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [],
                           np.int32)
        signature = (tuple(int(d) for d in info.shapeSignature)
                     if info.shapeSignature is not None and len(info.shapeSignature) else None)
        return _Tensor(t, decode_name(info.name), dtype, signature, scales, zeros,
                       int(q.quantizedDimension or 0) if q is not None else 0)

    inputs = [tensor(int(t)) for t in graph.inputs or []]
    outputs = [tensor(int(t)) for t in graph.outputs or []]
    shapes = {t.index: tuple(shape_of(tensors[t.index])) for t in inputs + outputs}
    keys_in: dict[str, int] = {}
    keys_out: dict[str, int] = {}
    for signature in (model.signatureDefs or [])[:1]:  # the C API runs signature 0
        keys_in = {decode_name(s.name): int(s.tensorIndex) for s in signature.inputs or []}
        keys_out = {decode_name(s.name): int(s.tensorIndex) for s in signature.outputs or []}
    return inputs, outputs, shapes, keys_in, keys_out


def _slots(names: Sequence[str], tensors: Sequence[_Tensor], keys: dict[str, int]
           ) -> dict[int, int]:
    """Tensor index -> signature slot."""
    position = {t.index: i for i, t in enumerate(tensors)}
    aliases = {key: position[t] for key, t in keys.items() if t in position}
    order = litert_capi.match_slots(names, [t.name for t in tensors], aliases)
    return {tensors[model_position].index: slot for slot, model_position in enumerate(order)}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class CApiInterpreter:
    """A model compiled by ``libLiteRt.so``'s C API for the CPU, behind the ``Interpreter``
    methods this project calls. Every failure raises ``ModelError`` (a ``ValueError``)."""

    def __init__(self, lib: ctypes.CDLL, model_bytes: bytes, *, num_threads: int = 1,
                 use_xnnpack: bool = False) -> None:
        self._bytes = bytes(model_bytes)
        self._inputs, self._outputs, self._shapes, keys_in, keys_out = _tensors(self._bytes)
        self._keys = (keys_in, keys_out)
        self._by_index = {t.index: t for t in self._inputs + self._outputs}
        self._requested = {t.index: self._shapes[t.index] for t in self._inputs}
        self._values: dict[int, np.ndarray] = {}
        self._model: litert_capi.CompiledModel | None = None
        try:
            self._model = litert_capi.CompiledModel(
                lib, self._bytes, num_threads=num_threads, use_xnnpack=use_xnnpack,
                profile=False, input_shapes=self._input_shapes(), strict_shapes=False)
        except litert_capi.LiteRtCallError as exc:
            raise ModelError(f"the LiteRT C API could not compile the model: {_one_line(exc)} "
                             "(LiteRT logs why on stderr)") from exc
        self.invoke = self._model.run
        """Run one inference on the inputs set last (``CompiledModel.run``, bound once)."""
        self._bind()

    def _input_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every input for ``CompiledModel``, which matches them to its slots
        by name, else by position. Once the slots are known, by slot position; before, by tensor
        name where names are unique (the C API reports tensor names), else by model order. A
        NUL never occurs in a runtime name, so the placeholders match none."""
        slots = getattr(self, "_in_slot", None)
        if slots is not None:
            by_slot = sorted(self._inputs, key=lambda t: slots[t.index])
            return [(f"\0{i}", self._requested[t.index]) for i, t in enumerate(by_slot)]
        names = [t.name for t in self._inputs]
        if len(set(names)) != len(names):
            names = [f"\0{i}" for i in range(len(names))]
        return [(n, self._requested[t.index]) for n, t in zip(names, self._inputs, strict=True)]

    def _bind(self) -> None:
        try:
            self._bind_checked()
        except BaseException:
            # Half-bound, or bound to outputs it cannot fill: nothing may run on it.
            self.close()
            raise

    def _bind_checked(self) -> None:
        model = self._compiled()
        try:
            self._in_slot = _slots(model.input_names, self._inputs, self._keys[0])
            self._out_slot = _slots(model.output_names, self._outputs, self._keys[1])
        except ValueError as exc:
            raise ModelError(f"the LiteRT C API and the model file disagree: {exc}") from exc
        for t in self._inputs:
            self._shapes[t.index] = tuple(model.input_shapes[self._in_slot[t.index]])
        for t in self._outputs:
            self._shapes[t.index] = tuple(model.output_shapes[self._out_slot[t.index]])
        self._values.clear()
        for t in self._inputs:
            model.write_input(self._in_slot[t.index],
                              np.zeros(self._shapes[t.index], t.dtype))
        try:
            model.run()
            model.run()
        except litert_capi.LiteRtCallError as exc:
            raise ModelError(
                f"the LiteRT C API cannot run this model: {_one_line(exc)}; outputs that become "
                "dynamic tensors (shapes computed at run time) cannot be bound to its buffers "
                "(LiteRT logs the reason on stderr)") from exc

    def _compiled(self) -> litert_capi.CompiledModel:
        if self._model is None:
            raise ModelError("the interpreter is closed")
        return self._model

    def _details(self, tensors: Sequence[_Tensor]) -> list[dict[str, Any]]:
        details = []
        for t in tensors:
            scale = float(t.scales[0]) if len(t.scales) == 1 else 0.0
            zero = int(t.zero_points[0]) if len(t.zero_points) == 1 else 0
            details.append({
                "name": t.name,
                "index": t.index,
                "shape": np.array(self._shapes[t.index], np.int32),
                # Without a signature in the file the Python API reports the current shape.
                "shape_signature": np.array(self._shapes[t.index] if t.signature is None
                                            else t.signature, np.int32),
                "dtype": t.dtype.type,
                "quantization": (scale, zero),
                "quantization_parameters": {"scales": t.scales.copy(),
                                            "zero_points": t.zero_points.copy(),
                                            "quantized_dimension": t.quantized_dimension},
                "sparsity_parameters": {},
            })
        return details

    def get_input_details(self) -> list[dict[str, Any]]:
        """One dict per model input, in model order (``name``, ``index``, ``shape``,
        ``shape_signature``, ``dtype``, ``quantization``, ...), as the Python API gives."""
        return self._details(self._inputs)

    def get_output_details(self) -> list[dict[str, Any]]:
        return self._details(self._outputs)

    def _tensor(self, index: int, inputs_only: bool = False) -> _Tensor:
        t = self._by_index.get(int(index))
        if t is None or (inputs_only and int(index) not in self._requested):
            what = "a model input" if inputs_only else "a model input or output"
            raise ModelError(f"tensor {index} is not {what}: the LiteRT C API backend reaches "
                             "only those")
        return t

    def resize_tensor_input(self, input_index: int, tensor_size: Sequence[int],
                            strict: bool = False) -> None:
        """Ask for another input shape; ``allocate_tensors`` recompiles the model with it."""
        t = self._tensor(input_index, inputs_only=True)
        shape = tuple(int(d) for d in tensor_size)
        if any(d < 1 for d in shape):
            raise ModelError(f"input {t.index} ({t.name!r}): cannot resize to {list(shape)}")
        signature = self._shapes[t.index] if t.signature is None else t.signature
        if len(shape) != len(signature) or (strict and any(
                s not in (-1, d) for s, d in zip(signature, shape, strict=True))):
            raise ModelError(f"input {t.index} ({t.name!r}): cannot resize "
                             f"{list(signature)} to {list(shape)}"
                             + (" in strict mode" if strict else
                                " (the LiteRT C API backend keeps the rank)"))
        self._requested[t.index] = shape

    def allocate_tensors(self) -> None:
        """Recompile the model if an input was resized (a no-op otherwise)."""
        model = self._compiled()
        if all(self._requested[t.index] == self._shapes[t.index] for t in self._inputs):
            return
        try:
            model.rebuild(self._bytes, self._input_shapes())
        except litert_capi.LiteRtCallError as exc:
            self.close()
            raise ModelError(f"the LiteRT C API could not compile the model for input shapes "
                             f"{[list(s) for s in self._requested.values()]}: "
                             f"{_one_line(exc)}") from exc
        self._bind()

    def set_tensor(self, tensor_index: int, value: np.ndarray) -> None:
        """Copy ``value`` into an input (its dtype and current shape, as the Python API
        requires)."""
        t = self._tensor(tensor_index, inputs_only=True)
        array = np.asarray(value)
        shape = self._shapes[t.index]
        if self._requested[t.index] != shape:
            raise ModelError(f"input {t.index} ({t.name!r}) was resized: call "
                             "allocate_tensors() before set_tensor()")
        if array.dtype != t.dtype:
            raise ModelError(f"input {t.index} ({t.name!r}) is {t.dtype}, got {array.dtype}")
        if array.shape != shape:
            raise ModelError(f"input {t.index} ({t.name!r}) has shape {list(shape)}, got "
                             f"{list(array.shape)}")
        array = np.ascontiguousarray(array)
        self._compiled().write_input(self._in_slot[t.index], array)
        self._values[t.index] = array.copy()

    def get_tensor(self, tensor_index: int) -> np.ndarray:
        """A copy of a model output after the last ``invoke`` (or of an input as set)."""
        t = self._tensor(tensor_index)
        shape = self._shapes[t.index]
        if t.index in self._in_slot:
            value = self._values.get(t.index)
            return value.copy() if value is not None else np.zeros(shape, t.dtype)
        return self._compiled().read_output(self._out_slot[t.index], t.dtype, shape)

    def close(self) -> None:
        """Release the runtime's objects; a bound ``invoke`` then fails cleanly."""
        if self._model is not None:
            self._model.close()
            self._model = None

    def __del__(self) -> None:
        # Nothing to report to during garbage collection.
        with contextlib.suppress(Exception):
            self.close()
