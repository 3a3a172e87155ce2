"""``joulefarm devices ...``: the device registry."""

from __future__ import annotations

from pathlib import Path

import typer

from agent.meters.profiles import PROFILES
from controller.cli.console import OutputFormat, console, print_rows
from controller.cli.options import DevicesOption, FormatOption
from controller.demo import DEVICES_FILE, resolve_default
from controller.registry import load_registry

app = typer.Typer(help="List and validate the devices of a registry.", no_args_is_help=True)


@app.command("list", help="List the devices of the registry.")
def list_devices(devices: Path | None = DevicesOption, fmt: OutputFormat = FormatOption) -> None:
    path = resolve_default(devices, DEVICES_FILE)
    registry = load_registry(path, sim_profiles=tuple(PROFILES))
    rows = [
        (d.name, d.platform, d.address, d.port or "auto", "yes" if d.local else "no",
         d.meter.kind + (f" ({d.meter.profile}, simulated)" if d.meter.kind == "sim" else ""),
         list(d.tags))
        for d in registry
    ]
    print_rows(["name", "platform", "address", "port", "local", "meter", "tags"], rows, fmt,
               title=str(path))


@app.command("validate", help="Check the registry file and report the first error, if any.")
def validate(devices: Path | None = DevicesOption) -> None:
    path = resolve_default(devices, DEVICES_FILE)
    registry = load_registry(path, sim_profiles=tuple(PROFILES))
    console.print(f"{path}: {len(registry)} devices, valid")
