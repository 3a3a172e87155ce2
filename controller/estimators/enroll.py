"""Enrolling a device in an estimator fitted without it: its reference runs and facts place it
among the training devices (HELP's few-shot setting), so that ``predict --device`` answers for
it through the cross-hardware models and the FLOPs baseline. Nothing is refitted.

The device's entry in ``manifest.json`` says it was enrolled (``enrolled``: when, from which
database, how many reference runs); its intervals are those calibrated on the leave-one-
device-out validation (``interval_new_device``), where a device was predicted the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.estimators.dataset import Dataset
from controller.estimators.errors import EstimatorError
from controller.estimators.manifest import read_manifest, write_manifest
from controller.estimators.models import FewShotDevice, few_shot_device


@dataclass(frozen=True)
class Enrolment:
    directory: Path
    device: str
    target: str
    few_shot: FewShotDevice
    calibrated: bool
    """Whether the estimator states intervals for enrolled devices."""


def _has_cross_hw(manifest: dict[str, Any]) -> bool:
    return any(e["kind"] == "cross_hw" for e in manifest["estimators"])


def check_enrollable(directory: str | Path, device: str) -> dict[str, Any]:
    """The manifest of ``directory`` if ``device`` can be enrolled in it; else
    ``EstimatorError`` saying why (before anything is measured)."""
    manifest = read_manifest(directory)
    entry = manifest["devices"].get(device)
    if entry is not None and not entry.get("enrolled"):
        raise EstimatorError(f"{directory}: {device!r} is a training device of this estimator; "
                             "it needs no enrolment")
    if manifest.get("workload", "inference") != "inference":
        raise EstimatorError(f"{directory}: a training-step estimator (fit --workload train) "
                             "has no cross-hardware model: a device is added by measuring "
                             "train runs on it and fitting again")
    if not _has_cross_hw(manifest):
        raise EstimatorError(
            f"{directory}: this estimator has no cross-hardware model, so it cannot place a "
            "new device: fit it on a database where two or more devices ran the reference "
            "suite (`joulefarm sweep run reference`)")
    return manifest


def enroll(directory: str | Path, dataset: Dataset, device: str, database: str) -> Enrolment:
    """Add ``device`` to the estimator in ``directory`` from its reference runs in
    ``dataset`` (read from ``database``). Enrolling again replaces the earlier entry."""
    directory = Path(directory)
    manifest = check_enrollable(directory, device)
    target = manifest["target"]
    reference = manifest["features"]["reference_models"]
    new = few_shot_device(dataset, device, target, manifest["platforms"])
    if new.n_reference != len(reference):
        raise EstimatorError(f"{directory}: the estimator's reference set has "
                             f"{len(reference)} models, this joulefarm's "
                             f"{new.n_reference}: refit it")
    info = dataset.devices[device]
    calibrated = bool(manifest.get("interval_new_device", {}).get("floor"))
    manifest["devices"][device] = {
        "platform": info.platform,
        "cpu_max_khz": info.cpu_max_khz,
        "cpu_count": info.cpu_count,
        "memory_bytes": info.memory_bytes,
        "simulated_meter": info.simulated_meter,
        "device_block": [float(v) for v in new.block],
        "scale": new.scale,
        "flops_ratio": (new.flops_ratio if new.flops_ratio is not None
                        and math.isfinite(new.flops_ratio) else None),
        "flops_ratio_unit": f"{manifest['unit']}/MAC",
        "power_w": None,
        "correction": None,
        "enrolled": {"at_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                     "database": database, "reference_runs": new.n_reference,
                     "estimators": ["cross_hw", "flops"]},
    }
    manifest.pop("format", None)
    manifest.pop("format_version", None)
    write_manifest(directory, manifest)
    return Enrolment(directory, device, target, new, calibrated)


__all__ = ["Enrolment", "check_enrollable", "enroll"]
