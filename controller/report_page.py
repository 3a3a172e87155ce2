"""``joulefarm report``: one self-contained HTML page about a sweep (or the nights since a date).

The page holds everything it shows: plots are inline SVG (``controller.report_plots``), the
style is one inline ``<style>``, and there is no script, so it opens offline, from a mail
attachment or an archive, years later. It reads the results through the results API
(``controller.results_frames``), read-only.

Sections: what changed (change points of these nights against the night before, with the
layers that moved, and series that changed: a new runtime version, another model file), devices
side by side, each model's energy per layer per device, a run's power trace with its layer
windows, training steps (train mode: forward, backward and update per layer), the history of
each series with its change points, and, given estimators, predicted against measured.
Simulated data is marked on every plot and in a banner.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from controller import report_plots as plots
from controller.config.train_spec import PREFIX_SEPARATOR
from controller.results_frames import Results
from controller.train_prefixes import prefix_splits
from joulefarm.errors import InputError

# Caps that keep a report of a large farm readable (and quick to draw): the rest is in the DB.
MAX_MODELS = 12
MAX_TRACES = 4
MAX_HISTORIES = 12
MAX_CHANGE_ROWS = 200

_STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 980px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.banner { background: #fff3cd; border: 1px solid #e0c36a; padding: 0.6em; margin: 0.8em 0; }
.regression { color: #b00020; font-weight: bold; } .improvement { color: #1b7a1b; }
.plot { margin: 0.6em 0 1.2em 0; } .plot svg { max-width: 100%; height: auto; }
.muted { color: #777; }
"""


@dataclass(frozen=True)
class ReportScope:
    """Which nights a report covers: ``sweeps`` (oldest first); the last is "tonight"."""

    sweeps: tuple[str, ...]
    title: str


def scope_for(results: Results, sweep: str | None, since: str | None) -> ReportScope:
    """The sweeps of ``--sweep ID`` (or a date: that day's last sweep), or of every sweep
    started on or after ``--since`` (a date); by default the newest sweep."""
    all_sweeps = results.sweeps()
    if all_sweeps.height == 0:
        raise InputError(f"{results.path}: no sweeps yet (run `joulefarm demo` or "
                         "`joulefarm sweep run`)")
    if sweep is not None and since is not None:
        raise InputError("give --sweep or --since, not both")
    if since is not None:
        try:
            day = datetime.fromisoformat(since).date()
        except ValueError:
            raise InputError(f"--since: expected a date YYYY-MM-DD, got {since!r}") from None
        chosen = [s for s, t in all_sweeps.select("sweep_id", "started_at").iter_rows()
                  if t.astimezone().date() >= day]
        if not chosen:
            raise InputError(f"--since {day}: no sweep started on or after that day")
        return ReportScope(tuple(chosen), f"{len(chosen)} sweep(s) since {day}")
    chosen_id = results.resolve_sweep(sweep) if sweep else str(all_sweeps["sweep_id"][-1])
    return ReportScope((chosen_id,), f"sweep {chosen_id}")


def _esc(value: object) -> str:
    return html.escape(str(value))


def _number(value: object, unit: str = "", scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    assert isinstance(value, int | float)
    return f"{value * scale:.4g}{unit}"


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()
           ) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"num\">{cell}</td>" if k in numeric else f"<td>{cell}</td>"
                         for k, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _plot(svg: str, caption: str) -> str:
    return f'<figure class="plot">{svg}<figcaption class="muted">{_esc(caption)}</figcaption>' \
           "</figure>"


def _median_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """One row per (device, model): the median over repetitions of usable runs, of whole mode
    where the model ran whole (what one inference costs), else of its layers' sums."""
    usable = runs.filter(pl.col("usable") & pl.col("energy_j").is_not_null())
    whole = usable.filter(pl.col("mode") == "whole")
    kept = pl.concat([whole, usable.filter(pl.col("mode") != "whole").join(
        whole.select("device_name", "model_name").unique(), on=["device_name", "model_name"],
        how="anti")])
    return (kept.group_by("device_name", "model_name")
            .agg(pl.col("energy_j").median(), pl.col("latency_s").median(),
                 pl.col("mode").first(), pl.col("simulated").any()))


