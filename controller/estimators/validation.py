"""Validation that holds up (see the methodology notes): nothing about a test model, family or
device leaks into training.

- ``grouped``: k folds by model; a model's layers and whole runs are never on both sides.
- ``family``: leave one model family out (all ``conv`` sweeps, all chains, ...).
- ``device``: leave one device out, few-shot: the held-out device contributes only its
  reference runs (its embedding, and the FLOPs ratio of the baseline); only the
  cross-hardware model and the baseline can answer.

Reference models are calibration data: always in training, never scored.

Each scheme scores every estimator at two levels: ``layer`` (each layer of a test model on its
device) and ``model`` (a test model with three or more layers measured whole, predicted as the
corrected sum of its layers: the two-layer add and concat sweeps would outnumber the models
users predict). The model level's residuals also calibrate the intervals. Metrics: MAPE,
RMSPE, share within 5 % and 10 %, Spearman.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from controller.estimators.combine import whole_totals
from controller.estimators.dataset import Dataset, LayerSample, WholeSample, model_family
from controller.estimators.errors import EstimatorError
from controller.estimators.intervals import Residual
from controller.estimators.metrics import METRIC_COLUMNS, Scores, scores
from controller.estimators.models import (
    MIN_CORRECTION_LAYERS,
    FittedEstimator,
    GPKernels,
    Reuse,
    few_shot_device,
    fit_estimator,
    predict_layers,
    predict_whole,
    unseen_mask,
)
from joulefarm.tflite.sweep import reference_names

SCHEMES: tuple[str, ...] = ("grouped", "family", "device")
DEFAULT_SCHEMES: tuple[str, ...] = ("family", "device")
"""What ``fit`` runs unless told: leave-family-out judges the preferred estimator and
calibrates the intervals, leave-device-out those of enrolled devices. The grouped folds (a
fifth of every family out at once, so every op model refits) cost more than both together
and decide nothing: ask for them with ``--splits``."""
LEVELS: tuple[str, ...] = ("layer", "model")
TABLE_COLUMNS: tuple[str, ...] = ("split", "level", "estimator", *METRIC_COLUMNS)


@dataclass(frozen=True)
class MetricRow:
    split: str
    level: str
    estimator: str
    scores: Scores

    def as_row(self) -> list[object]:
        return [self.split, self.level, self.estimator, *self.scores.as_row()]


Pairs = dict[tuple[str, str], list[tuple[float, float]]]
"""(level, estimator) -> [(measured, predicted)]."""

Residuals = dict[str, list[Residual]]
"""Estimator -> a ``intervals.Residual`` per held-out whole model (for ``calibrate``)."""

FewShot = dict[str, tuple[tuple[np.ndarray, float] | None, float | None]]
"""Held-out device -> (its device block and scale, its FLOPs ratio), from reference runs."""


class _FewShotArgs(TypedDict, total=False):
    """The few-shot keywords of ``predict_layers`` and ``predict_whole``."""

    block: tuple[np.ndarray, float] | None
    flops_ratio: float | None


def subset(dataset: Dataset, keep: Callable[[str, str], bool]) -> Dataset:
    """The samples whose (device, model sha256) ``keep`` accepts."""
    return Dataset(
        layers=[s for s in dataset.layers if keep(s.device, s.model_sha)],
        wholes=[w for w in dataset.wholes if keep(w.device, w.model_sha)],
        model_layers=dataset.model_layers, model_names=dataset.model_names,
        devices=dataset.devices,
        layer_sums={k: v for k, v in dataset.layer_sums.items() if keep(*k)},
        workload=dataset.workload)


def _models_not_in(models: set[str]) -> Callable[[str, str], bool]:
    """A ``subset`` filter: every sample except those of ``models``."""
    return lambda _device, sha: sha not in models


def _devices_other_than(device: str) -> Callable[[str, str], bool]:
    """A ``subset`` filter: every sample except those of ``device``."""
    return lambda other, _sha: other != device


def _is_reference(dataset: Dataset, sha: str) -> bool:
    return dataset.model_names.get(sha, "") in set(reference_names())


def _ok(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _score_fold(dataset: Dataset, target: str, est: FittedEstimator,
                layers: list[LayerSample], wholes: list[WholeSample], pairs: Pairs, *,
                latency_est: FittedEstimator | None = None,
                few_shot: FewShot | None = None,
                only: Iterable[str] | None = None,
                residuals: Residuals | None = None) -> None:
    """Add (measured, predicted) pairs of ``layers`` and ``wholes`` to ``pairs``, and the
    whole models' residuals to ``residuals`` when given."""
    keep = set(only) if only is not None else None
    by_device: dict[str, list[LayerSample]] = defaultdict(list)
    for s in layers:
        if _ok(dataset.value(s, target)):
            by_device[s.device].append(s)
    for device, rows in by_device.items():
        kwargs = _device_kwargs(device, few_shot)
        predicted = predict_layers(est, device, [s.desc for s in rows], **kwargs).values
        if latency_est is not None and device in est.power_w and device in latency_est.per_device:
            lat = predict_layers(latency_est, device, [s.desc for s in rows]).values["trees"]
            predicted = {**predicted, "const_power": lat * est.power_w[device]}
        measured = [dataset.value(s, target) for s in rows]
        for name, values in predicted.items():
            if keep is None or name in keep:
                pairs[("layer", name)].extend(zip(measured, values.tolist(), strict=True))
    for w in wholes:
        descs = dataset.model_layers.get(w.model_sha)
        value = dataset.value(w, target)
        if not descs or len(descs) < MIN_CORRECTION_LAYERS or not _ok(value):
            continue
        kwargs = _device_kwargs(w.device, few_shot)
        if few_shot is None and w.device not in est.per_device:
            continue
        layer_pred = predict_layers(est, w.device, descs, **kwargs)
        totals = whole_totals(layer_pred.values, layer_pred.gp_log_std,
                              est.correction_for(w.device), len(descs))
        if latency_est is not None and w.device in latency_est.per_device:
            lat_total = predict_whole(latency_est, w.device, descs)["trees"][0]
            totals = {**totals, "const_power": (lat_total * est.power_w[w.device], None)}
        unseen = unseen_mask(est, descs)
        for name, (total, std) in totals.items():
            if keep is None or name in keep:
                pairs[("model", name)].append((value, total))
                if residuals is not None and total > 0:
                    layer_values = layer_pred.values.get(name)
                    share = (float(layer_values[unseen].sum() / layer_values.sum())
                             if layer_values is not None and unseen.any() else 0.0)
                    residuals.setdefault(name, []).append(
                        (math.log(value / total), (std or 0.0) / total, share))


