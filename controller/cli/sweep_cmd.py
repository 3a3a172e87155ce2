"""``joulefarm sweep run|status|resume``: suites on the farm, resumable after a crash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.cli.console import DeviceProgress, OutputFormat, console, print_rows
from controller.cli.options import DbOption, DevicesOption, FormatOption, WideOption, db_path
from controller.cli.summary import print_summary
from controller.demo import DEVICES_FILE, resolve_default

if TYPE_CHECKING:  # the farm loads when a command runs, not for --help
    from controller.farm.runner import RunReport
    from controller.farm.sweep import ProgressFn

app = typer.Typer(help="Run suites on the farm; see and resume sweeps.", no_args_is_help=True)

SuiteArgument = typer.Argument(..., help="Suite file, e.g. benchmarks/demo.toml, or a built-in "
                               "suite by name: reference (the runs `joulefarm enroll` needs).",
                               show_default=False)
SweepArgument = typer.Argument(..., help="Sweep id (see `joulefarm sweep status`).",
                               show_default=False)
OptionalSweep = typer.Argument(None, help="A sweep id: its jobs; none: every sweep.",
                               show_default=False)

SWEEPS_SQL = """
SELECT s.sweep_id, s.suite, s.status, s.started_at, s.finished_at,
       count(j.job_id) AS jobs,
       count(*) FILTER (j.status = 'done') AS done,
       count(*) FILTER (j.status IN ('failed', 'unreachable')) AS failed,
       count(*) FILTER (j.status IN ('pending', 'running')) AS remaining,
       s.controller_host, s.controller_pid, s.heartbeat_at
FROM sweeps s LEFT JOIN jobs j USING (sweep_id)
{where}
GROUP BY ALL ORDER BY s.started_at DESC
"""
# The lease columns decide the status shown; they are not shown themselves.
_LEASE_COLUMNS = 3
JOBS_SQL = """
SELECT device_name AS device, model_name AS model, config->>'mode' AS mode,
       config->>'num_threads' AS threads, config->>'repetition' AS rep, status, attempts,
       error
