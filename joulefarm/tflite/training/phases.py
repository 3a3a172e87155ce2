"""Which layer and phase each operator of a trainable model belongs to, kept in the model.

The measuring side profiles the ``train`` signature per op and attributes each event to a
layer and a phase (``writer.PHASES``). The model carries that mapping as a metadata entry
(``METADATA_NAME``, JSON), so that a model file alone is enough to read it back:
``training_info(model_bytes).ops("train")[i]`` is the ``OpTag`` of op ``i`` of the subgraph
that the ``train`` signature runs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from joulefarm.errors import ModelError
from joulefarm.tflite.flatbuffer import unpack_model
from joulefarm.tflite.training.writer import PHASES, OpTag

METADATA_NAME = "joulefarm.training"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SignatureOps:
    """One signature's subgraph and the tag of each of its operators, by op index."""

    subgraph: int
    tags: tuple[OpTag, ...]


@dataclass(frozen=True)
class TrainingInfo:
    """What a trainable model says about itself."""

    loss: str
    optimizer: Mapping[str, Any]
    batch_size: int
    layers: tuple[str, ...]
    """The op of each layer (node of the inference model it was made from)."""
    trainable: frozenset[int]
    """Layers whose weights the ``train`` signature updates."""
    variables: tuple[str, ...]
    """The weights' variable names (``"<layer>/<weights|filter|bias>"``), as the ``weights``
    signature names its outputs."""
    signatures: Mapping[str, SignatureOps]

    def ops(self, signature: str = "train") -> tuple[OpTag, ...]:
        """The tag of every operator of ``signature``'s subgraph, by op index."""
        if signature not in self.signatures:
            raise KeyError(f"no signature {signature!r}; the model has "
                           f"{sorted(self.signatures)}")
        return self.signatures[signature].tags

    def layer_ops(self, layer: int, phase: str, signature: str = "train") -> list[int]:
        """Op indices of ``signature`` that belong to ``layer`` in ``phase``."""
        return [i for i, tag in enumerate(self.ops(signature))
                if tag.layer == layer and tag.phase == phase]


def encode(info: TrainingInfo) -> bytes:
    data = {
        "format": FORMAT_VERSION,
        "loss": info.loss,
        "optimizer": dict(info.optimizer),
        "batch_size": info.batch_size,
        "layers": list(info.layers),
        "trainable": sorted(info.trainable),
        "variables": list(info.variables),
        "signatures": {key: {"subgraph": ops.subgraph,
                             "ops": [[tag.layer, tag.phase] for tag in ops.tags]}
                       for key, ops in info.signatures.items()},
    }
    return json.dumps(data, separators=(",", ":")).encode()


def decode(raw: bytes) -> TrainingInfo:
    data = json.loads(raw)
    if data.get("format") != FORMAT_VERSION:
        raise ModelError(f"training metadata of format {data.get('format')!r}, this joulefarm "
                         f"reads {FORMAT_VERSION}")
    signatures = {}
    for key, entry in data["signatures"].items():
        tags = tuple(OpTag(_layer(layer), _phase(phase)) for layer, phase in entry["ops"])
        signatures[key] = SignatureOps(int(entry["subgraph"]), tags)
    return TrainingInfo(str(data["loss"]), dict(data["optimizer"]), int(data["batch_size"]),
                        tuple(data["layers"]), frozenset(int(i) for i in data["trainable"]),
                        tuple(data["variables"]), signatures)


def _layer(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _phase(value: object) -> str:
    if value not in PHASES:
        raise ModelError(f"training metadata names an unknown phase {value!r}")
    return str(value)


def training_info(model_bytes: bytes) -> TrainingInfo:
    """The training metadata of a model ``trainable_model`` wrote (``ModelError`` if none)."""
    model = unpack_model(model_bytes)
    for entry in model.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_NAME:
            data = model.buffers[entry.buffer].data
            return decode(np.asarray(data, np.uint8).tobytes())
    raise ModelError(f"the model has no {METADATA_NAME!r} metadata: not a trainable model "
                     "joulefarm wrote")


def signature_ops(subgraph: int, tags: Sequence[OpTag]) -> SignatureOps:
    return SignatureOps(subgraph, tuple(tags))
