"""The TFLite flatbuffer schema, imported from the runtime wheel that ships it.

ai-edge-litert carries ``schema_py_generated.py`` (the schema compiled with the object API, which
we need to rewrite models). We import it rather than vendor a copy so there is one schema in play.
"""

from __future__ import annotations

from types import ModuleType


def _load() -> ModuleType:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "agent.models needs the TFLite flatbuffer schema from the ai-edge-litert wheel "
            "(ai_edge_litert.schema_py_generated) and the flatbuffers package; "
            "install them with: pip install ai-edge-litert flatbuffers"
        ) from exc
    return schema_py_generated


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
