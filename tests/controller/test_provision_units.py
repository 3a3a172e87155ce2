"""Provisioning's pure parts: registry keys, wheel fit, requirements, tokens, scripts, cache."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from controller.config.registry import (
    Device,
    MeterConfig,
    Registry,
    RegistryError,
    SshConfig,
    parse_jump,
    parse_registry,
)
from controller.provision import ProvisionInputError
from controller.provision.errors import ProvisionError
from controller.provision.install import RemoteLayout
from controller.provision.provisioner import check_provisionable
from controller.provision.redact import MASK, Redactor
from controller.provision.requirements import UnsupportedDeviceError, agent_requirements
from controller.provision.service import (
    _RUNIT_FINISH,
    _RUNIT_RUN,
    _SUPERVISOR,
    Host,
    LiteRtLibrary,
    _stop_text,
    choose_service,
    run_script,
    unit_text,
)
from controller.provision.tokens import ensure_local_token
from controller.provision.wheel import WheelTags, build_wheel, source_hash, wheel_problem
from tests.helpers import REPO

_MAIN = "from controller.cli.app import main\nmain()\n"

REMOTE = """\
schema_version = 1

[[device]]
name = "pi"
platform = "raspberry-pi"
address = "192.0.2.10"
port = 50051
token_file = "~/.config/joulefarm/pi.token"

[device.meter]
kind = "ina2xx"

