"""Connections to a real OpenSSH server: host-key policy, authentication, jump hosts, remote
commands, SFTP file modes and the local port forward."""

from __future__ import annotations

import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from controller.config.registry import Device, MeterConfig, SshConfig
from controller.provision import (
    ChangedHostKeyError,
    ProvisionInputError,
    SshAuthError,
    SshConnectError,
    UnknownHostKeyError,
)
from controller.provision.errors import RemoteCommandError
from controller.provision.ssh import PASSPHRASE_ENV, connect, passphrase_from_env_or_tty
from controller.provision.tunnel import agent_tunnel, open_forward
from tests.helpers.sshd import (
    PASSPHRASE,
    SshServer,
    free_port,
    keygen,
    public_key,
)

pytestmark = pytest.mark.ssh


def make_device(server: SshServer, known_hosts: Path, *, key: Path | None = None,
                jump: str | None = None, port: int = 50051) -> Device:
    return Device(
        name="loop", platform="linux", address=server.host, port=port,
        meter=MeterConfig(kind="sim", profile="host"),
        ssh=SshConfig(user=server.user, port=server.port, key=str(key or server.client_key),
                      jump=jump, known_hosts=str(known_hosts)),
    )


@pytest.fixture
def known_hosts(tmp_path: Path, sshd_server: SshServer) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text("# kept as is\n" + sshd_server.known_hosts_line)
    return path


def no_passphrase(_: Path) -> str | None:
    return None


def test_unknown_host_is_refused_with_how_to_trust(tmp_path: Path,
                                                   sshd_server: SshServer) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(UnknownHostKeyError) as err:
        connect(make_device(sshd_server, known))
    message = str(err.value)
    assert f"[127.0.0.1]:{sshd_server.port}" in message
    assert "--trust-new-host" in message
    assert "SHA256:" in message
    assert not known.exists()  # nothing recorded without the flag


def test_trust_new_host_records_the_key_and_says_so(tmp_path: Path,
                                                    sshd_server: SshServer) -> None:
    known = tmp_path / "sub" / "known_hosts"
    events: list[str] = []
    with connect(make_device(sshd_server, known), trust_new_host=True,
                 on_event=events.append) as session:
        assert session.run("echo hello", what="echo").output == "hello\n"
    assert known.read_text() == sshd_server.known_hosts_line
    assert len(events) == 1 and str(known) in events[0] and "SHA256:" in events[0]
    # Known now: a second connection needs no flag and records nothing more.
    with connect(make_device(sshd_server, known)) as session:
        assert session.run("true", what="true").exit_status == 0
    assert known.read_text() == sshd_server.known_hosts_line


def test_trusting_appends_and_keeps_other_lines(tmp_path: Path,
                                                sshd_server: SshServer) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("# my hosts\nexample.org ssh-ed25519 AAAAnot-parsed-but-kept")
    with connect(make_device(sshd_server, known), trust_new_host=True):
        pass
    assert known.read_text() == ("# my hosts\nexample.org ssh-ed25519 AAAAnot-parsed-but-kept\n"
                                 + sshd_server.known_hosts_line)


def test_changed_host_key_is_refused_even_with_trust(tmp_path: Path,
                                                     sshd_server: SshServer) -> None:
    other = public_key(keygen(tmp_path / "impostor"))
    known = tmp_path / "known_hosts"
    line = f"[127.0.0.1]:{sshd_server.port} {other}\n"
    known.write_text(line)
    with pytest.raises(ChangedHostKeyError) as err:
        connect(make_device(sshd_server, known), trust_new_host=True)
    message = str(err.value)
    assert "HOST KEY CHANGED" in message and "man-in-the-middle" in message
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd_server.port}'" in message
    assert known.read_text() == line  # untouched


def test_key_of_another_type_counts_as_changed(tmp_path: Path,
                                               sshd_server: SshServer) -> None:
    rsa = tmp_path / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)],
                   check=True, timeout=60)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {public_key(rsa)}\n")
    with pytest.raises(ChangedHostKeyError):
        connect(make_device(sshd_server, known), trust_new_host=True)


def test_wrong_key_is_refused(known_hosts: Path, sshd_server: SshServer) -> None:
    with pytest.raises(SshAuthError) as err:
        connect(make_device(sshd_server, known_hosts, key=sshd_server.stranger_key))
    assert str(sshd_server.stranger_key) in str(err.value)
    assert "authorized_keys" in str(err.value)


def test_missing_key_file_is_an_input_error(tmp_path: Path, known_hosts: Path,
                                            sshd_server: SshServer) -> None:
    with pytest.raises(ProvisionInputError, match="does not exist"):
        connect(make_device(sshd_server, known_hosts, key=tmp_path / "nope"))


def test_encrypted_key_from_environment(known_hosts: Path, monkeypatch: pytest.MonkeyPatch,
                                        sshd_server: SshServer) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    device = make_device(sshd_server, known_hosts, key=sshd_server.encrypted_key)
    with connect(device, passphrase_source=passphrase_from_env_or_tty) as session:
        assert session.run("echo ok", what="echo").output == "ok\n"


