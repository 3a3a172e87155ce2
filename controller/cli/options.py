"""Options shared by several commands, so each means the same everywhere."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import OutputFormat

DevicesOption = typer.Option(
    None, "--devices", help="Device registry (default: ./devices.toml, else the demo farm's).",
    show_default=False)
DbOption = typer.Option(
    None, "--db", help="Results database (default: $JOULEFARM_DB, else ./joulefarm.duckdb).",
    show_default=False)
WideOption = typer.Option(False, "--wide",
                          help="Every column of the summary (meter, energy source, layer count, "
                               "the simulator's truth, idle power), not only those that fit 80 "
                               "columns.")
FormatOption = typer.Option(OutputFormat.table, "--format", "-f",
                            help="Output format: table, csv or json.")


def db_path(value: Path | None) -> Path:
    from controller.store import default_db_path

    return value if value is not None else default_db_path()


InputShapeOption = typer.Option(
    None, "--input-shape", metavar="NAME=D0,D1,...",
    help="The shape to run a model input at, by name or position (0=1,16000); repeat for each "
         "input. Needed for inputs with dynamic dimensions (-1 in their shape_signature); a "
         "dynamic batch alone defaults to 1.", show_default=False)
