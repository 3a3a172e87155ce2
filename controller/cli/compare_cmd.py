"""``joulefarm compare A B``: what changed from one night to another, usable as a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.cli.console import OutputFormat, console, print_rows, print_sections
from controller.cli.options import DbOption, FormatOption, db_path
from joulefarm.errors import InputError

if TYPE_CHECKING:  # the statistics load when the command runs, not for --help
    from controller.changes import Compared, Comparison

_HELP = """Compare night B with night A (the baseline): every measurement series in both, on the
whole model and on each layer, for energy per inference (energy_j), latency (latency_s) and
mean power (power_w). A and B are sweep ids, or dates YYYY-MM-DD: the last sweep started that
day (local time).

A change is significant at false-alarm rate --alpha per series (default 0.05: a series that
did not change shows a change at most 5% of the time, over all its metrics and layers; Holm's
correction) and moves by at least --threshold. With 3 or more repetitions a night, the test
weighs the step against the repetitions' spread (Welch's t-test on the logarithms);
with fewer, against each measurement's stated uncertainty, which knows nothing of what varies
between runs:
run suites with `repetitions = 3` or more. A whole-model change lists the layers it is owed to.
A series whose device, model, settings, runtime (version) or meter changed is not compared: the
change is listed instead.

Exit codes: 0 no regression beyond the threshold; 1 a regression (more energy, time or power)
beyond the threshold; 2 bad input (an unknown sweep, nothing in common). See docs/changes.md.
"""
# Paragraphs as single lines: the help wraps them to the terminal.
HELP = "\n\n".join(" ".join(p.split()) for p in _HELP.split("\n\n"))

ThresholdOption = typer.Option("5%", "--threshold", help="The smallest change that counts: a "
                               "percentage (5%) or a fraction (0.05).")
AlphaOption = typer.Option(0.05, "--alpha", help="False-alarm rate per series.")
MetricOption = typer.Option(None, "--metric", help="Compare only this metric (repeatable): "
                            "energy_j, latency_s, power_w. Default: all three.",
                            show_default=False)
_MAX_LAYERS_SHOWN = 4
_MIN_SHARE_SHOWN = 0.01


def parse_threshold(text: str) -> float:
    """``5%`` or ``0.05`` as 0.05; a bare number of 1 or more is refused, not guessed."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100.0 if raw.endswith("%") else float(raw)
    except ValueError:
        raise InputError(f"--threshold: {text!r} is not a percentage (5%) or a fraction "
                         "(0.05)") from None
    if not 0.0 <= value < 1.0:
        raise InputError(f"--threshold: {text!r} is not between 0% and 100%; give a "
                         "percentage (5%) or a fraction (0.05)")
    return value


def _pct(ratio: float) -> str:
    return f"{(ratio - 1.0) * 100.0:+.1f}%"


def _layer(t: Compared) -> str:
    return "whole" if t.layer_index is None else f"{t.layer_index} {t.op}"


def _moved(t: Compared) -> str:
    """The layers a whole-model change is owed to, largest first; those under 1% of it are
    counted, not named."""
    named = [a for a in t.layers if abs(a.share) >= _MIN_SHARE_SHOWN][:_MAX_LAYERS_SHOWN]
    more = len(t.layers) - len(named)
    return ", ".join(f"{a.layer_index} {a.op} {a.share:.0%}" for a in named) + (
        f"{', ' if named else ''}+{more} more" if more > 0 else "")


# Each metric as the table shows it: a unit that keeps a layer's value readable.
_DISPLAY = {"energy_j": (1e3, "mJ"), "latency_s": (1e3, "ms"), "power_w": (1.0, "W")}


def _value(metric: str, value: float) -> str:
    scale, unit = _DISPLAY[metric]
    return f"{value * scale:.4g} {unit}"


def _sorted(points: list[Compared], keys: dict[str, dict[str, object]]) -> list[Compared]:
    return sorted(points, key=lambda t: (str(keys[t.series_id]["device_name"]),
                                         str(keys[t.series_id]["model_name"]), t.series_id,
                                         t.metric, t.layer_index is not None,
                                         t.layer_index or 0))


