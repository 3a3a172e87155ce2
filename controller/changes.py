"""What changed between two nights: change points per series, metric and layer, with evidence.

A night is a sweep; nights are ordered by their start. Only runs of one measurement series
are compared (controller.series): a series key that changed is reported as such, never
compared across.

For each series measured in both nights, every metric (``METRICS``: energy per inference,
latency, and mean power, which tells an energy step of the power side from one of the time
side) is compared on the whole model and on each layer (controller.shifts: Welch's test over
the repetitions, or the stated uncertainty below 3 of them). Holm's correction runs over all of
a series' tests together, so ``alpha`` is the false-alarm rate per series. A change point is a
test that is significant and whose ratio moved by at least ``threshold``: a tiny but certain
step is no regression.

The whole model's value is the run's (runs.latency_s / energy_j: in layers mode the layers'
sum), so a whole-model step splits exactly into the layers' steps: a whole-model change point
lists the layers whose own change is significant and goes its way, largest contribution first,
with each one's share of the whole's change.

``compare_sweeps`` answers ``joulefarm compare A B`` and writes nothing; ``detect_changes``
compares a finished sweep with each series' previous night and records the change points
(tables change_points and series_changes), as ``joulefarm sweep run --detect-changes`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from controller.results_frames import (
    CHANGE_POINT_SCHEMA,
    SERIES_CHANGE_SCHEMA,
    Results,
    open_results,
)
from controller.series import SERIES_FIELDS, SeriesChange, series_changes
from controller.shifts import ALPHA, Shift, beyond, holm, shift
from controller.store import ResultStore, StoreInputError

METRICS: tuple[str, ...] = ("energy_j", "latency_s", "power_w")
"""Energy per inference (J), latency (s), mean power over a call (W = energy / latency)."""
DEFAULT_THRESHOLD = 0.05
"""The smallest relative change that counts (5%)."""
REGRESSION = "regression"
IMPROVEMENT = "improvement"


@dataclass(frozen=True)
class Attribution:
    """A layer's part in a whole-model change: its own change is significant."""

    layer_index: int
    op: str
    share: float
    """Its contribution / the whole's change (the shares of all layers add up to 1)."""


@dataclass(frozen=True)
class Compared:
    """One metric of one series (the whole model, or one layer) tested between two nights."""

    series_id: str
    before_sweep: str
    after_sweep: str
    metric: str
    layer_index: int | None
    """None: the whole model."""
    op: str | None
    shift: Shift
    p_adjusted: float
    """Holm-adjusted over every test of the series."""
    layers: tuple[Attribution, ...] = ()

    @property
    def scope(self) -> str:
        return "whole" if self.layer_index is None else "layer"

    @property
    def direction(self) -> str:
        # Every metric here costs: more of it is worse.
        return REGRESSION if self.shift.ratio > 1.0 else IMPROVEMENT


