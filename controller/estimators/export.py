"""``joulefarm fit``: fit a target's estimators on a results database, validate them, and write
an estimator directory:

    manifest.json            feature names/order/units, target and unit, devices (facts,
                             embeddings, baselines), training data hash, library versions,
                             the correction, every file's role, the validation table
    trees-DEVICE-OP.onnx     per device and op type (``_OTHER`` serves the rest)
    gp-DEVICE-OP.onnx        same, Gaussian process (outputs log_mean and log_std)
    cross_hw-OP.onnx         cross-hardware, input = per-device input + device block
    metrics.csv, metrics.md  the validation table

ONNX rather than pickles: pickles break across scikit-learn versions and run code on load.
"""

from __future__ import annotations

import csv
import math
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx

from controller.estimators.dataset import TARGETS, Dataset, load_dataset
from controller.estimators.errors import EstimatorError
from controller.estimators.features import (
    DEVICE_FEATURES,
    LAYER_FEATURES,
    OTHER_OP,
    device_feature_names,
    op_onehot_names,
)
from controller.estimators.intervals import Calibration, calibrate
from controller.estimators.manifest import (
    METRICS_CSV,
    METRICS_MD,
    UNCERTAINTY_NOTE,
    slug,
    write_manifest,
)
from controller.estimators.models import FittedEstimator, fit_estimator, gp_kernels
from controller.estimators.onnx_graphs import IR_VERSION, OPSETS, gp_model_proto, tree_model_proto
from controller.estimators.train_dataset import (
    TrainDataset,
    flops_gap,
    load_train_dataset,
    part_ratios,
)
from controller.estimators.train_features import (
    FORWARD_MAC_MULTIPLE,
    PARTS,
    TRAIN_FEATURES,
    WORKLOADS,
    feature_names,
)
from controller.estimators.validation import (
    DEFAULT_SCHEMES,
    TABLE_COLUMNS,
    MetricRow,
    full_fit,
    preferred_estimator,
    run_validation,
)

LIBRARIES = ("numpy", "scipy", "scikit-learn", "onnx", "onnxruntime", "duckdb", "joulefarm")


@dataclass(frozen=True)
class FitResult:
    directory: Path
    estimator: FittedEstimator
    metrics: list[MetricRow]
    files: list[str]


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _energy_source(dataset: Dataset, target: str) -> str:
    if target != "energy":
        return "n/a"
    flags = {s.simulated for s in dataset.layers} | {w.simulated for w in dataset.wholes}
    if flags == {True}:
        return "simulated"
    return "measured" if flags == {False} else "mixed (simulated and measured)"


def _write(directory: Path, name: str, proto: onnx.ModelProto) -> str:
    (directory / name).write_bytes(proto.SerializeToString())
    return name


def write_models(est: FittedEstimator, directory: Path) -> tuple[list[dict[str, Any]], int, int]:
    """One ONNX file per model; returns (manifest entries, per-device width, cross width)."""
    per_device_width = len(feature_names(est.workload)) + len(est.ops) + 1
    cross_width = per_device_width + len(DEVICE_FEATURES) + len(est.platforms) + len(
        est.reference)
    entries: list[dict[str, Any]] = []
    used: set[str] = set()

    def unique(name: str) -> str:
        stem, n = name, 1
        while name in used:
            n += 1
            name = f"{stem[:-5]}-{n}.onnx"
        used.add(name)
        return name

    for device, models in sorted(est.per_device.items()):
        for op, m in sorted(models.items()):
            doc = f"joulefarm {est.target} estimator, device {device}, op {op}"
            name = unique(f"trees-{slug(device)}-{slug(op)}.onnx")
            _write(directory, name, tree_model_proto(m.trees, per_device_width, doc))
            entries.append({"kind": "trees", "device": device, "op": op, "file": name,
                            "input": "per_device_input", "outputs": ["log_mean"],
                            "n_train": m.n_train})
            if m.gp is not None:
                name = unique(f"gp-{slug(device)}-{slug(op)}.onnx")
                _write(directory, name, gp_model_proto(m.gp, per_device_width, doc))
                entries.append({"kind": "gp", "device": device, "op": op, "file": name,
                                "input": "per_device_input", "outputs": ["log_mean", "log_std"],
                                "n_train": m.n_train})
    for op, model in sorted(est.cross_hw.items()):
        name = unique(f"cross_hw-{slug(op)}.onnx")
        _write(directory, name, tree_model_proto(model, cross_width,
                                                 f"joulefarm {est.target} cross-hardware, {op}"))
        entries.append({"kind": "cross_hw", "device": None, "op": op, "file": name,
                        "input": "cross_hw_input", "outputs": ["log_mean"],
                        "note": "add the device's scale to log_mean"})
    return entries, per_device_width, cross_width