[device.ssh]
user = "pi"
"""


def registry_of(ssh_lines: str) -> Registry:
    return parse_registry(REMOTE + ssh_lines, "devices.toml")


def error_of(ssh_lines: str) -> str:
    with pytest.raises(RegistryError) as err:
        registry_of(ssh_lines)
    return str(err.value)


# -- registry: the keys provisioning added ----------------------------------------------------


def test_new_ssh_keys_and_their_defaults() -> None:
    (plain,) = registry_of("").devices
    assert plain.ssh == SshConfig(user="pi")
    assert (plain.ssh.python, plain.ssh.prefix, plain.ssh.service) == (
        "python3", ".joulefarm", "auto")
    assert not plain.ssh.tunnel and not plain.ssh.system_site_packages
    (full,) = registry_of(
        'python = "/usr/bin/python3.11"\nprefix = "/opt/jf"\nservice = "supervised"\n'
        'system_site_packages = true\ntunnel = true\njump = "me@bastion:2200"\n').devices
    assert full.ssh == SshConfig(user="pi", python="/usr/bin/python3.11", prefix="/opt/jf",
                                 service="supervised", system_site_packages=True, tunnel=True,
                                 jump="me@bastion:2200")


@pytest.mark.parametrize(("line", "message"), [
    ('service = "launchd"', "15: device[0].ssh.service: unknown service 'launchd'; expected "
                            "one of: auto, systemd, runit, supervised"),
    ('litert_lib = "ftp://x/libLiteRt.so"', "15: device[0].ssh.litert_lib: must be a file "
                                            "path or an https:// URL"),
    ('build_on_device = "yes"', "15: device[0].ssh.build_on_device: expected a boolean (true "
                                "or false), got string 'yes'"),
    ("tunnel = 1", "15: device[0].ssh.tunnel: expected a boolean (true or false), got integer 1"),
    ('system_site_packages = "yes"', "15: device[0].ssh.system_site_packages: expected a "
                                     "boolean (true or false), got string 'yes'"),
    ('python = ""', "15: device[0].ssh.python: must not be empty; leave the key out instead"),
    ('jump = "bastion:99999"', "15: device[0].ssh.jump: 'bastion:99999': port '99999' is not "
                               "a number in 1..65535"),
    ('jump = "::1"', "15: device[0].ssh.jump: '::1': write an IPv6 jump host in brackets, as "
                     "[addr]:port"),
    ('jump = "@host"', "15: device[0].ssh.jump: '@host': empty user before '@'"),
    ('jump = "bad host"', "15: device[0].ssh.jump: 'bad host': 'bad host' is not a valid IP "
                          "address or host name; expected [user@]host[:port]"),
])
def test_new_ssh_keys_are_validated(line: str, message: str) -> None:
    assert error_of(line + "\n") == f"devices.toml:{message}"


@pytest.mark.parametrize(("text", "parsed"), [
    ("bastion", (None, "bastion", 22)),
    ("me@bastion.example.org:2222", ("me", "bastion.example.org", 2222)),
    ("10.0.0.1:22", (None, "10.0.0.1", 22)),
    ("[2001:db8::1]:2200", (None, "2001:db8::1", 2200)),
    ("ops@[::1]", ("ops", "::1", 22)),
])
def test_parse_jump(text: str, parsed: tuple[str | None, str, int]) -> None:
    assert parse_jump(text) == parsed


@pytest.mark.parametrize("text", ["host:", "[::1", "[host]:22", "[::1]x", "a@", ""])
def test_parse_jump_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_jump(text)


# -- what can be provisioned ------------------------------------------------------------------


def device(**changes: object) -> Device:
    base = Device(name="pi", platform="raspberry-pi", address="192.0.2.10", port=50051,
                  meter=MeterConfig(kind="ina2xx"), token_file="/t/pi.token",
                  ssh=SshConfig(user="pi"))
    return replace(base, **changes)


@pytest.mark.parametrize(("changes", "message"), [
    ({"local": True}, "is local"),
    ({"ssh": None}, r"no \[device.ssh\] table"),
    ({"token_file": None}, "has no token_file; add e.g. token_file"),
    ({"ssh": SshConfig(user="pi", jump="a b")}, "ssh.jump"),
])
def test_check_provisionable(changes: dict[str, object], message: str) -> None:
    check_provisionable(device())
    with pytest.raises(ProvisionInputError, match=message):
        check_provisionable(device(**changes))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _MAIN, "provision", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_input_errors_exit_2_and_run_nothing(tmp_path: Path) -> None:
    devices = tmp_path / "devices.toml"
    devices.write_text(REMOTE.replace('token_file = "~/.config/joulefarm/pi.token"\n', ""))
    for args, message in [
        ((), "name the devices to provision, or pass --all"),
        (("pi", "--all"), "not both"),
        (("nope",), "unknown device 'nope'"),
        (("pi",), "has no token_file"),
        (("--all",), "has no token_file"),
    ]:
        done = run_cli(*args, "--devices", str(devices))
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert done.stdout == ""
    demo = run_cli("--all", "--devices", str(REPO / "devices.toml"))
    assert demo.returncode == 2 and "no remote devices" in demo.stderr


# -- requirements and the wheel's fit ---------------------------------------------------------


def test_runtime_follows_python_and_machine() -> None:
    assert agent_requirements((3, 11), "x86_64")[-1] == "ai-edge-litert>=2.0"
    assert agent_requirements((3, 12), "aarch64")[-1] == "ai-edge-litert>=2.0"
    # ai-edge-litert has cp310 wheels too: one runtime for every Python the agent runs on.
    assert agent_requirements((3, 10), "aarch64")[-1] == "ai-edge-litert>=2.0"
    with pytest.raises(UnsupportedDeviceError, match="32-bit ARM"):
        agent_requirements((3, 11), "armv7l")
    with pytest.raises(UnsupportedDeviceError, match="riscv64"):
        agent_requirements((3, 11), "riscv64")
    for requirements in (agent_requirements((3, 11), "x86_64"),
                         agent_requirements((3, 10), "aarch64")):
        names = " ".join(requirements)
        assert not any(heavy in names for heavy in ("duckdb", "polars", "pyarrow", "typer",
                                                    "rich", "paramiko", "scikit"))


WHEEL = Path("joulefarm-0.1.0-cp311-cp311-manylinux_2_34_x86_64.whl")


@pytest.mark.parametrize(("wheel", "python", "machine", "glibc", "problem"), [
    (WHEEL, (3, 11), "x86_64", (2, 36), None),
    (WHEEL, (3, 11), "x86_64", (2, 31), "it needs glibc >= 2.34, the device has glibc 2.31"),
    (WHEEL, (3, 11), "x86_64", None, "the device has musl or an unknown C library"),
    (WHEEL, (3, 12), "x86_64", (2, 36), "it is for Python cp311, the device runs 3.12"),
    (WHEEL, (3, 11), "aarch64", (2, 36), "it is for manylinux_2_34_x86_64, the device is "
                                         "aarch64"),
    (Path("j-1-cp39-abi3-manylinux2014_aarch64.whl"), (3, 12), "aarch64", (2, 17), None),
    (Path("j-1-cp39-abi3-manylinux2014_aarch64.whl"), (3, 8), "aarch64", (2, 17), "Python"),
    (Path("j-1-cp311-cp311-linux_aarch64.whl"), (3, 11), "aarch64", None, None),
    (Path("j-1-cp311-cp311-musllinux_1_2_x86_64.whl"), (3, 11), "x86_64", None, None),
    (Path("j-1-py3-none-any.whl"), (3, 9), "armv7l", None, None),
])
def test_wheel_fit(wheel: Path, python: tuple[int, int], machine: str,
                   glibc: tuple[int, int] | None, problem: str | None) -> None:
    found = wheel_problem(wheel, python, machine, glibc)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_wheel_name_must_parse() -> None:
    with pytest.raises(ProvisionInputError, match="not a wheel file name"):
        WheelTags.of(Path("joulefarm.zip"))
    with pytest.raises(ProvisionInputError, match=r"not a wheel file name .*number of parts"):
        wheel_problem(Path("joulefarm-0.1.0-manylinux_2_17_x86_64.whl"), (3, 11), "x86_64",
                      (2, 36))


ABI3 = Path("joulefarm-0.1.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")


@pytest.mark.parametrize("minor", [10, 11, 12, 13])
def test_abi3_wheel_fits_its_python_and_newer(minor: int) -> None:
    assert wheel_problem(ABI3, (3, minor), "x86_64", (2, 17)) is None


def test_abi3_wheel_does_not_fit_an_older_python() -> None:
    assert wheel_problem(ABI3, (3, 9), "x86_64", (2, 17)) == (
        "it is for Python cp310 or newer (stable ABI), the device runs 3.9")


@pytest.mark.parametrize(("wheel", "python", "machine", "glibc", "problem"), [
    (Path("j-1-cp311-cp311-manylinux_2_28_aarch64.whl"), (3, 11), "aarch64", (2, 27),
     "it needs glibc >= 2.28, the device has glibc 2.27"),
    (Path("j-1-cp311-cp311-manylinux_2_28_aarch64.whl"), (3, 11), "aarch64", (2, 28), None),
    (Path("j-1-cp311-cp311-manylinux2010_x86_64.whl"), (3, 11), "x86_64", (2, 11),
     "it needs glibc >= 2.12, the device has glibc 2.11"),
    (Path("j-1-cp311-cp311-musllinux_1_2_aarch64.whl"), (3, 11), "aarch64", None, None),
    (Path("j-1-cp311-cp311-musllinux_1_1_aarch64.whl"), (3, 11), "aarch64", None, None),
    (Path("j-1-cp311-cp311-musllinux_1_2_aarch64.whl"), (3, 11), "aarch64", (2, 36),
     "it is for musl (musllinux_1_2_aarch64), the device has glibc 2.36"),
    (Path("j-1-cp311-cp311-musllinux_1_2_aarch64.whl"), (3, 12), "x86_64", None,
     "it is for Python cp311, the device runs 3.12; it is for musllinux_1_2_aarch64, the "
     "device is x86_64"),
    (Path("j-1-py38-none-any.whl"), (3, 11), "armv7l", (2, 31), None),  # pip takes it too
    (Path("j-1-cp311-cp311d-linux_x86_64.whl"), (3, 11), "x86_64", (2, 31),
     "it is for Python cp311 with ABI cp311d, the device runs 3.11"),
])
def test_wheel_fit_explains_why_not(wheel: Path, python: tuple[int, int], machine: str,
                                    glibc: tuple[int, int] | None, problem: str | None) -> None:
    assert wheel_problem(wheel, python, machine, glibc) == problem


def fake_source(root: Path) -> Path:
    (root / "agent").mkdir(parents=True)
    (root / "rust_core" / "target").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\n")
    (root / "agent" / "a.py").write_text("x = 1\n")
    (root / "rust_core" / "target" / "big.rlib").write_text("build output")
    (root / "tests").mkdir()
    return root


def test_source_hash_follows_wheel_inputs_only(tmp_path: Path) -> None:
    root = fake_source(tmp_path / "src")
    first = source_hash(root)
    (root / "rust_core" / "target" / "big.rlib").write_text("rebuilt")
    (root / "tests" / "t.py").write_text("not in the wheel")
    (root / "agent" / "__pycache__").mkdir()
    (root / "agent" / "__pycache__" / "a.pyc").write_bytes(b"\0")
    assert source_hash(root) == first
    (root / "agent" / "a.py").write_text("x = 2\n")
    assert source_hash(root) != first


def test_cached_wheel_is_reused_without_building(tmp_path: Path) -> None:
    root = fake_source(tmp_path / "src")
    cache = tmp_path / "cache"
    slot = cache / source_hash(root)
    slot.mkdir(parents=True)
    (slot / WHEEL.name).write_bytes(b"PK")
    events: list[str] = []
    assert build_wheel(root, cache=cache, on_event=events.append) == slot / WHEEL.name
    assert events == [f"agent wheel (cached): {slot / WHEEL.name}"]


def test_build_needs_a_source_tree(tmp_path: Path) -> None:
    with pytest.raises(ProvisionInputError, match="--wheel"):
        build_wheel(tmp_path)


# -- tokens and redaction ---------------------------------------------------------------------


def test_token_is_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "pi.token"
    events: list[str] = []
    token = ensure_local_token(path, events.append)
    assert len(token) >= 40 and token not in " ".join(events)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_local_token(path, events.append) == token
    assert len(events) == 1
    path.chmod(0o644)
    assert ensure_local_token(path, events.append) == token
    assert "readable by others" in events[-1] and token not in events[-1]
    path.write_text("\n")
    with pytest.raises(ProvisionError, match="is empty"):
        ensure_local_token(path)


def test_redactor_masks_every_secret() -> None:
    redactor = Redactor()
    redactor.add("s3cret-token-value")
    redactor.add("s3cret-token")  # contained in the other: the longer one is masked whole
    redactor.add("abc")  # too short to mask safely
    redactor.add(None)
    assert redactor.scrub("x s3cret-token-value y s3cret-token abc") == f"x {MASK} y {MASK} abc"


# -- layout and the scripts on the device -----------------------------------------------------


def test_layout_resolves_against_home() -> None:
    assert RemoteLayout.resolve(".joulefarm", "/home/pi").prefix == "/home/pi/.joulefarm"
    assert RemoteLayout.resolve("~/jf/", "/home/pi").prefix == "/home/pi/jf"
    assert RemoteLayout.resolve("/opt/jf", "/home/pi").token == "/opt/jf/agent.token"


def test_run_script_passes_the_token_as_a_file_and_quotes_paths() -> None:
    layout = RemoteLayout("/home/pi/my agents")
    direct = run_script(device(meter=MeterConfig(kind="sim", profile="rpi4",
                                                 sample_rate_hz=1000.0)), layout)
    assert "--token-file '/home/pi/my agents/agent.token'" in direct
    assert "--host 0.0.0.0 --port 50051" in direct
    assert "--profile rpi4 --sample-rate-hz 1000.0" in direct
    assert "cd '/home/pi/my agents' || exit 1" in direct
    tunnelled = run_script(device(ssh=SshConfig(user="pi", tunnel=True)), layout)
    assert "--host 127.0.0.1" in tunnelled
    assert "--host ::" in run_script(device(address="2001:db8::5"), layout)
    unit = unit_text(device(), layout)
    assert "ExecStart=/bin/sh -c 'exec \"$$0\" >>\"$$1\" 2>&1' \"/home/pi/my agents/run-" in unit
    assert "Restart=always" in unit


def test_a_provisioned_agent_gets_its_meter_options_as_a_local_one_does() -> None:
    # run-agent.sh once dropped [device.meter] options: a tegrastats, replay or Otii device
    # with options could not work once provisioned.
    import json
    import shlex

    from agent.__main__ import build_parser
    from controller.farm.agent_command import AgentPlace, agent_command

    meter = MeterConfig(kind="tegrastats", sample_rate_hz=10.0,
                        options={"interval_ms": 100, "total_rail": "VDD_IN"})
    pi = device(meter=meter)
    script = run_script(pi, RemoteLayout("/home/pi/.joulefarm"))
    exec_line = next(line for line in script.splitlines() if line.startswith("exec "))
    remote = shlex.split(exec_line)[4:]  # after: exec PYTHON -m agent
    local = agent_command(pi, AgentPlace("python3", "127.0.0.1", 0, "/t", "/c"))[3:]
    for argv in (remote, local):
        ns = build_parser().parse_args(argv)
        assert json.loads(ns.meter_options) == {"interval_ms": 100, "total_rail": "VDD_IN"}
        assert (ns.meter, ns.sample_rate_hz, ns.name) == ("tegrastats", 10.0, pi.name)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is missing (apt-get install systemd)")
def test_systemd_parses_the_unit_cleanly(tmp_path: Path) -> None:
    """No systemd runs here (a container), but its own parser checks the unit we install:
    every directive known and well-formed, ExecStart's program present."""
    layout = RemoteLayout(str(tmp_path / "my agents"))

    def verify(text: str) -> str:
        unit = tmp_path / "joulefarm-agent-pi.service"
        unit.write_text(text)
        done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, timeout=60)
        return (done.stdout + done.stderr).strip()

    text = unit_text(device(), layout)
    assert verify(text) == ""
    # The check can fail: a wrong value is reported.
    assert "restart specifier" in verify(text.replace("Restart=always", "Restart=sometimes"))


