"""A ``tflite::Profiler`` made of ctypes callbacks, attached to a tflite-runtime interpreter.

tflite-runtime's extension exports ``tflite::impl::Interpreter::SetProfiler(tflite::Profiler*)``
and ``Interpreter._native_handle()`` returns the ``tflite::Interpreter*``. A C++ object is, to
the interpreter, a pointer to a table of functions (the Itanium C++ ABI vtable), so a ctypes
structure whose first word points to an array of ctypes callbacks is a ``Profiler``. The slot
order of ``tflite/core/api/profiler.h`` (the same in the x86_64 and aarch64 2.14 wheels):

    ~Profiler() (complete), ~Profiler() (deleting),
    uint32 BeginEvent(tag, type, int64 metadata1, int64 metadata2),
    void EndEvent(uint32 handle, int64 metadata1, int64 metadata2),
    void EndEvent(uint32 handle),
    void AddEvent(tag, type, uint64 metric, int64 metadata1, int64 metadata2),
    void AddEventWithData(tag, type, const void* data)

Each callback reads ``time.perf_counter()`` itself, so times are on the agent clock already. The
profiler must be attached before ``allocate_tensors()`` (or XNNPACK records nothing) and detached
before the callbacks are freed. tflite-runtime needs numpy < 2, so this module is used only where
that runtime is installed; ABI mistakes here crash the process, which is why
``agent.runtimes.profiler`` probes it in a child process first.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import time
import warnings
from typing import Any

from joulefarm.errors import JoulefarmError

SET_PROFILER_SYMBOL = "_ZN6tflite4impl11Interpreter11SetProfilerEPNS_8ProfilerE"

_BEGIN = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                          ctypes.c_int64, ctypes.c_int64)
_END3 = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int64,
                         ctypes.c_int64)
_END1 = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32)
_ADD = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint64,
                        ctypes.c_int64, ctypes.c_int64)
_ADD_DATA = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                             ctypes.c_void_p)
_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class HookUnavailable(JoulefarmError, RuntimeError):
    """tflite-runtime is missing or does not export the profiler hook."""

    grpc_status = "FAILED_PRECONDITION"


class _ProfilerObject(ctypes.Structure):
    _fields_ = [("vtable", ctypes.c_void_p)]


class EventRecorder:
    """Collects events while ``enabled``: one row per event, appended in begin order.

    Rows are ``[type, start_s, end_s, metadata1, metadata2, tag, duration_us]``; ``start_s`` and
    ``end_s`` are perf_counter seconds (NaN when unknown, as for ``AddEvent``), ``duration_us`` is
    the metric ``AddEvent`` reports (XNNPACK: whole microseconds), else None.
    """

    def __init__(self) -> None:
        self.enabled = False
        self.rows: list[list[Any]] = []
        clock = time.perf_counter
        rows = self.rows
        nan = float("nan")

        def begin(_self: int, tag: bytes | None, event_type: int, meta1: int, meta2: int
                  ) -> int:
            if not self.enabled:
                return 0
            rows.append([event_type, clock(), nan, meta1, meta2, tag, None])
            return len(rows)  # handle = row + 1, so 0 stays "no event"

        def end(_self: int, handle: int, *_meta: int) -> None:
            if handle and self.enabled:
                rows[handle - 1][2] = clock()

        def add(_self: int, tag: bytes | None, event_type: int, metric: int, meta1: int,
                meta2: int) -> None:
            if self.enabled:
                rows.append([event_type, nan, nan, meta1, meta2, tag, int(metric)])

        def ignore(*_args: object) -> None:
            return None

        self._callbacks = (_DESTRUCTOR(ignore), _DESTRUCTOR(ignore), _BEGIN(begin),
                           _END3(end), _END1(end), _ADD(add), _ADD_DATA(ignore))
        self._table = (ctypes.c_void_p * len(self._callbacks))(
            *[ctypes.cast(c, ctypes.c_void_p) for c in self._callbacks])
        self.object = _ProfilerObject(ctypes.cast(self._table, ctypes.c_void_p))

    def take(self) -> list[list[Any]]:
        """The rows recorded so far; the recorder starts empty again."""
        taken = list(self.rows)
        self.rows.clear()
        return taken


def _set_profiler_function(module: Any) -> Any:
    wrapper = importlib.import_module(module.__name__.rsplit(".", 1)[0]
                                      + "._pywrap_tensorflow_interpreter_wrapper")
    try:
        lib = ctypes.CDLL(wrapper.__file__)
        function = getattr(lib, SET_PROFILER_SYMBOL)
    except (OSError, AttributeError) as exc:
        raise HookUnavailable(f"tflite-runtime does not export Interpreter::SetProfiler: {exc}"
                              ) from exc
    function.restype = None
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return function


class HookedInterpreter:
    """A tflite-runtime ``Interpreter`` with an ``EventRecorder`` attached before allocation."""

    def __init__(self, model_bytes: bytes, *, num_threads: int = 1,
                 use_xnnpack: bool = False) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module("tflite_runtime.interpreter")
        except ImportError as exc:
            raise HookUnavailable(f"tflite-runtime is not installed: {exc}") from exc
        set_profiler = _set_profiler_function(module)
        resolver = module.OpResolverType
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.interpreter = module.Interpreter(
                model_content=bytes(model_bytes), num_threads=num_threads,
                experimental_op_resolver_type=(
                    resolver.BUILTIN if use_xnnpack else
                    resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        try:
            handle = int(self.interpreter._native_handle())
        except (AttributeError, TypeError, ValueError) as exc:
            raise HookUnavailable(f"the interpreter has no native handle: {exc}") from exc
        if not handle:
            raise HookUnavailable("the interpreter's native handle is null")
        self.recorder = EventRecorder()
        self._handle = handle
        self._set_profiler = set_profiler
        set_profiler(handle, ctypes.addressof(self.recorder.object))
        self._attached = True
        self.interpreter.allocate_tensors()
        self.invoke = self.interpreter.invoke

    def close(self) -> None:
        """Detach the profiler (the interpreter must never call freed callbacks)."""
        if self._attached:
            self._set_profiler(self._handle, None)
            self._attached = False

    def __del__(self) -> None:
        # Detach even if the caller forgot: the interpreter may outlive this wrapper.
        with contextlib.suppress(Exception):  # interpreter shutdown: nobody to report to
            self.close()
