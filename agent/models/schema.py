"""The TFLite flatbuffer schema, loaded from the runtime wheel that ships it.

ai-edge-litert carries ``schema_py_generated.py`` (the schema compiled with the object API, which
we need to rewrite models). We load it rather than vendor a copy so there is one schema in play.
A device without that wheel (Android, which runs the LiteRT C library) gets the controller's
copy of the file from provisioning, named by ``$JOULEFARM_TFLITE_SCHEMA``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

_MODULE_NAME = "agent.models._tflite_schema"
SCHEMA_ENV = "JOULEFARM_TFLITE_SCHEMA"


def schema_file() -> Path | None:
    """Where ``schema_py_generated.py`` is: ``$JOULEFARM_TFLITE_SCHEMA``, else inside the
    installed ai-edge-litert package (found without importing it), else None."""
    given = os.environ.get(SCHEMA_ENV)
    if given:
        return Path(given)
    spec = importlib.util.find_spec("ai_edge_litert")
    for folder in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "schema_py_generated.py"
        if path.is_file():
            return path
    return None


def _load() -> ModuleType:
    # By file, not ``import ai_edge_litert.schema_py_generated``: importing the package runs its
    # __init__, which dlopens the wheel's libLiteRt.so into the global symbol scope. The
    # litert-c runtime (agent.runtime) loads a standalone libLiteRt.so and must not get a second
    # copy behind it; find_spec of a top-level name locates the package without importing it.
    path = schema_file()
    file_spec = (importlib.util.spec_from_file_location(_MODULE_NAME, path)
                 if path is not None and path.is_file() else None)
    if path is None or file_spec is None or file_spec.loader is None:
        where = f"{SCHEMA_ENV}={path} is not a file; " if path is not None else ""
        raise ImportError(
            f"agent.models needs the TFLite flatbuffer schema: {where}install ai-edge-litert "
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


tfl: ModuleType = _load()
"""The generated schema module (``ModelT``, ``BuiltinOperator``, ``TensorType``, ...)."""

FILE_IDENTIFIER = b"TFL3"
"""The 4-byte flatbuffer file identifier of TFLite models (bytes 4..8 of the file)."""

# Reverse maps of the generated enum classes, built once: code -> name.
OP_NAMES: dict[int, str] = {
    v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")
}
OP_CODES: dict[str, int] = {name: code for code, name in OP_NAMES.items()}
TENSOR_TYPE_NAMES: dict[int, str] = {
    v: k for k, v in vars(tfl.TensorType).items() if not k.startswith("_")
}
ACTIVATION_NAMES: dict[int, str] = {
    v: k for k, v in vars(tfl.ActivationFunctionType).items() if not k.startswith("_")
}
PADDING_NAMES: dict[int, str] = {
    v: k for k, v in vars(tfl.Padding).items() if not k.startswith("_")
}