FROM jobs WHERE sweep_id = ? ORDER BY device, job_id
"""
_JOB_STATUS = 5  # JOBS_SQL's status column


def _run(report_fn: Callable[[ProgressFn], RunReport], names: list[str], database: Path,
         wide: bool) -> None:
    with DeviceProgress(names) as live:
        report = report_fn(live.update)
    print_summary(report, database, wide=wide)
    if not report.ok:
        console.print(f"resume with: joulefarm sweep resume {report.outcome.sweep_id}")
        raise typer.Exit(code=1)


DetectOption = typer.Option(
    False, "--detect-changes", help="When the sweep ends, compare each series with its previous "
    "night and record the change points (tables change_points, series_changes; see `joulefarm "
    "compare --help`). Scheduled sweeps do.")
ReportDirOption = typer.Option(
    None, "--report-dir", help="When the sweep ends, write its report (`joulefarm report`) to "
    "DIR/SWEEP_ID.html. Scheduled sweeps do.")
# Change points a sweep lists in its output (the log of a scheduled sweep); all are stored.
LOGGED_CHANGE_POINTS = 20


@app.command("run", help="Run SUITE on the devices it selects; every result is stored as it "
             "arrives, and a sweep cut short can be resumed.")
def run(suite: Path = SuiteArgument, devices: Path | None = DevicesOption,
        db: Path | None = DbOption, wide: bool = WideOption,
        detect_changes: bool = DetectOption, report_dir: Path | None = ReportDirOption) -> None:
    from controller.farm.runner import load_inputs, run_suite

    devices_path = resolve_default(devices, DEVICES_FILE)
    database = db_path(db)
    names = [d.name for d in load_inputs(devices_path, suite)[2]]
    started: list[str] = []

    def on_start(sweep_id: str) -> None:
        started.append(sweep_id)
        announce_sweep(sweep_id)

    try:
        _run(lambda p: run_suite(devices_path, suite, database, progress=p,
                                 on_start=on_start), names, database, wide)
    except typer.Exit:
        # A partial sweep (a device down) still stored what it measured: its change points
        # and report are made too, and the exit code stays the sweep's.
        _after_sweep(database, started, detect_changes, report_dir)
        raise
    _after_sweep(database, started, detect_changes, report_dir)


def _after_sweep(database: Path, started: list[str], detect_changes: bool,
                 report_dir: Path | None) -> None:
    if not started:
        return
    if detect_changes:
        _detect(database, started[0])
    if report_dir is not None:
        _write_report(database, started[0], report_dir)


def _write_report(database: Path, sweep_id: str, report_dir: Path) -> None:
    from controller.report_page import build_report, changes_in, scope_for
    from controller.results_frames import open_results

    results = open_results(database)
    scope = scope_for(results, sweep_id, None)
    changes, series = changes_in(results, scope)
    report_dir.mkdir(parents=True, exist_ok=True)
    out = report_dir / f"{sweep_id}.html"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(build_report(results, scope, changes, series), encoding="utf-8")
    tmp.replace(out)
    console.print(f"report: {out}", soft_wrap=True)


def _detect(database: Path, sweep_id: str) -> None:
    from controller.changes import detect_changes

    comparison = detect_changes(database, sweep_id)
    points = comparison.change_points()
    regressions = comparison.regressions()
    names = {row["series_id"]: f"{row['device_name']}: {row['model_name']}"
             for row in comparison.series.iter_rows(named=True)}
    for t in points[:LOGGED_CHANGE_POINTS]:
        where = "whole model" if t.layer_index is None else f"layer {t.layer_index} {t.op}"
        moved = ", ".join(f"{a.layer_index} {a.op}" for a in t.layers)
        console.print(f"change point: {t.direction} {(t.shift.ratio - 1) * 100:+.1f}% "
                      f"{t.metric} on {names.get(t.series_id, t.series_id)}, {where}"
                      + (f" (layers {moved})" if moved else ""), soft_wrap=True, markup=False)
    console.print(f"change points against the previous night: {len(points)} "
                  f"({len(regressions)} regressions), {len(comparison.series_changes)} series "
                  f"changes; see them with: joulefarm query \"SELECT * FROM change_points "
                  f"WHERE after_sweep = '{sweep_id}'\"", soft_wrap=True)


def announce_sweep(sweep_id: str) -> None:
    """Said when a sweep starts: its id, and how to watch it from another terminal."""
    console.print(f"sweep {sweep_id} started; watch it with: joulefarm sweep status "
                  f"{sweep_id}", soft_wrap=True)


@app.command("resume", help="Run the jobs of a sweep that did not complete (after a crash, "
             "an unreachable device, a failure); results already stored are kept, never "
             "duplicated.")
def resume_cmd(sweep_id: str = SweepArgument, devices: Path | None = DevicesOption,
               db: Path | None = DbOption, wide: bool = WideOption) -> None:
    from controller.farm.runner import resume
    from controller.store import query_readonly

    database = db_path(db)
    _, rows = query_readonly(database, "SELECT DISTINCT device_name FROM jobs WHERE sweep_id = ? "
                             "AND status <> 'done'", [sweep_id])
    _run(lambda p: resume(sweep_id, database, devices_path=devices, progress=p),
         [r[0] for r in rows], database, wide)


@app.command("status", help="List sweeps, or the jobs of one sweep.")
def status(sweep_id: str | None = OptionalSweep, db: Path | None = DbOption,
           fmt: OutputFormat = FormatOption) -> None:
    from controller.store import StoreInputError, query_readonly

    database = db_path(db)
    where, params = ("WHERE s.sweep_id = ?", [sweep_id]) if sweep_id else ("", [])
    columns, rows = query_readonly(database, SWEEPS_SQL.format(where=where), params)
    if sweep_id is not None and not rows:
        raise StoreInputError(
            f"{database}: no sweep {sweep_id!r} (joulefarm sweep status lists them)"
        )
    columns, rows = _with_live_status(columns, rows)
    if sweep_id is None:
        print_rows(columns, rows, fmt)
        return
    (row,) = rows
    interrupted = row[2] == "interrupted"
    if fmt is OutputFormat.table:
        console.print(
            f"sweep {sweep_id}: {row[2]}; {row[6]} of {row[5]} jobs done, {row[7]} "
            f"failed, {row[8]} remaining",
            soft_wrap=True,
        )
        if interrupted:
            _say_why_stopped(database, sweep_id)
    columns, rows = query_readonly(database, JOBS_SQL, [sweep_id])
    if interrupted:
        # A job left running by a controller that is gone is waiting for resume, as a
        # pending one is.
        rows = [(*r[:_JOB_STATUS], "pending" if r[_JOB_STATUS] == "running" else
                 r[_JOB_STATUS], *r[_JOB_STATUS + 1:]) for r in rows]
    print_rows(columns, rows, fmt)


def _say_why_stopped(database: Path, sweep_id: str) -> None:
    """The cause an interrupted sweep stored (when it could), and how to finish it."""
    from controller.store import query_readonly

    _, rows = query_readonly(database, "SELECT error FROM sweeps WHERE sweep_id = ?",
                             [sweep_id])
    if rows and rows[0][0]:
        console.print(f"stopped by: {rows[0][0]}", markup=False, soft_wrap=True)
    console.print(f"resume with: joulefarm sweep resume {sweep_id}", soft_wrap=True)


def _with_live_status(columns: list[str], rows: list[tuple[object, ...]],
                      ) -> tuple[list[str], list[tuple[object, ...]]]:
    """Each sweep's status as it really is (a ``running`` sweep whose controller is gone is
    ``interrupted``), the lease columns dropped, and what to do about an interrupted one."""
    from controller.farm.lease import sweep_state
    from controller.farm.timing import DEFAULT_TIMING

    out = []
    for row in rows:
        host, pid, heartbeat = row[-_LEASE_COLUMNS:]
        state = sweep_state(str(row[2]), host, pid, heartbeat,  # type: ignore[arg-type]
                            DEFAULT_TIMING.lease_interval_s)
        action = f"resume with: joulefarm sweep resume {row[0]}" if state == "interrupted" else ""
        out.append((*row[:2], state, *row[3:-_LEASE_COLUMNS], action))
    return [*columns[:-_LEASE_COLUMNS], "next"], out