def _changes_section(changes: pl.DataFrame, series_changes: pl.DataFrame) -> str:
    parts = ["<h2>What changed</h2>"]
    if changes.height == 0 and series_changes.height == 0:
        parts.append('<p class="muted">No change point: nothing moved beyond the threshold, at '
                     "the stated false-alarm rate, against the night before.</p>")
    if changes.height:
        rows = []
        for r in changes.head(MAX_CHANGE_ROWS).iter_rows(named=True):
            where = ("whole model" if r["scope"] == "whole"
                     else f"layer {r['layer_index']} {r['op']}")
            moved = ""
            if r["scope"] == "whole" and r.get("layers"):
                moved = ", ".join(f"{i} {op}" for i, op in zip(r["layers"], r["layer_ops"] or [],
                                                               strict=False))
            css = "regression" if r["direction"] == "regression" else "improvement"
            rows.append([
                _esc(r["device_name"]), _esc(r["model_name"]), _esc(where), _esc(r["metric"]),
                f'<span class="{css}">{_esc(r["direction"])}</span>',
                f"{(r['ratio'] - 1) * 100:+.1f}%",
                f"{(r['ratio_low'] - 1) * 100:+.1f}% .. {(r['ratio_high'] - 1) * 100:+.1f}%",
                _number(r["p_value"]), _esc(moved),
                "simulated" if r["simulated"] else "measured"])
        parts.append(_table(["device", "model", "where", "metric", "direction", "change",
                             "interval", "p", "layers that moved", "energy source"], rows,
                            numeric=(5, 6, 7)))
        if changes.height > MAX_CHANGE_ROWS:
            parts.append(f'<p class="muted">{changes.height - MAX_CHANGE_ROWS} more in the '
                         "database (change_points).</p>")
    if series_changes.height:
        rows = [[_esc(r["device_name"]), _esc(r["model_name"]), _esc(r["field"]),
                 _esc(r["before_value"]), _esc(r["after_value"])]
                for r in series_changes.iter_rows(named=True)]
        parts.append("<p>Series that changed (a new series starts; earlier nights are not "
                     "compared with it):</p>")
        parts.append(_table(["device", "model", "what", "before", "after"], rows))
    return "".join(parts)


def _devices_section(tonight: pl.DataFrame) -> str:
    if tonight.height == 0:
        return ""
    table = _table(
        ["device", "model", "energy per inference", "latency", "mode", "energy source"],
        [[_esc(r["device_name"]), _esc(r["model_name"]), _number(r["energy_j"], " mJ", 1e3),
          _number(r["latency_s"], " ms", 1e3), _esc(r["mode"]),
          "simulated" if r["simulated"] else "measured"]
         for r in tonight.sort("model_name", "device_name").iter_rows(named=True)],
        numeric=(2, 3))
    return ("<h2>Devices side by side</h2>"
            + _plot(plots.devices_side_by_side(tonight),
                    "Median over repetitions of each model's energy per inference, per device.")
            + table)


def _layers_section(layers: pl.DataFrame) -> str:
    usable = layers.filter(pl.col("usable") & pl.col("energy_j").is_not_null())
    if usable.height == 0:
        return ""
    per_layer = (usable.group_by("model_name", "device_name", "layer_index")
                 .agg(pl.col("op").first(), pl.col("energy_j").median(),
                      pl.col("simulated").any()))
    parts = ["<h2>Energy per layer, per device</h2>"]
    for model in sorted(per_layer["model_name"].unique().to_list())[:MAX_MODELS]:
        rows = per_layer.filter(pl.col("model_name") == model)
        parts.append(_plot(plots.layer_energy_per_device(rows, model),
                           f"{model}: median energy per call of each layer (layers mode)."))
    return "".join(parts)