def _device_kwargs(device: str, few_shot: FewShot | None) -> _FewShotArgs:
    if few_shot is None or device not in few_shot:
        return {}
    block, ratio = few_shot[device]
    return {"block": block, "flops_ratio": ratio}


@dataclass(frozen=True)
class FullFit:
    """The fit on all the data, whose untouched models the folds take as they are
    (``models.Reuse``): fitted with the folds' seed and GP hyperparameters."""

    est: FittedEstimator
    latency: FittedEstimator | None = None
    """Energy only: the constant-power baseline's latency trees (no GP, no cross)."""


def full_fit(dataset: Dataset, target: str, est: FittedEstimator, seed: int) -> FullFit:
    latency = None
    if target == "energy":
        latency = fit_estimator(dataset, "latency", seed=seed, with_gp=False, with_cross=False)
    return FullFit(est, latency)


def _fit(dataset: Dataset, target: str, seed: int, with_gp: bool, removed: list[LayerSample],
         kernels: GPKernels | None = None, full: FullFit | None = None
         ) -> tuple[FittedEstimator, FittedEstimator | None]:
    est = fit_estimator(dataset, target, seed=seed, with_gp=with_gp, kernels=kernels,
                        reuse=Reuse(full.est, removed) if full else None)
    latency = None
    if target == "energy":  # the constant-power baseline needs a latency estimate
        latency = fit_estimator(
            dataset, "latency", seed=seed, with_gp=False, with_cross=False,
            reuse=Reuse(full.latency, removed) if full and full.latency else None)
    return est, latency


