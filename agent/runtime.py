"""One interface over the TFLite runtimes: ai-edge-litert (preferred) or tflite-runtime.

Both ship the same ``Interpreter`` class. We pick whichever imports, once, and create
interpreters through ``load_interpreter`` so that every caller gets the same op resolver choice:
without XNNPACK the plain builtin kernels run one TFLite node at a time, which is what per-layer
measurement needs; with XNNPACK the delegate fuses and re-partitions the graph.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from agent.models.errors import ModelError

# (distribution name, interpreter module), in order of preference.
_BACKENDS = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)
# Their Python code may warn about plugins or deprecations we cannot act on; pytest runs with
# warnings as errors, so keep those (and only those) quiet around import and construction.
_QUIET_MODULES = r"(ai_edge_litert|tflite_runtime)(\.|$)"


@functools.cache
def _backend() -> tuple[str, str, ModuleType]:
    errors = []
    for dist, module_name in _BACKENDS:
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
        return dist, version, module
    raise ImportError(
        "no TFLite runtime found; install ai-edge-litert (or tflite-runtime on Python <= 3.11 "
        "with numpy < 2). Import errors: " + "; ".join(errors)
    )


def runtime_info() -> tuple[str, str]:
    """(distribution name, version) of the runtime in use, e.g. ``("ai-edge-litert", "2.3.0")``.

    Raises ``ImportError`` when neither runtime is installed.
    """
    dist, version, _ = _backend()
    return dist, version


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
                     delegate_path: str | None = None) -> Any:
    """An allocated ``Interpreter`` for ``model_bytes``.

    Without XNNPACK the op resolver is ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (plain builtin
    kernels, one per TFLite node); with it, ``BUILTIN`` (the default XNNPACK delegate applies).
    ``delegate_path`` names an external delegate library applied on top.
    ``input_shapes``, if given, resizes the inputs (in model input order) before allocation,
    e.g. to pin dynamic batch dimensions. Load and allocation failures raise ``ModelError``.
    """
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    _, _, module = _backend()
    resolver = module.OpResolverType
    resolver_type = (
        resolver.BUILTIN if use_xnnpack else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_QUIET_MODULES)
            delegates = [load_delegate(module, delegate_path)] if delegate_path else None
            interpreter = module.Interpreter(
                model_content=bytes(model_bytes),
                num_threads=num_threads,
                experimental_op_resolver_type=resolver_type,
                experimental_delegates=delegates,
            )
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"the runtime could not load the model: {_one_line(exc)}") from exc
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
