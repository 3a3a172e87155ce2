"""The report's plots, drawn with matplotlib as inline SVG: the page loads nothing.

Each function takes polars frames from the results API and returns one ``<svg>`` element as
text. SVG, not PNG: the page stays sharp at any zoom and a browser test can check that every
plot holds drawn paths. Text is drawn as paths (matplotlib's default ``svg.fonttype``), so no
font has to be present where the page is opened.

Simulated data is marked on every plot that shows any: "SIMULATED" in the title and across the
axes, so a figure copied out of the page still says so.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

SIMULATED_MARK = "SIMULATED"
_WIDTH_IN = 9.0
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2")


def _figure(height_in: float = 3.6) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # no display: drawing only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(_WIDTH_IN, height_in), dpi=96)
    return fig, ax


def _finish(fig: Any, ax: Any, title: str, simulated: bool) -> str:
    import matplotlib.pyplot as plt

    if simulated:
        title = f"{title} ({SIMULATED_MARK} data)"
        ax.text(0.5, 0.5, SIMULATED_MARK, transform=ax.transAxes, fontsize=42, color="#d0d0d0",
                alpha=0.45, ha="center", va="center", rotation=18, zorder=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    out = io.StringIO()
    fig.savefig(out, format="svg")
    plt.close(fig)
    text = out.getvalue()
    return text[text.index("<svg"):]  # no XML prolog or doctype inside HTML


def layer_energy_per_device(layers: pl.DataFrame, model: str) -> str:
    """Energy per inference of each layer (mJ), one line per device, for one model.

    ``layers``: one row per (device_name, layer_index) of this model with ``op``, ``energy_j``
    and ``simulated`` (medians over the runs shown)."""
    fig, ax = _figure()
    devices = sorted(layers["device_name"].unique().to_list())
    for k, device in enumerate(devices):
        rows = layers.filter(pl.col("device_name") == device).sort("layer_index")
        ax.plot(rows["layer_index"].to_numpy(), rows["energy_j"].to_numpy() * 1e3, marker="o",
                markersize=3, linewidth=1.2, color=_COLORS[k % len(_COLORS)], label=device)
    first = layers.filter(pl.col("device_name") == devices[0]).sort("layer_index")
    if first.height <= 40:
        ax.set_xticks(first["layer_index"].to_numpy(),
                      [f"{i} {op}" for i, op in zip(first["layer_index"], first["op"],
                                                    strict=True)],
                      rotation=70, fontsize=6)
    ax.set_xlabel("layer")
    ax.set_ylabel("energy per inference (mJ)")
    ax.legend(fontsize=7)
    return _finish(fig, ax, f"{model}: energy of each layer, per device",
                   bool(layers["simulated"].any()))


TRAIN_PARTS = ("forward", "backward", "update")


def training_step_per_layer(parts: pl.DataFrame, title: str) -> str:
    """Energy per training step of each layer (mJ), stacked by part: forward, backward (input
    and weight gradients), update.

    ``parts``: one row per (layer_index, part) with ``op``, ``energy_j`` and ``simulated``."""
    fig, ax = _figure()
    layers = sorted(parts["layer_index"].unique().to_list())
    ops = dict(zip(parts["layer_index"].to_list(), parts["op"].to_list(), strict=True))
    x = np.arange(len(layers))
    bottom = np.zeros(len(layers))
    for k, part in enumerate(TRAIN_PARTS):
        rows = parts.filter(pl.col("part") == part)
        energy = dict(zip(rows["layer_index"].to_list(), rows["energy_j"].to_list(),
                          strict=True))
        values = np.array([energy.get(i, 0.0) for i in layers]) * 1e3
        ax.bar(x, values, bottom=bottom, color=_COLORS[k], label=part, width=0.7)
        bottom += values
    if len(layers) <= 40:
        ax.set_xticks(x, [f"{i} {ops[i]}" for i in layers], rotation=70, fontsize=6)
    ax.set_xlabel("layer")
    ax.set_ylabel("energy per training step (mJ)")
    ax.legend(fontsize=7)
    return _finish(fig, ax, title, bool(parts["simulated"].any()))


def devices_side_by_side(runs: pl.DataFrame) -> str:
    """Energy per inference of each model on each device (mJ, log scale), grouped bars.

    ``runs``: one row per (model_name, device_name) with ``energy_j`` and ``simulated``."""
    models = sorted(runs["model_name"].unique().to_list())
    devices = sorted(runs["device_name"].unique().to_list())
    fig, ax = _figure(max(2.4, 0.8 + 0.25 * len(models) * len(devices)))
    height = 0.8 / max(1, len(devices))
    for k, device in enumerate(devices):
        rows = runs.filter(pl.col("device_name") == device)
        energy = dict(zip(rows["model_name"], rows["energy_j"], strict=True))
        y = np.arange(len(models)) - 0.4 + (k + 0.5) * height
        ax.barh(y, [energy.get(m, np.nan) * 1e3 for m in models], height=height * 0.9,
                color=_COLORS[k % len(_COLORS)], label=device)
    ax.set_yticks(np.arange(len(models)), models, fontsize=7)
    ax.invert_yaxis()  # the first model on top, as in the table below the plot
    values = runs["energy_j"].drop_nulls().to_numpy()
    wide = len(values) > 1 and values.min() > 0 and values.max() / values.min() > 30
    if wide:  # models a thousand times apart stay readable
        ax.set_xscale("log")
    ax.set_xlabel("energy per inference (mJ" + (", log scale)" if wide else ")"))
    ax.legend(fontsize=7)
    return _finish(fig, ax, "Devices side by side: energy per inference of each model",
                   bool(runs["simulated"].any()))


def power_trace_with_layers(t_s: np.ndarray, mean_w: np.ndarray, min_w: np.ndarray,
                            max_w: np.ndarray, windows: pl.DataFrame, title: str,
                            simulated: bool) -> str:
    """A run's stored (decimated) power trace on the agent's clock, min-max band and mean, with
    each measured layer's window shaded over it (labelled with its op where there is room).

    ``windows``: ``layer_index``, ``op``, ``window_start_s``, ``window_end_s`` (agent clock)."""
    fig, ax = _figure(3.8)
    zero = float(t_s[0]) if len(t_s) else 0.0  # seconds into the run read better than clocks
    t_s = t_s - zero
    windows = windows.with_columns(pl.col("window_start_s") - zero, pl.col("window_end_s") - zero)
    ax.fill_between(t_s, min_w, max_w, color="#9ecae1", alpha=0.6, linewidth=0,
                    label="min-max per bucket")
    ax.plot(t_s, mean_w, color="#08519c", linewidth=0.8, label="mean")
    span = float(t_s[-1] - t_s[0]) if len(t_s) > 1 else 1.0
    from matplotlib.transforms import blended_transform_factory

    # Labels sit at the foot of each window: x in data, y in axes fractions.
    foot = blended_transform_factory(ax.transData, ax.transAxes)
    for k, row in enumerate(windows.sort("window_start_s").iter_rows(named=True)):
        start, end = row["window_start_s"], row["window_end_s"]
        if start is None or end is None:
            continue
        ax.axvspan(start, end, color=_COLORS[k % 2 + 2], alpha=0.15, linewidth=0)
        if (end - start) > 0.02 * span:
            ax.text((start + end) / 2, 0.03, f"{row['layer_index']} {row['op']}", fontsize=6,
                    ha="center", va="bottom", rotation=90, transform=foot, color="#333333")
    ax.set_xlabel("time into the run (s)")
    ax.set_ylabel("power (W)")
    ax.legend(fontsize=7, loc="lower right")
    return _finish(fig, ax, title, simulated)


def series_history(nights: pl.DataFrame, changes: Sequence[tuple[Any, str]], title: str,
                   metric_label: str, simulated: bool) -> str:
    """One series night by night: the median of its repetitions with their range, and a
    dashed line before each night that brought a change point (labelled with its size).

    ``nights``: ``started_at``, ``median``, ``low``, ``high`` (one row per night, in order);
    ``changes``: (``started_at`` of the night after the change, label). Nights are evenly
    spaced and labelled with their start: a missed night leaves no gap to misread."""
    fig, ax = _figure(3.2)
    starts = nights["started_at"].to_list()
    x = np.arange(len(starts))
    median = nights["median"].to_numpy()
    low, high = nights["low"].to_numpy(), nights["high"].to_numpy()
    ax.errorbar(x, median, yerr=[median - low, high - median], fmt="o-", color=_COLORS[0],
                markersize=4, capsize=3, linewidth=1.0)
    for when, label in changes:
        if when in starts:
            at = starts.index(when) - 0.5
            ax.axvline(at, color=_COLORS[1], linestyle="--", linewidth=1.2)
            ax.text(at, float(np.nanmax(high)), f" {label}", color=_COLORS[1], fontsize=7,
                    va="top")
    step = max(1, len(starts) // 12)
    ax.set_xticks(x[::step], [f"{t:%m-%d %H:%M}" for t in starts[::step]], rotation=30,
                  fontsize=7)
    ax.set_ylabel(metric_label)
    ax.set_xlabel("night (sweep start, UTC)")
    return _finish(fig, ax, title, simulated)


def predicted_vs_measured(points: pl.DataFrame, title: str) -> str:
    """Each model's predicted against its measured value, the y = x line and a +/-10% band.

    ``points``: ``measured``, ``predicted`` (same unit), ``label``, ``simulated``."""
    fig, ax = _figure(4.2)
    measured, predicted = points["measured"].to_numpy(), points["predicted"].to_numpy()
    lo = float(np.nanmin(np.concatenate([measured, predicted]))) * 0.8
    hi = float(np.nanmax(np.concatenate([measured, predicted]))) * 1.25
    line = np.geomspace(max(lo, 1e-12), hi, 50)
    ax.plot(line, line, color="#444444", linewidth=0.8, label="predicted = measured")
    ax.fill_between(line, line * 0.9, line * 1.1, color="#cccccc", alpha=0.5, label="+/-10%")
    ax.scatter(measured, predicted, s=18, color=_COLORS[0], zorder=3)
    for m, p, label in zip(measured, predicted, points["label"], strict=True):
        ax.annotate(str(label), (m, p), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured")
    ax.set_ylabel("predicted")
    ax.legend(fontsize=7)
    return _finish(fig, ax, title, bool(points["simulated"].any()))
