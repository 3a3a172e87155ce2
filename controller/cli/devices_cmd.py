"""``joulefarm devices ...``: the device registry."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import OutputFormat, console, err_console, print_rows
from controller.cli.options import DevicesOption, FormatOption
from controller.config.registry import RegistryError, load_registry
from controller.config.registry_edit import add_device, device_entry
from controller.demo import DEVICES_FILE, resolve_default
from joulefarm.enums import Platform

app = typer.Typer(help="List, check, validate and add the devices of a registry.",
                  no_args_is_help=True)
NamesArgument = typer.Argument(None, help="Devices to check (default: all).", show_default=False)


@app.command("list", help="List the devices of the registry.")
def list_devices(devices: Path | None = DevicesOption, fmt: OutputFormat = FormatOption) -> None:
    path = resolve_default(devices, DEVICES_FILE)
    registry = load_registry(path)
    rows = [
        (d.name, d.platform, d.address, d.port or "auto", "yes" if d.local else "no",
         d.meter.kind + (f" ({d.meter.profile}, simulated)" if d.meter.kind == "sim" else ""),
         list(d.tags))
        for d in registry
    ]
    print_rows(["name", "platform", "address", "port", "local", "meter", "tags"], rows, fmt,
               title=str(path))


@app.command("validate", help="Check the registry file and report every problem in it, each "
             "with its line and field (exit 2 when there is one).")
def validate(devices: Path | None = DevicesOption) -> None:
    path = resolve_default(devices, DEVICES_FILE)
    try:
        registry = load_registry(path)
    except RegistryError as e:
        for problem in e.problems:
            err_console.print(f"error: {problem}", markup=False, soft_wrap=True)
        raise typer.Exit(code=e.exit_code) from None
    console.print(f"{path}: {len(registry)} devices, valid")


@app.command("check", help="Check each device: reachable, authenticated, healthy, its facts "
             "fingerprint, and its configured meter present. Local devices get their agent "
             "started for the check. Exit 1 when any check fails.")
def check(names: list[str] | None = NamesArgument, devices: Path | None = DevicesOption,
          fmt: OutputFormat = FormatOption) -> None:
    path = resolve_default(devices, DEVICES_FILE)
    registry = load_registry(path)
    chosen = registry.select(names=names or None)
    from controller.farm.checks import check_devices  # gRPC, only when checking

    results = check_devices(chosen)
    columns = ["device", "target", "reachable", "authenticated", "healthy", "fingerprint",
               "meter", "meter_present", "problem"]
    print_rows(columns, [[getattr(r, c) for c in columns] for r in results], fmt)
    if not all(r.healthy and r.authenticated and r.meter_present for r in results):
        raise typer.Exit(code=1)


@app.command("add", help="Add a device to the registry. The file keeps its comments; the "
             "result is validated before it replaces the old file.")
def add(
    name: str = typer.Argument(..., help="Device name (unique)."),
    platform: str = typer.Option(..., "--platform", help=", ".join(Platform.values()) + "."),
    address: str = typer.Option(..., "--address", help="Host name or IP of the agent."),
    port: int | None = typer.Option(None, "--port", help="Agent port (required unless --local)."),
    local: bool = typer.Option(False, "--local", help="The controller starts this agent here."),
    tag: list[str] | None = typer.Option(None, "--tag", help="A tag (repeatable)."),
    meter: str = typer.Option("sim", "--meter", help="Meter kind, e.g. ina2xx, rapl, sim."),
    profile: str | None = typer.Option(None, "--profile", help="Simulated profile (sim meter)."),
    sample_rate_hz: float | None = typer.Option(None, "--sample-rate-hz"),
    token_file: str | None = typer.Option(None, "--token-file", help="File with the agent's "
                                          "token (remote agents)."),
    ssh_user: str | None = typer.Option(None, "--ssh-user"),
    ssh_port: int | None = typer.Option(None, "--ssh-port"),
    ssh_key: str | None = typer.Option(None, "--ssh-key"),
    devices: Path | None = DevicesOption,
) -> None:
    path = devices if devices is not None else DEVICES_FILE
    entry = device_entry(name=name, platform=platform, address=address, port=port, local=local,
                         tags=tag or [], meter_kind=meter, profile=profile,
                         sample_rate_hz=sample_rate_hz, token_file=token_file,
                         ssh_user=ssh_user, ssh_port=ssh_port, ssh_key=ssh_key)
    registry = add_device(path, entry)
    console.print(f"{path}: added {name!r} ({len(registry)} devices)")
