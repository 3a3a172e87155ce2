"""Installing the agent on a device: what is there (probe), where it goes (layout), its own
virtual environment, the wheel, its requirements, and its token.

Every step is safe to repeat: provisioning again replaces the agent in place.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path

from controller.provision.errors import ProvisionError
from controller.provision.requirements import HEAVY_MODULES
from controller.provision.ssh import SshSession

PIP = "-m pip install --disable-pip-version-check --no-input --quiet"

_PROBE = """\
import json, platform, sys
libc, libc_version = platform.libc_ver()
print(json.dumps({"python": list(sys.version_info[:3]), "machine": platform.machine(),
                  "system": platform.system(), "libc": libc, "libc_version": libc_version}))
"""

# Imports the agent exactly as `python -m agent serve` does, then reports where it came from
# and which controller-only packages got dragged in (there must be none).
_IMPORT_CHECK = """\
import json, sys
import agent, agent.__main__, agent.server
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"agent": agent.__file__, "heavy": heavy}}))
"""


@dataclass(frozen=True)
class DeviceProbe:
    python: tuple[int, int, int]
    machine: str  # uname -m: x86_64, aarch64, armv7l
    system: str
    glibc: tuple[int, int] | None  # None: musl (Alpine, Termux's bionic) or unknown
    systemd_user: bool  # a user systemd instance answers

    def summary(self) -> str:
        libc = f"glibc {self.glibc[0]}.{self.glibc[1]}" if self.glibc else "non-glibc"
        return (f"{self.system} {self.machine}, Python {'.'.join(map(str, self.python))}, "
                f"{libc}, systemd user instance: {'yes' if self.systemd_user else 'no'}")


def probe_device(session: SshSession, python: str) -> DeviceProbe:
    """What the device runs; fails clearly when `python` (ssh.python) is not there."""
    result = session.run(f"{shlex.quote(python)} -c {shlex.quote(_PROBE)}",
                         what=f"running {python}", check=False)
    if result.exit_status != 0:
        raise ProvisionError(
            f"{session.endpoint.label}: cannot run {python!r} (exit status "
            f"{result.exit_status}): {result.output.strip()[-300:]}. Install Python 3.11 or "
            "newer on the device, or point ssh.python at an interpreter.")
    try:
        info = json.loads(result.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ProvisionError(f"{session.endpoint.label}: unexpected output from {python}: "
                             f"{result.output[-300:]!r}") from None
    systemd = session.run(
        "command -v systemctl >/dev/null 2>&1 && systemctl --user show-environment "
        ">/dev/null 2>&1", what="looking for systemd", check=False).exit_status == 0
    glibc = None
    if info["libc"] == "glibc":
        parts = info["libc_version"].split(".")
        glibc = (int(parts[0]), int(parts[1]))
    return DeviceProbe(tuple(info["python"]), info["machine"], info["system"], glibc, systemd)


@dataclass(frozen=True)
class RemoteLayout:
    """Where everything of one agent lives on the device: all under one directory (0700)."""

    prefix: str

    @classmethod
    def resolve(cls, prefix: str, home: str) -> RemoteLayout:
        """Relative prefixes (and ``~/...``) start at the login's home directory."""
        if prefix == "~" or prefix.startswith("~/"):
            prefix = prefix[2:]
        return cls(posixpath.normpath(posixpath.join(home, prefix)))

    def path(self, name: str) -> str:
        return posixpath.join(self.prefix, name)

    @property
    def venv(self) -> str:
        return self.path("venv")

    @property
    def python(self) -> str:
        return self.path("venv/bin/python")

    @property
    def token(self) -> str:
        return self.path("agent.token")

    @property
    def log(self) -> str:
        return self.path("agent.log")


def ensure_venv(session: SshSession, layout: RemoteLayout, python: str,
                probe: DeviceProbe, system_site_packages: bool) -> bool:
    """Create the agent's venv, or keep the one there if it still matches; True if created."""
    cfg = session.read_bytes(layout.path("venv/pyvenv.cfg"))
    if cfg is not None:
        settings = dict(
            (k.strip(), v.strip()) for k, _, v in
            (line.partition("=") for line in cfg.decode("utf-8", "replace").splitlines())
        )
        same_site = settings.get("include-system-site-packages") == str(
            system_site_packages).lower()
        version = settings.get("version", settings.get("version_info", ""))
        same_python = version.split(".")[:2] == [str(p) for p in probe.python[:2]]
        if same_site and same_python:
            return False
    flags = "--clear" + (" --system-site-packages" if system_site_packages else "")
    result = session.run(f"{shlex.quote(python)} -m venv {flags} {shlex.quote(layout.venv)}",
                         what="creating the virtual environment", check=False)
    if result.exit_status != 0:
        raise ProvisionError(
            f"{session.endpoint.label}: `{python} -m venv` failed (on Debian/Ubuntu/Raspberry "
            f"Pi OS install python3-venv): {result.output.strip()[-500:]}")
    return True


def install_wheel(session: SshSession, layout: RemoteLayout, wheel: Path) -> None:
    """Copy the wheel over SFTP and install it alone: ``--no-deps`` keeps the controller's
    dependencies (DuckDB, polars, ...) off the device; ``--force-reinstall`` makes a rebuilt
    wheel of the same version replace the old files."""
    remote = layout.path(f"wheels/{wheel.name}")
    session.mkdir_private(layout.path("wheels"))
    session.put(wheel, remote)
    session.run(f"{shlex.quote(layout.python)} {PIP} --no-deps --force-reinstall "
                f"{shlex.quote(remote)}", what="installing the joulefarm wheel")


def install_requirements(session: SshSession, layout: RemoteLayout,
                         requirements: tuple[str, ...]) -> None:
    args = " ".join(shlex.quote(r) for r in requirements)
    session.run(f"{shlex.quote(layout.python)} {PIP} {args}",
                what="installing the agent's requirements")


def check_agent_imports(session: SshSession, layout: RemoteLayout) -> None:
    """Import the agent in its venv: it must come from there and pull in nothing heavy."""
    code = _IMPORT_CHECK.format(heavy=HEAVY_MODULES)
    result = session.run(f"cd {shlex.quote(layout.prefix)} && {shlex.quote(layout.python)} -c "
                         f"{shlex.quote(code)}", what="importing the agent")
    info = json.loads(result.output.strip().splitlines()[-1])
    if not info["agent"].startswith(layout.venv + "/"):
        raise ProvisionError(f"{session.endpoint.label}: the agent imported from "
                             f"{info['agent']}, not from {layout.venv}; is PYTHONPATH set "
                             "in the login's environment?")
    if info["heavy"]:
        raise ProvisionError(f"{session.endpoint.label}: importing the agent loaded "
                             f"controller-only packages: {', '.join(info['heavy'])}")


def write_token(session: SshSession, layout: RemoteLayout, token: str) -> None:
    """Over SFTP into a 0600 file in the 0700 prefix — never on a command line."""
    session.write_file(layout.token, (token + "\n").encode(), 0o600)
