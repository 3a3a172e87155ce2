"""A joulefarm trainable model as if converted elsewhere: a ``train`` signature, none of
joulefarm's training metadata (tests/fixtures/models/tf_trainable holds models TensorFlow's
converter really wrote)."""

from __future__ import annotations

from joulefarm.tflite.flatbuffer import decode_name, pack_model, unpack_model
from joulefarm.tflite.training.phases import METADATA_NAME


def without_training_metadata(model_bytes: bytes) -> bytes:
    """The model without the metadata entry that tags its ops with layers and phases."""
    tree = unpack_model(model_bytes)
    tree.metadata = [m for m in tree.metadata or [] if decode_name(m.name) != METADATA_NAME]
    return pack_model(tree)
