"""A training step as layer samples: each (layer, part) of the step is described by the layer's
inference features plus the part, so the per-op models, the correction, validation, intervals
and the ONNX export of the inference estimators apply to ``--workload train`` unchanged.

Numpy and the model toolkit only: ``predict.py`` imports this module.

- A **part** is one of ``PARTS``: ``forward``, ``backward`` (the phases
  backward-activation, backward-input and backward-weights of
  ``joulefarm.results.TRAIN_PHASE_GROUPS``) and ``update`` of a layer; ``other`` is the step's
  model-wide work (layer NULL in ``phase_measurements``: the loss and its gradient, the
  optimizer's per-step scalars, the variables' init check), described as one pseudo-layer
  ``STEP`` whose features are the model's output (what the loss reads) and its weights.
- A ``PartDesc`` is a ``LayerDesc`` with the part and two flags (the layer's backward computes
  an input gradient; it computes weight gradients). Its kernel key is ``OP|part``: every op and
  part gets its own Gaussian process and trees where it has ``MIN_OP_SAMPLES`` layers, THOR's
  per-layer-type models, one per phase.
- The FLOPs baseline's proxy, training = 3 x forward MACs, is spread over the parts by
  ``flops_weight``: 1 x MACs on forward, 2 x on backward (3 x on forward where the layer has no
  backward), nothing on update or the step's model-wide work. A model's sum is 3 x its forward
  MACs exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from controller.estimators.features import LAYER_FEATURES, LayerDesc, _layer_vector, elem_bytes
from joulefarm.results import TRAIN_PHASE_GROUPS
from joulefarm.tflite.ops import elements

WORKLOADS: tuple[str, ...] = ("inference", "train")
PARTS: tuple[str, ...] = ("forward", "backward", "update", "other")
STEP_OP = "STEP"
"""The op name of the step's model-wide pseudo-layer (part ``other``)."""

TRAIN_FEATURES: tuple[tuple[str, str, str], ...] = (
    *((f"part={p}", "0/1", f"the sample is the layer's {p} part of the training step"
       + (" (model-wide work: loss, optimizer scalars)" if p == "other" else ""))
      for p in PARTS),
    ("input_gradient", "0/1", "the layer's backward computes the gradient of its input "
                              "(phase backward-input: not the first layer)"),
    ("weight_gradient", "0/1", "the layer's backward computes weight gradients "
                               "(phase backward-weights: a trainable layer)"),
)
"""Columns a train sample adds after ``LAYER_FEATURES`` (and before the op one-hot)."""

FORWARD_MAC_MULTIPLE = 3.0
"""The FLOPs baseline's proxy: a training step costs this many times the forward MACs."""


def part_of(phase: str) -> str:
    """The part of a stored phase (``TRAIN_PHASE_GROUPS``; anything else is ``other``)."""
    for part, phases in TRAIN_PHASE_GROUPS.items():
        if phase in phases:
            return part
    return "other"


def feature_names(workload: str) -> list[str]:
    """The layer feature names of a workload, in vector order (before the op one-hot)."""
    names = [n for n, _, _ in LAYER_FEATURES]
    return names + [n for n, _, _ in TRAIN_FEATURES] if workload == "train" else names


@dataclass(frozen=True)
class PartDesc(LayerDesc):
    """One part of one layer of a training step: the layer's (inference) description, at the
    step's batch, and what the part is."""

    part: str
    layer_index: int | None
    """The layer's index in the inference model; None for the step's model-wide work."""
    input_gradient: bool
    weight_gradient: bool
    flops_weight: float
    """Multiple of ``macs`` the FLOPs baseline puts on this part (see the module docstring)."""

    @functools.cached_property
    def kernel(self) -> str:
        base = f"{self.op}:int8" if self.op != STEP_OP and elem_bytes(self) <= 1.0 else self.op
        return f"{base}|{self.part}"

    @functools.cached_property
    def vector(self) -> np.ndarray:
        extra = [1.0 if self.part == p else 0.0 for p in PARTS]
        extra += [float(self.input_gradient), float(self.weight_gradient)]
        values = np.concatenate([_layer_vector(self), np.asarray(extra, dtype=np.float64)])
        values.flags.writeable = False
        return values


def flops_work(descs: Sequence[LayerDesc]) -> np.ndarray:
    """What the FLOPs baseline multiplies by its ratio, per layer: MACs (at least 1) of an
    inference layer, ``flops_weight`` x MACs of a training part."""
    return np.asarray([d.flops_weight * d.macs if isinstance(d, PartDesc) else max(d.macs, 1)
                       for d in descs], dtype=np.float64)


def step_desc(layers: Sequence[LayerDesc]) -> LayerDesc:
    """The model-wide pseudo-layer's description: its input is the model's output (what the
    loss reads; ``macs`` its element count), its parameters all the model's weights."""
    last = layers[-1]
    out_shapes = last.output_shapes or ((1,),)
    out_elements = sum(elements(s) for s in out_shapes)
    return LayerDesc(STEP_OP, int(out_elements), sum(d.param_bytes for d in layers),
                     int(last.act_out_bytes), 4, tuple(out_shapes), ((1,),))


def step_descs(layers: Sequence[tuple[int, LayerDesc]],
               phases: Mapping[int | None, Collection[str]]) -> tuple[PartDesc, ...]:
    """Every part of a training step: for each layer (index, inference description), one
    ``PartDesc`` per part its ``phases`` (stored phase names, by layer index; None the
    model-wide ones) hold, in layer order, then the model-wide one if any."""
    out: list[PartDesc] = []
    for index, desc in layers:
        present = set(phases.get(index, ()))
        parts = {part_of(p) for p in present} - {"other"}
        input_gradient = "backward-input" in present
        weight_gradient = "backward-weights" in present
        for part in PARTS[:3]:
            if part not in parts:
                continue
            weight = {"forward": 1.0 if "backward" in parts else FORWARD_MAC_MULTIPLE,
                      "backward": FORWARD_MAC_MULTIPLE - 1.0}.get(part, 0.0)
            out.append(_part(desc, part, index, input_gradient, weight_gradient, weight))
    if phases.get(None) and layers:
        out.append(_part(step_desc([d for _, d in layers]), "other", None, False, False, 0.0))
    return tuple(out)


def _part(desc: LayerDesc, part: str, index: int | None, input_gradient: bool,
          weight_gradient: bool, weight: float) -> PartDesc:
    return PartDesc(desc.op, desc.macs, desc.param_bytes, desc.act_in_bytes, desc.act_out_bytes,
                    desc.input_shapes, desc.output_shapes, part, index, input_gradient,
                    weight_gradient, weight)


def train_phases(inference_model: bytes, loss: str, optimizer: str
                 ) -> dict[int | None, set[str]]:
    """Layer index (None: model-wide) -> the phases of the training step that
    ``joulefarm.tflite.training`` makes of ``inference_model`` with ``loss`` and
    ``optimizer``. ``ValueError`` for a model it cannot make trainable."""
    from joulefarm.tflite.training import trainable_from_model, training_info

    info = training_info(trainable_from_model(inference_model, loss=loss, optimizer=optimizer))
    phases: dict[int | None, set[str]] = {}
    for tag in info.ops("train"):
        phases.setdefault(tag.layer, set()).add(tag.phase)
    return phases
