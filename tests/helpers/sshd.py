"""A real OpenSSH server on loopback for the provisioning tests (Debian's openssh-server).

`sshd_server` (session scope) starts ``/usr/sbin/sshd -D -e`` on 127.0.0.1 and a free port
with a throwaway host key, and makes throwaway client keys: `client_key` (no passphrase) and
`encrypted_key` (passphrase `PASSPHRASE`) are authorized, `stranger_key` is not. Tests that
need it are skipped, with the reason, when sshd is not installed or does not start. Import the
fixture into a test module to use it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
START_TIMEOUT_S = 10.0
# Long, random-looking, and distinct from any other string a test could print.
PASSPHRASE = "pp-" + os.urandom(12).hex()

_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    dir: Path
    host_public_key: str  # "ssh-ed25519 AAAA..."
    client_key: Path
    encrypted_key: Path
    stranger_key: Path

    @property
    def known_hosts_line(self) -> str:
        """This server's line for a known_hosts file."""
        return f"[{self.host}]:{self.port} {self.host_public_key}\n"

    def log(self) -> str:
        return (self.dir / "sshd.log").read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, passphrase: str = "") -> Path:
    """An ed25519 key pair at `path` (and `path`.pub)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "joulefarm-test",
                    "-f", str(path)], check=True, capture_output=True, timeout=30)
    return path


def public_key(path: Path) -> str:
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_sshd(directory: Path, extra_config: str = "") -> Iterator[SshServer]:
    """Run an sshd with throwaway keys in `directory` until the generator is closed; skips the
    test when sshd is missing or will not start. `extra_config` is appended to sshd_config."""
    if not SSHD.exists():
        pytest.skip(f"{SSHD} is missing: install openssh-server (apt-get install -y "
                    "openssh-server) to run the SSH provisioning tests")
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is missing (openssh-client)")
    # sshd refuses to start without its privilege separation directory.
    privsep = Path("/run/sshd")
    if not privsep.is_dir():
        try:
            privsep.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            pytest.skip(f"cannot create {privsep} that sshd needs: {exc.strerror}")

    host_key = keygen(directory / "ssh_host_ed25519_key")
    client_key = keygen(directory / "client_key")
    encrypted_key = keygen(directory / "encrypted_key", PASSPHRASE)
    stranger_key = keygen(directory / "stranger_key")
    (directory / "authorized_keys").write_text(
        f"{public_key(client_key)}\n{public_key(encrypted_key)}\n")

    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        port = free_port()
        config = directory / "sshd_config"
        config.write_text(_CONFIG.format(port=port, host_key=host_key, dir=directory)
                          + extra_config)
        log = open(directory / "sshd.log", "wb")  # noqa: SIM115 (sshd writes it until stopped)
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                   stdout=log, stderr=subprocess.STDOUT)
        if _wait_listening(process, port):
            break
        _stop(process)
        log.close()
    else:
        pytest.skip("sshd did not start: " + (directory / "sshd.log").read_text()[-1000:])

    try:
        yield SshServer("127.0.0.1", port, getpass.getuser(), directory, public_key(host_key),
                        client_key, encrypted_key, stranger_key)
    finally:
        _stop(process)
        log.close()


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    yield from start_sshd(tmp_path_factory.mktemp("sshd"))


def device_entry(server: SshServer, *, name: str, platform: str, agent_port: int,
                 token_file: Path, known_hosts: Path, python: str, prefix: Path,
                 ssh_extra: str = "") -> str:
    """A devices.toml for one device reached through `server` (with its passphrase key), its
    agent on loopback with a simulated meter; `ssh_extra` lines go into [device.ssh]."""
    return f"""\
schema_version = 1

[[device]]
name = "{name}"
platform = "{platform}"
address = "127.0.0.1"
port = {agent_port}
token_file = "{token_file}"

[device.meter]
kind = "sim"
profile = "host"

[device.ssh]
user = "{server.user}"
port = {server.port}
key = "{server.encrypted_key}"
known_hosts = "{known_hosts}"
python = "{python}"
prefix = "{prefix}"
{ssh_extra}"""
