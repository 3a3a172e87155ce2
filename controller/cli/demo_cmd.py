"""``joulefarm demo``: run the demo suite on the local demo farm and summarise it."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import DeviceProgress, OutputFormat, console, err_console, print_rows
from controller.cli.options import DbOption, DevicesOption, db_path
from controller.demo import DEMO_SUITE, DEVICES_FILE, load_inputs, resolve_default, run_demo
from controller.store import query_readonly

SuiteOption = typer.Option(None, "--suite", help="Suite file (default: benchmarks/demo.toml).",
                           show_default=False)

SUMMARY_SQL = """
WITH truth AS (
    SELECT run_id, sum(true_energy_j) AS true_j, count(*) FILTER (len(flags) > 0) AS flagged
    FROM layer_measurements GROUP BY run_id
)
SELECT r.device_name AS device,
       r.meter_kind || coalesce(':' || r.meter_profile, '') AS meter,
       CASE WHEN r.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
       r.model_name AS model,
       r.layer_count AS layers,
       round(r.latency_s * 1e3, 3) AS latency_ms,
       round(r.energy_j * 1e3, 3) AS energy_mj,
       round(t.true_j * 1e3, 3) AS sim_truth_mj,
       round(100 * (r.energy_j - t.true_j) / t.true_j, 2) AS error_pct,
       round(r.idle_power_w, 3) AS idle_w,
       t.flagged AS flagged_layers
FROM runs r JOIN truth t USING (run_id)
WHERE r.sweep_id = ?
ORDER BY device, model
"""


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
        devices_path = resolve_default(devices, DEVICES_FILE)
        suite_path = resolve_default(suite, DEMO_SUITE)
        database = db_path(db)
        # Validate before anything starts, so bad input runs nothing.
        names = [d.name for d in load_inputs(devices_path, suite_path)[2]]
        console.print(f"devices: {devices_path}  suite: {suite_path}  database: {database}")
        with DeviceProgress(names) as live:
            run = run_demo(devices_path, suite_path, database, progress=live.update)
        # Every error names its device.
        for outcome in run.outcome.devices.values():
            for error in outcome.errors:
                err_console.print(error, markup=False, soft_wrap=True)
        for error in run.skipped.values():
            err_console.print(error, markup=False, soft_wrap=True)
        columns, rows = query_readonly_after(database, run.outcome.sweep_id)
        print_rows(columns, rows, OutputFormat.table,
                   title=f"sweep {run.outcome.sweep_id}: energy per inference, summed over "
                   "layers (simulated meters: not measured)")
        console.print(f"results: {database.resolve()}")
        console.print('try: joulefarm query "SELECT * FROM layer_energy LIMIT 20"')
        if run.outcome.status != "done" or run.skipped:
            raise typer.Exit(code=1)


def query_readonly_after(database: Path, sweep_id: str) -> tuple[list[str], list[tuple]]:
    sql = SUMMARY_SQL.replace("?", f"'{sweep_id}'")  # sweep ids are ours: [a-z0-9-] only
    return query_readonly(database, sql)
