"""ctypes bindings to the LiteRT C API in ``libLiteRt.so`` (the one inside ai-edge-litert's
wheel, or a standalone build): just enough to run a model as a ``LiteRtCompiledModel``, with
LiteRT's built-in profiler switched on or off.

Why the C API: neither Python ``Interpreter`` exposes a profiler, but the compiled model does
(``LiteRtCompiledModelGetProfiler``), and it records one begin/duration pair per TFLite node.
And where no Python runtime exists (Android), it runs models at all
(``agent.runtimes.capi_interpreter``).
Its handles are private to ``libLiteRt.so``; they must never be mixed with the Python bindings,
which carry their own copy of the runtime.

Facts this module relies on, checked against ai-edge-litert 2.3.0 on x86_64 (the call shapes by
disassembling the exported functions, the rest by running them):

- ``LiteRtCreateModelFromBuffer(env, addr, size, &model)`` takes the environment first and does
  not copy the bytes: they must outlive the model.
- Options are TOML strings in opaque options: identifier ``"runtime_options_string"`` with
  ``enable_profiling = true``; identifier ``"xnnpack"`` (the CPU options) with
  ``kernel_mode = "builtin"`` (plain TFLite kernels, one event per node) and ``num_threads``.
  A null payload destructor is rejected, so a no-op one is passed and Python owns the payload.
  ``kLiteRtHwAcceleratorNone`` is rejected: the CPU accelerator is always requested.
- ``ProfiledEventData`` is 104 bytes (the C++ layout: ``MemoryUsage`` is 24 bytes, not the
  16 that the C header's copy declares). Timestamps are ``tflite::profiling::time::NowMicros``:
  ``CLOCK_MONOTONIC`` truncated to whole microseconds (``CLOCK_MONOTONIC_RAW`` on Apple).
- The compiled model's profiler buffer holds 2048 events and then drops new ones (and a dropped
  event's end can overwrite event 0), so callers must read and restart it before it fills.
  ``LiteRtStartProfiler`` clears the buffer.
- XNNPACK reports its own operators through ``AddEvent``: a duration, no start time (0), the
  XNNPACK operator index in ``event_metadata1``, nothing that names a TFLite node.
- Signature tensor names are the tensors' names (not the SignatureDef keys), in subgraph order.
- ``LiteRtCompiledModelResizeInputTensorNonStrict`` changes static dimensions too. After a
  resize, ``LiteRtGetCompiledModelOutputTensorLayouts(..., update_allocation=true)`` reports the
  new output shapes (``LiteRtLayout`` is 68 bytes), and the buffer requirements follow.
- An output that a kernel turns into a dynamic tensor (RESHAPE to a shape computed at run time)
  is never written to its bound buffer: the first run succeeds and leaves the buffer as it was,
  every later run fails ("Failed to set custom allocation for output tensor").
- A bound output buffer smaller than the output makes the run fail ("Custom allocation is too
  small"), it is not overrun.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from joulefarm.errors import JoulefarmError

STATUS_NAMES = {
    0: "Ok", 1: "ErrorInvalidArgument", 2: "ErrorMemoryAllocationFailure",
    3: "ErrorRuntimeFailure", 4: "ErrorMissingInputTensor", 5: "ErrorUnsupported",
    6: "ErrorNotFound", 7: "ErrorTimeoutExpired", 8: "ErrorWrongVersion", 9: "ErrorUnknown",
    10: "ErrorAlreadyExists", 500: "ErrorFileIO", 501: "ErrorInvalidFlatbuffer",
    502: "ErrorDynamicLoading", 503: "ErrorSerialization", 504: "ErrorCompilation",
}

# tflite::Profiler::EventType values (litert_profiler_event.h).
EVENT_DEFAULT = 1
EVENT_OPERATOR_INVOKE = 2
EVENT_DELEGATE_OPERATOR_INVOKE = 4
EVENT_DELEGATE_PROFILED_OPERATOR_INVOKE = 8
EVENT_GENERAL_RUNTIME_INSTRUMENTATION = 16
KNOWN_EVENT_TYPES = frozenset({1, 2, 4, 8, 16, 32, 64, 128, 256})

PROFILER_CAPACITY = 2048
"""Events the compiled model's profiler buffer holds (fixed in ``compiled_model.cc``)."""

