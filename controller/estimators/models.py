"""Fitting the estimators of one target (latency or energy) on a ``Dataset``.

Per device and op type (nn-Meter, THOR): a Gaussian process and a tree ensemble on the layer
features. Op types with fewer than ``MIN_OP_SAMPLES`` layers on a device share that device's
``_OTHER`` model (all its layers, with an op one-hot), which also serves ops never seen.

Across devices (HELP): per op type a tree ensemble whose input adds the device block (facts,
platform one-hot and the embedding: ln target on the ``reference_models``). Its target is
normalised by the device's *scale*, the mean of its embedding, so that a device faster or
slower than every training device is still predicted in proportion: a new device needs only
its ~10 reference runs.

A whole model is predicted as the sum of its layers with a learned non-additivity
correction (``combine.Correction``: a scale and a per-layer call overhead), fitted here on
models measured both whole and layer by layer.

Baselines, always fitted beside: ``flops`` (target proportional to MACs, one ratio per device,
the median ratio on training layers) and, for energy, ``const_power`` (predicted latency times
one median power per device).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.gaussian_process.kernels import Kernel

from controller.estimators.combine import Correction, whole_totals
from controller.estimators.dataset import Dataset, LayerSample
from controller.estimators.errors import EstimatorError
from controller.estimators.features import (
    LAYER_FEATURES,
    OTHER_OP,
    LayerDesc,
    cross_matrix,
    device_vector,
    embedding,
    kernel_key,
    layer_matrix,
)
from controller.estimators.regressors import GP_COLUMNS, GPModel, TreeModel, fit_gp, fit_trees
from controller.estimators.train_features import TRAIN_FEATURES, flops_work
from joulefarm.tflite.parse import read_layers
from joulefarm.tflite.sweep import reference_models, reference_names

MIN_OP_SAMPLES = 8
"""An op type needs this many layers on a device for a model of its own."""
MIN_CORRECTION_MODELS = 3
"""A device gets a correction of its own with this many multi-layer models measured both
ways (call overheads differ between devices); otherwise it uses the one fitted on all."""
MIN_CORRECTION_LAYERS = 3
"""Models of this many layers or more fit the correction, where there are enough of them."""
CORRECTION_RIDGE = 0.1
"""Weight of the pull of the correction's alpha towards 1, in units of one model's squared
relative error (so it fades with data)."""


@dataclass
class OpModels:
    trees: TreeModel
    gp: GPModel | None
    n_train: int


@dataclass
class FittedEstimator:
    """Every model fitted for one target, with what prediction needs about the devices."""

    target: str
    ops: list[str]
    platforms: list[str]
    reference: list[str]
    per_device: dict[str, dict[str, OpModels]]
    cross_hw: dict[str, TreeModel]
    device_blocks: dict[str, np.ndarray]
    device_scales: dict[str, float]
    correction: Correction
    flops_ratio: dict[str, float]
    power_w: dict[str, float]
    n_layers: int = 0
    notes: list[str] = field(default_factory=list)
    device_corrections: dict[str, Correction] = field(default_factory=dict)
    seen_ops: list[str] = field(default_factory=list)
    """Every op with a training sample (those under ``MIN_OP_SAMPLES`` included, which the
    ``_OTHER`` model learnt); a layer of any other op is predicted by its family alone."""
    workload: str = "inference"
    """``inference``, or ``train``: every sample a part of a training step
    (``train_features``), the whole a step."""

    def correction_for(self, device: str) -> Correction:
        return self.device_corrections.get(device, self.correction)

    def op_key(self, device: str, op: str) -> str:
        models = self.per_device.get(device, {})
        return op if op in models else OTHER_OP

    def cross_key(self, op: str) -> str:
        return op if op in self.cross_hw else OTHER_OP


def _log_target(dataset: Dataset, samples: Sequence[LayerSample], target: str) -> np.ndarray:
    return np.log(np.asarray([dataset.value(s, target) for s in samples], dtype=np.float64))


def _usable(dataset: Dataset, samples: Sequence[LayerSample], target: str,
            training: bool = True) -> list[LayerSample]:
    """Samples with a positive, finite target; with ``training``, only those that may teach
    an op model (``LayerSample.trains``)."""
    out = []
    for s in samples:
        value = dataset.value(s, target)
        if math.isfinite(value) and value > 0 and (s.trains or not training):
            out.append(s)
    return out


def reference_values(dataset: Dataset, device: str, target: str) -> dict[str, float]:
    """The device's measured target on each reference model it ran: whole runs first, else the
    sum of its layers."""
    refs = set(reference_names())
    values: dict[str, float] = {}
    for (dev, sha), sums in dataset.layer_sums.items():
        name = dataset.model_names.get(sha, "")
        if dev == device and name in refs and sums[target] > 0:
            values[name] = sums[target]
    for w in dataset.wholes:
        value = dataset.value(w, target)
        if w.device == device and w.model_name in refs and math.isfinite(value) and value > 0:
            values[w.model_name] = value
    return values


def device_block(dataset: Dataset, device: str, target: str, platforms: Sequence[str]
                 ) -> tuple[np.ndarray, float] | None:
    """(facts + platform one-hot + embedding, scale) of a device; None without every reference
    run or without facts."""
    info = dataset.devices.get(device)
    if info is None:
        return None
    try:
        emb = embedding(reference_values(dataset, device, target), reference_names())
    except KeyError:
        return None
    return np.concatenate([device_vector(info, platforms), emb]), float(emb.mean())


@functools.cache
def reference_macs() -> dict[str, int]:
    """Total MACs of each reference model, from its bytes (a device may have run it only
    whole, which stores no layers)."""
    return {name: sum(layer.macs or 0 for layer in read_layers(content))
            for name, content in reference_models()}


def few_shot_flops(refs: Mapping[str, float]) -> float | None:
    """The FLOPs baseline's ratio from reference runs only (median of value / total MACs)."""
    ratios = []
    for name, value in refs.items():
        macs = reference_macs().get(name, 0)
        if macs > 0:
            ratios.append(math.log(value / macs))
    return math.exp(float(np.median(ratios))) if ratios else None


