"""``joulefarm demo``: run the demo suite on the local demo farm and summarise it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.cli.console import DeviceProgress, OutputFormat, console, err_console, print_rows
from controller.cli.options import DbOption, DevicesOption, db_path
from controller.demo import DEMO_SUITE, DEVICES_FILE, resolve_default

if TYPE_CHECKING:
    from controller.farm.runner import RunReport

SuiteOption = typer.Option(None, "--suite", help="Suite file (default: benchmarks/demo.toml).",
                           show_default=False)

SUMMARY_SQL = """
WITH truth AS (
    SELECT run_id, sum(true_energy_j) AS true_j, count(*) FILTER (len(flags) > 0) AS flagged
    FROM layer_measurements GROUP BY run_id
    UNION ALL
    SELECT w.run_id, w.true_energy_j, CASE WHEN len(w.flags) > 0 THEN 1 ELSE 0 END
    FROM whole_measurements w JOIN runs USING (run_id) WHERE runs.mode = 'whole'
)
SELECT r.device_name AS device,
       r.meter_kind || coalesce(':' || r.meter_profile, '') AS meter,
       CASE WHEN r.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
       r.model_name AS model,
       r.mode,
       r.layer_count AS layers,
       round(r.latency_s * 1e3, 3) AS latency_ms,
       round(r.energy_j * 1e3, 3) AS energy_mj,
       round(t.true_j * 1e3, 3) AS sim_truth_mj,
       round(100 * (r.energy_j - t.true_j) / t.true_j, 2) AS error_pct,
       round(a.latency_ratio, 3) AS layers_vs_whole,
       round(r.idle_power_w, 3) AS idle_w,
       t.flagged AS flagged
FROM runs r JOIN truth t USING (run_id) LEFT JOIN additivity a USING (run_id)
WHERE r.sweep_id = ?
ORDER BY device, model, mode
"""


def print_summary(report: RunReport, database: Path) -> None:
    """Errors (each names its device), the sweep's table, and where the results are."""
    for error in report.errors():
        err_console.print(error, markup=False, soft_wrap=True)
    from controller.store import query_readonly

    sweep_id = report.outcome.sweep_id
    columns, rows = query_readonly(database, SUMMARY_SQL, [sweep_id])
    print_rows(columns, rows, OutputFormat.table,
               title=f"sweep {sweep_id}: energy per inference (layers mode: summed over layers;"
               " simulated meters: not measured)")
    console.print(f"results: {database.resolve()}")


def register(app: typer.Typer) -> None:
    @app.command(help=(
        "Run the demo: start the local agents of devices.toml (real gRPC servers on loopback, "
        "simulated meters), run the demo suite layer by layer on each, store per-layer "
        "latency and energy in DuckDB, print a summary, stop the agents."))
    def demo(
        devices: Path | None = DevicesOption,
        suite: Path | None = SuiteOption,
        db: Path | None = DbOption,
    ) -> None:
        from controller.farm.runner import load_inputs, run_suite

        devices_path = resolve_default(devices, DEVICES_FILE)
        suite_path = resolve_default(suite, DEMO_SUITE)
        database = db_path(db)
        # Validate before anything starts, so bad input runs nothing.
        names = [d.name for d in load_inputs(devices_path, suite_path)[2]]
        console.print(f"devices: {devices_path}  suite: {suite_path}  database: {database}")
        with DeviceProgress(names) as live:
            report = run_suite(
                devices_path,
                suite_path,
                database,
                progress=live.update,
                on_start=lambda sweep_id: console.print(
                    f"sweep {sweep_id} started", soft_wrap=True
                ),
            )
        print_summary(report, database)
        console.print('try: joulefarm query "SELECT * FROM layer_energy LIMIT 20"')
        if not report.ok:
            raise typer.Exit(code=1)