def test_service_choice() -> None:
    assert choose_service("auto", True, "pi") == "systemd"
    assert choose_service("auto", False, "pi") == "supervised"
    assert choose_service("auto", False, "phone", runit_available=True) == "runit"
    assert choose_service("supervised", True, "pi") == "supervised"
    with pytest.raises(ProvisionError, match="no user systemd instance"):
        choose_service("systemd", False, "pi")
    with pytest.raises(ProvisionError, match="termux-services"):
        choose_service("runit", False, "pi")


def test_scripts_are_valid_sh(tmp_path: Path) -> None:
    layout = RemoteLayout(str(tmp_path))
    termux = Host("/data/data/com.termux/files/usr/bin/sh",
                  "/data/data/com.termux/files/usr/var/service")
    texts = [_SUPERVISOR, _stop_text(device(), Host()).decode(),
             _stop_text(device(), termux).decode(), run_script(device(), layout),
             _RUNIT_RUN.format(name="pi", run="/x/run-agent.sh", log="/x/agent.log"),
             _RUNIT_FINISH.format(log="/x/agent.log")]
    for text in texts:
        script = tmp_path / "s.sh"
        script.write_text(text)
        subprocess.run(["sh", "-n", str(script)], check=True)


def test_scripts_name_the_devices_shell() -> None:
    """Android has no /bin/sh: every script Termux runs starts with $PREFIX/bin/sh."""
    shell = "/data/data/com.termux/files/usr/bin/sh"
    host = Host(shell, "/data/data/com.termux/files/usr/var/service")
    layout = RemoteLayout("/data/data/com.termux/files/home/.joulefarm")
    assert run_script(device(), layout, shell).startswith(f"#!{shell}\n")
    assert _stop_text(device(), host).startswith(f"#!{shell}\n".encode())
    stop = _stop_text(device(), host).decode()
    assert "service=/data/data/com.termux/files/usr/var/service/joulefarm-agent-" in stop
    assert run_script(device(), layout).startswith("#!/bin/sh\n")