def _print_table(comparison: Comparison, before: str, after: str, threshold: float) -> None:
    keys = {r["series_id"]: r for r in comparison.series.iter_rows(named=True)}
    changes = comparison.series_changes
    if changes:
        print_rows(["device", "model", "changed", "before", "after"],
                   [[c.device_name, c.model_name, c.field, c.before, c.after]
                    for c, _, _ in changes],
                   OutputFormat.table, title="series changes (not compared across)",
                   compact=True)
    points = _sorted(comparison.change_points(), keys)
    rows = [[keys[t.series_id]["device_name"], keys[t.series_id]["model_name"], t.metric,
             _layer(t), _value(t.metric, t.shift.before), _value(t.metric, t.shift.after),
             _pct(t.shift.ratio),
             f"{_pct(t.shift.low)}..{_pct(t.shift.high)}", f"{t.p_adjusted:.2g}",
             f"{t.shift.n_before}/{t.shift.n_after}"
             + ("" if t.shift.evidence == "repetitions" else " stated"), _moved(t)]
            for t in points]
    if rows:
        print_rows(["device", "model", "metric", "layer", "before", "after", "change",
                    f"{1 - comparison.alpha:.0%} interval", "p", "n", "layers (share)"],
                   rows, OutputFormat.table, title=f"changes from {before} to {after}",
                   compact=True)
    simulated = bool(comparison.series["simulated"].any()) if comparison.series.height else False
    console.print(
        f"{comparison.series.height} series compared, {len(comparison.tested)} tests"
        + (f" ({comparison.untested} not testable: fewer than 3 repetitions and no stated "
           "uncertainty)" if comparison.untested else "")
        + f"; alpha {comparison.alpha:g} per series, threshold {threshold:.3g}"
        + ("; energies are simulated" if simulated else ""), soft_wrap=True)
    regressions = comparison.regressions()
    if regressions:
        console.print(f"regression beyond {threshold:.1%}: {len(regressions)} "
                      f"({', '.join(sorted({_name(t, keys) for t in regressions}))})",
                      soft_wrap=True)
    else:
        console.print(f"no regression beyond {threshold:.1%}", soft_wrap=True)


def _name(t: Compared, keys: dict[str, dict[str, object]]) -> str:
    return f"{keys[t.series_id]['device_name']} {keys[t.series_id]['model_name']} {t.metric}"


def _print_data(comparison: Comparison, before: str, after: str, fmt: OutputFormat) -> None:
    frame = comparison.frame().sort("device_name", "model_name", "metric", "scope",
                                    "layer_index", nulls_last=False)
    columns = ["device_name", "model_name", "metric", "scope", "layer_index", "op",
               "before_value", "after_value", "ratio", "ratio_low", "ratio_high", "direction",
               "p_value", "evidence", "n_before", "n_after", "layers", "layer_ops",
               "layer_shares", "simulated", "series_id"]
    series = comparison.series_frame()
    summary = [[before, after, comparison.alpha, comparison.threshold,
                comparison.series.height, len(comparison.tested), comparison.untested,
                len(comparison.regressions())]]
    print_sections([
        ("summary", ["before_sweep", "after_sweep", "alpha", "threshold", "series_compared",
                     "tests", "untested", "regressions"], summary, None),
        ("series_changes", ["device_name", "model_name", "field", "before_value",
                            "after_value"],
         series.select("device_name", "model_name", "field", "before_value",
                       "after_value").rows(), None),
        ("changes", columns, frame.select(columns).rows(), None),
    ], fmt)


def register(app: typer.Typer) -> None:
    @app.command(help=HELP)
    def compare(
        a: str = typer.Argument(..., help="The baseline night: a sweep id or a "
                                "date YYYY-MM-DD.", show_default=False),
        b: str = typer.Argument(..., help="The night to check: a sweep id or a "
                                "date YYYY-MM-DD.", show_default=False),
        threshold: str = ThresholdOption,
        alpha: float = AlphaOption,
        metric: list[str] | None = MetricOption,
        db: Path | None = DbOption,
        fmt: OutputFormat = FormatOption,
    ) -> None:
        from controller.changes import METRICS, compare_sweeps
        from controller.results_frames import open_results

        limit = parse_threshold(threshold)
        results = open_results(db_path(db))
        before, after = results.resolve_sweep(a), results.resolve_sweep(b)
        if before == after:
            raise InputError(f"A and B are the same sweep ({before}): compare two nights")
        comparison = compare_sweeps(results, before, after, alpha=alpha, threshold=limit,
                                    metrics=tuple(metric or METRICS))
        if fmt is OutputFormat.table:
            _print_table(comparison, before, after, limit)
        else:
            _print_data(comparison, before, after, fmt)
        if comparison.series.height == 0:
            raise InputError(f"{before} and {after} have no measurement series in common: "
                             "nothing to compare (the series changes are listed above)")
        if comparison.regressions():
            raise typer.Exit(code=1)