def _training_section(results: Results, runs: pl.DataFrame, sweeps: Sequence[str]) -> str:
    """Train-mode runs: each model's step per device (forward, backward, update, and what the
    op windows hold of the step), and its energy per layer stacked by part."""
    everything = runs.filter((pl.col("mode") == "train") & pl.col("usable"))
    if everything.height == 0:
        return ""
    # The prefixes of the subtraction method have a table of their own, below.
    train = everything.filter(~pl.col("model_name").str.contains(PREFIX_SEPARATOR,
                                                                 literal=True))
    phases = results.phases(list(sweeps)).join(train.select("run_id"), on="run_id")
    whole = results.whole(list(sweeps)).join(train.select("run_id"), on="run_id")
    per_run = (phases.group_by("run_id", "part").agg(pl.col("energy_j").sum())
               .pivot(on="part", index="run_id", values="energy_j")
               .join(whole.select("run_id", "device_name", "model_name", "energy_j",
                                  "latency_mean_s", "simulated"), on="run_id"))
    for part in (*plots.TRAIN_PARTS, "other"):
        if part not in per_run.columns:
            per_run = per_run.with_columns(pl.lit(0.0).alias(part))
    step = (per_run.group_by("device_name", "model_name").agg(
        pl.col("energy_j").median(), pl.col("latency_mean_s").median(),
        *(pl.col(p).median() for p in (*plots.TRAIN_PARTS, "other")),
        pl.col("simulated").any()).sort("model_name", "device_name"))
    rows = []
    for r in step.iter_rows(named=True):
        held = sum(r[p] or 0.0 for p in (*plots.TRAIN_PARTS, "other"))
        rows.append([_esc(r["device_name"]), _esc(r["model_name"]),
                     _number(r["energy_j"], " mJ", 1e3), _number(r["latency_mean_s"], " ms", 1e3),
                     *(_number(r[p], " mJ", 1e3) for p in plots.TRAIN_PARTS),
                     _number(held / r["energy_j"] if r["energy_j"] else math.nan, "", 1.0),
                     "simulated" if r["simulated"] else "measured"])
    parts = ["<h2>Training steps</h2>",
             _table(["device", "model", "energy per step", "step", "forward", "backward",
                     "update", "op windows / step", "energy source"], rows,
                    numeric=(2, 3, 4, 5, 6, 7))]
    per_layer = (phases.filter(pl.col("layer_index").is_not_null()
                               & pl.col("part").is_in(plots.TRAIN_PARTS))
                 .group_by("run_id", "device_name", "model_name", "layer_index", "part")
                 .agg(pl.col("op").first(), pl.col("energy_j").sum(), pl.col("simulated").any())
                 .group_by("device_name", "model_name", "layer_index", "part")
                 .agg(pl.col("op").first(), pl.col("energy_j").median(),
                      pl.col("simulated").any()))
    pairs = per_layer.select("model_name", "device_name").unique().sort("model_name",
                                                                        "device_name")
    for model, device in pairs.head(MAX_MODELS).iter_rows():
        mine = per_layer.filter((pl.col("model_name") == model)
                                & (pl.col("device_name") == device))
        parts.append(_plot(plots.training_step_per_layer(mine, f"{model} on {device}: "
                                                               "one training step per layer"),
                           f"{model} on {device}: median energy per training step of each "
                           "layer's forward, backward (input and weight gradients) and update "
                           "ops (train mode, the runtime's per-op events)."))
    return "".join(parts) + _subtraction_table(results, sweeps)


def _subtraction_table(results: Results, sweeps: Sequence[str]) -> str:
    """The subtraction method's layers beside the per-op events (``[train] prefixes``)."""
    split = prefix_splits(results, list(sweeps))
    if split.height == 0:
        return ""
    rows = []
    for r in split.head(MAX_CHANGE_ROWS).iter_rows(named=True):
        events, sub = r["events_energy_j"], r["subtraction_energy_j"]
        rows.append([_esc(r["device_name"]), _esc(r["model_name"]), str(r["layer_index"]),
                     _esc(r["op"]), _number(events, " mJ", 1e3), _number(sub, " mJ", 1e3),
                     _number((sub - events) / events * 100 if events else math.nan, " %"),
                     _number(r["true_energy_j"], " mJ", 1e3),
                     "yes" if r["vouched"] else "no (cpu_contended)",
                     "simulated" if r["simulated"] else "measured"])
    return ("<h3>Per layer by subtraction (THOR)</h3><p>Each layer's energy per training step "
            "as E(k) &minus; E(k&minus;1) of the steps of the model's first k and k&minus;1 "
            "layers (what a meter too slow for single ops gives), beside the runtime's per-op "
            "events of the same step; a layer is not vouched for when a prefix it needs ran "
            "only beside another process.</p>"
            + _table(["device", "model", "layer", "op", "events", "subtraction", "difference",
                      "truth", "vouched", "energy source"], rows, numeric=(2, 4, 5, 6, 7)))


