"""A suite's ``[train]`` table: how train mode makes its models trainable.

    [measure]
    mode = "train"

    [train]
    optimizer = "adam"               # sgd | adam (their default settings)
    loss = "softmax_cross_entropy"   # mse (the default: fits any output) | softmax_cross_entropy
    batch_size = 8                   # optional: generated models are rebuilt at this batch
    trainable_layers = 2             # optional: only the last 2 layers with weights train
    prefixes = true                  # optional: also THOR's prefixes, for the subtraction method

Each model of the suite is made trainable before it is uploaded
(``joulefarm.tflite.training.trainable_from_model``): a model that has a ``train`` signature
already (converted elsewhere, or written by ``joulefarm.tflite.training``) is measured as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from joulefarm.errors import ModelError

if TYPE_CHECKING:
    from joulefarm.tflite.parse import LayerInfo

# The model toolkit (numpy and the flatbuffer schema) is imported where a model is made: the
# suite checker imports this module, and `joulefarm --help` must start without numpy.

TRAIN_KEYS = ("optimizer", "loss", "batch_size", "trainable_layers", "prefixes")
PREFIX_SEPARATOR = "/prefix-"
"""``NAME/prefix-K``: the model of NAME's first K layers (K = 0: none, the step's fixed work)."""
OPTIMIZERS = ("sgd", "adam")
LOSSES = ("mse", "softmax_cross_entropy")
MAX_BATCH_SIZE = 4096
"""A batch beyond this is a typo: the step's activations would not fit a device's memory."""
MAX_LAYERS = 100_000


@dataclass(frozen=True)
class TrainSpec:
    optimizer: str = "adam"
    loss: str = "mse"
    batch_size: int | None = None
    """None: the model's own batch."""
    trainable_layers: int | None = None
    """None: every layer with weights trains; N: the last N of them, the rest frozen."""
    prefixes: bool = False
    """Also measure each model's trainable prefixes (``NAME/prefix-0`` .. ``NAME/prefix-N``,
    MSE, every layer with weights training): THOR's subtraction method, for a meter too slow
    for single ops (``controller.train_prefixes``)."""

    def describe(self) -> str:
        parts = [self.optimizer, self.loss]
        if self.batch_size is not None:
            parts.append(f"batch {self.batch_size}")
        if self.trainable_layers is not None:
            parts.append(f"last {self.trainable_layers} layers trainable")
        return "trainable: " + ", ".join(parts)


def has_train_signature(model_bytes: bytes) -> bool:
    from joulefarm.tflite.flatbuffer import decode_name, unpack_model

    model = unpack_model(model_bytes)
    return any(decode_name(s.signatureKey) == "train" for s in model.signatureDefs or [])


@dataclass(frozen=True)
class Trainable:
    content: bytes
    made: str
    """What was done to the model, for its stored source."""
    layers: tuple[LayerInfo, ...] | None
    """The static features of the inference model it was made from (at the step's batch),
    indexed as the training phases' layers; None for a model that came trainable."""


def make_trainable(content: bytes, spec: TrainSpec) -> Trainable:
    """The model train mode measures: a model with a ``train`` signature as it is; an
    inference model rebuilt at ``spec.batch_size`` and made trainable. ``ModelError`` (its
    message says why) for a model that cannot be."""
    if has_train_signature(content):
        return Trainable(content, "train signature of the model", None)
    from joulefarm.tflite.parse import read_layers
    from joulefarm.tflite.rebatch import rebatch
    from joulefarm.tflite.training import trainable_from_model
    from joulefarm.tflite.training.source import SourceModel

    if spec.batch_size is not None:
        content = rebatch(content, spec.batch_size)
    trainable = None
    if spec.trainable_layers is not None:
        source = SourceModel(content)
        with_weights = [n.index for n in source.nodes if source.weights(n)]
        if spec.trainable_layers > len(with_weights):
            raise ModelError(f"trainable_layers = {spec.trainable_layers}, but the model has "
                             f"{len(with_weights)} layers with weights")
        trainable = with_weights[len(with_weights) - spec.trainable_layers:]
    try:
        made = trainable_from_model(content, loss=spec.loss, optimizer=spec.optimizer,
                                    trainable=trainable)
    except ValueError as e:
        raise ModelError(f"cannot be made trainable: {e}") from e
    return Trainable(made, spec.describe(), tuple(read_layers(content)))


def prefix_name(model: str, k: int) -> str:
    return f"{model}{PREFIX_SEPARATOR}{k}"


def make_prefixes(content: bytes, spec: TrainSpec) -> list[tuple[int, Trainable]]:
    """(k, trainable prefix k) for k = 0..n of an inference model, at ``spec.batch_size``
    (``joulefarm.tflite.training.prefixes``); ``ModelError`` for a model that has a train
    signature already (its layers cannot be cut) or that cannot be made trainable."""
    if has_train_signature(content):
        raise ModelError("prefixes are cut from an inference model; this one trains already")
    from joulefarm.tflite.parse import read_layers
    from joulefarm.tflite.rebatch import rebatch
    from joulefarm.tflite.training.prefixes import (
        PREFIX_LOSS,
        baseline_model,
        prefix_model,
        trainable_prefixes,
    )

    if spec.batch_size is not None:
        content = rebatch(content, spec.batch_size)
    try:
        made = [(0, baseline_model(content, optimizer=spec.optimizer)),
                *trainable_prefixes(content, optimizer=spec.optimizer)]
    except ValueError as e:
        raise ModelError(f"cannot be made trainable: {e}") from e
    how = f"trainable prefix: {spec.optimizer}, {PREFIX_LOSS}"
    return [(k, Trainable(model, f"{how}, first {k} layers",
                          tuple(read_layers(prefix_model(content, k))) if k else None))
            for k, model in made]
