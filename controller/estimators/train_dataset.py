"""Training data for ``joulefarm fit --workload train``, read from a results database
(read-only): one training step's energy and latency, per layer and part, and the step itself.

- a **layer sample** per (device, model, layer, part) of runs of mode ``train``: the sum of the
  layer's phases of that part in ``phase_measurements`` (``train_features.part_of``), per
  step; the model-wide rows (layer NULL: loss, optimizer scalars) make one more sample, the
  ``STEP`` pseudo-layer of part ``other``. Its description is the layer's inference
  description (``model_layers`` of the trainable model hold those of the inference model it
  was made from, at the step's batch, indexed as the phases' layers) and the part
  (``train_features.PartDesc``).
- a **whole sample** per (device, model): the step, the run's ``whole_measurements`` row
  (energy per step, median step latency): what the corrected sum of the parts predicts.

The rules of ``dataset`` hold: repeated runs merge by their median; rows flagged unusable
(the run's flags, or the whole row's) are left out and counted; a meter flag drops the energy
only; a convolution, pool or fully connected layer without MACs trains nothing. A run whose
phases say no layer (``untagged``: a model converted elsewhere, without joulefarm's tags) or
name a layer that ``model_layers`` lacks is left out whole and counted in ``excluded_steps``.
Inference runs never enter (and ``dataset.load_dataset`` never reads a train run).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from controller.estimators.dataset import (
    COMPUTE_FAMILIES,
    Dataset,
    LayerSample,
    Row,
    SqlValue,
    WholeSample,
    _device_sql,
    _int,
    _load_devices,
    _median,
    _num,
    _ok,
    _rows,
    _text,
    _usable_targets,
)
from controller.estimators.errors import EstimatorError
from controller.estimators.features import DeviceInfo, LayerDesc, from_row
from controller.estimators.train_features import PARTS, STEP_OP, PartDesc, part_of, step_descs
from joulefarm.tflite.ops import op_entry

_SOURCE = re.compile(r"trainable: (\w+), (\w+)")
"""How a sweep stores what it made of a model (``controller.config.train_spec``)."""


@dataclass
class TrainDataset(Dataset):
    excluded_steps: int = 0
    """Train runs left out whole: untagged phases, or layers ``model_layers`` lacks."""
    setups: dict[str, int] = field(default_factory=dict)
    """``optimizer, loss`` -> models made trainable with them (from ``models.source``)."""

    def setup(self) -> tuple[str, str]:
        """The (optimizer, loss) most models were trained with (adam, mse when unknown)."""
        if not self.setups:
            return "adam", "mse"
        optimizer, loss = max(self.setups.items(), key=lambda kv: (kv[1], kv[0]))[0].split(", ")
        return optimizer, loss


@dataclass
class _Run:
    """One train run's phase rows: the phases of each layer (None: model-wide), and
    [latency, energy, simulated] summed per (layer, part)."""

    device: str
    sha: str
    name: str
    flags: SqlValue
    phases: dict[int | None, set[str]] = field(default_factory=lambda: defaultdict(set))
    sums: dict[tuple[int | None, str], tuple[float, float, bool]] = field(default_factory=dict)

    def add(self, row: Row) -> None:
        layer = None if row["layer_index"] is None else _int(row["layer_index"])
        phase = str(row["phase"])
        self.phases[layer].add(phase)
        key = (layer, "other" if layer is None else part_of(phase))
        latency, energy, simulated = self.sums.get(key, (0.0, 0.0, False))
        self.sums[key] = (latency + _num(row["latency_s"]), energy + _num(row["energy_j"]),
                          simulated or bool(row["simulated"]))


NO_TRAIN_RUNS = ("no training steps to fit on (no runs of mode train: measure some with a "
                 "suite whose [measure] mode = \"train\")")


def load_train_dataset(db_path: str | Path) -> TrainDataset:
    """Read devices and train runs from ``db_path`` (opened read-only). ``EstimatorError``
    when there are no train runs."""
    path = Path(db_path)
    if not path.exists():
        raise EstimatorError(f"{path}: no results database here (pass --db)")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        raise EstimatorError(f"{path}: cannot open read-only: {e}") from e
    try:
        devices = _load_devices(_rows(con, _device_sql(con)))
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables")
                  .fetchall()}
        if "phase_measurements" not in tables:
            raise EstimatorError(f"{path}: {NO_TRAIN_RUNS}")
        phase_rows = _rows(con, """
            SELECT r.run_id, r.device_name, r.model_name, r.model_sha256, p.layer_index,
                   p.phase, p.latency_s, p.energy_j, p.simulated,
                   coalesce(r.flags, []) AS flags
            FROM phase_measurements p JOIN runs r USING (run_id)
            WHERE r.mode = 'train'""")
        whole_rows = _rows(con, """
            SELECT r.run_id, r.device_name, r.model_name, r.model_sha256, w.latency_p50_s,
                   w.latency_mean_s, w.energy_j, w.simulated,
                   list_concat(coalesce(w.flags, []), coalesce(r.flags, [])) AS flags
            FROM whole_measurements w JOIN runs r USING (run_id)
            WHERE r.mode = 'train'""")
        layer_rows = _rows(con, """
            SELECT l.model_sha256, l.layer_index, l.op, l.macs, l.param_bytes, l.act_in_bytes,
                   l.act_out_bytes, l.input_shapes, l.output_shapes
            FROM model_layers l
            WHERE l.model_sha256 IN (SELECT model_sha256 FROM runs WHERE mode = 'train')""")
        sources = _rows(con, "SELECT sha256, source FROM models WHERE sha256 IN "
                             "(SELECT model_sha256 FROM runs WHERE mode = 'train')")
    except duckdb.Error as e:
        raise EstimatorError(f"{path}: cannot read results (is this a joulefarm database?): "
                             f"{e}") from e
    finally:
        con.close()
    if not phase_rows and not whole_rows:
        raise EstimatorError(f"{path}: {NO_TRAIN_RUNS}")
    return build_train_dataset(devices, phase_rows, whole_rows, layer_rows, sources)


def build_train_dataset(devices: Mapping[str, DeviceInfo], phase_rows: list[Row],
                        whole_rows: list[Row], layer_rows: list[Row],
                        sources: Sequence[Row] = ()) -> TrainDataset:
    """Merge raw rows into samples (see the module docstring)."""
    counts = {"unusable": 0, "energy_only": 0, "no_features": 0}
    inference: dict[str, dict[int, LayerDesc]] = defaultdict(dict)
    for row in layer_rows:
        inference[str(row["model_sha256"])][int(_int(row["layer_index"]))] = from_row(
            str(row["op"]), _int(row["macs"]), _int(row["param_bytes"]),
            _int(row["act_in_bytes"]), _int(row["act_out_bytes"]), _text(row["input_shapes"]),
            _text(row["output_shapes"]))

    runs: dict[str, _Run] = {}
    for row in phase_rows:
        run_id = str(row["run_id"])
        if run_id not in runs:
            runs[run_id] = _Run(str(row["device_name"]), str(row["model_sha256"]),
                                str(row["model_name"]), row["flags"])
        runs[run_id].add(row)

    excluded: set[str] = set()
    phases_of: dict[str, dict[int | None, set[str]]] = defaultdict(lambda: defaultdict(set))
    names: dict[str, str] = {}
    for run_id, run in runs.items():
        known = inference.get(run.sha, {})
        if any(p == "untagged" for ps in run.phases.values() for p in ps) or any(
                layer is not None and layer not in known for layer in run.phases):
            excluded.add(run_id)
            continue
        names[run.sha] = run.name
        for layer, ps in run.phases.items():
            phases_of[run.sha][layer] |= ps
    model_layers: dict[str, tuple[PartDesc, ...]] = {
        sha: step_descs(sorted(inference[sha].items()), phases)
        for sha, phases in phases_of.items()}
    by_part = {sha: {(d.layer_index, d.part): d for d in descs}
               for sha, descs in model_layers.items()}

    measured: dict[tuple[str, str, int | None, str], list[tuple[float, float, bool]]] = \
        defaultdict(list)
    for run_id, run in runs.items():
        if run_id in excluded:
            continue
        sha, device = run.sha, run.device
        for (layer, part), (latency, energy, simulated) in run.sums.items():
            desc = by_part[sha][(layer, part)]
            if desc.op != STEP_OP and desc.macs <= 0 and \
                    op_entry(desc.op).family in COMPUTE_FAMILIES:
                counts["no_features"] += 1
                continue
            targets = _usable_targets({"latency_s": latency, "energy_j": energy,
                                       "simulated": simulated, "flags": run.flags}, counts)
            if targets is not None:
                measured[(device, sha, layer, part)].append(targets)

    layers: list[LayerSample] = []
    layer_sums: dict[tuple[str, str], dict[str, float]] = defaultdict(
        lambda: {"latency": 0.0, "energy": 0.0})
    order = {p: i for i, p in enumerate(PARTS)}
    for (device, sha, layer, part), values in sorted(
            measured.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                              math.inf if kv[0][2] is None else kv[0][2],
                                              order[kv[0][3]])):
        latency = _median(v[0] for v in values)
        energy = _median(v[1] for v in values)
        layer_sums[(device, sha)]["latency"] += latency
        layer_sums[(device, sha)]["energy"] += energy
        desc = by_part[sha][(layer, part)]
        layers.append(LayerSample(device, sha, names[sha], -1 if layer is None else layer, desc,
                                  latency, energy, any(v[2] for v in values), "train"))

    steps: dict[tuple[str, str], list[tuple[float, float, bool]]] = defaultdict(list)
    for row in whole_rows:
        sha = str(row["model_sha256"])
        if str(row["run_id"]) in excluded or sha not in model_layers:
            continue
        latency = _num(row["latency_p50_s"])
        if not _ok(latency):
            latency = _num(row["latency_mean_s"])
        targets = _usable_targets({**row, "latency_s": latency}, counts)
        if targets is not None:
            steps[(str(row["device_name"]), sha)].append(targets)
    wholes = [WholeSample(device, sha, names[sha], _median(r[0] for r in values),
                          _median(r[1] for r in values), any(r[2] for r in values))
              for (device, sha), values in sorted(steps.items())]

    setups: Counter[str] = Counter()
    for row in sources:
        match = _SOURCE.search(str(row.get("source") or ""))
        if match and str(row["sha256"]) in model_layers:
            setups[f"{match.group(1)}, {match.group(2)}"] += 1
    return TrainDataset(layers, wholes, dict(model_layers), names, dict(devices),
                        dict(layer_sums), unusable=counts["unusable"],
                        energy_only_unusable=counts["energy_only"],
                        no_features=counts["no_features"], workload="train",
                        excluded_steps=len(excluded), setups=dict(setups))


@dataclass(frozen=True)
class PartRatio:
    """Measured energy of a layer type's backward and update against its forward, summed over
    every layer of that type with all three measured (on every device)."""

    op: str
    layers: int
    forward_j: float
    backward_j: float
    update_j: float

    @property
    def backward_ratio(self) -> float:
        return self.backward_j / self.forward_j if self.forward_j > 0 else math.nan

    @property
    def rest_ratio(self) -> float:
        """(backward + update) / forward: what the 3 x forward proxy takes as 2."""
        return ((self.backward_j + self.update_j) / self.forward_j if self.forward_j > 0
                else math.nan)


def part_ratios(dataset: Dataset, target: str = "energy") -> list[PartRatio]:
    """Per layer type (op), then ``all`` (every layer, the step's model-wide work left out),
    the measured backward and update against forward."""
    by_layer: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    ops: dict[tuple[str, str, int], str] = {}
    for s in dataset.layers:
        if not isinstance(s.desc, PartDesc) or s.desc.part == "other":
            continue
        value = dataset.value(s, target)
        if math.isfinite(value) and value > 0:
            key = (s.device, s.model_sha, s.layer_index)
            by_layer[key][s.desc.part] = value
            ops[key] = s.desc.op
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    for key, parts in by_layer.items():
        if "forward" not in parts:
            continue
        for op in (ops[key], "all"):
            total = totals[op]
            total[0] += 1
            total[1] += parts["forward"]
            total[2] += parts.get("backward", 0.0)
            total[3] += parts.get("update", 0.0)
    rows = [PartRatio(op, int(t[0]), t[1], t[2], t[3]) for op, t in totals.items()]
    return sorted(rows, key=lambda r: (r.op == "all", -r.forward_j - r.backward_j - r.update_j))


def flops_gap(dataset: Dataset, target: str = "energy") -> tuple[float, float, int]:
    """How far 3 x forward is from the measured steps: (median, and spread as the ratio of
    the 90th to the 10th percentile, of step / forward-parts sum) over every (device, model)
    with a step and every forward part measured."""
    forward: dict[tuple[str, str], float] = defaultdict(float)
    for s in dataset.layers:
        if isinstance(s.desc, PartDesc) and s.desc.part == "forward":
            forward[(s.device, s.model_sha)] += dataset.value(s, target)
    ratios = [dataset.value(w, target) / forward[(w.device, w.model_sha)]
              for w in dataset.wholes
              if forward.get((w.device, w.model_sha), 0) > 0 and _ok(dataset.value(w, target))]
    if not ratios:
        return math.nan, math.nan, 0
    values = np.asarray(ratios)
    return (float(np.median(values)),
            float(np.percentile(values, 90) / np.percentile(values, 10)), len(values))
