"""Predict a model's per-layer and total latency or energy on a device from an estimator
directory: ONNX files run by onnxruntime, plus ``manifest.json``.

Needs only onnxruntime, numpy and the model toolkit: no scikit-learn, no DuckDB (a test scans
this module's imports). Device features and embeddings come from the manifest, which stores
those of every training device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from controller.estimators.combine import Correction, whole_totals
from controller.estimators.errors import EstimatorError
from controller.estimators.features import (
    OTHER_OP,
    LayerDesc,
    cross_matrix,
    from_layer_info,
    kernel_key,
    layer_matrix,
    op_onehot_names,
)
from controller.estimators.intervals import Calibration
from controller.estimators.manifest import read_manifest
from controller.estimators.train_features import (
    PartDesc,
    feature_names,
    flops_work,
    step_descs,
    train_phases,
)
from joulefarm.tflite.parse import LayerInfo, read_layers

PREFERENCE: tuple[str, ...] = ("gp", "trees", "cross_hw", "flops")
"""Which estimator's total to headline when the manifest names none."""


@dataclass(frozen=True)
class ModelPrediction:
    """Predictions for one model on one device. Values in the target's unit (``unit``)."""

    device: str
    target: str
    unit: str
    layers: tuple[LayerDesc, ...]
    values: dict[str, np.ndarray]
    """Estimator -> per-layer prediction (median of each layer's estimate)."""
    gp_std: np.ndarray | None
    """Per-layer standard deviation of the GP estimate, in the target's unit."""
    gp_log_std: np.ndarray | None
    """Per-layer standard deviation of the GP estimate of ln(target)."""
    totals: dict[str, tuple[float, float | None]]
    """Estimator -> (whole-model prediction, standard deviation or None)."""
    preferred: str
    unseen_ops: tuple[str, ...] = ()
    """Ops of this model that no training sample had: priced by their op family's model,
    with a wider interval."""
    intervals: dict[str, tuple[float, float]] | None = None
    """Estimator -> (low, high) of its calibrated interval (``interval_level``) on the whole
    model; estimators without a calibration are absent."""
    interval_level: float = 0.0


