"""``joulefarm trace ...``: import meter logs, integrate windows over a trace, show metadata."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from controller.cli.console import OutputFormat, console, err_console, print_rows
from joulefarm.errors import TraceInputError

if TYPE_CHECKING:  # numpy and the readers load when a command runs, not for --help
    from joulefarm.traces import AnyTrace, ReadOptions, TimestampedTrace, Trace

app = typer.Typer(help="Import power traces from meter logs and compute window energies.",
                  no_args_is_help=True)


class TraceFormat(StrEnum):
    auto = "auto"
    csv = "csv"
    monsoon = "monsoon"
    spl = "spl"
    tegrastats = "tegrastats"
    jls = "jls"
    npz = "npz"
    parquet = "parquet"


class SignalModel(StrEnum):
    hold = "hold"
    linear = "linear"


class DateOrder(StrEnum):
    auto = "auto"
    mdy = "mdy"
    dmy = "dmy"


FormatOpt = typer.Option(TraceFormat.auto, "--format",
                         help="Input format; auto detects it from the content.")
TimeUnitOpt = typer.Option(None, "--time-unit", show_default=False,
                           help="csv: unit of the time column (s, ms, us, ns), overriding the "
                                "header.")
PowerUnitOpt = typer.Option(None, "--power-unit", show_default=False,
                            help="csv: unit of the power column (W, mW, uW), overriding the "
                                 "header.")
RateOpt = typer.Option(None, "--sample-rate-hz", show_default=False,
                       help="monsoon: sample rate of the CSV rows (default 5000; lower when "
                            "the capture was decimated).")
IntervalOpt = typer.Option(None, "--interval-ms", show_default=False,
                           help="tegrastats: the --interval it ran with (default 1000); times "
                                "undated lines.")
RailOpt = typer.Option("auto", "--rail",
                       help="tegrastats: rail(s) for the total (auto: the module input, VDD_IN, "
                            "POM_5V_IN or VIN, else the sum of the rails, each counted once; "
                            "sum: every rail; or a rail name).")
TzOpt = typer.Option(0.0, "--tz-offset-s",
                     help="spl/tegrastats: seconds to add to the logged wall-clock time to get "
                          "UTC (MLPerf server.json 'timezone'); 0 reads the log as UTC.")
DateOrderOpt = typer.Option(DateOrder.auto, "--date-order",
                            help="spl: date order of the Time field (auto: from the file, "
                                 "else month-day-year).")


def _options(time_unit: str | None, power_unit: str | None, sample_rate_hz: float | None,
             interval_ms: float | None, rail: str, tz_offset_s: float,
             date_order: DateOrder) -> ReadOptions:
    from joulefarm.traces import ReadOptions

    return ReadOptions(time_unit=time_unit, power_unit=power_unit,
                         sample_rate_hz=sample_rate_hz, interval_ms=interval_ms, rail=rail,
                         tz_offset_s=tz_offset_s, date_order=date_order.value)


def _print_notes(trace: Trace | TimestampedTrace) -> None:
    for note in trace.meta.get("notes", []):
        err_console.print(f"note: {note}", markup=False, soft_wrap=True)


def _print_simulated(trace: Trace | TimestampedTrace, trace_file: Path) -> None:
    """A simulated trace is never shown as a measurement."""
    if trace.meta.get("simulated") is True:
        err_console.print(f"note: {trace_file} is simulated: the power came from a model, not a "
                          "meter", markup=False, soft_wrap=True)


def _summary_line(trace: AnyTrace) -> str:
    from joulefarm.traces import summarize

    s = summarize(trace)
    layout = "uniform" if s.uniform else "timestamped"
    line = (f"{s.samples} samples, {s.duration_s:.6g} s, {s.rate_hz:.6g} Hz ({layout}), "
            f"mean {s.mean_power_w:.6g} W, {s.energy_j:.6g} J")
    return line + (f" [{';'.join(s.flags)}]" if s.flags else "")


@app.command("import", help="Import a meter log (generic CSV, Monsoon CSV, PTDaemon spl.txt, "
                            "tegrastats, Joulescope JLS) into a Parquet trace.")
def import_cmd(
    file: Path = typer.Argument(..., help="The meter log."),
    fmt: TraceFormat = FormatOpt,
    out: Path | None = typer.Option(None, "--out", "-o", show_default=False,
                                    help="Output Parquet file (default: FILE with .parquet)."),
    time_unit: str | None = TimeUnitOpt,
    power_unit: str | None = PowerUnitOpt,
    sample_rate_hz: float | None = RateOpt,
    interval_ms: float | None = IntervalOpt,
    rail: str = RailOpt,
    tz_offset_s: float = TzOpt,
    date_order: DateOrder = DateOrderOpt,
) -> None:
    from joulefarm.traces import import_trace, write_trace

    options = _options(time_unit, power_unit, sample_rate_hz, interval_ms, rail, tz_offset_s,
                       date_order)
    trace = import_trace(file, fmt.value, options)
    target = out if out is not None else file.with_suffix(".parquet")
    if target.resolve() == file.resolve():
        raise TraceInputError(f"{target}: output would overwrite the input; pass --out")
    write_trace(trace, target)
    _print_notes(trace)
    console.print(f"{target}: {trace.meta['source_format']}, {_summary_line(trace)}",
                  markup=False, soft_wrap=True)


@app.command("energy", help="Energy of each window of a windows CSV (start_s,end_s on the "
                            "trace's time base, other columns passed through) over a trace.")
def energy_cmd(
    trace_file: Path = typer.Argument(..., metavar="TRACE",
                                      help="A Parquet trace, or any importable meter log."),
    windows_file: Path = typer.Option(..., "--windows", help="Windows CSV (start_s,end_s)."),
    out: Path | None = typer.Option(None, "--out", "-o", show_default=False,
                                    help="Output CSV (default: stdout)."),
    model: SignalModel = typer.Option(SignalModel.hold, "--model",
                                      help="Signal model between samples."),
    offset_s: float = typer.Option(0.0, "--offset-s",
                                   help="Clock offset: trace time = window time + offset."),
    drift_ppm: float = typer.Option(0.0, "--drift-ppm",
                                    help="Clock drift: trace time = window time x (1 + ppm "
                                         "1e-6) + offset."),
    max_gap_s: float | None = typer.Option(
        None, "--max-gap-s", show_default=False,
        help="Timestamped traces: longer intervals are gaps, excluded and flagged (default 3x "
             "the median interval; inf disables)."),
    fmt: TraceFormat = FormatOpt,
    time_unit: str | None = TimeUnitOpt,
    power_unit: str | None = PowerUnitOpt,
    sample_rate_hz: float | None = RateOpt,
    interval_ms: float | None = IntervalOpt,
    rail: str = RailOpt,
    tz_offset_s: float = TzOpt,
    date_order: DateOrder = DateOrderOpt,
) -> None:
    from joulefarm.traces import read_trace, window_energy
    from joulefarm.traces.windows import read_windows, write_windows_energy

    windows = read_windows(windows_file)
    options = _options(time_unit, power_unit, sample_rate_hz, interval_ms, rail, tz_offset_s,
                       date_order)
    trace = read_trace(trace_file, fmt.value, options)
    _print_simulated(trace, trace_file)
    result = window_energy(trace, windows.start_s, windows.end_s, model=model.value,
                           offset_s=offset_s, drift_ppm=drift_ppm, max_gap_s=max_gap_s)
    if len(windows.rows) and not result["samples"].any():
        # Almost always windows on another clock than the trace (e.g. seconds since start vs a
        # unix time base): say where the trace is rather than leave a column of NaNs.
        err_console.print(
            f"note: no window overlaps the trace, which spans {trace.start_s:.6f} to "
            f"{trace.end_s:.6f} s ({trace.meta.get('time_base', 'time base unknown')}); "
            "check the windows' clock or --offset-s", markup=False, soft_wrap=True)
    if out is None:
        write_windows_energy(windows, result, sys.stdout)
        sys.stdout.flush()
        return
    with open(out, "w", encoding="utf-8", newline="") as f:
        write_windows_energy(windows, result, f)
    flagged = int((result["flags"] != 0).sum())
    console.print(f"{out}: {len(windows.rows)} windows, {flagged} flagged", markup=False,
                  soft_wrap=True)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@app.command("info", help="Show a trace's metadata and whole-trace figures.")
def info_cmd(
    trace_file: Path = typer.Argument(..., metavar="TRACE",
                                      help="A Parquet trace, or any importable meter log."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    fmt: TraceFormat = FormatOpt,
    time_unit: str | None = TimeUnitOpt,
    power_unit: str | None = PowerUnitOpt,
    sample_rate_hz: float | None = RateOpt,
    interval_ms: float | None = IntervalOpt,
    rail: str = RailOpt,
    tz_offset_s: float = TzOpt,
    date_order: DateOrder = DateOrderOpt,
) -> None:
    from joulefarm.traces import read_trace, summarize

    options = _options(time_unit, power_unit, sample_rate_hz, interval_ms, rail, tz_offset_s,
                       date_order)
    trace = read_trace(trace_file, fmt.value, options)
    summary = summarize(trace).as_dict()
    if as_json:
        doc = {"file": str(trace_file), "metadata": dict(trace.meta), "summary": summary}
        sys.stdout.write(json.dumps(_json_safe(doc), indent=2) + "\n")
        return
    rows = [(key, value if isinstance(value, str) else json.dumps(_json_safe(value)))
            for key, value in trace.meta.items()]
    rows += [(f"summary.{key}", value) for key, value in summary.items()]
    simulated = " (simulated)" if trace.meta.get("simulated") is True else ""
    print_rows(["key", "value"], rows, OutputFormat.table, title=f"{trace_file}{simulated}")