@dataclass
class Comparison:
    """Everything tested between nights, and what changed in the series keys."""

    alpha: float
    threshold: float
    series: pl.DataFrame
    """One row per series compared: series_id and the series key fields."""
    tested: list[Compared] = field(default_factory=list)
    untested: int = 0
    """Metrics of a layer or a whole that could not be tested (no spread, none stated)."""
    series_changes: list[tuple[SeriesChange, str, str]] = field(default_factory=list)
    """Each change with its before and after sweep."""

    def is_change_point(self, t: Compared) -> bool:
        return t.p_adjusted <= self.alpha and beyond(t.shift.ratio, self.threshold)

    def change_points(self) -> list[Compared]:
        return [t for t in self.tested if self.is_change_point(t)]

    def regressions(self, metrics: Sequence[str] = METRICS) -> list[Compared]:
        return [t for t in self.change_points()
                if t.direction == REGRESSION and t.metric in metrics]

    def frame(self, detected_at: datetime | None = None) -> pl.DataFrame:
        """The change points as rows of the change_points table (``CHANGE_POINT_SCHEMA``)."""
        at = detected_at or datetime.now(UTC)
        keys = {row["series_id"]: row for row in self.series.iter_rows(named=True)}
        rows = []
        for t in self.change_points():
            s = t.shift
            rows.append({
                **{k: keys[t.series_id][k] for k in ("series_id", *SERIES_FIELDS)},
                "metric": t.metric, "scope": t.scope, "layer_index": t.layer_index,
                "op": t.op, "before_sweep": t.before_sweep, "after_sweep": t.after_sweep,
                "before_value": s.before, "after_value": s.after, "ratio": s.ratio,
                "ratio_low": s.low, "ratio_high": s.high, "direction": t.direction,
                "p_value": t.p_adjusted, "evidence": s.evidence, "n_before": s.n_before,
                "n_after": s.n_after, "layers": [a.layer_index for a in t.layers],
                "layer_ops": [a.op for a in t.layers],
                "layer_shares": [a.share for a in t.layers], "alpha": self.alpha,
                "threshold": self.threshold, "detected_at": at,
            })
        return pl.DataFrame(rows, schema=CHANGE_POINT_SCHEMA, orient="row"
                            ) if rows else pl.DataFrame(schema=CHANGE_POINT_SCHEMA)

    def series_frame(self, detected_at: datetime | None = None) -> pl.DataFrame:
        """The series changes as rows of the series_changes table."""
        at = detected_at or datetime.now(UTC)
        rows = [{"device_name": c.device_name, "model_name": c.model_name, "field": c.field,
                 "before_value": c.before, "after_value": c.after,
                 "before_series": c.before_series, "after_series": c.after_series,
                 "before_sweep": before, "after_sweep": after, "detected_at": at}
                for c, before, after in self.series_changes]
        return pl.DataFrame(rows, schema=SERIES_CHANGE_SCHEMA, orient="row"
                            ) if rows else pl.DataFrame(schema=SERIES_CHANGE_SCHEMA)


# -- one series ---------------------------------------------------------------------------------

DISTURBED_FLAGS: tuple[str, ...] = ("latency_outlier",)
"""A layer row whose window something else ran in (joulefarm.latency): its median latency
ignores the disturbance, its mean power (so its energy) does not, so it is left out of that
layer's energy and power, and kept in its latency. A disturbed repetition would otherwise
hide a step (its spread) or fake one."""
_CLEAN_ONLY = frozenset({"energy_j", "power_w"})
_LATENCY_ERR = ((pl.col("latency_high_s") - pl.col("latency_low_s")) / 2.0)
# Each metric's stated 95% half-width, where the measurement states one. Power has none: its
# stated uncertainty would be mostly the latency's, which it divides out.
_STATED_ERR: dict[str, pl.Expr] = {"energy_j": pl.col("energy_err_j"), "latency_s": _LATENCY_ERR}


@dataclass(frozen=True)
class _Night:
    """One series' night, read once for every metric: per metric, the whole model's value of
    each usable run and its stated half-width; per layer index, its op and, per metric, one
    value per usable run and their stated half-widths."""

    whole: dict[str, np.ndarray]
    whole_err: dict[str, np.ndarray | None]
    layers: dict[int, tuple[str, dict[str, np.ndarray], dict[str, np.ndarray | None]]]