VERIFIED_VERSIONS = frozenset({"2.3.0"})
"""ai-edge-litert versions whose ABI this module was checked against. Others are probed in a
child process before first use (see ``agent.runtimes.profiler``)."""

HW_ACCELERATOR_CPU = 1
RUNTIME_OPTIONS_ID = b"runtime_options_string"
CPU_OPTIONS_ID = b"xnnpack"

EVENT_DTYPE = np.dtype({
    "names": ["tag", "event_type", "start_us", "elapsed_us", "metadata1", "metadata2",
              "source"],
    "formats": ["<u8", "<i4", "<u8", "<u8", "<i8", "<i8", "<i4"],
    "offsets": [0, 8, 16, 24, 80, 88, 96],
    "itemsize": 104,
})
"""``ProfiledEventData`` as the runtime writes it (tag is a ``const char*`` it owns)."""

# A LiteRtRankedTensorType is 72 bytes in 2.3.0; we only pass it back to the runtime, so a
# generous zeroed block is enough and its layout never matters to us.
_TENSOR_TYPE_BYTES = 512

_P = ctypes.c_void_p
_PP = ctypes.POINTER(ctypes.c_void_p)
_SIZE = ctypes.c_size_t
_INT = ctypes.c_int
_STATUS = ctypes.c_int

# name -> (restype, argtypes). Every symbol is checked for presence before any call.
_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "LiteRtCreateEnvironment": (_STATUS, [_INT, _P, _PP]),
    "LiteRtDestroyEnvironment": (None, [_P]),
    "LiteRtCreateModelFromBuffer": (_STATUS, [_P, _P, _SIZE, _PP]),
    "LiteRtDestroyModel": (None, [_P]),
    "LiteRtGetNumModelSignatures": (_STATUS, [_P, ctypes.POINTER(_SIZE)]),
    "LiteRtGetModelSignature": (_STATUS, [_P, _SIZE, _PP]),
    "LiteRtGetNumSignatureInputs": (_STATUS, [_P, ctypes.POINTER(_SIZE)]),
    "LiteRtGetNumSignatureOutputs": (_STATUS, [_P, ctypes.POINTER(_SIZE)]),
    "LiteRtGetSignatureInputTensorByIndex": (_STATUS, [_P, _SIZE, _PP]),
    "LiteRtGetSignatureOutputTensorByIndex": (_STATUS, [_P, _SIZE, _PP]),
    "LiteRtGetTensorName": (_STATUS, [_P, ctypes.POINTER(ctypes.c_char_p)]),
    "LiteRtGetRankedTensorType": (_STATUS, [_P, _P]),
    "LiteRtCreateOptions": (_STATUS, [_PP]),
    "LiteRtDestroyOptions": (None, [_P]),
    "LiteRtSetOptionsHardwareAccelerators": (_STATUS, [_P, _INT]),
    "LiteRtCreateOpaqueOptions": (_STATUS, [ctypes.c_char_p, _P, _P, _PP]),
    "LiteRtAddOpaqueOptions": (_STATUS, [_P, _P]),
    "LiteRtCreateCompiledModel": (_STATUS, [_P, _P, _P, _PP]),
    "LiteRtDestroyCompiledModel": (None, [_P]),
    "LiteRtGetCompiledModelInputBufferRequirements": (_STATUS, [_P, _SIZE, _SIZE, _PP]),
    "LiteRtGetCompiledModelOutputBufferRequirements": (_STATUS, [_P, _SIZE, _SIZE, _PP]),
    "LiteRtGetTensorBufferRequirementsBufferSize": (_STATUS, [_P, ctypes.POINTER(_SIZE)]),
    "LiteRtCreateManagedTensorBufferFromRequirements": (_STATUS, [_P, _P, _P, _PP]),
    "LiteRtGetTensorBufferHostMemory": (_STATUS, [_P, _PP]),
    "LiteRtDestroyTensorBuffer": (None, [_P]),
    "LiteRtRunCompiledModel": (_STATUS, [_P, _SIZE, _SIZE, _PP, _SIZE, _PP]),
    "LiteRtCompiledModelGetProfiler": (_STATUS, [_P, _PP]),
    "LiteRtStartProfiler": (_STATUS, [_P]),
    "LiteRtStopProfiler": (_STATUS, [_P]),
    "LiteRtGetNumProfilerEvents": (_STATUS, [_P, ctypes.POINTER(_INT)]),
    "LiteRtGetProfilerEvents": (_STATUS, [_P, _INT, _P]),
}
# Used when present (models with dynamic input dimensions need it).
_OPTIONAL_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "LiteRtCompiledModelResizeInputTensor": (_STATUS, [_P, _SIZE, _SIZE,
                                                       ctypes.POINTER(ctypes.c_int), _SIZE]),
    "LiteRtCompiledModelResizeInputTensorNonStrict": (_STATUS, [_P, _SIZE, _SIZE,
                                                                ctypes.POINTER(ctypes.c_int),
                                                                _SIZE]),
    "LiteRtGetCompiledModelOutputTensorLayouts": (_STATUS, [_P, _SIZE, _SIZE, _P,
                                                            ctypes.c_bool]),
}

