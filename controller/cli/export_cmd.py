"""``joulefarm export``: results to Parquet, partitioned by sweep and device."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import console
from controller.cli.options import DbOption, db_path

OutOption = typer.Option(..., "--out", help="Folder to write (layers/, whole/, pairs/, runs/); "
                         "only the exported sweeps' partitions in it are replaced.")
SweepOption = typer.Option(None, "--sweep", help="Only this sweep (default: every sweep in the "
                           "database); an unknown id is an error and changes nothing.")


def register(app: typer.Typer) -> None:
    @app.command(help="Export results to Parquet files partitioned by sweep and device "
                 "(OUT/layers/sweep_id=.../device_name=.../*.parquet).")
    def export(out: Path = OutOption, sweep: str | None = SweepOption,
               db: Path | None = DbOption) -> None:
        from controller.export import export_parquet  # DuckDB, only when exporting

        counts = export_parquet(db_path(db), out, sweep_id=sweep)
        of_sweep = f" of sweep {sweep}" if sweep is not None else ""
        for table, n in counts.items():
            console.print(f"{out / table}: {n} rows{of_sweep}")