def _read_night(runs: pl.DataFrame, layers: pl.DataFrame) -> _Night:
    usable_runs = runs.filter(pl.col("usable"))
    whole = {m: usable_runs[m].to_numpy().astype(np.float64) for m in METRICS}
    whole_err: dict[str, np.ndarray | None] = dict.fromkeys(METRICS)
    if not layers.is_empty():
        # The whole's stated half-width: its layers' added in quadrature (independent
        # windows); none where a run has no layers, or a layer states none.
        per_run = layers.group_by("run_id").agg(
            *(pl.when(e.is_null().any()).then(None).otherwise(e.pow(2).sum().sqrt()).alias(m)
              for m, e in _STATED_ERR.items()))
        joined = usable_runs.select("run_id").join(per_run, on="run_id", how="left")
        whole_err.update({m: joined[m].to_numpy().astype(np.float64) for m in _STATED_ERR})
    clean = ~pl.col("flags").list.set_intersection(list(DISTURBED_FLAGS)).list.len().gt(0)

    def kept(expr: pl.Expr, metric: str) -> pl.Expr:
        return expr.filter(clean) if metric in _CLEAN_ONLY else expr

    grouped = layers.filter(pl.col("usable")).group_by("layer_index").agg(
        pl.col("op").first(), *(kept(pl.col(m), m) for m in METRICS),
        *(kept(e, m).alias(f"{m}_err") for m, e in _STATED_ERR.items()))
    per_layer: dict[int, tuple[str, dict[str, np.ndarray], dict[str, np.ndarray | None]]] = {}
    for row in grouped.iter_rows(named=True):
        values = {m: np.array(row[m], dtype=np.float64) for m in METRICS}
        errs: dict[str, np.ndarray | None] = {
            m: (np.array(row[f"{m}_err"], dtype=np.float64) if m in _STATED_ERR else None)
            for m in METRICS}
        per_layer[int(row["layer_index"])] = (str(row["op"]), values, errs)
    return _Night(whole, whole_err, per_layer)


def _means(night: _Night, index: int) -> tuple[float, float]:
    """A layer's mean energy (J) and latency (s) over the night's usable runs (NaN: none)."""
    _, values, _ = night.layers[index]
    e, t = values["energy_j"], values["latency_s"]
    return (float(np.mean(e)) if e.size else math.nan,
            float(np.mean(t)) if t.size else math.nan)


def _contributions(metric: str, before: _Night, after: _Night) -> dict[int, float]:
    """Each layer's part of the whole's change of ``metric``; they add up to the change of
    the layers' sum (energy, latency), or of its power: (dE_i - P_before dT_i) / T_after."""
    b = {i: _means(before, i) for i in before.layers}
    a = {i: _means(after, i) for i in after.layers}
    # Layers measured in both nights, with every value known (all of a layer's windows may
    # have been disturbed).
    common = [i for i in sorted(set(b) & set(a)) if all(map(math.isfinite, (*b[i], *a[i])))]
    if metric in ("energy_j", "latency_s"):
        k = 0 if metric == "energy_j" else 1
        return {i: a[i][k] - b[i][k] for i in common}
    e_b, t_b = sum(b[i][0] for i in common), sum(b[i][1] for i in common)
    t_a = sum(a[i][1] for i in common)
    if t_b <= 0 or t_a <= 0:
        return {}
    p_b = e_b / t_b
    return {i: ((a[i][0] - b[i][0]) - p_b * (a[i][1] - b[i][1])) / t_a for i in common}


def _attribute(whole: Compared, layer_tests: Sequence[Compared], contributions: dict[int, float],
               alpha: float) -> tuple[Attribution, ...]:
    total = sum(contributions.values())
    if not contributions or total == 0.0 or not math.isfinite(total):
        return ()
    sign = 1.0 if whole.shift.ratio > 1.0 else -1.0
    moved = [(t, contributions[t.layer_index]) for t in layer_tests
             if t.layer_index is not None and t.layer_index in contributions
             and t.p_adjusted <= alpha and contributions[t.layer_index] * sign > 0]
    moved.sort(key=lambda tc: -abs(tc[1]))
    return tuple(Attribution(int(t.layer_index or 0), t.op or "", c / total) for t, c in moved)


