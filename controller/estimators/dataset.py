"""Training data for the estimators, read from a results database (read-only).

Two kinds of sample:

- a **layer sample**: one layer of one model on one device, from ``insitu`` runs (the op's
  time inside the whole model, from the runtime's profiler) where the device ran the model in
  situ, else from ``layers`` runs (the layer looped alone). In-situ times add up to the whole
  model (the profiler's per-op overhead and the call's fixed cost are left to the correction),
  and they are what the op costs with the caches as the model leaves them. A layers-mode model
  with a single layer that was also measured ``whole`` uses the whole run's median latency
  (and its energy per inference) instead: that is the nn-Meter way of measuring a kernel, and
  the median resists the CPU contention that inflates a mean.
- a **whole sample**: a model measured ``whole`` on a device (median latency, energy per
  inference); its layers come from any ``layers`` run of the same model (the features do not
  depend on the device).

Repeated runs of the same (device, model) are merged by their median. Non-positive or
non-finite targets are dropped, and so is every measurement flagged unusable, by its own flags
or its run's (``joulefarm.results.UNUSABLE_FLAGS``: too little of the window covered by the
meter, a latency no statistic can pin down, layers that add up to an implausible whole, ...).
A flag about the meter's samples alone (``ENERGY_ONLY_FLAGS``) drops the energy and keeps
the latency. A dropped layer still describes its model; it only trains nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import duckdb
import numpy as np

from controller.estimators.errors import EstimatorError
from controller.estimators.features import DeviceInfo, LayerDesc, from_row
from joulefarm.results import is_usable
from joulefarm.tflite.ops import op_entry

COMPUTE_FAMILIES = ("conv", "depthwise", "transpose_conv", "conv3d", "fully_connected",
                    "matmul", "pool")
"""Op families whose cost the MAC count carries: a layer of one without MACs trains nothing."""

SqlValue = bool | int | float | str | None
"""A cell as DuckDB hands back the columns read here (timestamps are cast to text; the
``flags`` lists are read by ``_usable``)."""
Row = dict[str, SqlValue]

TARGETS: dict[str, tuple[str, str]] = {"latency": ("latency_s", "s"), "energy": ("energy_j", "J")}
"""Target name -> (attribute of a sample, unit)."""


@dataclass(frozen=True)
class LayerSample:
    device: str
    model_sha: str
    model_name: str
    layer_index: int
    desc: LayerDesc
    latency_s: float
    energy_j: float
    simulated: bool
    source: str
    """``"insitu"`` (the op's time inside the whole model), ``"layers"`` (looped alone inside
    a layers run), ``"whole_single"`` (a one-layer model measured whole) or ``"marginal"``
    (the slope over a repetition set's copies: ``_with_marginal_costs``)."""
    trains: bool = True
    """False for an in-situ time under twice the profiler's resolution
    (``below_timer_resolution``): timestamps a microsecond apart, taken in step with a
    periodic loop, bias such an average by up to a microsecond either way. It still counts
    in its model's sum; it teaches no op model."""


@dataclass(frozen=True)
class WholeSample:
    device: str
    model_sha: str
    model_name: str
    latency_s: float
    energy_j: float
    simulated: bool


@dataclass
class Dataset:
    """Everything an estimator is fitted on."""

    layers: list[LayerSample]
    wholes: list[WholeSample]
    model_layers: dict[str, tuple[LayerDesc, ...]]
    """Model sha256 -> its layers in execution order."""
    model_names: dict[str, str]
    devices: dict[str, DeviceInfo]
    layer_sums: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    """(device, model sha256) -> {target: sum over layers of the layers-mode measurement}: what
    the whole model would cost if layers were additive."""
    unusable: int = 0
    """Measurements (layer rows and whole runs) left out because they are flagged unusable
    for both targets."""
    energy_only_unusable: int = 0
    """Measurements whose energy is left out (a flag about the meter) but whose latency
    trains."""
    no_features: int = 0
    """Layer measurements left out because their MACs say nothing: a convolution, pool or
    fully connected layer with no or zero MACs (its cost formula could not read its shapes).
    Such a layer would teach a per-op model that zero MACs cost milliseconds."""
    workload: str = "inference"
    """``inference`` (layer and whole samples of inferences) or ``train`` (a layer sample per
    part of a training step, a whole sample per step: ``train_dataset``)."""

    def value(self, sample: LayerSample | WholeSample, target: str) -> float:
        return float(getattr(sample, TARGETS[target][0]))

    def devices_with(self, target: str) -> list[str]:
        return sorted({s.device for s in self.layers if _ok(self.value(s, target))})

    def data_hash(self) -> str:
        """sha256 over the sorted training rows (identity, features and both targets)."""
        rows = sorted(
            [f"L|{s.device}|{s.model_sha}|{s.layer_index}|{s.desc.op}|{s.desc.macs}|"
             f"{s.latency_s!r}|{s.energy_j!r}|{s.source}" for s in self.layers]
            + [f"W|{s.device}|{s.model_sha}|{s.latency_s!r}|{s.energy_j!r}" for s in self.wholes])
        digest = hashlib.sha256()
        for row in rows:
            digest.update(row.encode())
            digest.update(b"\n")
        return digest.hexdigest()


def _ok(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def model_family(name: str) -> str:
    """The family a model belongs to, for leave-one-family-out validation: the layer kind of
    a sweep model (``sweep:conv ...`` -> ``conv``), ``reference`` for the reference set, the
    part before the slash of a ``package/model`` name, else the name up to its first space,
    colon or digit."""
    if name.startswith("sweep:"):
        return name[len("sweep:"):].split(" ", 1)[0]
    if name.startswith("ref:"):
        return "reference"
    if "/" in name.split(" ", 1)[0]:  # a corpus model, "package/model": its package
        return name.split("/", 1)[0]
    stem = name.split(" ", 1)[0].split(":", 1)[0]
    for i, ch in enumerate(stem):
        if ch.isdigit() and i > 0:
            return stem[:i].rstrip("_-.") or stem
    return stem


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[Row]:
    rel = con.execute(sql)
    names = [d[0] for d in rel.description or []]
    return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]


_DEVICE_COLUMNS = ("name", "platform", "cpu_max_khz", "cpu_count", "memory_bytes",
                   "meter_simulated")


def _device_sql(con: duckdb.DuckDBPyConnection) -> str:
    """Select the device facts this database has (older schemas lack some), timestamps as
    text: DuckDB needs pytz to hand TIMESTAMPTZ values to Python."""
    present = {d[0] for d in con.execute("SELECT * FROM devices LIMIT 0").description or []}
    columns = [c for c in _DEVICE_COLUMNS if c in present]
    return (f"SELECT {', '.join(columns)}, CAST(last_seen AS VARCHAR) AS last_seen "
            "FROM devices")


def _median(values: Iterable[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def load_dataset(db_path: str | Path) -> Dataset:
    """Read devices, layer runs and whole runs from ``db_path`` (opened read-only)."""
    path = Path(db_path)
    if not path.exists():
        raise EstimatorError(f"{path}: no results database here (pass --db)")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        raise EstimatorError(f"{path}: cannot open read-only: {e}") from e
    try:
        devices = _load_devices(_rows(con, _device_sql(con)))
        layer_rows = _rows(con, """
            SELECT r.device_name, r.model_name, r.model_sha256, r.mode, l.layer_index, l.op,
                   l.macs,
                   l.param_bytes, l.act_in_bytes, l.act_out_bytes, l.input_shapes,
                   l.output_shapes, l.latency_s, l.energy_j, l.simulated,
                   list_concat(coalesce(l.flags, []), coalesce(r.flags, [])) AS flags
            FROM layer_measurements l JOIN runs r USING (run_id)
            WHERE r.mode IN ('layers', 'insitu')""")
        whole_rows = _rows(con, """
            SELECT r.device_name, r.model_name, r.model_sha256, w.latency_p50_s,
                   w.latency_mean_s, w.energy_j, w.simulated,
                   list_concat(coalesce(w.flags, []), coalesce(r.flags, [])) AS flags
            FROM whole_measurements w JOIN runs r USING (run_id)
            WHERE r.mode <> 'train'  -- a training step is not an inference""")
    except duckdb.Error as e:
        raise EstimatorError(f"{path}: cannot read results (is this a joulefarm database?): "
                             f"{e}") from e
    finally:
        con.close()
    return build_dataset(devices, layer_rows, whole_rows)


def _load_devices(rows: list[Row]) -> dict[str, DeviceInfo]:
    """Latest facts per device name (a device re-registered with new facts keeps its name)."""
    latest: dict[str, Row] = {}
    for row in rows:
        name = str(row["name"])
        if name not in latest or str(row.get("last_seen")) > str(latest[name].get("last_seen")):
            latest[name] = row
    return {
        name: DeviceInfo(
            name=name,
            platform=str(row.get("platform") or ""),
            cpu_max_khz=int(row.get("cpu_max_khz") or 0),
            cpu_count=int(row.get("cpu_count") or 0),
            memory_bytes=int(row.get("memory_bytes") or 0),
            simulated_meter=bool(row.get("meter_simulated")),
        )
        for name, row in latest.items()
    }


def build_dataset(devices: Mapping[str, DeviceInfo], layer_rows: list[Row],
                  whole_rows: list[Row]) -> Dataset:
    """Merge raw rows into samples (see the module docstring for the rules)."""
    names: dict[str, str] = {}
    counts = {"unusable": 0, "energy_only": 0, "no_features": 0}
    descs: dict[str, dict[int, LayerDesc]] = defaultdict(dict)
    measured: dict[tuple[str, str, int], list[tuple[float, float, bool]]] = defaultdict(list)
    in_situ: dict[tuple[str, str, int], list[tuple[float, float, bool]]] = defaultdict(list)
    imprecise: set[tuple[str, str, int]] = set()
    for row in layer_rows:
        sha = str(row["model_sha256"])
        names[sha] = str(row["model_name"])
        layer_index = row["layer_index"]
        assert layer_index is not None  # NOT NULL in layer_measurements
        index = int(layer_index)
        desc = from_row(str(row["op"]), _int(row["macs"]), _int(row["param_bytes"]),
                        _int(row["act_in_bytes"]), _int(row["act_out_bytes"]),
                        _text(row["input_shapes"]), _text(row["output_shapes"]))
        insitu = row.get("mode") == "insitu"
        if not insitu or index not in descs[sha]:  # a layers run's shapes are the fed ones
            descs[sha][index] = desc
        if desc.macs <= 0 and op_entry(desc.op).family in COMPUTE_FAMILIES:
            counts["no_features"] += 1
            continue
        targets = _usable_targets(row, counts)
        if targets is None:
            continue
        (in_situ if insitu else measured)[(str(row["device_name"]), sha, index)].append(targets)
        flags: object = row.get("flags")
        if insitu and isinstance(flags, list | tuple) and "below_timer_resolution" in flags:
            imprecise.add((str(row["device_name"]), sha, index))
    model_layers = {sha: tuple(d[i] for i in sorted(d)) for sha, d in descs.items()}
    # A (device, model) measured in situ trains on its in-situ times only: two kinds of time
    # for one layer would teach the models two answers.
    situ_models = {(device, sha) for device, sha, _ in in_situ}
    measured = {k: v for k, v in measured.items() if (k[0], k[1]) not in situ_models}

    whole_runs: dict[tuple[str, str], list[tuple[float, float, bool]]] = defaultdict(list)
    for row in whole_rows:
        sha = str(row["model_sha256"])
        names.setdefault(sha, str(row["model_name"]))
        latency = _num(row["latency_p50_s"])
        if not _ok(latency):
            latency = _num(row["latency_mean_s"])
        targets = _usable_targets({**row, "latency_s": latency}, counts)
        if targets is not None:
            whole_runs[(str(row["device_name"]), sha)].append(targets)
    wholes = [
        WholeSample(device, sha, names[sha], _median(r[0] for r in runs),
                    _median(r[1] for r in runs), any(r[2] for r in runs))
        for (device, sha), runs in sorted(whole_runs.items())
    ]
    whole_by_key = {(w.device, w.model_sha): w for w in wholes}

    layers: list[LayerSample] = []
    sums: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: {"latency": 0.0,
                                                                        "energy": 0.0})
    merged = [(key, runs, "layers") for key, runs in measured.items()]
    merged += [(key, runs, "insitu") for key, runs in in_situ.items()]
    for (device, sha, index), runs, source in sorted(merged):
        latency = _median(r[0] for r in runs)
        energy = _median(r[1] for r in runs)
        sums[(device, sha)]["latency"] += latency
        sums[(device, sha)]["energy"] += energy
        simulated = any(r[2] for r in runs)
        whole = whole_by_key.get((device, sha))
        trains = (device, sha, index) not in imprecise
        if whole is not None and len(model_layers[sha]) == 1:
            latency, energy, simulated, source = (whole.latency_s, whole.energy_j,
                                                  whole.simulated, "whole_single")
            trains = True
        layers.append(LayerSample(device, sha, names[sha], index, descs[sha][index], latency,
                                  energy, simulated, source, trains))
    # Single-layer models measured only whole still make layer samples if any device ran
    # them layer by layer (the features are the same everywhere).
    for w in wholes:
        layer_list = model_layers.get(w.model_sha)
        if layer_list and len(layer_list) == 1 and (w.device, w.model_sha) not in sums:
            index = min(descs[w.model_sha])
            layers.append(LayerSample(w.device, w.model_sha, w.model_name, index, layer_list[0],
                                      w.latency_s, w.energy_j, w.simulated, "whole_single"))
    layers = _with_marginal_costs(layers, wholes, model_layers)
    # A repetition set is an instrument, not a model anyone runs: hundreds of chains of one
    # tiny op would outweigh every real model in the correction and the intervals.
    wholes = [w for w in wholes if not w.model_name.startswith("sweep:repeat ")]
    return Dataset(layers, wholes, model_layers, names, dict(devices), dict(sums),
                   unusable=counts["unusable"], energy_only_unusable=counts["energy_only"],
                   no_features=counts["no_features"])


MIN_REPEATS = 3
"""Models of a repetition set (``joulefarm.tflite.sweep.sample_repeats``) a device needs
measured whole for the op's marginal cost."""


def _with_marginal_costs(layers: list[LayerSample], wholes: list[WholeSample],
                         model_layers: Mapping[str, tuple[LayerDesc, ...]]
                         ) -> list[LayerSample]:
    """``layers`` with one ``marginal`` sample per repetition set and device: the slope of the
    whole latency (and energy) over the op's copies, what one more copy costs inside a model,
    free of the call's and the profiler's own costs. The set's single-copy model then trains
    nothing of its own (its whole call carries those costs)."""
    sets: dict[tuple[str, str], list[tuple[int, WholeSample]]] = defaultdict(list)
    for w in wholes:
        parts = w.model_name.split(" ")
        count = len(model_layers.get(w.model_sha, ()))
        if parts[0] == "sweep:repeat" and count and _ok(w.latency_s):
            sets[(w.device, f"{parts[1]} {parts[-1]}")].append((count, w))
    replaced: set[tuple[str, str]] = set()
    marginal: list[LayerSample] = []
    for (device, _), runs in sorted(sets.items(), key=lambda kv: kv[0]):
        runs.sort(key=lambda kw: kw[0])
        copies = np.asarray([k for k, _ in runs], dtype=np.float64)
        if len(set(copies.tolist())) < MIN_REPEATS or copies[0] != 1:
            continue
        latency = float(np.polyfit(copies, [w.latency_s for _, w in runs], 1)[0])
        energies = [w.energy_j for _, w in runs]
        energy = (float(np.polyfit(copies, energies, 1)[0])
                  if all(math.isfinite(e) for e in energies) else float("nan"))
        if latency <= 0:
            continue  # the noise beat the op: it says nothing
        single = runs[0][1]
        replaced.add((device, single.model_sha))
        marginal.append(LayerSample(device, single.model_sha, single.model_name, 0,
                                    model_layers[single.model_sha][0], latency, energy,
                                    single.simulated, "marginal"))
    kept = [replace(s, trains=False) if (s.device, s.model_sha) in replaced else s
            for s in layers]
    return kept + marginal


def _usable_targets(row: Row, counts: dict[str, int]) -> tuple[float, float, bool] | None:
    """(latency, energy, simulated) of a row, a target its flags rule out as NaN; None when
    both are ruled out (counted in ``counts``). A row without a ``flags`` column (built by
    hand) counts as usable."""
    flags: object = row.get("flags")
    latency, energy = _num(row["latency_s"]), _num(row["energy_j"])
    if isinstance(flags, list | tuple):
        if not is_usable(flags, "latency"):
            counts["unusable"] += 1
            return None
        if not is_usable(flags, "energy"):
            counts["energy_only"] += 1
            energy = float("nan")
    return latency, energy, bool(row["simulated"])


def _num(value: SqlValue) -> float:
    return float(value) if value is not None else float("nan")


def _int(value: SqlValue) -> int:
    """An integer cell; NULL reads as 0."""
    return int(value or 0)


def _text(value: SqlValue) -> str | None:
    return None if value is None else str(value)