def _float(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def build_manifest(est: FittedEstimator, dataset: Dataset, entries: list[dict[str, Any]],
                   metrics: list[MetricRow], db_path: str,
                   calibration: Calibration | None = None,
                   new_device: Calibration | None = None) -> dict[str, Any]:
    per_device_input = feature_names(est.workload) + op_onehot_names(est.ops)
    layer_features = LAYER_FEATURES + (TRAIN_FEATURES if est.workload == "train" else ())
    devices: dict[str, Any] = {}
    for name in sorted(est.per_device):
        info = dataset.devices.get(name)
        block = est.device_blocks.get(name)
        devices[name] = {
            "platform": info.platform if info else None,
            "cpu_max_khz": info.cpu_max_khz if info else None,
            "cpu_count": info.cpu_count if info else None,
            "memory_bytes": info.memory_bytes if info else None,
            "simulated_meter": info.simulated_meter if info else None,
            "device_block": None if block is None else [float(v) for v in block],
            "scale": _float(est.device_scales.get(name)),
            "flops_ratio": _float(est.flops_ratio.get(name)),
            "flops_ratio_unit": f"{TARGETS[est.target][1]}/MAC",
            "power_w": _float(est.power_w.get(name)),
            "correction": (est.device_corrections[name].to_json()
                           if name in est.device_corrections else None),
        }
    return {
        "target": est.target,
        "workload": est.workload,
        "train": _train_section(est, dataset) if est.workload == "train" else None,
        "unit": TARGETS[est.target][1],
        "energy_source": _energy_source(dataset, est.target),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": db_path,
        "training_data_sha256": dataset.data_hash(),
        "training_layers": est.n_layers,
        "training_whole_models": len(dataset.wholes),
        "excluded": {"unusable": dataset.unusable,
                     "energy_only_unusable": dataset.energy_only_unusable,
                     "no_features": dataset.no_features,
                     "note": "measurements left out by their flags (docs/flags.md): unusable "
                             "for both targets; energy_only_unusable: a meter flag dropped "
                             "the energy, the latency trained; no_features: a convolution, "
                             "pool or fully connected layer whose MACs could not be counted"},
        "layer_source": sorted({s.source for s in dataset.layers}),
        "libraries": library_versions(),
        "onnx": {"ir_version": IR_VERSION, "opsets": dict(OPSETS), "input": "features",
                 "dtype": "float64", "outputs": "log_mean = ln(target) [, log_std]"},
        "features": {
            "layer": [{"name": n, "unit": u, "description": d} for n, u, d in layer_features],
            "device": [{"name": n, "unit": u, "description": d} for n, u, d in DEVICE_FEATURES],
            "per_device_input": per_device_input,
            "cross_hw_input": per_device_input + device_feature_names(est.platforms,
                                                                      est.reference),
            "reference_models": est.reference,
            "embedding": f"ln({est.target} in {TARGETS[est.target][1]}) on each reference model",
        },
        "ops": est.ops,
        "seen_ops": est.seen_ops,
        "other_op": OTHER_OP,
        "platforms": est.platforms,
        "estimators": entries,
        "devices": devices,
        "correction": est.correction.to_json(),
        "correction_note": "a device's own correction (devices.NAME.correction) when it has "
                           "one, else this one",
        "uncertainty": UNCERTAINTY_NOTE,
        "interval": (calibration or Calibration()).to_json(),
        "interval_new_device": (new_device or Calibration()).to_json(),
        "interval_note": "interval: training devices, calibrated on models of a package left "
                         "out; interval_new_device: devices added by `joulefarm enroll`, "
                         "calibrated on devices left out (reference runs only)",
        "baselines": {
            "flops": ("step = flops_ratio * 3 * forward MACs (one ratio per device, median "
                      "of step / (3 x forward MACs) on training steps); per part: 1 x MACs on "
                      "forward, 2 x on backward (3 x on forward without one), 0 on update"
                      if est.workload == "train" else
                      "target = flops_ratio * MACs (one ratio per device, median on training "
                      "layers)"),
            "const_power": "energy = predicted latency * power_w (median per device); in the "
                           "validation table only",
        },
        "preferred": preferred_estimator(metrics),
        "validation": {"columns": list(TABLE_COLUMNS),
                       "rows": [[_json_cell(v) for v in r.as_row()] for r in metrics]},
        "notes": est.notes,
    }


def _train_section(est: FittedEstimator, dataset: Dataset) -> dict[str, Any]:
    """What a train estimator's manifest adds: how the models were made trainable, what was
    left out, and how far the FLOPs proxy is from the measured parts."""
    optimizer, loss = (dataset.setup() if isinstance(dataset, TrainDataset)
                       else ("adam", "mse"))
    median, spread, n = flops_gap(dataset, est.target)
    return {
        "optimizer": optimizer,
        "loss": loss,
        "setups": dict(getattr(dataset, "setups", {})),
        "parts": list(PARTS),
        "excluded_steps": getattr(dataset, "excluded_steps", 0),
        "predict": "predict makes the inference model trainable with this optimizer and loss "
                   "(joulefarm.tflite.training) to know each layer's parts; the model's batch "
                   "is the step's",
        "proxy_multiple": FORWARD_MAC_MULTIPLE,
        "part_ratios": [{"op": r.op, "layers": r.layers, "forward": r.forward_j,
                         "backward": r.backward_j, "update": r.update_j,
                         "backward_over_forward": _float(r.backward_ratio),
                         "backward_update_over_forward": _float(r.rest_ratio)}
                        for r in part_ratios(dataset, est.target)],
        "part_ratios_note": f"measured {est.target} of backward and update against forward, "
                            "per layer type, summed over its layers with a forward part; the "
                            f"proxy takes (backward + update) / forward = "
                            f"{FORWARD_MAC_MULTIPLE - 1:g}",
        "step_over_forward": {"median": _float(median), "p90_over_p10": _float(spread),
                              "n_steps": n,
                              "note": "measured step / sum of its forward parts (the proxy: "
                                      f"{FORWARD_MAC_MULTIPLE:g})"},
    }


def _json_cell(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def write_metrics(directory: Path, metrics: list[MetricRow], title: str) -> None:
    with (directory / METRICS_CSV).open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TABLE_COLUMNS)
        for r in metrics:
            writer.writerow([_fmt(v) for v in r.as_row()])
    lines = [f"# {title}", "", "| " + " | ".join(TABLE_COLUMNS) + " |",
             "|" + "---|" * len(TABLE_COLUMNS)]
    lines += ["| " + " | ".join(_fmt(v) for v in r.as_row()) + " |" for r in metrics]
    (directory / METRICS_MD).write_text("\n".join(lines) + "\n")


def fit_and_export(db_path: str | Path, target: str, out_dir: str | Path, *, folds: int = 5,
                   schemes: Iterable[str] = DEFAULT_SCHEMES, seed: int = 0,
                   validate_gp: bool = True,
                   progress: Callable[[str], None] | None = None,
                   workload: str = "inference") -> FitResult:
    """Load, validate, fit on everything, write the estimator directory. ``workload``:
    ``inference``, or ``train`` (a training step's parts: ``train_dataset``)."""
    if target not in TARGETS:
        raise EstimatorError(f"--target: unknown target {target!r} (known: "
                             f"{', '.join(TARGETS)})")
    if workload not in WORKLOADS:
        raise EstimatorError(f"--workload: unknown workload {workload!r} (known: "
                             f"{', '.join(WORKLOADS)})")
    if folds < 2:
        raise EstimatorError(f"--folds must be at least 2, got {folds}")
    dataset = load_train_dataset(db_path) if workload == "train" else load_dataset(db_path)
    if not dataset.devices_with(target):
        what = "training-step parts" if workload == "train" else "layer measurements"
        raise EstimatorError(f"{db_path}: no {what} with a {target} to fit on")
    if progress:
        progress(f"{target}: fitting on all data")
    est = fit_estimator(dataset, target, seed=seed, progress=progress)
    residuals: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    metrics = run_validation(dataset, target, folds=folds, schemes=schemes, seed=seed,
                             with_gp=validate_gp, progress=progress, residuals=residuals,
                             kernels=gp_kernels(est), full=full_fit(dataset, target, est, seed))
    # Leave-family-out residuals (a whole package unseen) are the honest ones for new
    # models; the grouped folds' where the family split was not run.
    calibration = calibrate(residuals.get("family") or residuals.get("grouped") or {})
    # A device enrolled later is predicted as the leave-one-device-out folds predicted
    # theirs: from its reference runs alone.
    new_device = calibrate(residuals.get("device") or {})
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    entries, _, _ = write_models(est, directory)
    manifest = build_manifest(est, dataset, entries, metrics, str(db_path), calibration,
                              new_device)
    write_manifest(directory, manifest)
    source = manifest["energy_source"]
    title = f"{target} {_what(workload)}estimators vs baselines ({db_path})" + (
        f", energy {source.upper()}" if target == "energy" else "")
    write_metrics(directory, metrics, title)
    return FitResult(directory, est, metrics, [e["file"] for e in entries])


def _what(workload: str) -> str:
    """The table's title words before ``estimators``: none for inference (as before)."""
    return "training-step " if workload == "train" else ""


__all__ = ["FitResult", "build_manifest", "fit_and_export", "library_versions"]