def grouped_kfold(dataset: Dataset, target: str, *, folds: int = 5, seed: int = 0,
                  with_gp: bool = True, residuals: Residuals | None = None,
                  kernels: GPKernels | None = None, full: FullFit | None = None) -> Pairs:
    shas = sorted({s.model_sha for s in dataset.layers if not _is_reference(dataset, s.model_sha)})
    order = np.random.default_rng(seed).permutation(len(shas))
    fold_of = {shas[i]: k % folds for k, i in enumerate(order)}
    pairs: Pairs = defaultdict(list)
    for k in range(min(folds, len(shas))):
        test = {sha for sha, f in fold_of.items() if f == k}
        train = subset(dataset, _models_not_in(test))
        removed = [s for s in dataset.layers if s.model_sha in test]
        est, latency = _fit(train, target, seed, with_gp, removed, kernels, full)
        _score_fold(dataset, target, est, removed,
                    [w for w in dataset.wholes if w.model_sha in test], pairs,
                    latency_est=latency, residuals=residuals)
    return pairs


def leave_family_out(dataset: Dataset, target: str, *, seed: int = 0, with_gp: bool = True,
                     residuals: Residuals | None = None,
                     kernels: GPKernels | None = None, full: FullFit | None = None) -> Pairs:
    families: dict[str, set[str]] = defaultdict(set)
    for sha, name in dataset.model_names.items():
        if not _is_reference(dataset, sha):
            families[model_family(name)].add(sha)
    pairs: Pairs = defaultdict(list)
    if len(families) < 2:
        return pairs
    for _, test in sorted(families.items()):
        train = subset(dataset, _models_not_in(test))
        if not train.layers:
            continue
        removed = [s for s in dataset.layers if s.model_sha in test]
        est, latency = _fit(train, target, seed, with_gp, removed, kernels, full)
        _score_fold(dataset, target, est, removed,
                    [w for w in dataset.wholes if w.model_sha in test], pairs,
                    latency_est=latency, residuals=residuals)
    return pairs


def leave_device_out(dataset: Dataset, target: str, *, seed: int = 0,
                     residuals: Residuals | None = None, full: FullFit | None = None) -> Pairs:
    """Few-shot on each held-out device: only its reference runs are used (what
    ``joulefarm enroll`` gives a new device); its whole models' residuals go to
    ``residuals``, and calibrate the intervals of enrolled devices."""
    devices = dataset.devices_with(target)
    pairs: Pairs = defaultdict(list)
    if len(devices) < 3:  # two training devices at least, or there is nothing to learn across
        return pairs
    for device in devices:
        train = subset(dataset, _devices_other_than(device))
        # The other devices' own models are unchanged: only the cross-hardware ones refit.
        est = fit_estimator(train, target, seed=seed, with_gp=False, reuse=Reuse(
            full.est, [s for s in dataset.layers if s.device == device]) if full else None)
        if not est.cross_hw:
            continue
        try:
            new = few_shot_device(dataset, device, target, est.platforms)
        except EstimatorError:
            continue  # no reference runs or facts: the device cannot be placed
        layers = [s for s in dataset.layers
                  if s.device == device and not _is_reference(dataset, s.model_sha)]
        wholes = [w for w in dataset.wholes
                  if w.device == device and not _is_reference(dataset, w.model_sha)]
        _score_fold(dataset, target, est, layers, wholes, pairs,
                    few_shot={device: ((new.block, new.scale), new.flops_ratio)},
                    only=("cross_hw", "flops"), residuals=residuals)
    return pairs


