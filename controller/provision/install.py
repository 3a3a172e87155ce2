"""Installing the agent on a device: what is there (probe), where it goes (layout), its own
virtual environment, the wheel, its requirements, its token and its TLS key and certificate.

Every step is safe to repeat: provisioning again replaces the agent in place.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path

from controller.provision import termux
from controller.provision.errors import ProvisionError, ProvisionInputError
from controller.provision.requirements import HEAVY_MODULES
from controller.provision.ssh import SshSession
from joulefarm.tflite.schema import SCHEMA_ENV, schema_file

PIP = "-m pip install --disable-pip-version-check --no-input --quiet"
# A phone compiling the Rust core or pkg fetching Rust can take a long while.
BUILD_ON_DEVICE_TIMEOUT_S = 3600.0

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
    termux: termux.TermuxEnv | None = None  # an Android device reached through Termux's sshd
    shell: str = "/bin/sh"  # what scripts' #! lines name (Android has no /bin/sh)

    def summary(self) -> str:
        libc = f"glibc {self.glibc[0]}.{self.glibc[1]}" if self.glibc else "non-glibc"
        where = ""
        if self.termux is not None:
            api = f", API {self.termux.android_api}" if self.termux.android_api else ""
            where = f"Android{api} (Termux {self.termux.version}), "
        return (f"{where}{self.system} {self.machine}, Python "
                f"{'.'.join(map(str, self.python))}, {libc}, systemd user instance: "
                f"{'yes' if self.systemd_user else 'no'}")


def probe_device(session: SshSession, python: str) -> DeviceProbe:
    """What the device runs; fails clearly when `python` (ssh.python) is not there."""
    result = session.run(f"{shlex.quote(python)} -c {shlex.quote(_PROBE)}",
                         what=f"running {python}", check=False)
    if result.exit_status != 0:
        raise ProvisionError(
            f"{session.endpoint.label}: cannot run {python!r} (exit status "
            f"{result.exit_status}): {result.output.strip()[-300:]}. Install Python 3.10 or "
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
    env = termux.parse_probe(session.run(termux.PROBE_COMMAND, what="looking for Termux",
                                         check=False).output)
    shell = env.shell if env is not None else "/bin/sh"
    return DeviceProbe(tuple(info["python"]), info["machine"], info["system"], glibc, systemd,
                       env, shell)


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
    def tls_key(self) -> str:
        return self.path("agent.key")

    @property
    def tls_cert(self) -> str:
        return self.path("agent.crt")

    @property
    def log(self) -> str:
        return self.path("agent.log")

    @property
    def litert_lib(self) -> str:
        return self.path("lib/libLiteRt.so")

    @property
    def schema(self) -> str:
        return self.path("lib/schema_py_generated.py")


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
    install_remote_wheel(session, layout, remote)


def install_requirements(session: SshSession, layout: RemoteLayout,
                         requirements: tuple[str, ...]) -> None:
    args = " ".join(shlex.quote(r) for r in requirements)
    session.run(f"{shlex.quote(layout.python)} {PIP} {args}",
                what="installing the agent's requirements")


def check_agent_imports(session: SshSession, layout: RemoteLayout,
                        schema: str | None = None) -> None:
    """Import the agent in its venv, as ``run-agent.sh`` will (with the schema module it is
    given): it must come from there and pull in nothing heavy."""
    code = _IMPORT_CHECK.format(heavy=HEAVY_MODULES)
    env = f"{SCHEMA_ENV}={shlex.quote(schema)} " if schema else ""
    result = session.run(f"cd {shlex.quote(layout.prefix)} && {env}{shlex.quote(layout.python)} "
                         f"-c {shlex.quote(code)}", what="importing the agent")
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


def write_tls(session: SshSession, layout: RemoteLayout, key_pem: bytes,
              cert_pem: bytes) -> None:
    """The agent's key (0600, like the token: whoever reads it can pose as the agent) and
    certificate, over SFTP next to the token."""
    session.write_file(layout.tls_key, key_pem, 0o600)
    session.write_file(layout.tls_cert, cert_pem, 0o644)


def install_system_packages(session: SshSession, packages: tuple[str, ...]) -> None:
    """Termux packages (numpy and grpcio built for bionic, Rust): ``pkg`` is the only source."""
    session.run(termux.install_packages_command(packages), what="installing Termux packages",
                timeout_s=BUILD_ON_DEVICE_TIMEOUT_S)


def install_litert_lib(session: SshSession, layout: RemoteLayout, source: str,
                       machine: str) -> None:
    """Put a standalone ``libLiteRt.so`` at ``layout.litert_lib``: copied from the controller,
    or downloaded by the device from an https URL; its architecture is checked either way,
    because a wrong one only shows later as an agent that cannot start."""
    target = layout.litert_lib
    partial = target + ".part"
    session.mkdir_private(posixpath.dirname(target))
    if source.startswith("https://"):
        q = shlex.quote
        session.run(
            f"if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o {q(partial)} "
            f"{q(source)}; else wget -q -O {q(partial)} {q(source)}; fi",
            what=f"downloading {source}", timeout_s=BUILD_ON_DEVICE_TIMEOUT_S)
        with session.sftp.open(partial, "rb") as remote:
            header = remote.read(20)
        problem = termux.elf_machine_problem(header, machine)
        if problem:
            raise ProvisionError(f"{session.endpoint.label}: {source}: {problem}")
    else:
        local = Path(source).expanduser()
        if not local.is_file():
            raise ProvisionInputError(f"ssh.litert_lib {source}: no such file on this machine")
        with local.open("rb") as file:
            problem = termux.elf_machine_problem(file.read(20), machine)
        if problem:
            raise ProvisionInputError(f"ssh.litert_lib {source}: {problem}")
        session.put(local, partial)
    session.sftp.posix_rename(partial, target)


def install_schema(session: SshSession, layout: RemoteLayout) -> None:
    """The controller's TFLite schema module (pure Python, from its ai-edge-litert wheel) for
    an agent without that wheel: splitting models needs it."""
    local = schema_file()
    if local is None or not local.is_file():
        raise ProvisionError("this controller has no TFLite schema module to give the device: "
                             "pip install ai-edge-litert here")
    session.mkdir_private(posixpath.dirname(layout.schema))
    session.put(local, layout.schema)


def build_on_device(session: SshSession, layout: RemoteLayout, sdist: Path) -> str:
    """Build the agent wheel on the device from the source distribution; returns its path.

    The same source distribution as last time (its sha256, stamped beside the wheel) reuses the
    wheel built then. Otherwise it is unpacked with fresh mtimes (``tar -m``: maturin stamps
    every file of an sdist with one fixed date, and Cargo, which compares mtimes, would take
    changed sources for built ones) and built with the Cargo target directory kept under the
    prefix, so the dependencies are not compiled again (a phone takes minutes for a cold build).
    """
    q = shlex.quote
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    src, out = layout.path("build/src"), layout.path("build/wheels")
    stamp = layout.path("build/sdist.sha256")
    previous = session.run(f"cat {q(stamp)} 2>/dev/null && ls {q(out)}",
                           what="looking for the wheel built last time", check=False)
    lines = previous.output.split()
    built = sorted(name for name in lines[1:] if name.endswith(".whl"))
    if previous.exit_status == 0 and lines and lines[0] == digest and built:
        return posixpath.join(out, built[-1])
    remote = layout.path(f"wheels/{sdist.name}")
    session.mkdir_private(layout.path("wheels"))
    session.put(sdist, remote)
    check = session.run("command -v maturin && command -v cargo", what="looking for maturin",
                        check=False)
    if check.exit_status != 0:
        raise ProvisionError(
            f"{session.endpoint.label}: building the agent on the device needs maturin and "
            "Rust there (Termux: `pkg install rust maturin`; elsewhere: rustup and "
            "`pip install maturin`)")
    session.run(
        f"rm -rf {q(src)} {q(out)} {q(stamp)} && mkdir -p {q(src)} {q(out)} && "
        f"tar -m -xzf {q(remote)} -C {q(src)} --strip-components=1 && cd {q(src)} && "
        f"CARGO_TARGET_DIR={q(layout.path('build/target'))} maturin build --release "
        f"--interpreter {q(layout.python)} --out {q(out)} && echo {digest} > {q(stamp)}",
        what="building the agent on the device (maturin, Rust release build)",
        timeout_s=BUILD_ON_DEVICE_TIMEOUT_S)
    listed = session.run(f"ls {q(out)}", what="finding the built wheel").output.split()
    wheels = sorted(name for name in listed if name.endswith(".whl"))
    if not wheels:
        raise ProvisionError(f"{session.endpoint.label}: maturin built no wheel in {out}")
    return posixpath.join(out, wheels[-1])


def install_remote_wheel(session: SshSession, layout: RemoteLayout, remote: str) -> None:
    session.run(f"{shlex.quote(layout.python)} {PIP} --no-deps --force-reinstall "
                f"{shlex.quote(remote)}", what="installing the joulefarm wheel")