def test_run_script_for_the_litert_c_runtime() -> None:
    layout = RemoteLayout("/p")
    text = run_script(device(), layout, litert=LiteRtLibrary("/p/lib/libLiteRt.so", "2.3.1"))
    assert "--runtime litert-c --litert-lib /p/lib/libLiteRt.so --litert-version 2.3.1" in text
    assert "--runtime" not in run_script(device(), layout)


def test_stop_script_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    # A pid file naming a process that is NOT the agent (the pid was reused): untouched.
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "agent.pid").write_text(str(bystander.pid))
        (tmp_path / "stop-agent.sh").write_bytes(_stop_text(device(name="x"), Host()))
        subprocess.run(["sh", str(tmp_path / "stop-agent.sh")], check=True, timeout=30,
                       env={**os.environ, "HOME": str(tmp_path)})
        assert bystander.poll() is None
        assert not (tmp_path / "agent.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_supervisor_restarts_and_stops(tmp_path: Path) -> None:
    # A stand-in agent that exits at once: restarted after 1 s; TERM stops the loop.
    (tmp_path / "run-agent.sh").write_text("#!/bin/sh\necho started\nexit 3\n")
    (tmp_path / "run-agent.sh").chmod(0o755)
    (tmp_path / "supervise.sh").write_text(_SUPERVISOR)
    supervisor = subprocess.Popen(["sh", str(tmp_path / "supervise.sh")])
    try:
        deadline = time.monotonic() + 20
        log = tmp_path / "agent.log"
        while time.monotonic() < deadline and (
                not log.exists() or log.read_text().count("started") < 2):
            time.sleep(0.1)
        text = log.read_text()
        assert text.count("started") >= 2
        assert "exited with status 3 after 0s; restarting in 1s" in text
        assert (tmp_path / "supervisor.pid").read_text().strip() == str(supervisor.pid)
    finally:
        supervisor.terminate()
        assert supervisor.wait(20) == 0
    assert not (tmp_path / "supervisor.pid").exists()


def test_wheel_cache_keeps_the_newest_source_states(tmp_path: Path) -> None:
    from controller.provision.wheel import KEEP_WHEELS, _prune

    slots = []
    for i in range(KEEP_WHEELS + 2):
        slot = tmp_path / f"hash{i}"
        slot.mkdir()
        os.utime(slot, (1000 + i, 1000 + i))
        slots.append(slot)
    (tmp_path / ".hash9-building").mkdir()  # a build in progress is not touched
    _prune(tmp_path, keep=slots[0])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([".hash9-building", "hash0"] + [s.name for s in slots[-KEEP_WHEELS:]])