def run_validation(dataset: Dataset, target: str, *, folds: int = 5,
                   schemes: Iterable[str] = DEFAULT_SCHEMES, seed: int = 0,
                   with_gp: bool = True,
                   progress: Callable[[str], None] | None = None,
                   residuals: dict[str, Residuals] | None = None,
                   kernels: GPKernels | None = None,
                   full: FullFit | None = None) -> list[MetricRow]:
    """Every scheme's metrics table rows (estimators and baselines side by side). Given
    ``residuals``, each scheme adds its whole models' residuals under its name (the device
    scheme: its few-shot predictions'). Given ``kernels`` (``models.gp_kernels`` of the fit
    on all data), the folds' Gaussian processes keep those hyperparameters and refit only
    their posterior on the fold's training part: the held-out models still never shape a
    prediction of theirs, but they did take part in choosing the length scales, a small
    optimism bought for a fit ten times faster. Given ``full`` (the fit on all data, with
    those kernels and this seed), a fold takes every model whose training rows it did not
    change from it (the same model a refit would give): leaving a family out refits the few
    ops that family has, leaving a device out only the cross-hardware models."""
    rows: list[MetricRow] = []
    for scheme in schemes:
        if progress:
            progress(f"{target}: validating ({scheme})")
        found = None if residuals is None else residuals.setdefault(scheme, {})
        if scheme == "grouped":
            pairs = grouped_kfold(dataset, target, folds=folds, seed=seed, with_gp=with_gp,
                                  residuals=found, kernels=kernels, full=full)
        elif scheme == "family":
            pairs = leave_family_out(dataset, target, seed=seed, with_gp=with_gp,
                                     residuals=found, kernels=kernels, full=full)
        elif scheme == "device":
            pairs = leave_device_out(dataset, target, seed=seed, residuals=found, full=full)
        else:
            raise ValueError(f"unknown validation scheme {scheme!r} (known: {SCHEMES})")
        split = {"grouped": f"grouped_{folds}fold", "family": "leave_family_out",
                 "device": "leave_device_out_fewshot"}[scheme]
        for (level, name), values in sorted(pairs.items(), key=lambda kv: (
                LEVELS.index(kv[0][0]), _ORDER.get(kv[0][1], 99), kv[0][1])):
            measured = np.asarray([m for m, _ in values])
            predicted = np.asarray([p for _, p in values])
            rows.append(MetricRow(split, level, name, scores(measured, predicted)))
    return rows


_ORDER = {"gp": 0, "trees": 1, "cross_hw": 2, "flops": 3, "const_power": 4}


BASELINES: tuple[str, ...] = ("flops", "const_power")


def preferred_estimator(rows: list[MetricRow]) -> str | None:
    """The estimator with the lowest MAPE, whole models first, among those that beat every
    baseline scored beside them (FLOPs, and constant power for energy): one that does not is
    never preferred. Judged on leave-one-family-out where it ran (a family never seen is what
    a new model is), else on the grouped folds. None when no estimator beats the baselines."""
    splits = {r.split for r in rows}
    split = "leave_family_out" if "leave_family_out" in splits else next(
        (s for s in sorted(splits) if s.startswith("grouped")), None)
    for level in ("model", "layer"):
        scored = [r for r in rows if r.split == split and r.level == level
                  and math.isfinite(r.scores.mape_pct)]
        baseline = min((r.scores.mape_pct for r in scored if r.estimator in BASELINES),
                       default=math.inf)
        candidates = [r for r in scored if r.estimator in ("gp", "trees", "cross_hw")]
        if candidates:
            best = min(candidates, key=lambda r: r.scores.mape_pct)
            return best.estimator if best.scores.mape_pct < baseline else None
    return None