def _traces_section(results: Results, runs: pl.DataFrame, layers: pl.DataFrame) -> str:
    from joulefarm.traces.model import Trace
    from joulefarm.traces.parquet import read_trace_parquet

    with_trace = runs.filter(pl.col("trace_path").is_not_null() & (pl.col("mode") == "layers"))
    if with_trace.height == 0:
        return ""
    parts = ["<h2>Power traces with their layer windows</h2>"]
    for run in with_trace.unique("device_name", keep="first", maintain_order=True) \
            .head(MAX_TRACES).iter_rows(named=True):
        path = results.path.parent / run["trace_path"]
        try:
            trace = read_trace_parquet(path)
            if not isinstance(trace, Trace):
                raise TypeError("not a run trace of uniform buckets")
        except Exception as e:  # a trace file moved or damaged: say so, show the rest
            parts.append(f'<p class="muted">{_esc(run["run_id"])}: trace not shown '
                         f"({_esc(type(e).__name__)}: {_esc(e)})</p>")
            continue
        t = trace.t0_s + np.arange(trace.samples) / trace.sample_rate_hz
        clock = str(trace.meta.get("clock", "agent"))
        if clock == "meter":  # the agent's clock = the meter's minus the run's offset
            t = t - float(run["clock_offset_s"] or 0.0)
        channels = trace.channels
        windows = layers.filter(pl.col("run_id") == run["run_id"])
        title = f"{run['device_name']}: {run['model_name']} (run {run['run_id']})"
        parts.append(_plot(plots.power_trace_with_layers(
            t, np.asarray(trace.power_w), np.asarray(channels["min_w"]),
            np.asarray(channels["max_w"]), windows, title, bool(run["simulated"])),
            "The run's stored trace (min, max and mean per bucket) with each measured layer's "
            "window shaded."))
    return "".join(parts)


_HISTORY_METRICS = {"energy_j": ("energy per inference (mJ)", 1e3),
                    "power_w": ("mean power while running (W)", 1.0),
                    "latency_s": ("latency per inference (ms)", 1e3)}


def _history_section(runs: pl.DataFrame, changes: pl.DataFrame) -> str:
    """Each series with more than one night, those with a change point first: the metric of
    its (first) whole-model change point, else energy, night by night."""
    usable = runs.filter(pl.col("usable") & pl.col("energy_j").is_not_null())
    counts = usable.group_by("series_id").agg(pl.col("sweep_id").n_unique().alias("nights"))
    several = counts.filter(pl.col("nights") > 1)["series_id"].to_list()
    if not several:
        return ("<h2>History</h2><p class=\"muted\">Each series has one night so far: its "
                "history starts with the next sweep.</p>")
    whole = changes.filter(pl.col("scope") == "whole")
    metric_of: dict[str, str] = {}
    for c in whole.iter_rows(named=True):
        metric_of.setdefault(c["series_id"], c["metric"])
    order = sorted(several, key=lambda s: (s not in metric_of, s))
    parts = ["<h2>History of each series</h2>"]
    for series in order[:MAX_HISTORIES]:
        metric = metric_of.get(series, "energy_j")
        label, scale = _HISTORY_METRICS[metric]
        nights = (usable.filter(pl.col("series_id") == series)
                  .group_by("sweep_id")
                  .agg(pl.col("sweep_started_at").first().alias("started_at"),
                       pl.col("device_name").first(), pl.col("model_name").first(),
                       pl.col("simulated").any(),
                       (pl.col(metric).median() * scale).alias("median"),
                       (pl.col(metric).min() * scale).alias("low"),
                       (pl.col(metric).max() * scale).alias("high"))
                  .sort("started_at"))
        marks = []
        for c in whole.filter((pl.col("series_id") == series)
                              & (pl.col("metric") == metric)).iter_rows(named=True):
            when = nights.filter(pl.col("sweep_id") == c["after_sweep"])["started_at"]
            if when.len():
                marks.append((when[0], f"{(c['ratio'] - 1) * 100:+.1f}% {c['direction']}"))
        first = nights.row(0, named=True)
        parts.append(_plot(plots.series_history(
            nights, marks, f"{first['device_name']}: {first['model_name']}", label,
            bool(nights["simulated"].any())),
            f"Median {label.split(' (')[0]} of each night (bars: the range over repetitions); "
            "dashed lines: change points."))
    return "".join(parts)