def test_encrypted_key_errors_name_no_secret(known_hosts: Path,
                                             sshd_server: SshServer) -> None:
    device = make_device(sshd_server, known_hosts, key=sshd_server.encrypted_key)
    with pytest.raises(ProvisionInputError, match=PASSPHRASE_ENV):
        connect(device, passphrase_source=no_passphrase)
    wrong = "wrong-" + PASSPHRASE[::-1]
    with pytest.raises(ProvisionInputError, match="wrong passphrase") as err:
        connect(device, passphrase_source=lambda _: wrong)
    assert wrong not in str(err.value) and PASSPHRASE not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_unreachable_port(known_hosts: Path, sshd_server: SshServer) -> None:
    device = make_device(sshd_server, known_hosts)
    assert device.ssh is not None
    closed = replace(device, ssh=replace(device.ssh, port=free_port()))
    with pytest.raises(SshConnectError, match="cannot connect to"):
        connect(closed)


def test_jump_host_through_direct_tcpip(known_hosts: Path,
                                        sshd_server: SshServer) -> None:
    # The same sshd is the jump host and (through its forward to itself) the device.
    jump = f"{sshd_server.user}@127.0.0.1:{sshd_server.port}"
    with connect(make_device(sshd_server, known_hosts, jump=jump)) as session:
        assert session.run("echo $SSH_CLIENT", what="echo").output.startswith("127.0.0.1 ")


def test_unknown_jump_host_is_refused(tmp_path: Path,
                                      sshd_server: SshServer) -> None:
    jump = f"127.0.0.1:{sshd_server.port}"
    with pytest.raises(UnknownHostKeyError, match=rf"\[127.0.0.1\]:{sshd_server.port}"):
        connect(make_device(sshd_server, tmp_path / "known_hosts", jump=jump))


def test_commands_report_status_and_output(known_hosts: Path,
                                           sshd_server: SshServer) -> None:
    with connect(make_device(sshd_server, known_hosts)) as session:
        result = session.run("echo out; echo err >&2; exit 3", what="x", check=False)
        assert result.exit_status == 3
        assert "out" in result.output and "err" in result.output
        with pytest.raises(RemoteCommandError, match=r"listing failed \(exit status 2\)"):
            session.run("ls /no/such/dir", what="listing")


def test_files_get_their_mode_before_their_content(tmp_path: Path, known_hosts: Path,
                                                   sshd_server: SshServer) -> None:
    target = tmp_path / "remote" / "deep"
    with connect(make_device(sshd_server, known_hosts)) as session:
        session.mkdir_private(str(target))
        session.write_file(str(target / "secret"), b"s3cret\n", 0o600)
        session.write_file(str(target / "secret"), b"again\n", 0o600)  # replaces
        assert session.read_bytes(str(target / "secret")) == b"again\n"
        assert session.read_bytes(str(target / "missing")) is None
        assert session.home() == str(Path.home())
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert stat.S_IMODE((target / "secret").stat().st_mode) == 0o600
    assert sorted(p.name for p in target.iterdir()) == ["secret"]  # no temporary left


@pytest.fixture
def echo_server() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()
    thread.join(10)


def test_local_forward_carries_bytes_both_ways(known_hosts: Path, echo_server: int,
                                               sshd_server: SshServer) -> None:
    with connect(make_device(sshd_server, known_hosts)) as session, \
            open_forward(session.transport, "127.0.0.1", echo_server) as forward, \
            socket.create_connection(("127.0.0.1", forward.local_port), timeout=10) as conn:
        payload = b"joules " * 20000  # larger than one channel window
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += conn.recv(65536)
        assert received == payload.upper()


def test_agent_tunnel_yields_a_loopback_target(known_hosts: Path, echo_server: int,
                                               sshd_server: SshServer) -> None:
    device = make_device(sshd_server, known_hosts, port=echo_server)
    with agent_tunnel(device) as target:
        host, port = target.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"abc")
            assert conn.recv(3) == b"ABC"


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real ssh-agent of our own (never the user's), with no keys yet."""
    if subprocess.run(["which", "ssh-agent"], capture_output=True).returncode != 0:
        pytest.skip("ssh-agent is missing (openssh-client)")
    sock = tmp_path / "agent.sock"
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            threading.Event().wait(0.05)
        yield {"SSH_AUTH_SOCK": str(sock)}
    finally:
        process.terminate()
        process.wait(10)


def test_keys_from_ssh_agent(tmp_path: Path, known_hosts: Path, ssh_agent: dict[str, str],
                             monkeypatch: pytest.MonkeyPatch,
                             sshd_server: SshServer) -> None:
    # No ssh.key, and a home without ~/.ssh keys: only the agent can authenticate.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent["SSH_AUTH_SOCK"])
    base = make_device(sshd_server, known_hosts)
    assert base.ssh is not None
    device = replace(base, ssh=replace(base.ssh, key=None))
    with pytest.raises(SshAuthError, match=r"no key to offer: ssh-agent holds none \(ssh-add"):
        connect(device)
    subprocess.run(["ssh-add", "-q", str(sshd_server.client_key)], check=True, timeout=30,
                   env={"SSH_AUTH_SOCK": ssh_agent["SSH_AUTH_SOCK"], "PATH": "/usr/bin:/bin"},
                   capture_output=True)
    with connect(device) as session:
        assert session.run("echo ok", what="echo").output == "ok\n"
