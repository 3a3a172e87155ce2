"""SSH connections to devices (paramiko): host-key policy, key or ssh-agent auth, jump hosts,
remote commands and SFTP.

Authentication: with ``ssh.key`` set, that key file ONLY (like OpenSSH's IdentitiesOnly), so
a test or a lab with several keys gets a deterministic answer; without it, ssh-agent and then
the default ``~/.ssh/id_*`` files. An encrypted key file's passphrase comes from
``$JOULEFARM_SSH_PASSPHRASE`` or a prompt on a terminal — never from the command line, which
other users can read in ``ps``. Passwords are never tried.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.pkey import UnknownKeyType  # the stubs leave out paramiko's re-export

from controller.config.registry import Device, parse_jump
from controller.provision.errors import (
    ChangedHostKeyError,
    ProvisionError,
    ProvisionInputError,
    RemoteCommandError,
    SshAuthError,
    SshConnectError,
)
from controller.provision.hostkeys import (
    KnownHostsPolicy,
    default_known_hosts,
    fingerprint,
    host_key_name,
    load_known_hosts,
)
from controller.provision.redact import Redactor

PASSPHRASE_ENV = "JOULEFARM_SSH_PASSPHRASE"
CONNECT_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 600.0
# Enough of a failed command's output to see why, short enough for one error message.
OUTPUT_TAIL_CHARS = 2000


@dataclass(frozen=True)
class SshEndpoint:
    """One SSH server to log in to: the device itself or its jump host."""

    host: str
    port: int
    user: str
    key_file: Path | None
    known_hosts: Path

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"


def endpoints_for(device: Device) -> tuple[SshEndpoint, SshEndpoint | None]:
    """(device, jump host or None) from the device's ``[device.ssh]`` table."""
    ssh = device.ssh
    if ssh is None:
        raise ProvisionInputError(
            f"device {device.name!r} has no [device.ssh] table; add one with at least "
            "`user = \"...\"` to provision it over SSH"
        )
    known_hosts = (Path(ssh.known_hosts).expanduser() if ssh.known_hosts
                   else default_known_hosts())
    key_file = Path(ssh.key).expanduser() if ssh.key else None
    target = SshEndpoint(device.address, ssh.port, ssh.user, key_file, known_hosts)
    if ssh.jump is None:
        return target, None
    try:
        user, host, port = parse_jump(ssh.jump)
    except ValueError as exc:
        raise ProvisionInputError(f"device {device.name!r}: ssh.jump {exc}") from None
    return target, SshEndpoint(host, port, user or ssh.user, key_file, known_hosts)