@dataclass(frozen=True)
class FewShotDevice:
    """What a device measured only on the reference set gives the estimators."""

    block: np.ndarray
    """Facts, platform one-hot and embedding: the cross-hardware models' device input."""
    scale: float
    """Mean of the embedding, added back to the cross-hardware models' output."""
    flops_ratio: float | None
    """The FLOPs baseline's ratio (target per MAC) from the reference runs."""
    n_reference: int


def few_shot_device(dataset: Dataset, device: str, target: str, platforms: Sequence[str]
                    ) -> FewShotDevice:
    """A device's few-shot description from its reference runs and facts in ``dataset``.
    Raises ``EstimatorError`` naming what is missing."""
    info = dataset.devices.get(device)
    if info is None:
        raise EstimatorError(f"device {device!r} has no results in this database")
    refs = reference_values(dataset, device, target)
    missing = [r for r in reference_names() if r not in refs]
    if missing:
        raise EstimatorError(f"device {device!r} lacks a {target} on {len(missing)} of the "
                             f"{len(reference_names())} reference models ({', '.join(missing)}):"
                             " run them with `joulefarm sweep run reference` (or let "
                             "`joulefarm enroll` do it)")
    emb = embedding(refs, reference_names())
    return FewShotDevice(np.concatenate([device_vector(info, platforms), emb]), float(emb.mean()),
                         few_shot_flops(refs), len(refs))


def _ratio(values: np.ndarray) -> float:
    return float(np.exp(np.median(np.log(values)))) if len(values) else float("nan")


TRAIN_GP_COLUMNS = np.concatenate([GP_COLUMNS, len(LAYER_FEATURES)
                                   + np.arange(len(TRAIN_FEATURES))])
"""What a Gaussian process of a training step's part sees: the inference layer's GP features,
the part and whether its backward computes input and weight gradients."""


def flops_ratios(dataset: Dataset, target: str, by_device: Mapping[str, Sequence[LayerSample]]
                 ) -> dict[str, float]:
    """The FLOPs baseline's ratio per device (target per unit of ``flops_work``). Inference:
    the median over training layers of target / MACs. Train: the median over training steps
    of step / (3 x forward MACs), the proxy at the level it is stated at."""
    if dataset.workload != "train":
        return {device: _ratio(np.asarray([dataset.value(s, target) / s.desc.macs
                                           for s in rows if s.desc.macs > 0]))
                for device, rows in by_device.items()}
    ratios: dict[str, list[float]] = defaultdict(list)
    for w in dataset.wholes:
        descs = dataset.model_layers.get(w.model_sha)
        value = dataset.value(w, target)
        work = float(flops_work(descs).sum()) if descs else 0.0
        if work > 0 and math.isfinite(value) and value > 0:
            ratios[w.device].append(value / work)
    return {device: _ratio(np.asarray(ratios.get(device, []))) for device in by_device}


