"""Provisioning an Android phone through Termux's sshd.

No phone runs here, so the device is this machine behind a second real sshd that presents a
Termux session exactly as Termux's patched sshd does: it keeps ``TERMUX_VERSION``, ``PREFIX``,
``TMPDIR`` and ``PATH`` in every session (termux-packages ``openssh/session.c.patch``). The
prefix is laid out like Termux's: ``bin/sh``, ``var/service`` watched by a real runit
``runsvdir`` (what termux-services runs), and the two tools that only exist on a phone —
``pkg`` (Termux's package manager) and ``getprop`` (Android's property reader) — as fixtures
that log their arguments and answer like the real ones. Everything else is real: the agent is
built on the "device" from the source distribution with maturin, runs from its venv under
runit, and runs models with a standalone ``libLiteRt.so`` through the LiteRT C API, with no
Python TFLite runtime imported.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.runtimes import litert_capi
from controller.config.registry import Device, load_registry
from controller.provision import termux
from controller.provision.errors import ProvisionError
from controller.provision.verify import check_agent
from tests.helpers.processes import is_zombie
from tests.helpers.sshd import PASSPHRASE, SshServer, device_entry, free_port, start_sshd

_MAIN = "from controller.cli.app import main; main()\n"
TERMUX_VERSION = "0.118.3"
ANDROID_API = 34

# --- the parts of Termux that need no phone -------------------------------------------------


def test_probe_parsing() -> None:
    env = termux.parse_probe("0.118.3\n/data/data/com.termux/files/usr\n34\nrunit\nwakelock\n")
    assert env == termux.TermuxEnv("0.118.3", "/data/data/com.termux/files/usr", 34, True, True)
    assert env.svdir == "/data/data/com.termux/files/usr/var/service"
    assert env.shell == "/data/data/com.termux/files/usr/bin/sh"
    # A Linux board: no TERMUX_VERSION.
    assert termux.parse_probe("\n/usr\n\n\n\n") is None
    assert termux.parse_probe("") is None
    # getprop missing, no termux-services, no termux-tools.
    bare = termux.parse_probe("0.118.3\n/data/data/com.termux/files/usr\n\n\n\n")
    assert bare is not None and bare.android_api is None
    assert not bare.has_runit and not bare.has_wake_lock


def test_litert_library_sources() -> None:
    assert termux.default_litert_url("aarch64", android=True) == (
        "https://storage.googleapis.com/litert/binaries/2.3.1/android_arm64/libLiteRt.so")
    assert "android_arm32" in termux.default_litert_url("armv7l", android=True)
    assert "linux_arm64" in termux.default_litert_url("aarch64", android=False)
    with pytest.raises(ProvisionError, match="no prebuilt libLiteRt.so for Linux on armv7l"):
        termux.default_litert_url("armv7l", android=False)
    url = termux.default_litert_url("aarch64", android=True)
    assert termux.litert_version_label(url, None) == "2.3.1"
    assert termux.litert_version_label(url, "mine") == "mine"
    assert termux.litert_version_label("/opt/libLiteRt.so", None) == "unknown"


def test_elf_architecture_check() -> None:
    header = litert_capi.library_path().read_bytes()[:20]  # the x86_64 one of the wheel
    assert termux.elf_machine_problem(header, "x86_64") is None
    assert termux.elf_machine_problem(header, "aarch64") == (
        "it is built for x86_64, the device is aarch64")
    arm = header[:18] + (0x28).to_bytes(2, "little")
    assert termux.elf_machine_problem(arm, "armv7l") is None
    assert termux.elf_machine_problem(b"<html>404</html>....", "aarch64") == (
        "it is not an ELF shared library")


def test_android_warnings() -> None:
    env = termux.TermuxEnv("0.118.3", "/p", 34, True, False)
    notes = termux.warnings_for(env)
    assert any("termux-wake-lock is missing" in n for n in notes)
    assert any("settings_enable_monitor_phantom_procs false" in n for n in notes)
    assert termux.warnings_for(termux.TermuxEnv("0.118.3", "/p", 30, True, True)) == []


def test_the_schema_module_can_come_from_a_file_alone(tmp_path: Path) -> None:
    """A phone has no ai-edge-litert wheel: provisioning copies the controller's schema module
    and names it in $JOULEFARM_TFLITE_SCHEMA, which wins over any installed wheel."""
    from joulefarm.tflite.schema import SCHEMA_ENV, schema_file

    source = schema_file()
    assert source is not None
    copy = tmp_path / "schema_py_generated.py"
    shutil.copy(source, copy)
    code = ("import sys, joulefarm.tflite.schema as s; print(s.tfl.__file__); "
            "print(any(m.startswith('ai_edge_litert') for m in sys.modules))")
    env = {**os.environ, SCHEMA_ENV: str(copy)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=60).stdout.split()
    assert out == [str(copy), "False"]
    env[SCHEMA_ENV] = str(tmp_path / "missing.py")
    failed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=60)
    assert failed.returncode != 0
    assert f"{SCHEMA_ENV}={tmp_path / 'missing.py'} is not a file" in failed.stderr


# --- a Termux device over a real sshd -------------------------------------------------------


@dataclass
class Phone:
    server: SshServer
    root: Path
    prefix: Path  # $PREFIX
    install: Path  # the agent's install directory
    devices_file: Path
    device: Device
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _MAIN, "provision", *args, "--devices",
                               str(self.devices_file)],
                              capture_output=True, text=True, timeout=900, env=self.env)

    def provisioned(self) -> Device:
        """The device as provisioning left devices.toml: with its certificate pinned."""
        return load_registry(self.devices_file).get("phone")

    @property
    def service(self) -> Path:
        return self.prefix / "var/service/joulefarm-agent-phone"

    def runit_pid(self) -> int | None:
        try:
            text = (self.service / "supervise/pid").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def token(self) -> str:
        return (self.root / "phone.token").read_text().strip()


def _fixture_tool(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _termux_prefix(root: Path) -> Path:
    prefix = root / "data/data/com.termux/files/usr"
    for sub in ("bin", "tmp", "var/service"):
        (prefix / sub).mkdir(parents=True)
    (prefix / "bin/sh").symlink_to("/bin/sh")
    log = root / "tools.log"
    _fixture_tool(prefix / "bin/pkg", f'echo "pkg $*" >> {log}\n')
    _fixture_tool(prefix / "bin/termux-wake-lock", f'echo "termux-wake-lock" >> {log}\n')
    _fixture_tool(prefix / "bin/getprop",
                  f'[ "$1" = ro.build.version.sdk ] && echo {ANDROID_API}\n')
    return prefix


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phone]:
    missing = [tool for tool in ("runsvdir", "sv", "maturin", "cargo") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"missing {', '.join(missing)} (runit from apt; Rust and maturin)")
    root = tmp_path_factory.mktemp("termux")
    prefix = _termux_prefix(root)
    lib = root / "controller-side/libLiteRt.so"
    lib.parent.mkdir()
    shutil.copy(litert_capi.library_path(), lib)
    # What Termux's sshd passes into every session.
    path = f"{prefix}/bin:{os.environ['PATH']}"
    set_env = (f"SetEnv TERMUX_VERSION={TERMUX_VERSION} PREFIX={prefix} TMPDIR={prefix}/tmp "
               f"PATH={path}\n")
    sshd_dir = root / "sshd"
    sshd_dir.mkdir()
    servers = start_sshd(sshd_dir, set_env)
    server = next(servers)
    runsvdir = subprocess.Popen(["runsvdir", "-P", str(prefix / "var/service")],
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    home = root / "data/data/com.termux/files/home"
    install = home / ".joulefarm"
    devices_file = root / "devices.toml"
    devices_file.write_text(device_entry(
        server, name="phone", platform="android", agent_port=free_port(),
        token_file=root / "phone.token", known_hosts=root / "known_hosts",
        python=sys.executable, prefix=install, ssh_extra=f"""\
