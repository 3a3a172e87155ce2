"""`joulefarm provision` end to end: this machine, reached over a real sshd on loopback, is the
device. The agent goes into a temporary directory, under the shell supervisor, in a venv made
with --system-site-packages (so its requirements are already satisfied, offline) — or, when the
tests themselves run in a virtual environment, a plain venv whose requirements pip fetches.
The agent serves TLS with a certificate made here and pinned in devices.toml."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from controller.config.registry import Device, load_registry
from controller.farm.client import AgentClient
from controller.provision import certs
from controller.provision.errors import ProvisionError, UnknownHostKeyError
from controller.provision.provisioner import ProvisionOptions, WheelSource, provision_device
from controller.provision.ssh import connect
from controller.provision.verify import check_agent, check_agent_via_tunnel
from tests.controller.conftest import in_virtualenv
from tests.helpers import run_cli
from tests.helpers.processes import is_zombie
from tests.helpers.sshd import PASSPHRASE, SshServer, device_entry, free_port

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

_MAIN = "from controller.cli.app import main; main()\n"


@dataclass
class Farm:
    server: SshServer
    root: Path
    devices_file: Path
    device: Device
    prefix: Path
    token_file: Path
    wheel: Path
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _MAIN, "provision", *args, "--devices",
             str(self.devices_file), "--wheel", str(self.wheel)],
            capture_output=True, text=True, timeout=600, env=self.env)

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def provisioned(self) -> Device:
        """The device as provisioning left devices.toml: with its certificate pinned."""
        return load_registry(self.devices_file).get("loop")

    def agent_pid(self) -> int:
        return int((self.prefix / "agent.pid").read_text())


def write_devices(root: Path, server: SshServer, agent_port: int) -> Path:
    path = root / "devices.toml"
    path.write_text(device_entry(
        server, name="loop", platform="linux", agent_port=agent_port,
        token_file=root / "tokens/loop.token", known_hosts=root / "known_hosts",
        python=sys.executable, prefix=root / "device-home/.joulefarm",
        ssh_extra=f'service = "supervised"\n'
                  f"system_site_packages = {str(not in_virtualenv()).lower()}\n"))
    return path


def stop_agent(prefix: Path) -> None:
    script = prefix / "stop-agent.sh"
    if script.exists():
        subprocess.run(["sh", str(script)], timeout=60, check=False)


@pytest.fixture(scope="module")
def farm(sshd_server: SshServer, agent_wheel: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    root = tmp_path_factory.mktemp("farm")
    devices_file = write_devices(root, sshd_server, free_port())
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["JOULEFARM_SSH_PASSPHRASE"] = PASSPHRASE
    (device,) = load_registry(devices_file).devices
    prefix = root / "device-home" / ".joulefarm"
    farm = Farm(sshd_server, root, devices_file, device, prefix, root / "tokens" / "loop.token",
                agent_wheel, env)
    try:
        yield farm
    finally:
        stop_agent(prefix)


@pytest.fixture(scope="module")
def first_run(farm: Farm) -> subprocess.CompletedProcess[str]:
    """The first provisioning, trusting the new host; the tests below look at its results."""
    refused = farm.cli("loop")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "unknown host [127.0.0.1]" in refused.stderr and "--trust-new-host" in refused.stderr
    done = farm.cli("loop", "--trust-new-host")
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_cli_prints_progress_and_exits_0(farm: Farm,
                                         first_run: subprocess.CompletedProcess[str]) -> None:
    out = first_run.stdout
    for step in ("[loop] connecting to", "trusted new host", "[loop] device: Linux",
                 "generated a new agent token", "made a TLS key and certificate for 127.0.0.1",
                 f"pinned the agent's certificate in {farm.devices_file}",
                 "created the virtual environment",
                 "installing joulefarm-", "starting the agent (supervised)", "[loop] healthy "
                 "directly at 127.0.0.1:"):
        assert step in out, f"{step!r} missing from:\n{out}"
    assert (farm.root / "known_hosts").read_text() == farm.server.known_hosts_line
    assert first_run.stderr == ""


def test_health_and_facts_directly_and_through_a_tunnel(farm: Farm, first_run: object) -> None:
    device = farm.provisioned()
    direct = check_agent(device, device.grpc_target(), farm.token(), timeout_s=10)
    assert direct is not None and direct.device_name == "loop"
    with connect(device, passphrase_source=lambda _: PASSPHRASE) as session:
        tunnelled = check_agent_via_tunnel(session, device, farm.token(), timeout_s=10)
    assert tunnelled == direct
    # TLS only: a plaintext client gets nothing from the agent.
    with AgentClient("loop", device.grpc_target(), farm.token()) as plain:
        assert plain.health_problem(timeout_s=3) is not None


def test_the_certificate_is_made_here_copied_and_pinned(farm: Farm, first_run: object) -> None:
    tls = farm.provisioned().tls
    tokens = farm.token_file.parent
    assert tls is not None and tls.cert == str(tokens / "loop.agent.crt")
    assert tls.key == str(tokens / "loop.agent.key")
    cert_pem = (tokens / "loop.agent.crt").read_bytes()
    assert tls.sha256 == certs.fingerprint(certs.parse_certificate(cert_pem))
    assert "[device.tls]" in farm.devices_file.read_text()
    for key in (tokens / "loop.agent.key", farm.prefix / "agent.key"):
        assert oct(key.stat().st_mode & 0o777) == "0o600"
        assert key.read_bytes() == (tokens / "loop.agent.key").read_bytes()
    assert (farm.prefix / "agent.crt").read_bytes() == cert_pem
    cmdline = Path(f"/proc/{farm.agent_pid()}/cmdline").read_bytes().split(b"\0")
    assert cmdline[cmdline.index(b"--tls-cert") + 1] == str(farm.prefix / "agent.crt").encode()
    assert cmdline[cmdline.index(b"--tls-key") + 1] == str(farm.prefix / "agent.key").encode()


def test_devices_check_goes_over_tls(farm: Farm, first_run: object) -> None:
    done = run_cli("devices", "check", "loop", "--devices", str(farm.devices_file),
                   "--format", "csv", env=farm.env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ",True,True,True," in done.stdout


def test_plaintext_on_a_network_address_is_refused(farm: Farm, first_run: object,
                                                   tmp_path: Path) -> None:
    """The same device without its pin, at an address off this machine: no check, no sweep
    sends its token in clear; with the opt-out it would."""
    text = farm.devices_file.read_text()
    bare = text[:text.index("[device.tls]")].replace('address = "127.0.0.1"',
                                                     'address = "192.0.2.10"')
    devices = tmp_path / "devices.toml"
    devices.write_text(bare)
    done = run_cli("devices", "check", "loop", "--devices", str(devices), env=farm.env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert ("device 'loop': its agent at 192.0.2.10 would be reached in plaintext"
            in done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    suite = tmp_path / "suite.toml"
    suite.write_text('schema_version = 1\nname = "t"\n[[model]]\nname = "mlp"\n'
                     'recipe = "mlp"\n')
    swept = run_cli("sweep", "run", str(suite), "--devices", str(devices), "--db",
                    str(tmp_path / "r.duckdb"), env=farm.env)
    assert swept.returncode == 2 and "would be reached in plaintext" in swept.stderr, (
        swept.stdout + swept.stderr)


def test_installed_layout(farm: Farm, first_run: object) -> None:
    prefix = farm.prefix
    assert oct(prefix.stat().st_mode & 0o777) == "0o700"
    assert oct((prefix / "agent.token").stat().st_mode & 0o777) == "0o600"
    assert oct(farm.token_file.stat().st_mode & 0o777) == "0o600"
    assert (prefix / "agent.token").read_text().strip() == farm.token()
    # The agent runs from its own venv, started by the supervisor, with the token as a file.
    cmdline = Path(f"/proc/{farm.agent_pid()}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0].decode() == str(prefix / "venv/bin/python")
    assert b"--token-file" in cmdline
    supervisor = int((prefix / "supervisor.pid").read_text())
    assert b"supervise.sh" in Path(f"/proc/{supervisor}/cmdline").read_bytes()
    site = subprocess.run([str(prefix / "venv/bin/python"), "-c",
                           "import agent, joulefarm; print(agent.__file__, joulefarm.__file__)"],
                          cwd=prefix, capture_output=True, text=True, check=True).stdout
    assert site.count(str(prefix / "venv")) == 2


def test_supervisor_restarts_a_killed_agent(farm: Farm, first_run: object) -> None:
    old = farm.agent_pid()
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid_file = farm.prefix / "agent.pid"
        if pid_file.exists() and pid_file.read_text().strip() not in ("", str(old)):
            break
        time.sleep(0.2)
    new = farm.agent_pid()
    assert new != old
    device = farm.provisioned()
    facts = check_agent(device, device.grpc_target(), farm.token(), timeout_s=30)
    assert facts is not None and facts.device_name == "loop"
    assert "supervisor: agent pid" in (farm.prefix / "agent.log").read_text()


def test_provisioning_again_replaces_the_agent(farm: Farm, first_run: object) -> None:
    old_agent = farm.agent_pid()
    old_supervisor = int((farm.prefix / "supervisor.pid").read_text())
    pinned = farm.devices_file.read_text()
    again = farm.cli("loop")  # the host is known now: no flag needed
    assert again.returncode == 0, again.stdout + again.stderr
    assert "trusted new host" not in again.stdout
    # The pinned certificate is the agent's again: nothing new made, devices.toml unchanged.
    assert "made a TLS key" not in again.stdout and farm.devices_file.read_text() == pinned
    assert "created the virtual environment" not in again.stdout  # the venv was kept
    assert not Path(f"/proc/{old_agent}").exists() or is_zombie(old_agent)
    assert not Path(f"/proc/{old_supervisor}").exists() or is_zombie(old_supervisor)
    assert farm.agent_pid() != old_agent
    supervisors = [p for p in _pids() if b"supervise.sh" in _cmdline(p)
                   and str(farm.prefix).encode() in Path(f"/proc/{p}/cwd").resolve().as_posix()
                   .encode()]
    assert len(supervisors) == 1
    device = farm.provisioned()
    assert check_agent(device, device.grpc_target(), farm.token(), 10) is not None


def test_no_secret_in_output_logs_files_or_command_lines(
        farm: Farm, first_run: subprocess.CompletedProcess[str]) -> None:
    token = farm.token()
    private_key = [line for line in farm.server.encrypted_key.read_text().splitlines()
                   if not line.startswith("-----")]
    tls_key = [line for line in (farm.prefix / "agent.key").read_text().splitlines()
               if not line.startswith("-----")]
    secrets = [token, PASSPHRASE, *private_key, *tls_key]
    texts = {"first run": first_run.stdout + first_run.stderr,
             "devices.toml": farm.devices_file.read_text()}
    for path in farm.prefix.rglob("*"):
        if (path.is_file() and path.name not in ("agent.token", "agent.key")
                and "venv" not in path.parts):
            texts[str(path)] = path.read_text(errors="replace")
    for pid in _pids():
        texts[f"/proc/{pid}/cmdline"] = _cmdline(pid).decode(errors="replace")
    assert any("agent.log" in name for name in texts)
    for name, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {name}"


def test_unknown_host_through_the_api_changes_nothing(farm: Farm, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    ssh = farm.device.ssh
    assert ssh is not None
    device = replace(farm.device, ssh=replace(ssh, known_hosts=str(known)))
    options = ProvisionOptions(passphrase_source=lambda _: PASSPHRASE,
                               prefix=str(tmp_path / "never"))
    with pytest.raises(UnknownHostKeyError):
        provision_device(device, options, WheelSource(farm.wheel, print), print)
    assert not (tmp_path / "never").exists() and not known.exists()


def test_an_agent_that_cannot_start_fails_fast_and_is_stopped(farm: Farm,
                                                               tmp_path: Path) -> None:
    with socket.create_server(("0.0.0.0", 0)) as taken:  # the agent's port is in use
        device = replace(farm.device, name="busy", port=taken.getsockname()[1])
        options = ProvisionOptions(passphrase_source=lambda _: PASSPHRASE,
                                   prefix=str(tmp_path / "busy"))
        started = time.monotonic()
        with pytest.raises(ProvisionError, match="the agent exited") as err:
            provision_device(device, options, WheelSource(farm.wheel, print), print)
    assert time.monotonic() - started < 60
    assert "ends with:" in str(err.value)
    assert farm.token() not in str(err.value)
    # The supervisor was stopped rather than left restarting a broken agent.
    assert not (tmp_path / "busy" / "supervisor.pid").exists()


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_sweep_reaches_a_tunnelled_device(farm: Farm, first_run: object,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A `tunnel = true` device is benchmarked through an SSH port forward."""
    import duckdb

    from controller.farm.runner import run_suite

    monkeypatch.setenv("JOULEFARM_SSH_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    devices = farm.root / "devices-tunnel.toml"
    devices.write_text(farm.devices_file.read_text().replace(
        "service = ", "tunnel = true\nservice = ")
        .replace('name = "loop"', 'name = "loop"\ntags = ["tunnel"]'))
    suite = farm.root / "suite.toml"
    suite.write_text('schema_version = 1\nname = "t"\n[select]\ntags = ["tunnel"]\n'
                     '[measure]\nmode = "whole"\nmin_duration_s = 0.1\nidle_duration_s = 0.07\n'
                     '[[model]]\nname = "mlp"\nrecipe = "mlp"\n')
    db = farm.root / "tunnel.duckdb"
    seen: list[str] = []
    report = run_suite(devices, suite, db,
                       progress=lambda device, stage, *rest: seen.append(stage))
    assert report.ok, report.errors()
    assert "[device.tls]" in devices.read_text()  # through the tunnel, over TLS
    con = duckdb.connect(str(db), read_only=True)
    (address,) = con.execute("SELECT address FROM devices").fetchone()
    # The endpoint was the forward's local port, not the agent's own port.
    assert address != farm.device.grpc_target()
    assert con.execute("SELECT count(*) FROM whole_measurements").fetchone() == (1,)
