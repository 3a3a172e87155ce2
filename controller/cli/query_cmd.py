"""``joulefarm query SQL``: read-only SQL over the results database."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import OutputFormat, print_rows
from controller.cli.options import DbOption, FormatOption, db_path

EXAMPLES = """
Tables: devices, sweeps, models, model_layers, jobs, runs, layer_measurements,
whole_measurements, pair_measurements; views layer_energy (one row per measured layer),
additivity (sum of layers vs the whole model) and layer_pairs (each pair of layers measured
with --pairs / pairs = true vs its two layers alone, with nn-Meter's fused verdict);
phase_measurements and the view train_phase_energy (train mode: each layer's forward,
backward and update per training step, with its part of the step); change_points and
series_changes (what changed between nights: `joulefarm compare --help`).
Every measurement row says its meter_kind and whether it is simulated.

Read-only: SQL that touches files (COPY, ATTACH, read_csv, ...),
installs or loads extensions, or changes settings (SET) is refused.
`joulefarm export` writes the results to files.

Examples:

  joulefarm query "SELECT device_name, model_name, layer_index, op, energy_j, energy_source
  FROM layer_energy ORDER BY energy_j DESC LIMIT 10"

  joulefarm query --format csv "SELECT * FROM runs" > runs.csv
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Run a read-only SQL query on the results database." + EXAMPLES)
    def query(
        sql: str = typer.Argument(..., help="The SQL to run (read-only)."),
        db: Path | None = DbOption,
        fmt: OutputFormat = FormatOption,
    ) -> None:
        from controller.store import query_readonly  # DuckDB, only when querying

        columns, rows = query_readonly(db_path(db), sql)
        print_rows(columns, rows, fmt)