def compare_series(series_id: str, before_sweep: str, after_sweep: str, *,
                   before_runs: pl.DataFrame, after_runs: pl.DataFrame,
                   before_layers: pl.DataFrame, after_layers: pl.DataFrame,
                   metrics: Sequence[str] = METRICS, alpha: float = ALPHA
                   ) -> tuple[list[Compared], int]:
    """Test every metric of one series between two nights, on the whole model and on each
    layer measured in both: the tests (Holm-adjusted together, whole-model tests attributed
    to layers) and how many could not be tested. The frames hold that series' rows only
    (``Results.runs`` and ``Results.layers`` columns)."""
    before, after = _read_night(before_runs, before_layers), _read_night(after_runs, after_layers)
    found: list[tuple[str, int | None, str | None, Shift]] = []
    untested = 0
    common = sorted(set(before.layers) & set(after.layers))
    for metric in metrics:
        s = shift(before.whole[metric], after.whole[metric],
                  before_err=before.whole_err[metric], after_err=after.whole_err[metric],
                  alpha=alpha)
        if s is None:
            untested += 1
        else:
            found.append((metric, None, None, s))
        for index in common:
            op, b_values, b_err = before.layers[index]
            _, a_values, a_err = after.layers[index]
            s = shift(b_values[metric], a_values[metric], before_err=b_err[metric],
                      after_err=a_err[metric], alpha=alpha)
            if s is None:
                untested += 1
            else:
                found.append((metric, index, op, s))
    adjusted = holm([s.p_value for *_, s in found])
    tests = [Compared(series_id, before_sweep, after_sweep, metric, index, op, s, float(p))
             for (metric, index, op, s), p in zip(found, adjusted, strict=True)]
    out = []
    for t in tests:
        if t.layer_index is None:
            layer_tests = [x for x in tests if x.metric == t.metric and x.layer_index is not None]
            t = replace(t, layers=_attribute(t, layer_tests,
                                             _contributions(t.metric, before, after), alpha))
        out.append(t)
    return out, untested


# -- two sweeps, or a sweep and each series' previous night ------------------------------------

def _check(alpha: float, threshold: float, metrics: Sequence[str]) -> None:
    if not 0.0 < alpha < 1.0:
        raise StoreInputError(f"alpha must be between 0 and 1, got {alpha}")
    if not 0.0 <= threshold < 1.0:
        raise StoreInputError(f"threshold must be at least 0 and below 1 (100%), got "
                              f"{threshold}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise StoreInputError(f"unknown metric {', '.join(unknown) or '(none)'}; choose from "
                              f"{', '.join(METRICS)}")


def _series_keys(runs: pl.DataFrame) -> pl.DataFrame:
    return runs.select(["series_id", *SERIES_FIELDS]).unique("series_id", maintain_order=True)


def _compare_pairs(results: Results, pairs: dict[str, list[str]], after: str,
                   after_runs: pl.DataFrame, comparison: Comparison,
                   metrics: Sequence[str]) -> None:
    """Test the series of ``after`` against the sweep each is paired with (before sweep ->
    its series ids), into ``comparison``."""
    after_layers = results.layers([after])
    for before, ids in pairs.items():
        before_runs, before_layers = results.runs([before]), results.layers([before])
        for sid in ids:
            tests, untested = compare_series(
                sid, before, after,
                before_runs=before_runs.filter(pl.col("series_id") == sid),
                after_runs=after_runs.filter(pl.col("series_id") == sid),
                before_layers=before_layers.filter(pl.col("series_id") == sid),
                after_layers=after_layers.filter(pl.col("series_id") == sid),
                metrics=metrics, alpha=comparison.alpha)
            comparison.tested.extend(tests)
            comparison.untested += untested