litert_lib = "{lib}"
litert_version = "2.3.0"
# This "phone" has glibc, so the wheel built here would fit; a real one builds the Rust core
# itself because no wheel fits bionic — take that path explicitly.
build_on_device = true
"""))
    (device,) = load_registry(devices_file).devices
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["JOULEFARM_SSH_PASSPHRASE"] = PASSPHRASE
    # The Rust core is built "on the device": keep its cargo cache but not this tree's wheels.
    env["XDG_CACHE_HOME"] = str(root / "controller-cache")
    try:
        yield Phone(server, root, prefix, install, devices_file, device, env)
    finally:
        if (install / "stop-agent.sh").exists():
            subprocess.run(["sh", str(install / "stop-agent.sh")], timeout=60, check=False)
        os.killpg(runsvdir.pid, signal.SIGTERM)
        runsvdir.wait(10)
        servers.close()


@pytest.fixture(scope="module")
def provisioned(phone: Phone) -> subprocess.CompletedProcess[str]:
    done = phone.cli("phone", "--trust-new-host")
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.ssh
@pytest.mark.slow
def test_provisioning_reports_each_android_step(
        phone: Phone, provisioned: subprocess.CompletedProcess[str]) -> None:
    out = provisioned.stdout
    for step in (f"[phone] device: Android, API {ANDROID_API} (Termux {TERMUX_VERSION})",
                 "installing Termux packages: python python-numpy python-grpcio",
                 "building the agent on the device from joulefarm-",
                 "installing the LiteRT runtime library from",
                 "settings_enable_monitor_phantom_procs false",
                 "took a Termux wake lock",
                 "starting the agent (runit)",
                 "[phone] healthy directly at 127.0.0.1:"):
        assert step in out, f"{step!r} missing from:\n{out}"
    tools = (phone.root / "tools.log").read_text().splitlines()
    assert "pkg install -y python python-numpy python-grpcio rust maturin" in tools
    assert "termux-wake-lock" in tools


@pytest.mark.ssh
@pytest.mark.slow
def test_the_agent_runs_under_runit_with_the_litert_c_runtime(phone: Phone,
                                                              provisioned: object) -> None:
    pid = phone.runit_pid()
    assert pid is not None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0].decode() == str(phone.install / "venv/bin/python")
    assert b"litert-c" in cmdline
    # Every script names Termux's shell, never /bin/sh.
    for script in (phone.install / "run-agent.sh", phone.install / "stop-agent.sh",
                   phone.service / "run", phone.service / "finish"):
        assert script.read_text().startswith(f"#!{phone.prefix}/bin/sh\n"), script
    # The models run on the library copied into the install directory, and no Python TFLite
    # runtime was loaded (a phone has none).
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert str(phone.install / "lib/libLiteRt.so") in maps
    assert "ai_edge_litert" not in maps and "tflite_runtime" not in maps
    # ...and the schema module provisioning copied, since a phone has no wheel to take it from.
    assert "export JOULEFARM_TFLITE_SCHEMA=" in (phone.install / "run-agent.sh").read_text()
    assert (phone.install / "lib/schema_py_generated.py").is_file()
    device = phone.provisioned()
    facts = check_agent(device, device.grpc_target(), phone.token(), timeout_s=30)
    assert facts is not None
    assert facts.runtime_name == "litert-c-api"
    assert facts.runtime_version.startswith("2.3.0")
    # The Rust core was built here, from the source distribution, into the venv.
    assert list((phone.install / "build/wheels").glob("joulefarm-*.whl"))
    assert (phone.install / "build/target").is_dir()


@pytest.mark.ssh
@pytest.mark.slow
def test_a_layer_sweep_runs_on_the_phone(phone: Phone, provisioned: object,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    from controller.farm.runner import run_suite

    monkeypatch.setenv("JOULEFARM_SSH_PASSPHRASE", PASSPHRASE)
    suite = phone.root / "suite.toml"
    suite.write_text('schema_version = 1\nname = "phone"\n[select]\nnames = ["phone"]\n'
                     '[measure]\nmode = "layers"\nmin_duration_s = 0.05\n'
                     'idle_duration_s = 0.05\n[[model]]\nname = "mlp"\nrecipe = "mlp"\n')
    db = phone.root / "phone.duckdb"
    report = run_suite(phone.devices_file, suite, db)
    assert report.ok, report.errors()
    con = duckdb.connect(str(db), read_only=True)
    layers = con.execute("SELECT count(*) FROM layer_measurements").fetchone()
    assert layers is not None and layers[0] > 0


@pytest.mark.ssh
@pytest.mark.slow
def test_runit_restarts_a_killed_agent_and_stop_keeps_it_down(phone: Phone,
                                                              provisioned: object) -> None:
    old = phone.runit_pid()
    assert old is not None
    os.kill(old, signal.SIGKILL)
    # runsv runs ./finish (which logs the exit) and then ./run again; supervise/pid can show
    # the finish script's pid for a moment, so wait for the log line and a healthy agent.
    log = phone.install / "agent.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (phone.runit_pid() in (None, old)
                                           or "runit: agent exited" not in log.read_text()):
        time.sleep(0.2)
    assert "runit: agent exited" in log.read_text()
    device = phone.provisioned()
    facts = check_agent(device, device.grpc_target(), phone.token(), timeout_s=30)
    assert facts is not None
    new = phone.runit_pid()
    assert new not in (None, old)

    subprocess.run(["sh", str(phone.install / "stop-agent.sh")], timeout=60, check=True,
                   env={**os.environ, "HOME": str(phone.root)})
    assert (phone.service / "down").exists()
    assert not Path(f"/proc/{new}").exists() or is_zombie(new)
    time.sleep(2)  # runsv would have restarted it by now if it were going to
    assert phone.runit_pid() is None
    # Provisioning again brings it back up, reusing the venv and, the sources being the same
    # (the sdist's sha256 is stamped beside it), the wheel built on the device last time.
    (wheel,) = (phone.install / "build/wheels").glob("*.whl")
    built_at = wheel.stat().st_mtime_ns
    assert (phone.install / "build/sdist.sha256").read_text().strip()
    again = phone.cli("phone")
    assert wheel.stat().st_mtime_ns == built_at
    assert again.returncode == 0, again.stdout + again.stderr
    assert "created the virtual environment" not in again.stdout
    assert phone.runit_pid() is not None and not (phone.service / "down").exists()

