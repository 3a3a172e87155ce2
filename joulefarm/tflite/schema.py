"""The TFLite flatbuffer schema, loaded on first use from the runtime wheel that ships it.

ai-edge-litert carries ``schema_py_generated.py`` (the schema compiled with the object API, which
we need to rewrite models). We load it rather than vendor a copy so there is one schema in play.
A device without that wheel (Android, which runs the LiteRT C library) gets the controller's
copy of the file from provisioning, named by ``$JOULEFARM_TFLITE_SCHEMA``.

Nothing is loaded at import: ``tfl`` finds the file at its first attribute access, so every
module of the library imports without a TFLite wheel, and only reading or writing a model needs
the schema (the error then says where to get it).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from joulefarm.errors import JoulefarmError

_MODULE_NAME = "joulefarm.tflite._tflite_schema"
SCHEMA_ENV = "JOULEFARM_TFLITE_SCHEMA"


class SchemaUnavailableError(JoulefarmError, ImportError):
    """The TFLite schema module cannot be found (no ai-edge-litert wheel, no
    ``$JOULEFARM_TFLITE_SCHEMA``): models cannot be read or written here."""


def schema_file() -> Path | None:
    """Where ``schema_py_generated.py`` is: ``$JOULEFARM_TFLITE_SCHEMA``, else inside the
    installed ai-edge-litert package (found without importing it), else None."""
    given = os.environ.get(SCHEMA_ENV)
    if given:
        return Path(given)
    try:
        spec = importlib.util.find_spec("ai_edge_litert")
    except (ImportError, ValueError):  # a broken or half-removed installation: none here
        spec = None
    for folder in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "schema_py_generated.py"
        if path.is_file():
            return path
    return None


@functools.cache
def _load() -> ModuleType:
    # By file, not ``import ai_edge_litert.schema_py_generated``: importing the package runs its
    # __init__, which dlopens the wheel's libLiteRt.so into the global symbol scope. The
    # litert-c runtime (agent.runtimes.backend) loads a standalone libLiteRt.so and must not get a
    # second
    # copy behind it; find_spec of a top-level name locates the package without importing it.
    path = schema_file()
    file_spec = (importlib.util.spec_from_file_location(_MODULE_NAME, path)
                 if path is not None and path.is_file() else None)
    if path is None or file_spec is None or file_spec.loader is None:
        where = f"{SCHEMA_ENV}={path} is not a file; " if path is not None else ""
        raise SchemaUnavailableError(
            f"joulefarm.tflite needs the TFLite flatbuffer schema: {where}install ai-edge-litert "
            "(it ships ai_edge_litert/schema_py_generated.py) and flatbuffers, or point "
            f"{SCHEMA_ENV} at a copy of that file")
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[_MODULE_NAME] = module
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    return module


class _Schema:
    """The generated schema module, loaded at the first attribute access."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_load(), name)


tfl: Any = _Schema()
"""The generated schema module (``ModelT``, ``BuiltinOperator``, ``TensorType``, ...)."""

FILE_IDENTIFIER = b"TFL3"
"""The 4-byte flatbuffer file identifier of TFLite models (bytes 4..8 of the file)."""


def _names(enum_class: str) -> dict[int, str]:
    return {v: k for k, v in vars(getattr(tfl, enum_class)).items() if not k.startswith("_")}


@functools.cache
def op_names() -> dict[int, str]:
    """Builtin operator code -> name (``3`` -> ``"CONV_2D"``)."""
    return _names("BuiltinOperator")


@functools.cache
def op_codes() -> dict[str, int]:
    """Builtin operator name -> code."""
    return {name: code for code, name in op_names().items()}


@functools.cache
def tensor_type_names() -> dict[int, str]:
    return _names("TensorType")


@functools.cache
def activation_names() -> dict[int, str]:
    return _names("ActivationFunctionType")


@functools.cache
def padding_names() -> dict[int, str]:
    return _names("Padding")