# The opaque-options payload destructor: Python owns the payload, so there is nothing to free.
_NO_OP_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _payload: None)
# ``LiteRtLayout``: the rank word, int32 dims[8], uint32 strides[8] (68 bytes in 2.3.0).
_LAYOUT_BYTES = 68


def _closed_run(*_args: object) -> int:
    """Stands in for ``LiteRtRunCompiledModel`` once a model is closed: a bound ``run`` that
    outlives it fails with a status instead of touching freed runtime objects."""
    return 3  # kLiteRtStatusErrorRuntimeFailure


def match_slots(runtime_names: Sequence[str], model_names: Sequence[str],
                aliases: Mapping[str, int] | None = None) -> list[int]:
    """For each runtime tensor (signature slot, by name), the position in ``model_names`` of the
    model tensor it is: by tensor name, else by signature key (``aliases``: key -> position),
    else by position when the names do not identify them one to one. ``ValueError`` when the
    counts differ."""
    if len(runtime_names) != len(model_names):
        raise ValueError(f"the runtime sees {len(runtime_names)} tensors where the model "
                         f"declares {len(model_names)}")
    by_name = {**(aliases or {}), **{n: i for i, n in enumerate(model_names)}}
    order = [by_name.get(n, -1) for n in runtime_names]
    if sorted(order) == list(range(len(model_names))):
        return order
    return list(range(len(model_names)))


class LiteRtUnavailable(JoulefarmError, RuntimeError):
    """``libLiteRt.so`` cannot be found or lacks a symbol this module needs."""

    grpc_status = "FAILED_PRECONDITION"


class LiteRtCallError(JoulefarmError, RuntimeError):
    """A LiteRT C API call returned an error status."""

    def __init__(self, function: str, status: int, context: str = "") -> None:
        name = STATUS_NAMES.get(status, f"status {status}")
        super().__init__(f"{function} failed: kLiteRtStatus{name}" + (f" ({context})"
                                                                      if context else ""))
        self.function = function
        self.status = status


def litert_version() -> str | None:
    """The installed ai-edge-litert version, or None when it is not installed."""
    try:
        return importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        return None


def library_path() -> Path:
    """Where ``libLiteRt`` sits inside the installed ai-edge-litert package."""
    spec = importlib.util.find_spec("ai_edge_litert")
    if spec is None or not spec.submodule_search_locations:
        raise LiteRtUnavailable("ai-edge-litert is not installed")
    names = {"darwin": "libLiteRt.dylib", "win32": "LiteRt.dll"}
    name = names.get(sys.platform, "libLiteRt.so")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    raise LiteRtUnavailable(f"ai-edge-litert {litert_version()} ships no {name}")


_LIBRARIES: dict[str, ctypes.CDLL] = {}