def _estimators_section(results: Results, estimators: Sequence[Path], tonight: pl.DataFrame,
                        runs: pl.DataFrame) -> str:
    from controller.estimators.predict import Estimator

    if not estimators or tonight.height == 0:
        return ""
    shas = dict(zip(runs["model_name"], runs["model_sha256"], strict=True))
    contents = results.model_contents(sorted(set(shas.values())))
    parts = ["<h2>Estimators: predicted against measured</h2>"]
    for directory in estimators:
        estimator = Estimator(directory)
        metric = "energy_j" if "energy" in estimator.target else "latency_s"
        points = []
        for r in tonight.iter_rows(named=True):
            content = contents.get(shas.get(r["model_name"], ""))
            if content is None or r["device_name"] not in estimator.devices:
                continue
            prediction = estimator.predict(content, r["device_name"])
            points.append({"measured": r[metric],
                           "predicted": prediction.totals[prediction.preferred][0],
                           "label": f"{r['model_name']}@{r['device_name']}",
                           "simulated": r["simulated"]})
        if not points:
            parts.append(f'<p class="muted">{_esc(directory)}: none of these devices and models '
                         "is one it predicts.</p>")
            continue
        parts.append(_plot(plots.predicted_vs_measured(
            pl.DataFrame(points), f"{directory.name}: {metric} predicted vs measured"),
            f"Estimator {directory} (its preferred model) against tonight's medians."))
    return "".join(parts)


def changes_in(results: Results, scope: ReportScope) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What changed in these nights: the change points and series changes recorded after each
    (``sweep run --detect-changes``); for the last night, when none were recorded, compared
    here, read-only, with the sweep before it (``controller.changes.compare_sweeps``)."""
    from controller.changes import compare_sweeps

    changes = results.change_points(list(scope.sweeps))
    series = results.series_changes(list(scope.sweeps))
    tonight = scope.sweeps[-1]
    recorded = set(changes["after_sweep"].to_list()) | set(series["after_sweep"].to_list())
    order = results.sweeps()["sweep_id"].to_list()
    earlier = order[:order.index(tonight)]
    if tonight in recorded or not earlier:
        return changes, series
    comparison = compare_sweeps(results, earlier[-1], tonight)
    return (pl.concat([changes, comparison.frame()], how="vertical_relaxed"),
            pl.concat([series, comparison.series_frame()], how="vertical_relaxed"))


def build_report(results: Results, scope: ReportScope, changes: pl.DataFrame,
                 series_changes: pl.DataFrame, estimators: Sequence[Path] = ()) -> str:
    """The whole page as text. ``changes`` and ``series_changes``: what moved in these nights
    (``controller.results_frames.CHANGE_POINT_SCHEMA`` and ``SERIES_CHANGE_SCHEMA``)."""
    runs = results.runs(list(scope.sweeps))
    layers = results.layers(list(scope.sweeps))
    history = results.runs()
    # A training step is not an inference: its runs have a section of their own.
    tonight = _median_runs(runs.filter((pl.col("sweep_id") == scope.sweeps[-1])
                                       & (pl.col("mode") != "train")))
    simulated = int(runs["simulated"].sum()) if runs.height else 0
    banner = ""
    if simulated:
        banner = (f'<div class="banner"><b>SIMULATED data:</b> {simulated} of {runs.height} '
                  "runs here were measured by a simulated meter; their energies come from a "
                  "device model, not a measurement. Every plot of them says so.</div>")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>joulefarm report: {_esc(scope.title)}</h1>",
        f'<p class="muted">Database {_esc(results.path)}; {runs.height} runs on '
        f"{runs['device_name'].n_unique() if runs.height else 0} device(s); generated "
        f"{generated}.</p>",
        banner,
        _changes_section(changes, series_changes),
        _devices_section(tonight),
        _layers_section(layers),
        _training_section(results, runs, scope.sweeps),
        _traces_section(results, runs, layers),
        _history_section(history, changes),
        _estimators_section(results, estimators, tonight, runs),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>joulefarm report: {_esc(scope.title)}</title><style>{_STYLE}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")