GPKernels = dict[tuple[str, str], Kernel]
"""(device, op key) -> the fitted kernel of its Gaussian process."""


def gp_kernels(est: FittedEstimator) -> GPKernels:
    """The hyperparameters of every Gaussian process of ``est``."""
    return {(device, op): m.gp.gp.kernel_ for device, models in est.per_device.items()
            for op, m in models.items() if m.gp is not None}


@dataclass(frozen=True)
class Reuse:
    """A fit on a superset of the data (``est``, fitted with the same seed and with ``kernels``
    its own) and the layer rows it had that this fit lacks. A model whose training rows are
    untouched by ``removed`` would be refitted to the same values: it is taken as it is.
    What makes a validation fold cheap: leaving a family out touches a few ops."""

    est: FittedEstimator
    removed: Sequence[LayerSample]

    @functools.cached_property
    def _touched(self) -> tuple[set[str], set[tuple[str, str]], set[str]]:
        """(devices, (device, kernel) pairs, kernels) that lost rows."""
        return ({s.device for s in self.removed},
                {(s.device, s.desc.kernel) for s in self.removed},
                {s.desc.kernel for s in self.removed})

    def device_model(self, ops: list[str], device: str, key: str) -> OpModels | None:
        if self.est.ops != ops or device not in self.est.per_device:
            return None
        devices, pairs, _ = self._touched
        # The _OTHER model trains on every row of its device.
        touched = device in devices if key == OTHER_OP else (device, key) in pairs
        return None if touched else self.est.per_device[device].get(key)

    def cross_model(self, ops: list[str], blocks: dict[str, np.ndarray], key: str
                    ) -> TreeModel | None:
        same_devices = blocks.keys() == self.est.device_blocks.keys() and all(
            np.array_equal(b, self.est.device_blocks[d]) for d, b in blocks.items())
        if self.est.ops != ops or not same_devices or key == OTHER_OP:
            return None
        return None if key in self._touched[2] else self.est.cross_hw.get(key)