def load_library(path: Path | None = None) -> ctypes.CDLL:
    """Load ``libLiteRt`` and declare every function used here; raise ``LiteRtUnavailable``
    if the file cannot be loaded or a symbol is missing (an incompatible release)."""
    path = library_path() if path is None else Path(path)
    key = str(path)
    if key in _LIBRARIES:
        return _LIBRARIES[key]
    try:
        lib = ctypes.CDLL(key)
    except OSError as exc:
        raise LiteRtUnavailable(f"cannot load {path}: {exc}") from exc
    missing = [name for name in _SIGNATURES if not hasattr(lib, name)]
    if missing:
        raise LiteRtUnavailable(f"{path.name} lacks {', '.join(missing)}")
    for name, (restype, argtypes) in {**_SIGNATURES, **_OPTIONAL_SIGNATURES}.items():
        if not hasattr(lib, name):
            continue
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    _LIBRARIES[key] = lib
    return lib


def _check(lib: ctypes.CDLL, name: str, *args: object, context: str = "") -> None:
    status = getattr(lib, name)(*args)
    if status != 0:
        raise LiteRtCallError(name, int(status), context)


_ENVIRONMENTS: dict[int, ctypes.c_void_p] = {}


def _environment(lib: ctypes.CDLL) -> ctypes.c_void_p:
    # One environment per process and library: creating one probes for GPU/NPU plugins, which
    # is slow and logs; it is never destroyed (the runtime keeps global state behind it).
    key = id(lib)
    if key not in _ENVIRONMENTS:
        env = ctypes.c_void_p()
        _check(lib, "LiteRtCreateEnvironment", 0, None, ctypes.byref(env))
        _ENVIRONMENTS[key] = env
    return _ENVIRONMENTS[key]


def _dims(raw: bytes) -> tuple[int, ...]:
    """The dimensions of a ``LiteRtLayout`` (the bytes from its rank word on)."""
    rank = min(int.from_bytes(raw[0:4], "little") & 0x7F, 8)
    return tuple(int(d) for d in np.frombuffer(raw[4:4 + 4 * rank], "<i4"))


def _static_shape(shapes: list[tuple[str, Sequence[int]]], name: str, index: int,
                  count: int) -> tuple[int, ...] | None:
    for known, shape in shapes:
        if known == name:
            return tuple(int(d) for d in shape)
    if len(shapes) == count:
        return tuple(int(d) for d in shapes[index][1])
    return None


def _pin_dims(tensor_type: ctypes.Array, shape: tuple[int, ...],
              strict: bool = True) -> bool | None:
    """Replace dynamic (-1) dimensions of a ``LiteRtRankedTensorType`` by ``shape``: True if it
    did, False if there was nothing to pin, None if it cannot.

    Layout (2.3.0): int32 element type, then ``LiteRtLayout``: a 32-bit word whose low 7 bits
    are the rank, int32 dims[8], uint32 strides[8]. The guess is checked before writing: the
    rank must match and every dimension must already equal ``shape`` or be -1 (with
    ``strict=False``, any dimension may change, as TFLite's non-strict resize allows).
    """
    raw = tensor_type.raw[:40]
    rank = int.from_bytes(raw[4:8], "little") & 0x7F
    dims = np.frombuffer(raw[8:40], "<i4")
    if rank > 8:
        return None
    current = dims[:rank]
    if rank != len(shape):
        return False if strict and (current >= 0).all() else None
    wanted = np.asarray(shape, "<i4")
    if (current == wanted).all():
        return False
    if (wanted < 1).any() or (strict and not ((current == -1) | (current == wanted)).all()):
        return None
    ctypes.memmove(ctypes.addressof(tensor_type) + 8, wanted.tobytes(), 4 * rank)
    return True


