"""One interface over the TFLite runtimes: ai-edge-litert (preferred), tflite-runtime, or a
standalone ``libLiteRt.so`` through the LiteRT C API ("litert-c").

The two Python runtimes ship the same ``Interpreter`` class; ``agent.runtimes.capi_interpreter``
gives the
part of it this project uses over the C API, for devices with no Python runtime wheel (Android).
The choice is made once per process (``configure_runtime``; by default whichever Python runtime
imports), and interpreters are created through ``load_interpreter`` so that every caller gets the
same op resolver choice: without XNNPACK the plain builtin kernels run one TFLite node at a time,
which is what per-layer measurement needs; with XNNPACK the delegate fuses and re-partitions the
graph.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from joulefarm.enums import LITERT_LIB_URL, RuntimeBackend
from joulefarm.errors import ModelError

BACKEND_CHOICES = RuntimeBackend.values()
"""Values of ``configure_runtime(backend=...)`` (and of the agent's ``--runtime``)."""
LITERT_C = RuntimeBackend.LITERT_C.value
LITERT_C_RUNTIME_NAME = "litert-c-api"
"""The runtime name ``runtime_info`` reports for the litert-c backend."""

# (distribution name, interpreter module), in order of preference.
_BACKENDS = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)
# Their Python code may warn about plugins or deprecations we cannot act on; pytest runs with
# warnings as errors, so keep those (and only those) quiet around import and construction.
_QUIET_MODULES = r"(ai_edge_litert|tflite_runtime)(\.|$)"
_LITERT_C_HINT = (f"use --runtime litert-c --litert-lib PATH with a standalone libLiteRt.so "
                  f"({LITERT_LIB_URL})")


@dataclass(frozen=True)
class _Config:
    backend: str = "auto"
    litert_lib: Path | None = None
    litert_version: str | None = None


_CONFIG = _Config()


class _Backend(NamedTuple):
    name: str
    version: str
    module: ModuleType | None
    """The Python runtime's interpreter module; None for litert-c."""
    lib: ctypes.CDLL | None
    """The loaded ``libLiteRt`` for litert-c; None for the Python runtimes."""


def configure_runtime(backend: str = "auto", litert_lib: Path | None = None,
                      litert_version: str | None = None) -> None:
    """Choose the runtime for this process (``BACKEND_CHOICES``).

    ``"auto"``: the standalone library when ``litert_lib`` is given, else ai-edge-litert or
    tflite-runtime, whichever imports. A named backend is the only one tried. ``"litert-c"``
    runs models through the LiteRT C API of ``litert_lib`` (default: the ``libLiteRt.so``
    inside an installed ai-edge-litert wheel, found without importing it);
    ``litert_version`` labels it in ``runtime_info``. Nothing is loaded here: the first
    ``runtime_info`` or ``load_interpreter`` does, and raises if it cannot.
    """
    global _CONFIG
    if backend not in BACKEND_CHOICES:
        raise ValueError(f"unknown runtime {backend!r} (known: {', '.join(BACKEND_CHOICES)})")
    if litert_lib is not None and backend not in ("auto", LITERT_C):
        raise ValueError(f"--litert-lib is for the {LITERT_C} runtime, not {backend}")
    _CONFIG = _Config(backend, None if litert_lib is None else Path(litert_lib),
                      litert_version or None)
    _backend.cache_clear()


def configured_litert_lib() -> Path | None:
    """The standalone ``libLiteRt.so`` given to ``configure_runtime``, if any (the in-situ
    profiler uses it too)."""
    return _CONFIG.litert_lib


@functools.cache
def _backend() -> _Backend:
    config = _CONFIG
    if config.backend == LITERT_C or (config.backend == "auto" and config.litert_lib):
        return _litert_c(config)
    wanted = [b for b in _BACKENDS if config.backend in ("auto", b[0])]
    errors = []
    for dist, module_name in wanted:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", module=_QUIET_MODULES)
                module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = getattr(module, "__version__", "unknown")
        return _Backend(dist, version, module, None)
    if config.backend != "auto":
        raise ImportError(f"the {config.backend} runtime is not installed "
                          f"({'; '.join(errors)}); {_LITERT_C_HINT}")
    raise ImportError(
        "no TFLite runtime found; install ai-edge-litert (or tflite-runtime on Python <= 3.11 "
        f"with numpy < 2), or {_LITERT_C_HINT}. Import errors: " + "; ".join(errors)
    )


def _litert_c(config: _Config) -> _Backend:
    from agent.runtimes import litert_capi  # ctypes only; never imports ai_edge_litert

    path = config.litert_lib
    if path is None:
        try:
            path = litert_capi.library_path()
        except litert_capi.LiteRtUnavailable as exc:
            raise ImportError(f"the {LITERT_C} runtime needs a libLiteRt.so and {exc}; "
                              f"{_LITERT_C_HINT}") from exc
    if not path.is_file():
        raise ImportError(f"--litert-lib {path}: no such file; download one from "
                          f"{LITERT_LIB_URL}")
    try:
        lib = litert_capi.load_library(path)
    except litert_capi.LiteRtUnavailable as exc:
        raise ImportError(f"--litert-lib {path}: not a usable LiteRT C API library: "
                          f"{_one_line(exc)}") from exc
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    # The digest keeps results from different library builds apart even under one label.
    version = f"{config.litert_version or 'unknown'} sha256:{digest}"
    return _Backend(LITERT_C_RUNTIME_NAME, version, None, lib)