class Estimator:
    """An estimator directory written by ``joulefarm fit``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.manifest: dict[str, Any] = read_manifest(self.directory)
        self.target: str = self.manifest["target"]
        self.unit: str = self.manifest["unit"]
        self.ops: list[str] = list(self.manifest["ops"])
        self.workload: str = self.manifest.get("workload", "inference")
        """``inference``, or ``train``: predicts a training step of a model's inference
        model, per layer and part (``train_features``)."""
        expected = feature_names(self.workload) + op_onehot_names(self.ops)
        if self.manifest["features"]["per_device_input"] != expected:
            raise EstimatorError(f"{self.directory}: fitted on another feature set than this "
                                 "joulefarm computes (an older version); refit it with "
                                 "`joulefarm fit`")
        self.correction = Correction.from_json(self.manifest["correction"])
        self.calibration = Calibration.from_json(self.manifest.get("interval"))
        self.new_device_calibration = Calibration.from_json(
            self.manifest.get("interval_new_device"))
        # Older estimators list no seen ops: every op of theirs with a model counts as seen.
        self.seen_ops: set[str] = set(self.manifest.get("seen_ops", self.ops))
        self._files: dict[tuple[str, str | None, str], str] = {
            (e["kind"], e.get("device"), e["op"]): e["file"] for e in self.manifest["estimators"]
        }
        self._sessions: dict[str, ort.InferenceSession] = {}

    @property
    def devices(self) -> list[str]:
        return sorted(self.manifest["devices"])

    def enrolled(self, device: str) -> bool:
        """Whether ``device`` was added by ``joulefarm enroll`` (reference runs only)."""
        return bool(self._device(device).get("enrolled"))

    def _device(self, name: str) -> dict[str, Any]:
        devices = self.manifest["devices"]
        if name not in devices:
            raise EstimatorError(f"unknown device {name!r} for this estimator (known: "
                                 f"{', '.join(sorted(devices)) or 'none'})")
        return devices[name]

    def _run(self, file: str, x: np.ndarray) -> list[np.ndarray]:
        session = self._sessions.get(file)
        if session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1  # small models: threads cost more than they give
            try:
                session = ort.InferenceSession(str(self.directory / file), options,
                                               providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own untyped errors
                raise EstimatorError(f"{self.directory / file}: cannot load: {e}") from e
            self._sessions[file] = session
        return session.run(None, {"features": np.ascontiguousarray(x, dtype=np.float64)})

    def _routed(self, kind: str, device: str | None, descs: tuple[LayerDesc, ...],
                x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
        """ln-space (mean, std or None) of one estimator kind, each layer sent to its op's
        model or to ``_OTHER``. None when that kind has no model here."""
        if (kind, device, OTHER_OP) not in self._files:
            return None
        mean = np.zeros(len(descs))
        std = np.zeros(len(descs)) if kind == "gp" else None
        keys = [kernel_key(d) if (kind, device, kernel_key(d)) in self._files else OTHER_OP
                for d in descs]
        for key in sorted(set(keys)):
            index = np.asarray([i for i, k in enumerate(keys) if k == key])
            outputs = self._run(self._files[(kind, device, key)], x[index])
            mean[index] = outputs[0]
            if std is not None and len(outputs) > 1:
                std[index] = outputs[1]
        return mean, std

    def predict_layers(self, descs: tuple[LayerDesc, ...] | list[LayerDesc], device: str
                       ) -> ModelPrediction:
        """Predictions for layers already described (see ``features.from_layer_info``)."""
        descs = tuple(descs)
        info = self._device(device)
        if not descs:
            raise EstimatorError("the model has no layers to predict")
        x = layer_matrix(descs, self.ops)
        values: dict[str, np.ndarray] = {}
        gp_log_std = None
        for kind in ("gp", "trees"):
            routed = self._routed(kind, device, descs, x)
            if routed is not None:
                values[kind] = np.exp(routed[0])
                if kind == "gp":
                    gp_log_std = routed[1]
        block = info.get("device_block")
        if block is not None:
            routed = self._routed("cross_hw", None, descs,
                                  cross_matrix(x, np.asarray(block, dtype=np.float64)))
            if routed is not None:
                values["cross_hw"] = np.exp(routed[0] + float(info["scale"]))
        ratio = info.get("flops_ratio")
        if ratio is not None and np.isfinite(ratio):
            values["flops"] = ratio * flops_work(descs)
        correction = (Correction.from_json(info["correction"]) if info.get("correction")
                      else self.correction)
        totals = whole_totals(values, gp_log_std, correction, len(descs))
        gp_std = None
        if gp_log_std is not None and "gp" in values:
            gp_std = np.sqrt(np.expm1(gp_log_std ** 2)) * values["gp"] * np.exp(
                gp_log_std ** 2 / 2)
        preferred = self.manifest.get("preferred") or next(
            (k for k in PREFERENCE if k in totals), "flops")
        calibration = self.calibration
        if info.get("enrolled"):  # measured on the reference set only: see enroll.py
            preferred, calibration = "cross_hw", self.new_device_calibration
        unseen = np.asarray([d.op not in self.seen_ops for d in descs], dtype=bool)
        intervals = {}
        for name, (total, std) in totals.items():
            share = (float(values[name][unseen].sum() / values[name].sum())
                     if unseen.any() and values[name].sum() > 0 else 0.0)
            bounds = calibration.interval(name, total, (std or 0.0) / total if total > 0
                                               else 0.0, share)
            if bounds is not None:
                intervals[name] = bounds
        return ModelPrediction(device, self.target, self.unit, descs, values, gp_std,
                               gp_log_std, totals,
                               preferred if preferred in totals else next(iter(totals)),
                               tuple(sorted({d.op for d, u in zip(descs, unseen, strict=True)
                                             if u})),
                               intervals, calibration.level)

    def describe(self, model_bytes: bytes, infos: list[LayerInfo] | None = None
                 ) -> tuple[LayerDesc, ...]:
        """What this estimator predicts of a .tflite model: its layers (``infos``, by
        default those the file states); for a train estimator, each part of a training step
        of it, made trainable with the manifest's optimizer and loss to know which parts each
        layer has. ``EstimatorError`` for a model that cannot be made trainable."""
        infos = read_layers(model_bytes) if infos is None else infos
        descs = [from_layer_info(i) for i in infos]
        if self.workload != "train":
            return tuple(descs)
        train = self.manifest.get("train") or {}
        try:
            phases = train_phases(model_bytes, str(train.get("loss", "mse")),
                                  str(train.get("optimizer", "adam")))
        except (ValueError, KeyError) as e:
            raise EstimatorError(f"cannot be made trainable, so no training step to predict: "
                                 f"{e}") from e
        return step_descs([(i.index, d) for i, d in zip(infos, descs, strict=True)], phases)

    def predict(self, model_bytes: bytes, device: str) -> ModelPrediction:
        """Predictions for every layer of a .tflite model and for the whole model (a train
        estimator: every part of one training step, and the step)."""
        return self.predict_layers(self.describe(model_bytes), device)


def part_table(prediction: ModelPrediction, estimator: str
               ) -> list[tuple[int | None, str, dict[str, float]]]:
    """A train prediction per layer: (index, op, {part: value}) of ``estimator``, in layer
    order, the step's model-wide work (index None) last."""
    rows: dict[int | None, tuple[str, dict[str, float]]] = {}
    for desc, value in zip(prediction.layers, prediction.values[estimator], strict=True):
        if isinstance(desc, PartDesc):
            op, parts = rows.setdefault(desc.layer_index, (desc.op, {}))
            parts[desc.part] = parts.get(desc.part, 0.0) + float(value)
    return [(index, op, parts) for index, (op, parts) in rows.items()]
