"""Trainable models as a user would bring them from elsewhere (TensorFlow's converter): a
``train`` signature, but none of joulefarm's training metadata, and sometimes an op the
runtime does not have built in."""

from __future__ import annotations

from joulefarm.tflite.flatbuffer import decode_name, pack_model, unpack_model
from joulefarm.tflite.training.phases import METADATA_NAME

CUSTOM = 32  # BuiltinOperator.CUSTOM


def without_training_metadata(model_bytes: bytes) -> bytes:
    """The model without the metadata entry that tags its ops with layers and phases."""
    tree = unpack_model(model_bytes)
    tree.metadata = [m for m in tree.metadata or [] if decode_name(m.name) != METADATA_NAME]
    return pack_model(tree)


def with_custom_train_op(model_bytes: bytes, name: str) -> bytes:
    """The model with the last op of its ``train`` subgraph turned into custom op ``name``
    (as a converter emits an op TFLite lacks, e.g. a Flex op)."""
    tree = unpack_model(model_bytes)
    keys = [decode_name(s.signatureKey) for s in tree.signatureDefs]
    train = tree.signatureDefs[keys.index("train")].subgraphIndex
    code = tree.operatorCodes[tree.subgraphs[train].operators[-1].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = CUSTOM
    code.customCode = name
    return pack_model(tree)