class CompiledModel:
    """One model compiled for the CPU (LiteRT's profiler on or off); host-memory tensor buffers.

    ``run`` is the hot path: one C call with arguments prepared once. Close it (or use it as a
    context manager) to release the runtime objects; the environment is shared and kept.
    """

    def __init__(self, lib: ctypes.CDLL, model_bytes: bytes, *, num_threads: int = 1,
                 use_xnnpack: bool = False, profile: bool = True,
                 input_shapes: Sequence[tuple[str, Sequence[int]]] = (),
                 output_shapes: Sequence[tuple[str, Sequence[int]]] = (),
                 strict_shapes: bool = True) -> None:
        """``input_shapes``/``output_shapes``: (tensor name, static shape) of the model's inputs
        and outputs, used to pin dynamic (-1) dimensions; matched by name, else by position.
        With ``strict_shapes=False`` an input shape may also change static dimensions (TFLite's
        non-strict resize); outputs without a given shape then take the shapes the runtime
        computes. ``input_shapes``/``output_shapes`` attributes hold the shapes bound."""
        self._lib = lib
        self._options = (num_threads, use_xnnpack, profile, strict_shapes)
        self._handles: list[tuple[str, ctypes.c_void_p]] = []  # destroyed in reverse order
        self._keep: list[object] = []  # payloads the runtime points into
        self.rebuild(model_bytes, input_shapes, output_shapes)

    def rebuild(self, model_bytes: bytes,
                input_shapes: Sequence[tuple[str, Sequence[int]]] = (),
                output_shapes: Sequence[tuple[str, Sequence[int]]] = ()) -> None:
        """Close, then compile ``model_bytes`` again with these shapes and the same options.
        Bound ``run`` methods stay valid (the hot loop holds them)."""
        self.close()
        self._shapes = {"Input": list(input_shapes), "Output": list(output_shapes)}
        self._layouts: list[tuple[int, ...]] | None = None
        try:
            self._build(model_bytes, *self._options)
        except BaseException:
            self.close()
            raise

    def _build(self, model_bytes: bytes, num_threads: int, use_xnnpack: bool,
               profile: bool, strict_shapes: bool) -> None:
        lib = self._lib
        env = _environment(lib)
        data = ctypes.create_string_buffer(bytes(model_bytes), len(model_bytes))
        self._keep.append(data)
        self._model = self._create("LiteRtCreateModelFromBuffer", "LiteRtDestroyModel", env,
                                   data, len(model_bytes))

        options = self._create("LiteRtCreateOptions", "LiteRtDestroyOptions")
        _check(lib, "LiteRtSetOptionsHardwareAccelerators", options, HW_ACCELERATOR_CPU)
        kernel_mode = "xnnpack" if use_xnnpack else "builtin"
        self._add_toml(options, CPU_OPTIONS_ID,
                       f'kernel_mode = "{kernel_mode}"\nnum_threads = {int(num_threads)}\n')
        if profile:
            self._add_toml(options, RUNTIME_OPTIONS_ID, "enable_profiling = true\n")
        self._compiled = self._create("LiteRtCreateCompiledModel", "LiteRtDestroyCompiledModel",
                                      env, self._model, options)

        self.profiler = ctypes.c_void_p()
        if profile:
            _check(lib, "LiteRtCompiledModelGetProfiler", self._compiled,
                   ctypes.byref(self.profiler))
            if not self.profiler.value:
                raise LiteRtCallError("LiteRtCompiledModelGetProfiler", 6, "no profiler")

        signature = ctypes.c_void_p()
        count = ctypes.c_size_t()
        _check(lib, "LiteRtGetNumModelSignatures", self._model, ctypes.byref(count))
        if count.value < 1:
            raise LiteRtCallError("LiteRtGetNumModelSignatures", 6, "model has no signature")
        _check(lib, "LiteRtGetModelSignature", self._model, 0, ctypes.byref(signature))
        self._resized = False
        self._strict = strict_shapes
        self.input_names, self._inputs, self.input_shapes = self._buffers(env, signature,
                                                                          "Input")
        if ((self._resized or not strict_shapes)
                and hasattr(lib, "LiteRtGetCompiledModelOutputTensorLayouts")):
            # Propagate the new input shapes to the outputs and allocate them. The runtime
            # reports the outputs' shapes as of that allocation: outputs that kernels make
            # dynamic (a RESHAPE to a computed shape) keep the model file's shape.
            outputs = ctypes.c_size_t()
            _check(lib, "LiteRtGetNumSignatureOutputs", signature, ctypes.byref(outputs))
            layouts = ctypes.create_string_buffer(_TENSOR_TYPE_BYTES * max(outputs.value, 1))
            _check(lib, "LiteRtGetCompiledModelOutputTensorLayouts", self._compiled, 0,
                   outputs.value, layouts, True)
            self._layouts = [_dims(layouts.raw[i * _LAYOUT_BYTES:(i + 1) * _LAYOUT_BYTES])
                             for i in range(outputs.value)]
        self.output_names, self._outputs, self.output_shapes = self._buffers(env, signature,
                                                                             "Output")
        in_array = (ctypes.c_void_p * len(self._inputs))(*[b for b, _, _ in self._inputs])
        out_array = (ctypes.c_void_p * len(self._outputs))(*[b for b, _, _ in self._outputs])
        self._keep += [in_array, out_array]
        # The hot path: a function object of its own without argtypes, called with arguments
        # converted once; with argtypes ctypes converts all six on every call (~0.5 us on x86).
        run = lib["LiteRtRunCompiledModel"]
        run.restype = _STATUS
        self._run: Callable[..., int] = run
        self._run_args: tuple[object, ...] = (
            self._compiled, _SIZE(0), _SIZE(len(self._inputs)), in_array,
            _SIZE(len(self._outputs)), out_array)

    def _create(self, create: str, destroy: str, *args: object) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        _check(self._lib, create, *args, ctypes.byref(handle))
        self._handles.append((destroy, handle))
        return handle

    def _add_toml(self, options: ctypes.c_void_p, identifier: bytes, text: str) -> None:
        payload = ctypes.create_string_buffer(text.encode())
        self._keep.append(payload)
        opaque = ctypes.c_void_p()
        _check(self._lib, "LiteRtCreateOpaqueOptions", identifier,
               ctypes.cast(payload, ctypes.c_void_p),
               ctypes.cast(_NO_OP_DESTRUCTOR, ctypes.c_void_p), ctypes.byref(opaque))
        # The options list owns the opaque options from here on.
        _check(self._lib, "LiteRtAddOpaqueOptions", options, opaque)

    def _buffers(self, env: ctypes.c_void_p, signature: ctypes.c_void_p, kind: str
                 ) -> tuple[list[str], list[tuple[ctypes.c_void_p, int, int]],
                            list[tuple[int, ...]]]:
        lib = self._lib
        count = ctypes.c_size_t()
        _check(lib, f"LiteRtGetNumSignature{kind}s", signature, ctypes.byref(count))
        names, buffers, shapes = [], [], []
        for i in range(count.value):
            tensor = ctypes.c_void_p()
            _check(lib, f"LiteRtGetSignature{kind}TensorByIndex", signature, i,
                   ctypes.byref(tensor))
            name = ctypes.c_char_p()
            _check(lib, "LiteRtGetTensorName", tensor, ctypes.byref(name))
            names.append((name.value or b"").decode("utf-8", "replace"))
            tensor_type = ctypes.create_string_buffer(_TENSOR_TYPE_BYTES)
            _check(lib, "LiteRtGetRankedTensorType", tensor, tensor_type,
                   context=f"{kind.lower()} {i} must have a ranked type")
            shape = _static_shape(self._shapes[kind], names[-1], i, count.value)
            if shape is None and kind == "Output" and self._layouts is not None:
                shape = self._layouts[i]
            pinned = False if shape is None else _pin_dims(tensor_type, shape, self._strict)
            if pinned is None:
                raise LiteRtCallError("LiteRtGetRankedTensorType", 5,
                                      f"{kind.lower()} {i} ({names[-1]!r}): cannot pin its "
                                      f"dimensions to {list(shape or ())}")
            if pinned and shape is not None and kind == "Input":
                # A dynamic input: size it, so that the runtime allocates every tensor.
                resize = ("LiteRtCompiledModelResizeInputTensor" if self._strict
                          else "LiteRtCompiledModelResizeInputTensorNonStrict")
                if not hasattr(lib, resize):
                    raise LiteRtCallError(resize, 5, "resizing inputs needs it")
                dims = (ctypes.c_int * len(shape))(*shape)
                _check(lib, resize, self._compiled, 0, i, dims, len(shape))
                self._resized = True
            requirements = ctypes.c_void_p()  # owned by the compiled model
            _check(lib, f"LiteRtGetCompiledModel{kind}BufferRequirements", self._compiled, 0, i,
                   ctypes.byref(requirements))
            size = ctypes.c_size_t()
            _check(lib, "LiteRtGetTensorBufferRequirementsBufferSize", requirements,
                   ctypes.byref(size))
            buffer = self._create("LiteRtCreateManagedTensorBufferFromRequirements",
                                  "LiteRtDestroyTensorBuffer", env, tensor_type, requirements)
            host = ctypes.c_void_p()
            _check(lib, "LiteRtGetTensorBufferHostMemory", buffer, ctypes.byref(host),
                   context=f"{kind.lower()} {i} is not in host memory")
            buffers.append((buffer, int(host.value or 0), int(size.value)))
            shapes.append(_dims(tensor_type.raw[4:4 + _LAYOUT_BYTES]))
        return names, buffers, shapes

    def write_input(self, index: int, array: np.ndarray) -> None:
        """Copy ``array`` into input ``index`` (signature order)."""
        _, host, size = self._inputs[index]
        array = np.ascontiguousarray(array)
        if array.nbytes > size or not host:
            raise LiteRtCallError("LiteRtGetTensorBufferHostMemory", 1,
                                  f"input {index} holds {size} bytes, got {array.nbytes}")
        ctypes.memmove(host, array.ctypes.data, array.nbytes)

    def read_output(self, index: int, dtype: np.dtype, shape: Sequence[int]) -> np.ndarray:
        """A copy of output ``index`` (signature order) as ``dtype`` with ``shape``."""
        _, host, size = self._outputs[index]
        out = np.empty(tuple(shape), dtype)
        if out.nbytes > size or not host:
            raise LiteRtCallError("LiteRtGetTensorBufferHostMemory", 1,
                                  f"output {index} holds {size} bytes, wanted {out.nbytes}")
        ctypes.memmove(out.ctypes.data, host, out.nbytes)
        return out

    def run(self) -> None:
        """One inference on the inputs written last."""
        status = self._run(*self._run_args)
        if status != 0:
            raise LiteRtCallError("LiteRtRunCompiledModel", int(status))

    def start_profiler(self) -> None:
        """Clear the profiler buffer and record from now on."""
        _check(self._lib, "LiteRtStartProfiler", self.profiler)

    def stop_profiler(self) -> None:
        _check(self._lib, "LiteRtStopProfiler", self.profiler)

    def read_events(self) -> np.ndarray:
        """A copy of every recorded event (``EVENT_DTYPE``), in recording order."""
        count = ctypes.c_int()
        _check(self._lib, "LiteRtGetNumProfilerEvents", self.profiler, ctypes.byref(count))
        n = int(count.value)
        if n <= 0:
            return np.zeros(0, EVENT_DTYPE)
        events = np.zeros(n, EVENT_DTYPE)
        _check(self._lib, "LiteRtGetProfilerEvents", self.profiler, n,
               events.ctypes.data_as(ctypes.c_void_p))
        return events

    @staticmethod
    def tag(address: int) -> str:
        """The text of an event tag. Only call it on events whose layout has been checked: the
        address is dereferenced. Tags are owned by the profiler and live as long as it does."""
        if not address:
            return ""
        return ctypes.string_at(address).decode("utf-8", "replace")

    def close(self) -> None:
        # Nothing may reach the freed objects afterwards: run fails, buffers are forgotten.
        self._run, self._run_args = _closed_run, ()
        self._inputs, self._outputs = [], []
        while self._handles:
            destroy, handle = self._handles.pop()
            if handle.value:
                getattr(self._lib, destroy)(handle)
        self._keep.clear()

    def __enter__(self) -> CompiledModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
