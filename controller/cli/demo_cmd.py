"""``joulefarm demo``: run the demo suite on the local demo farm and summarise it."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import DeviceProgress, console
from controller.cli.options import DbOption, DevicesOption, WideOption, db_path
from controller.cli.summary import print_summary
from controller.demo import DEMO_SUITE, DEVICES_FILE, resolve_default

SuiteOption = typer.Option(None, "--suite", help="Suite file (default: benchmarks/demo.toml).",
                           show_default=False)


def register(app: typer.Typer) -> None:
    @app.command(help=(
        "Run the demo: start the local agents of devices.toml (real gRPC servers on loopback, "
        "simulated meters), run the demo suite layer by layer on each, store per-layer "
        "latency and energy in DuckDB, print a summary, stop the agents."))
    def demo(
        devices: Path | None = DevicesOption,
        suite: Path | None = SuiteOption,
        db: Path | None = DbOption,
        wide: bool = WideOption,
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
                devices_path, suite_path, database, progress=live.update,
                on_start=lambda sweep_id: console.print(f"sweep {sweep_id} started",
                                                        soft_wrap=True))
        print_summary(report, database, wide=wide)
        console.print('try: joulefarm query "SELECT * FROM layer_energy LIMIT 20"')
        if not report.ok:
            raise typer.Exit(code=1)
