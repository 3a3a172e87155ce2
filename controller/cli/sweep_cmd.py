"""``joulefarm sweep run|status|resume``: suites on the farm, resumable after a crash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.cli.console import DeviceProgress, OutputFormat, console, print_rows
from controller.cli.demo_cmd import print_summary
from controller.cli.options import DbOption, DevicesOption, FormatOption, db_path
from controller.demo import DEVICES_FILE, resolve_default

if TYPE_CHECKING:  # the farm loads when a command runs, not for --help
    from controller.farm.runner import RunReport
    from controller.farm.sweep import ProgressFn

app = typer.Typer(help="Run suites on the farm; see and resume sweeps.", no_args_is_help=True)

SuiteArgument = typer.Argument(..., help="Suite file, e.g. benchmarks/demo.toml.",
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
       count(*) FILTER (j.status IN ('pending', 'running')) AS remaining
FROM sweeps s LEFT JOIN jobs j USING (sweep_id)
GROUP BY ALL ORDER BY s.started_at DESC
"""
JOBS_SQL = """
SELECT device_name AS device, model_name AS model, config->>'mode' AS mode,
       config->>'num_threads' AS threads, config->>'repetition' AS rep, status, attempts,
       error
FROM jobs WHERE sweep_id = ? ORDER BY device, job_id
"""


def _run(report_fn: Callable[[ProgressFn], RunReport], names: list[str], database: Path
         ) -> None:
    with DeviceProgress(names) as live:
        report = report_fn(live.update)
    print_summary(report, database)
    if not report.ok:
        console.print(f"resume with: joulefarm sweep resume {report.outcome.sweep_id}")
        raise typer.Exit(code=1)


@app.command("run", help="Run SUITE on the devices it selects; every result is stored as it "
             "arrives, and a sweep cut short can be resumed.")
def run(suite: Path = SuiteArgument, devices: Path | None = DevicesOption,
        db: Path | None = DbOption) -> None:
    from controller.farm.runner import load_inputs, run_suite

    devices_path = resolve_default(devices, DEVICES_FILE)
    database = db_path(db)
    names = [d.name for d in load_inputs(devices_path, suite)[2]]
    _run(lambda p: run_suite(devices_path, suite, database, progress=p), names, database)


@app.command("resume", help="Run the jobs of a sweep that did not complete (after a crash, "
             "an unreachable device, a failure); results already stored are kept, never "
             "duplicated.")
def resume_cmd(sweep_id: str = SweepArgument, devices: Path | None = DevicesOption,
               db: Path | None = DbOption) -> None:
    from controller.farm.runner import resume
    from controller.store import query_readonly

    database = db_path(db)
    _, rows = query_readonly(database, "SELECT DISTINCT device_name FROM jobs WHERE sweep_id = ? "
                             "AND status <> 'done'", [sweep_id])
    _run(lambda p: resume(sweep_id, database, devices_path=devices, progress=p),
         [r[0] for r in rows], database)


@app.command("status", help="List sweeps, or the jobs of one sweep.")
def status(sweep_id: str | None = OptionalSweep, db: Path | None = DbOption,
           fmt: OutputFormat = FormatOption) -> None:
    from controller.store import query_readonly

    database = db_path(db)
    if sweep_id is None:
        columns, rows = query_readonly(database, SWEEPS_SQL)
    else:
        columns, rows = query_readonly(database, JOBS_SQL, [sweep_id])
    print_rows(columns, rows, fmt)