def passphrase_from_env_or_tty(key_file: Path) -> str | None:
    """The default passphrase source: the environment, else a prompt when a person is there."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass(f"passphrase for {key_file}: ")
    return None


def load_key(key_file: Path, passphrase_source: Callable[[Path], str | None],
             redactor: Redactor) -> paramiko.PKey:
    """The private key in `key_file`, decrypted if need be; errors name the file only."""
    try:
        return paramiko.PKey.from_path(key_file)
    except FileNotFoundError:
        raise ProvisionInputError(f"ssh key file {key_file} does not exist") from None
    except OSError as exc:
        raise ProvisionInputError(f"cannot read ssh key file {key_file}: {exc.strerror}") from None
    except TypeError:
        pass  # cryptography: "Password was not given but private key is encrypted"
    except (ValueError, paramiko.SSHException, UnknownKeyType):
        raise ProvisionInputError(f"{key_file} is not a private key paramiko can read "
                                  "(OpenSSH or PEM; RSA, ECDSA or Ed25519)") from None
    passphrase = passphrase_source(key_file)
    if not passphrase:
        raise ProvisionInputError(
            f"ssh key {key_file} is encrypted: load it into ssh-agent (and leave ssh.key out) "
            f"or set ${PASSPHRASE_ENV}")
    redactor.add(passphrase)
    try:
        # cryptography, under paramiko, wants the passphrase as bytes (a str is a TypeError).
        return paramiko.PKey.from_path(
            key_file, passphrase.encode())  # type: ignore[arg-type]  # typed str, needs bytes
    except (ValueError, TypeError, paramiko.SSHException):
        # The library's own text is not shown: it is not needed, and keeps secrets out.
        raise ProvisionInputError(f"cannot decrypt ssh key {key_file}: wrong passphrase "
                                  f"(from ${PASSPHRASE_ENV} or the prompt)") from None


def _changed_key_message(endpoint: SshEndpoint, exc: paramiko.BadHostKeyException) -> str:
    name = host_key_name(endpoint.host, endpoint.port)
    return (
        f"HOST KEY CHANGED for {name}! known_hosts ({endpoint.known_hosts}) has "
        f"{fingerprint(exc.expected_key)} but the host now presents {fingerprint(exc.key)}. "
        "Someone may be intercepting the connection (man-in-the-middle), or the device was "
        "reinstalled. Refusing to connect. If you know the device was reinstalled, remove the "
        f"old key with `ssh-keygen -R '{name}' -f {endpoint.known_hosts}`, check the new "
        "fingerprint on the device, and run again with --trust-new-host."
    )


def _open_client(endpoint: SshEndpoint, pkey: paramiko.PKey | None, *, trust_new_host: bool,
                 on_event: Callable[[str], None],
                 sock: paramiko.Channel | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    # paramiko's own host-key store stays empty: only this known_hosts file counts.
    load_known_hosts(endpoint.known_hosts, into=client.get_host_keys(), on_event=on_event)
    client.set_missing_host_key_policy(
        KnownHostsPolicy(endpoint.known_hosts, trust_new_host, on_event))
    try:
        client.connect(
            endpoint.host, port=endpoint.port, username=endpoint.user, pkey=pkey,
            allow_agent=pkey is None, look_for_keys=pkey is None, sock=sock,
            timeout=CONNECT_TIMEOUT_S, banner_timeout=CONNECT_TIMEOUT_S,
            auth_timeout=CONNECT_TIMEOUT_S, channel_timeout=CONNECT_TIMEOUT_S,
        )
    except ProvisionError:
        client.close()
        raise
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise ChangedHostKeyError(_changed_key_message(endpoint, exc)) from None
    except paramiko.AuthenticationException:
        client.close()
        how = (f"key {endpoint.key_file}" if pkey is not None
               else "ssh-agent and ~/.ssh/id_* keys")
        raise SshAuthError(f"{endpoint.label}: authentication failed (tried {how}); "
                           "is the public key in the device's ~/.ssh/authorized_keys?") from None
    except paramiko.SSHException as exc:
        client.close()
        # paramiko's words when it had no key at all to offer.
        if pkey is None and "No authentication methods available" in str(exc):
            raise SshAuthError(
                f"{endpoint.label}: no key to offer: ssh-agent holds none (ssh-add KEY) and "
                "there is no ~/.ssh/id_* file; or set ssh.key in the device's [device.ssh]"
            ) from None
        raise SshConnectError(f"cannot connect to {endpoint.label}: "
                              f"{str(exc) or type(exc).__name__}") from None
    except (OSError, EOFError) as exc:
        client.close()
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SshConnectError(f"cannot connect to {endpoint.label}: "
                              f"{reason or type(exc).__name__}") from None
    return client


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    output: str  # stdout and stderr, interleaved as they came


class SshSession:
    """A logged-in SSH connection to a device (through its jump host when it has one)."""

    def __init__(self, endpoint: SshEndpoint, client: paramiko.SSHClient,
                 jump: paramiko.SSHClient | None) -> None:
        self.endpoint = endpoint
        self._client = client
        self._jump = jump
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise SshConnectError(f"{self.endpoint.label}: the SSH connection was closed")
        return transport

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        self._client.close()
        if self._jump is not None:
            self._jump.close()

    def __enter__(self) -> SshSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands ----------------------------------------------------------------------------

    def run(self, command: str, *, what: str, timeout_s: float = COMMAND_TIMEOUT_S,
            check: bool = True) -> CommandResult:
        """Run `command` in the login shell; `what` names it in errors.

        Commands never carry secrets (they show up in ``ps`` on the device): secrets travel
        as files over SFTP. Output is combined so one buffer cannot stall the other.
        """
        channel = self.transport.open_session(timeout=CONNECT_TIMEOUT_S)
        try:
            channel.set_combine_stderr(True)
            channel.settimeout(1.0)
            channel.exec_command(command)
            chunks: list[bytes] = []
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    data = channel.recv(65536)
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise RemoteCommandError(
                            f"{self.endpoint.label}: {what} did not finish within "
                            f"{timeout_s:.0f} s") from None
                    continue
                if not data:
                    break
                chunks.append(data)
            status = channel.recv_exit_status()
        finally:
            channel.close()
        output = b"".join(chunks).decode("utf-8", "replace")
        if check and status != 0:
            raise RemoteCommandError(
                f"{self.endpoint.label}: {what} failed (exit status {status}):\n"
                f"{output[-OUTPUT_TAIL_CHARS:].rstrip()}")
        return CommandResult(status, output)

    # -- files -------------------------------------------------------------------------------

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
        return self._sftp

    def home(self) -> str:
        """The login's home directory on the device (where SFTP sessions start)."""
        return self.sftp.normalize(".")

    def write_file(self, path: str, data: bytes, mode: int) -> None:
        """Replace `path` atomically; the mode is set BEFORE the content is written, so a
        secret is never readable by others, not even for an instant."""
        tmp = f"{path}.tmp-{secrets.token_hex(4)}"
        with self.sftp.open(tmp, "wb") as f:
            self.sftp.chmod(tmp, mode)
            f.write(data)
        try:
            self.sftp.posix_rename(tmp, path)
        except OSError:
            # Servers without the posix-rename extension: plain rename refuses to overwrite.
            self._remove_quietly(path)
            self.sftp.rename(tmp, path)

    def read_bytes(self, path: str) -> bytes | None:
        """The file's content, or None when it does not exist."""
        try:
            with self.sftp.open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put(self, local: Path, remote: str) -> None:
        self.sftp.put(str(local), remote)

    def mkdir_private(self, path: str) -> None:
        """Make `path` (and its parents) and leave it 0700: the agent's token lives below."""
        parts = [p for p in path.split("/") if p]
        current = "" if path.startswith("/") else "."
        for part in parts:
            current = f"{current}/{part}"
            try:
                self.sftp.stat(current)
            except FileNotFoundError:
                self.sftp.mkdir(current, 0o700)
        self.sftp.chmod(path, 0o700)

    def _remove_quietly(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.sftp.remove(path)


def connect(device: Device, *, trust_new_host: bool = False,
            on_event: Callable[[str], None] = lambda _: None,
            passphrase_source: Callable[[Path], str | None] = passphrase_from_env_or_tty,
            redactor: Redactor | None = None) -> SshSession:
    """Log in to `device` (through its ``ssh.jump`` host when set), checking host keys.

    Raises `UnknownHostKeyError`, `ChangedHostKeyError`, `SshAuthError`, `SshConnectError`.
    `on_event` hears about host keys added under `trust_new_host`.
    """
    target, jump = endpoints_for(device)
    pkey = (load_key(target.key_file, passphrase_source, redactor or Redactor())
            if target.key_file else None)
    if jump is None:
        client = _open_client(target, pkey, trust_new_host=trust_new_host, on_event=on_event)
        return SshSession(target, client, None)

    jump_client = _open_client(jump, pkey, trust_new_host=trust_new_host, on_event=on_event)
    try:
        jump_transport = jump_client.get_transport()
        assert jump_transport is not None
        try:
            # The device's SSH server, reached from the jump host (ProxyJump's direct-tcpip).
            channel = jump_transport.open_channel(
                "direct-tcpip", (target.host, target.port), ("127.0.0.1", 0),
                timeout=CONNECT_TIMEOUT_S)
        except (paramiko.SSHException, OSError) as exc:
            raise SshConnectError(
                f"jump host {jump.label} could not open a connection to "
                f"{target.host}:{target.port}: {exc}") from None
        client = _open_client(target, pkey, trust_new_host=trust_new_host, on_event=on_event,
                              sock=channel)
    except BaseException:
        jump_client.close()
        raise
    return SshSession(target, client, jump_client)