def compare_sweeps(results: Results, before: str, after: str, *, alpha: float = ALPHA,
                   threshold: float = DEFAULT_THRESHOLD, metrics: Sequence[str] = METRICS
                   ) -> Comparison:
    """Every series measured in both sweeps, tested between them (``joulefarm compare``);
    reads only."""
    _check(alpha, threshold, metrics)
    before_runs, after_runs = results.runs([before]), results.runs([after])
    common = [s for s in after_runs["series_id"].unique(maintain_order=True).to_list()
              if s in set(before_runs["series_id"].to_list())]
    comparison = Comparison(alpha=alpha, threshold=threshold,
                            series=_series_keys(after_runs.filter(
                                pl.col("series_id").is_in(common))))
    comparison.series_changes = [(c, before, after)
                                 for c in series_changes(before_runs, after_runs)]
    _compare_pairs(results, {before: common} if common else {}, after, after_runs, comparison,
                   metrics)
    return comparison


def previous_nights(results: Results, sweep_id: str) -> tuple[dict[str, list[str]],
                                                              pl.DataFrame]:
    """For each series of ``sweep_id``, the last sweep started before it that measured the
    series (before sweep -> series ids); and, per device and model, the runs of the last
    earlier sweep that measured them (what the series changes are read against)."""
    sweeps = results.sweeps()
    if sweep_id not in sweeps["sweep_id"].to_list():
        raise StoreInputError(f"{results.path}: no sweep {sweep_id!r}")
    order = sweeps["sweep_id"].to_list()
    earlier = order[:order.index(sweep_id)]
    after = results.runs([sweep_id])
    if not earlier:
        return {}, after.clear()
    runs = results.runs(earlier)
    rank = {s: k for k, s in enumerate(earlier)}
    runs = runs.with_columns(pl.col("sweep_id").replace_strict(rank, return_dtype=pl.Int64)
                             .alias("night"))
    last = (runs.filter(pl.col("series_id").is_in(after["series_id"].unique().to_list()))
            .group_by("series_id").agg(pl.col("night").max()))
    pairs: dict[str, list[str]] = {}
    for sid, night in last.sort("series_id").iter_rows():
        pairs.setdefault(earlier[night], []).append(sid)
    last_pair = runs.group_by("device_name", "model_name").agg(pl.col("night").max().alias("n"))
    before = runs.join(last_pair, on=["device_name", "model_name"]).filter(
        pl.col("night") == pl.col("n")).drop("night", "n")
    return pairs, before


def detect_changes(db: str | Path, sweep_id: str, *, alpha: float = ALPHA,
                   threshold: float = DEFAULT_THRESHOLD, metrics: Sequence[str] = METRICS
                   ) -> Comparison:
    """Compare each series of a finished sweep with its previous night, and record the change
    points and series changes (replacing any recorded after this sweep before). What a
    scheduled sweep runs when it finishes (``joulefarm sweep run --detect-changes``)."""
    _check(alpha, threshold, metrics)
    results = open_results(db)
    pairs, before_runs = previous_nights(results, sweep_id)
    after_runs = results.runs([sweep_id])
    ids = [sid for group in pairs.values() for sid in group]
    comparison = Comparison(alpha=alpha, threshold=threshold,
                            series=_series_keys(after_runs.filter(pl.col("series_id")
                                                                  .is_in(ids))))
    previous = dict(before_runs.select("device_name", "model_name", "sweep_id").unique()
                    .select(pl.concat_str("device_name", "model_name", separator="\x1f"),
                            "sweep_id").iter_rows())
    comparison.series_changes = [
        (c, previous[f"{c.device_name}\x1f{c.model_name}"], sweep_id)
        for c in series_changes(before_runs, after_runs)]
    _compare_pairs(results, pairs, sweep_id, after_runs, comparison, metrics)
    detected_at = datetime.now(UTC)
    with ResultStore(results.path) as store:
        store.replace_change_points(sweep_id, comparison.frame(detected_at).to_arrow(),
                                    comparison.series_frame(detected_at).to_arrow())
    return comparison


__all__ = ["DEFAULT_THRESHOLD", "METRICS", "Attribution", "Comparison", "Compared",
           "compare_series", "compare_sweeps", "detect_changes", "previous_nights"]