def fit_estimator(dataset: Dataset, target: str, *, seed: int = 0, with_gp: bool = True,
                  with_cross: bool = True,
                  progress: Callable[[str], None] | None = None,
                  kernels: GPKernels | None = None,
                  reuse: Reuse | None = None) -> FittedEstimator:
    """Fit every model of ``target`` on ``dataset``. Raises ``EstimatorError`` when there is
    nothing to fit. Given ``kernels`` (``gp_kernels`` of a fit on all the data), a Gaussian
    process whose (device, op) has one keeps its hyperparameters and only computes its
    posterior: validation folds cost a factorisation per op instead of a search. Without,
    each op's hyperparameters are searched once, on the device with the most layers. Given
    ``reuse``, models whose training rows are all unchanged are taken from it."""
    samples = _usable(dataset, dataset.layers, target)
    if not samples:
        raise EstimatorError(f"no layer measurements with a positive {target} to fit on")
    counts: dict[str, int] = defaultdict(int)
    for s in samples:
        counts[kernel_key(s.desc)] += 1
    ops = sorted(op for op, n in counts.items() if n >= MIN_OP_SAMPLES)
    by_device: dict[str, list[LayerSample]] = defaultdict(list)
    for s in samples:
        by_device[s.device].append(s)
    platforms = sorted({dataset.devices[d].platform for d in by_device if d in dataset.devices})
    notes: list[str] = []

    per_device: dict[str, dict[str, OpModels]] = {}
    # An op's GP hyperparameters are searched on the device with the most layers and shared
    # by the others, which compute only their own posterior: length scales say which
    # features matter for an op, much the same on every CPU, and the search is most of the
    # time a fit takes.
    shared: dict[str, Kernel] = {}
    for device, rows in sorted(by_device.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        if progress:
            progress(f"{target}: per-device models for {device} ({len(rows)} layers)")
        given = (shared if kernels is None else
                 {op: k for (d, op), k in kernels.items() if d == device})
        models = _fit_device(dataset, rows, ops, target, seed, with_gp, given, reuse)
        per_device[device] = models
        for op, m in models.items():
            if m.gp is not None:
                shared.setdefault(op, m.gp.gp.kernel_)
    per_device = dict(sorted(per_device.items()))

    blocks: dict[str, np.ndarray] = {}
    scales: dict[str, float] = {}
    # The reference set's embedding describes a device by its inferences: a training step's
    # estimator has no cross-hardware model (nor enrolment).
    for device in by_device if dataset.workload == "inference" else ():
        block = device_block(dataset, device, target, platforms)
        if block is None:
            notes.append(f"{device}: no cross-hardware model (missing reference runs or facts)")
            continue
        blocks[device], scales[device] = block
    cross: dict[str, TreeModel] = {}
    if with_cross and blocks:
        if progress:
            progress(f"{target}: cross-hardware models over {len(blocks)} devices")
        cross = _fit_cross(dataset, [s for s in samples if s.device in blocks], ops, blocks,
                           scales, target, seed, reuse)

    flops, power = flops_ratios(dataset, target, by_device), {}
    for device, rows in by_device.items():
        power[device] = _ratio(np.asarray([s.energy_j / s.latency_s for s in rows
                                           if s.latency_s > 0 and s.energy_j > 0
                                           and math.isfinite(s.energy_j)]))
    est = FittedEstimator(
        target=target, workload=dataset.workload, ops=ops, platforms=platforms,
        reference=reference_names(),
        per_device=per_device, cross_hw=cross, device_blocks=blocks, device_scales=scales,
        correction=Correction(), flops_ratio=flops, power_w=power, n_layers=len(samples),
        notes=notes, seen_ops=sorted({s.desc.op for s in samples}))

    sums = _predicted_sums(est, dataset)

    def predicted_sum(device: str, model_sha: str) -> float:
        return sums[(device, model_sha)]

    # The correction maps what prediction will add up (the op models' predictions) to whole
    # models, not the measured layer times: it then also takes back what the op models
    # learnt that a model's own ops do not pay.
    est.correction = fit_correction(dataset, target, set(by_device), predicted_sum)
    est.device_corrections = _device_corrections(dataset, target, set(by_device),
                                                 predicted_sum)
    return est


def _predicted_sums(est: FittedEstimator, dataset: Dataset) -> dict[tuple[str, str], float]:
    """(device, model sha256) -> the sum of the trees' predictions of the model's layers, for
    every model measured whole on a device with models: one batched prediction per device
    (a call per model costs the trees' fixed overhead a thousand times)."""
    out: dict[tuple[str, str], float] = {}
    for device in est.per_device:
        shas = [w.model_sha for w in dataset.wholes
                if w.device == device and dataset.model_layers.get(w.model_sha)]
        if not shas:
            continue
        models = [dataset.model_layers[sha] for sha in shas]
        values = predict_layers(est, device, [d for m in models for d in m]).values["trees"]
        bounds = np.cumsum([0] + [len(m) for m in models])
        for sha, lo, hi in zip(shas, bounds[:-1], bounds[1:], strict=True):
            out[(device, sha)] = float(values[lo:hi].sum())
    return out


def _fit_device(dataset: Dataset, rows: list[LayerSample], ops: list[str], target: str,
                seed: int, with_gp: bool, kernels: dict[str, Kernel],
                reuse: Reuse | None = None) -> dict[str, OpModels]:
    x_all = layer_matrix([s.desc for s in rows], ops)
    y_all = _log_target(dataset, rows, target)
    groups: dict[str, np.ndarray] = {OTHER_OP: np.arange(len(rows))}
    by_kernel = _by_kernel(rows)
    for op in ops:
        index = by_kernel.get(op, np.zeros(0, dtype=int))
        if len(index) >= MIN_OP_SAMPLES:
            groups[op] = index
    models = {}
    device = rows[0].device
    for key, index in groups.items():
        kept = reuse.device_model(ops, device, key) if reuse is not None else None
        if kept is not None and (kept.gp is not None or not with_gp):
            models[key] = kept if with_gp else OpModels(kept.trees, None, kept.n_train)
            continue
        index = _balanced(index, [rows[i].model_sha for i in index], seed)
        x, y = x_all[index], y_all[index]
        trees = fit_trees(x, y, seed=seed)
        columns = TRAIN_GP_COLUMNS if dataset.workload == "train" else GP_COLUMNS
        gp = (fit_gp(x, y, seed=seed, base=trees.base, kernel=kernels.get(key), columns=columns)
              if with_gp and len(index) >= 3 else None)
        models[key] = OpModels(trees, gp, len(index))
    return models


def _by_kernel(rows: Sequence[LayerSample]) -> dict[str, np.ndarray]:
    """Kernel key -> positions of its rows in ``rows``, in order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(rows):
        groups[s.desc.kernel].append(i)
    return {key: np.asarray(index, dtype=int) for key, index in groups.items()}


MAX_ROWS_PER_MODEL = 8
"""An op model takes at most this many layers of one kernel from any one model."""


def _balanced(index: np.ndarray, models: Sequence[str], seed: int) -> np.ndarray:
    """``index`` with at most ``MAX_ROWS_PER_MODEL`` rows of each model (a seeded draw): a
    real model repeats one kind of layer dozens of times, and its quirks (birdnet's 69 small
    MULs at 10-200 us behind dynamic tensors) would otherwise be what its op's model learns
    of every small MUL; a sweep gives each configuration once."""
    by_model: dict[str, list[int]] = defaultdict(list)
    for i, sha in zip(index.tolist(), models, strict=True):
        by_model[sha].append(i)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for sha in sorted(by_model):
        rows = by_model[sha]
        if len(rows) > MAX_ROWS_PER_MODEL:
            rows = sorted(rng.choice(rows, MAX_ROWS_PER_MODEL, replace=False).tolist())
        keep.extend(rows)
    return np.asarray(sorted(keep), dtype=int)


def _fit_cross(dataset: Dataset, samples: list[LayerSample], ops: list[str],
               blocks: dict[str, np.ndarray], scales: dict[str, float], target: str,
               seed: int, reuse: Reuse | None = None) -> dict[str, TreeModel]:
    # cross_matrix row by row: each layer's features, then its device's block.
    x = np.hstack([layer_matrix([s.desc for s in samples], ops),
                   np.vstack([blocks[s.device] for s in samples])])
    # The device's scale is subtracted from the target and added back at prediction: a tree
    # cannot extrapolate to a device faster or slower than all it has seen, a shift can.
    shift = np.asarray([scales[s.device] for s in samples])
    y = _log_target(dataset, samples, target) - shift
    models = {OTHER_OP: fit_trees(x, y, seed=seed)}
    by_kernel = _by_kernel(samples)
    for op in ops:
        index = by_kernel.get(op, np.zeros(0, dtype=int))
        kept = reuse.cross_model(ops, blocks, op) if reuse is not None else None
        if kept is not None:
            models[op] = kept
        elif len(index) >= MIN_OP_SAMPLES:
            models[op] = fit_trees(x[index], y[index], seed=seed)
    return models


LayerSum = Callable[[str, str], float]
"""(device, model sha256) -> what the model's layers add up to."""


def _device_corrections(dataset: Dataset, target: str, devices: set[str],
                        layer_sum: LayerSum | None = None) -> dict[str, Correction]:
    out = {}
    for device in sorted(devices):
        multi = [w for w in dataset.wholes
                 if w.device == device and len(dataset.model_layers.get(w.model_sha, ())) > 1]
        if len(multi) >= MIN_CORRECTION_MODELS:
            out[device] = fit_correction(dataset, target, {device}, layer_sum)
    return out


def fit_correction(dataset: Dataset, target: str, devices: set[str],
                   layer_sum: LayerSum | None = None) -> Correction:
    """Least squares, in relative error, of whole = alpha * sum + beta * (n_layers - 1) +
    gamma on models measured whole whose every layer was measured on that device. The sum is
    ``layer_sum`` (the op models' predictions, what prediction adds up) or, without it, the
    measured layer times. Models of
    ``MIN_CORRECTION_LAYERS`` or more layers are used where there are enough of them. A ridge
    term pulls alpha towards 1; beta is fitted only where the models vary in layer count, and
    gamma where there are enough models to pin a constant down."""
    targets: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in _usable(dataset, dataset.layers, target, training=False):
        targets[(s.device, s.model_sha)].append(dataset.value(s, target))
    rows = []
    for w in dataset.wholes:
        values = targets.get((w.device, w.model_sha), [])
        layers = dataset.model_layers.get(w.model_sha, ())
        whole = dataset.value(w, target)
        if (w.device in devices and layers and len(values) == len(layers)
                and math.isfinite(whole) and whole > 0):
            total = sum(values) if layer_sum is None else layer_sum(w.device, w.model_sha)
            rows.append((len(layers), total, whole))
    if not rows:
        return Correction()
    multi = [r for r in rows if r[0] >= MIN_CORRECTION_LAYERS]
    if len(multi) >= MIN_CORRECTION_MODELS:
        # Hundreds of single-op sweep models say little about how the sum of a real model's
        # layers becomes its whole, and would outvote the models that do.
        rows = multi
    design = np.asarray([[total / whole, (n - 1) / whole, 1 / whole]
                         for n, total, whole in rows])
    rhs = np.ones(len(rows))
    ridge = math.sqrt(CORRECTION_RIDGE)
    columns = [0]
    if np.any(design[:, 1]):  # only single-layer models: no per-layer overhead to learn
        columns.append(1)
    if len(rows) >= MIN_CORRECTION_MODELS:
        columns.append(2)
    design = np.vstack([design[:, columns], [ridge] + [0.0] * (len(columns) - 1)])
    rhs = np.append(rhs, ridge)
    coef = dict(zip(columns, np.linalg.lstsq(design, rhs, rcond=None)[0], strict=True))
    return Correction(float(coef[0]), float(coef.get(1, 0.0)), len(rows),
                      float(coef.get(2, 0.0)))


# ---------------------------------------------------------------------------------- predict


@dataclass
class LayerPredictions:
    """Per-layer predictions of one model on one device, linear units of the target. ``gp_std``
    is the GP's standard deviation mapped to linear units (lognormal)."""

    values: dict[str, np.ndarray]
    gp_log_std: np.ndarray | None


def predict_layers(est: FittedEstimator, device: str, descs: Sequence[LayerDesc],
                   *, block: tuple[np.ndarray, float] | None = None,
                   flops_ratio: float | None = None) -> LayerPredictions:
    """Every estimator's prediction for each layer. ``block`` (device block, scale) and
    ``flops_ratio`` stand in for a device the estimator was not fitted on (few-shot)."""
    x = layer_matrix(descs, est.ops)
    values: dict[str, np.ndarray] = {}
    gp_std = None
    models = est.per_device.get(device)
    if models is not None:
        trees = np.zeros(len(descs))
        gp_mean = np.zeros(len(descs))
        gp_std = np.zeros(len(descs))
        for key in {est.op_key(device, kernel_key(d)) for d in descs}:
            index = np.asarray([i for i, d in enumerate(descs)
                                if est.op_key(device, kernel_key(d)) == key])
            m = models[key]
            trees[index] = m.trees.predict(x[index])
            if m.gp is not None:
                gp_mean[index], gp_std[index] = m.gp.predict(x[index])
            else:  # too few points for a GP: the trees answer, with no spread
                gp_mean[index], gp_std[index] = trees[index], 0.0
        values["trees"] = np.exp(trees)
        values["gp"] = np.exp(gp_mean)
    block = block or ((est.device_blocks[device], est.device_scales[device])
                      if device in est.device_blocks else None)
    if est.cross_hw and block is not None:
        xc = cross_matrix(x, block[0])
        cross = np.zeros(len(descs))
        for key in {est.cross_key(kernel_key(d)) for d in descs}:
            index = np.asarray([i for i, d in enumerate(descs)
                                if est.cross_key(kernel_key(d)) == key])
            cross[index] = est.cross_hw[key].predict(xc[index]) + block[1]
        values["cross_hw"] = np.exp(cross)
    ratio = flops_ratio if flops_ratio is not None else est.flops_ratio.get(device)
    if ratio is not None and math.isfinite(ratio):
        values["flops"] = ratio * flops_work(descs)
    return LayerPredictions(values, gp_std)


def unseen_mask(est: FittedEstimator, descs: Sequence[LayerDesc]) -> np.ndarray:
    """True for each layer whose op no training sample had."""
    seen = set(est.seen_ops)
    return np.asarray([d.op not in seen for d in descs], dtype=bool)


def predict_whole(est: FittedEstimator, device: str, descs: Sequence[LayerDesc], **kwargs
                  ) -> dict[str, tuple[float, float | None]]:
    """Whole-model (prediction, standard deviation or None) per estimator."""
    layers = predict_layers(est, device, descs, **kwargs)
    return whole_totals(layers.values, layers.gp_log_std, est.correction_for(device),
                        len(descs))