def runtime_info() -> tuple[str, str]:
    """(runtime name, version) of the runtime in use, e.g. ``("ai-edge-litert", "2.3.0")``, or
    ``("litert-c-api", "2.3.1 sha256:0123456789ab")`` for a standalone library (its label, or
    "unknown", and the first 12 hex digits of the file's sha256).

    Raises ``ImportError`` when the configured runtime is not installed or will not load.
    """
    backend = _backend()
    return backend.name, backend.version


def load_delegate(module: ModuleType, path: str) -> Any:
    """An external delegate (a vendor's NPU/GPU ``.so``) by path; ``ModelError`` if it will
    not load, naming the path."""
    if not os.path.exists(path):
        raise ModelError(f"delegate library {path} does not exist")
    try:
        # Probe with ctypes first: the runtimes' Delegate raises from __del__ when its own
        # load fails, which would leak a second, confusing error.
        ctypes.CDLL(path)
    except OSError as exc:
        raise ModelError(f"cannot load delegate library {path}: {_one_line(exc)}") from exc
    try:
        return module.load_delegate(path)
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelError(f"cannot load delegate library {path}: {_one_line(exc)}") from exc


def load_interpreter(model_bytes: bytes, *, num_threads: int = 1, use_xnnpack: bool = False,
                     input_shapes: Sequence[Sequence[int]] | None = None,
                     delegate_path: str | None = None,
                     preserve_all_tensors: bool = False) -> Any:
    """An allocated ``Interpreter`` for ``model_bytes``.

    Without XNNPACK the op resolver is ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (plain builtin
    kernels, one per TFLite node); with it, ``BUILTIN`` (the default XNNPACK delegate applies).
    ``delegate_path`` names an external delegate library applied on top.
    ``preserve_all_tensors``: every inner tensor can be read after ``invoke`` (Python runtimes
    only).
    ``input_shapes``, if given, resizes the inputs (in model input order) before allocation,
    e.g. to pin dynamic batch dimensions (the litert-c runtime compiles the model at them
    directly). Load and allocation failures raise ``ModelError``.
    With the litert-c runtime this is an ``agent.runtimes.capi_interpreter.CApiInterpreter`` (the
    same
    methods), which cannot apply external delegates.
    """
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    backend = _backend()
    if backend.lib is not None:
        if preserve_all_tensors:
            raise ModelError(f"the {LITERT_C} runtime reaches only a model's inputs and "
                             "outputs, not its inner tensors")
        interpreter = _load_capi(backend.lib, model_bytes, num_threads, use_xnnpack,
                                 delegate_path, input_shapes)
    else:
        interpreter = _load_python(backend.module, model_bytes, num_threads, use_xnnpack,
                                   delegate_path, preserve_all_tensors)
    try:
        if input_shapes is not None:
            details = interpreter.get_input_details()
            if len(input_shapes) != len(details):
                raise ModelError(f"model has {len(details)} inputs, got {len(input_shapes)} "
                                 "input shapes")
            for detail, shape in zip(details, input_shapes, strict=True):
                interpreter.resize_tensor_input(detail["index"], [int(d) for d in shape],
                                                strict=False)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(
            f"the runtime could not allocate the model's tensors: {_one_line(exc)}"
        ) from exc
    return interpreter


def _load_python(module: Any, model_bytes: bytes, num_threads: int, use_xnnpack: bool,
                 delegate_path: str | None, preserve_all_tensors: bool = False) -> Any:
    resolver = module.OpResolverType
    resolver_type = (
        resolver.BUILTIN if use_xnnpack else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_QUIET_MODULES)
            delegates = [load_delegate(module, delegate_path)] if delegate_path else None
            return module.Interpreter(
                model_content=bytes(model_bytes),
                num_threads=num_threads,
                experimental_op_resolver_type=resolver_type,
                experimental_delegates=delegates,
                # Every inner tensor readable after invoke (memory is not reused): the values
                # that feed a layer which cannot run on its own come from here.
                experimental_preserve_all_tensors=preserve_all_tensors,
            )
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"the runtime could not load the model: {_one_line(exc)}") from exc


def _load_capi(lib: ctypes.CDLL, model_bytes: bytes, num_threads: int, use_xnnpack: bool,
               delegate_path: str | None,
               input_shapes: Sequence[Sequence[int]] | None = None) -> Any:
    if delegate_path:
        raise ModelError(f"external delegates need a Python runtime (ai-edge-litert or "
                         f"tflite-runtime): the {LITERT_C} runtime cannot load {delegate_path}")
    # Imported here: agent.runtimes.capi_interpreter imports joulefarm.tflite, which imports this
    # module.
    from agent.runtimes.capi_interpreter import CApiInterpreter
    from joulefarm.tflite.inputs import with_input_shapes

    if input_shapes is not None:
        # The C API compiles the model as it loads it: at the shapes it will run at, not at the
        # file's placeholders of dynamic dimensions, which it may not allocate (a convolution
        # wider than a placeholder of 1).
        model_bytes = with_input_shapes(model_bytes, input_shapes)

    # Without XNNPACK the CPU options ask for the plain builtin kernels, one per TFLite node,
    # as BUILTIN_WITHOUT_DEFAULT_DELEGATES does for the Python runtimes.
    return CApiInterpreter(lib, model_bytes, num_threads=num_threads, use_xnnpack=use_xnnpack)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
