"""``joulefarm provision NAME...|--all``: install the agent on devices over SSH and start it.

Register with ``provision_cmd.register(app)`` in app.py. Exit codes: 0 every device is
provisioned and verified; 1 some device failed (the others are still done, each failure is
one line naming the device); 2 bad input (devices file, names, options) and nothing ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.markup import escape

from controller.cli.console import OutputFormat, console, err_console, print_rows
from controller.cli.options import DevicesOption
from controller.config.registry import Device, load_registry
from controller.demo import DEVICES_FILE, resolve_default
from controller.provision.errors import ProvisionError, ProvisionInputError

HELP = (
    "Install the agent on devices over SSH: build the joulefarm wheel (cached), install it in "
    "its own virtual environment on the device, copy the device's token and a TLS key and "
    "certificate (made here and pinned under [device.tls] in the devices file, unless the "
    "entry brings its own or says insecure_plaintext = true) over SFTP, start the "
    "agent as a systemd user unit, a runit service (Termux) or under a supervisor, and check "
    "health and facts over gRPC. Android phones are reached through Termux's sshd: the agent "
    "gets Termux's numpy and grpcio (pkg), is built on the phone, and runs models with "
    "Google's prebuilt libLiteRt.so (ssh.litert_lib). Host keys are checked against "
    "known_hosts; an encrypted ssh.key is unlocked from $JOULEFARM_SSH_PASSPHRASE or a prompt."
)

NamesArgument = typer.Argument(None, metavar="NAME...",
                               help="Devices to provision (names in the devices file).",
                               show_default=False)
AllOption = typer.Option(False, "--all", help="Provision every remote device of the file.")
TrustOption = typer.Option(
    False, "--trust-new-host",
    help="Accept and record the key of a host that known_hosts does not list yet (a CHANGED "
         "key is always refused).")
WheelOption = typer.Option(
    None, "--wheel", help="Install this joulefarm wheel instead of building one (e.g. one "
    "built for the device's architecture).", show_default=False)
BuildOnDeviceOption = typer.Option(
    False, "--build-on-device",
    help="Build the agent's Rust core on each device from the source distribution (needs Rust "
         "and maturin there) instead of installing a wheel built here. Automatic on Termux "
         "when no wheel fits.")
PrefixOption = typer.Option(
    None, "--prefix", help="Install directory on the device, overriding ssh.prefix "
    "(relative paths start at the login's home).", show_default=False)


def select_devices(path: Path, names: list[str] | None, all_devices: bool) -> list[Device]:
    """The devices to provision, each checked for what provisioning needs (input errors)."""
    from controller.provision.provisioner import check_provisionable

    registry = load_registry(path)
    if all_devices and names:
        raise ProvisionInputError("give device names or --all, not both")
    if all_devices:
        chosen = [d for d in registry if not d.local]
        if not chosen:
            raise ProvisionInputError(f"{path}: no remote devices (every one is local = true)")
    elif names:
        chosen = [registry.get(name) for name in dict.fromkeys(names)]
    else:
        raise ProvisionInputError("name the devices to provision, or pass --all")
    for device in chosen:
        check_provisionable(device)
    return chosen


def provision(
    names: list[str] | None = NamesArgument,
    all_devices: bool = AllOption,
    devices: Path | None = DevicesOption,
    trust_new_host: bool = TrustOption,
    wheel: Path | None = WheelOption,
    prefix: str | None = PrefixOption,
    build_on_device: bool = BuildOnDeviceOption,
) -> None:
    # Imported here: paramiko and friends cost every other command's start-up otherwise.
    from controller.provision.provisioner import (
        ProvisionOptions,
        ProvisionResult,
        WheelSource,
        provision_device,
    )
    from controller.provision.redact import Redactor

    path = resolve_default(devices, DEVICES_FILE)
    chosen = select_devices(path, names, all_devices)
    redactor = Redactor()

    def say(line: str) -> None:
        console.print(redactor.scrub(line), markup=False, soft_wrap=True)

    def say_for(name: str) -> Callable[[str], None]:
        return lambda m: say(f"[{name}] {m}")

    options = ProvisionOptions(trust_new_host=trust_new_host, wheel=wheel, prefix=prefix,
                               build_on_device=build_on_device, devices_file=path)
    wheel_source = WheelSource(wheel, report=lambda m: say(f"[wheel] {m}"))
    done: list[ProvisionResult] = []
    failed: dict[str, ProvisionError] = {}
    for device in chosen:
        try:
            done.append(provision_device(
                device, options, wheel_source,
                report=say_for(device.name), redactor=redactor))
        except ProvisionError as exc:
            failed[device.name] = exc
            # escape(): "[name]" and "[host]:port" are text, not rich markup.
            line = escape(redactor.scrub(f"[{device.name}] {exc}"))
            err_console.print(f"[bold red]error:[/] {line}", markup=True, soft_wrap=True)
    if done:
        print_rows(["device", "service", "pid", "reached", "tls", "install dir"],
                   [(r.device, r.service, r.pid, r.reached, r.tls, r.prefix) for r in done],
                   OutputFormat.table, title="provisioned")
    if failed:
        err_console.print(f"{len(failed)} of {len(chosen)} devices failed: "
                          f"{', '.join(failed)}", markup=False)
        all_input = all(isinstance(e, ProvisionInputError) for e in failed.values())
        raise typer.Exit(2 if all_input else 1)


def register(app: typer.Typer) -> None:
    app.command("provision", help=HELP)(provision)
