"""known_hosts lines paramiko cannot use are skipped with a warning, and @revoked keys refused.

A ``@cert-authority`` line, a ``@revoked`` line or one damaged key made every provisioning
attempt an internal error. The host here is an in-process paramiko server on loopback with a
real Ed25519 host key (it lets any client key in): no OpenSSH server is needed.
"""

from __future__ import annotations

import base64
import io
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from controller.config.registry import Device, MeterConfig, SshConfig
from controller.provision import ChangedHostKeyError, UnknownHostKeyError
from controller.provision.errors import HostKeyError
from controller.provision.hostkeys import RevokedHostKeyError, load_known_hosts
from controller.provision.ssh import connect


def ed25519_key() -> tuple[paramiko.Ed25519Key, bytes]:
    """A fresh Ed25519 key, and its private half in OpenSSH's file format."""
    private = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption())
    return paramiko.Ed25519Key(file_obj=io.StringIO(private.decode())), private


def key_text(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


class _LetAnyoneIn(paramiko.ServerInterface):
    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.common.AUTH_SUCCESSFUL


@dataclass
class Host:
    port: int
    key: paramiko.Ed25519Key
    client_key: Path

    @property
    def name(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    @property
    def line(self) -> str:
        return f"{self.name} {key_text(self.key)}"

    def device(self, known_hosts: Path) -> Device:
        return Device(
            name="loop", platform="linux", address="127.0.0.1", port=50051,
            meter=MeterConfig(kind="sim", profile="host"),
            ssh=SshConfig(user="u", port=self.port, key=str(self.client_key),
                          known_hosts=str(known_hosts)))


def _serve(listener: socket.socket, key: paramiko.PKey) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return  # the listener was closed: the test is over
        transport = paramiko.Transport(sock)
        transport.add_server_key(key)
        try:
            transport.start_server(server=_LetAnyoneIn())
        except (paramiko.SSHException, EOFError, OSError):
            transport.close()  # the client refused the host key and hung up


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    key, _ = ed25519_key()
    _, client_private = ed25519_key()
    client_key = tmp_path / "id_ed25519"
    client_key.write_bytes(client_private)
    client_key.chmod(0o600)
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_serve, args=(listener, key), daemon=True).start()
    try:
        yield Host(listener.getsockname()[1], key, client_key)
    finally:
        listener.close()


def other_key() -> paramiko.Ed25519Key:
    return ed25519_key()[0]


BAD_LINES = {
    "cert-authority": lambda host: f"@cert-authority *.example.org {key_text(other_key())}",
    "cert-authority for this host": lambda host: f"@cert-authority {host.name} "
                                                 f"{key_text(other_key())}",
    "damaged revoked": lambda host: "@revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
    "bad base64": lambda host: f"{host.name} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
    "bad key blob": lambda host: f"{host.name} ssh-ed25519 "
                                 + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x05abcde"
                                                    ).decode(),
    "too few fields": lambda host: f"{host.name} ssh-ed25519",
    "unknown marker": lambda host: f"@unheard-of {host.name} {key_text(other_key())}",
}


@pytest.mark.parametrize("kind", BAD_LINES)
@pytest.mark.parametrize("good_first", [False, True])
def test_bad_line_is_skipped_with_a_warning_and_the_good_key_accepted(
        tmp_path: Path, host: Host, kind: str, good_first: bool) -> None:
    bad = BAD_LINES[kind](host)
    known = tmp_path / "known_hosts"
    lines = [host.line, bad] if good_first else [bad, host.line]
    known.write_text("# comment\n" + "\n".join(lines) + "\n")
    events: list[str] = []
    with connect(host.device(known), on_event=events.append) as session:
        assert session.transport.is_active()
    bad_number = 3 if good_first else 2
    warnings = [e for e in events if e.startswith("warning:")]
    assert len(warnings) == 1, events
    assert str(known) in warnings[0] and f"line {bad_number}" in warnings[0], warnings
    assert known.read_text() == "# comment\n" + "\n".join(lines) + "\n"  # untouched


@pytest.mark.parametrize("pattern", ["*", "other.example.org"])
def test_a_revoked_line_for_another_key_leaves_the_host_alone(tmp_path: Path, host: Host,
                                                              pattern: str) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"@revoked {pattern} {key_text(other_key())}\n{host.line}\n")
    events: list[str] = []
    with connect(host.device(known), on_event=events.append) as session:
        assert session.transport.is_active()
    assert events == []  # a usable line: nothing to warn about


def test_every_bad_line_is_named(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    host = Host(22, other_key(), tmp_path / "unused")
    known.write_text("\n".join(make(host) for make in BAD_LINES.values()) + "\n" + host.line)
    warnings: list[str] = []
    keys = paramiko.HostKeys()
    load_known_hosts(known, keys, on_event=warnings.append)
    assert [int(re.findall(r"line (\d+)", w)[0]) for w in warnings] == list(
        range(1, len(BAD_LINES) + 1)), warnings
    assert keys.check(host.name, host.key)


def all_bad_lines(host: Host) -> str:
    return "".join(make(host) + "\n" for make in BAD_LINES.values())


def test_unknown_host_is_still_refused(tmp_path: Path, host: Host) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(all_bad_lines(host) + f"other.example.org {key_text(other_key())}\n")
    with pytest.raises(UnknownHostKeyError):
        connect(host.device(known))


def test_changed_key_is_still_refused(tmp_path: Path, host: Host) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(all_bad_lines(host) + f"{host.name} {key_text(other_key())}\n")
    with pytest.raises(ChangedHostKeyError):
        connect(host.device(known), trust_new_host=True)


@pytest.mark.parametrize("pattern", ["*", "host-name", "other.example.org"])
@pytest.mark.parametrize("revoked_first", [False, True])
def test_a_revoked_key_is_refused_even_when_another_line_lists_it(
        tmp_path: Path, host: Host, pattern: str, revoked_first: bool) -> None:
    # OpenSSH: "the key contained on the line is revoked and must not ever be accepted".
    # Refused whatever host the @revoked line names: a revoked key is never trusted again.
    revoked = f"@revoked {host.name if pattern == 'host-name' else pattern} {key_text(host.key)}"
    lines = [revoked, host.line] if revoked_first else [host.line, revoked]
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(lines) + "\n")
    with pytest.raises(RevokedHostKeyError) as err:
        connect(host.device(known), trust_new_host=True)
    message = str(err.value)
    assert "REVOKED" in message and host.name in message and str(known) in message
    assert host.key.fingerprint in message


def test_a_revoked_key_is_not_trusted_as_a_new_host(tmp_path: Path, host: Host) -> None:
    known = tmp_path / "known_hosts"
    text = f"@revoked * {key_text(host.key)}\n"
    known.write_text(text)
    with pytest.raises(RevokedHostKeyError):
        connect(host.device(known), trust_new_host=True)
    assert known.read_text() == text  # not appended


def test_a_revoked_key_is_refused_beside_a_key_of_another_type(tmp_path: Path,
                                                                host: Host) -> None:
    # paramiko sees a key listed for the host, of another type: refused as changed.
    rsa = paramiko.RSAKey.generate(2048)
    known = tmp_path / "known_hosts"
    known.write_text(f"{host.name} {key_text(rsa)}\n{host.line}\n@revoked * {key_text(host.key)}\n")
    with pytest.raises(HostKeyError):
        connect(host.device(known), trust_new_host=True)
