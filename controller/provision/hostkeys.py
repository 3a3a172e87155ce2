"""Host keys checked against known_hosts, OpenSSH-style; new hosts only on request.

A host that known_hosts does not list is refused unless the user passed ``--trust-new-host``;
then its key is appended to that same file (and the caller says so). A host listed with a
different key is refused whatever the options: that is what a man-in-the-middle looks like,
and a reinstalled device is fixed by removing the stale line on purpose (``ssh-keygen -R``).
paramiko raises `BadHostKeyException` for that case itself; `ssh.connect` words it.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Callable
from pathlib import Path

import paramiko

from controller.provision.errors import ProvisionError, UnknownHostKeyError

DEFAULT_SSH_PORT = 22


def default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def host_key_name(host: str, port: int) -> str:
    """The name known_hosts files index a host by: ``host``, or ``[host]:port`` off port 22."""
    return host if port == DEFAULT_SSH_PORT else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:...``, as ``ssh-keygen -lf`` and ssh's prompts show it."""
    return f"{key.get_name()} {key.fingerprint}"


def load_known_hosts(path: Path, into: paramiko.HostKeys) -> None:
    """Add the keys of `path` to `into`; a missing file adds none (every host is new).

    Line by line, because paramiko's own loader gives up on the whole file at a line it
    cannot decode; here such lines (and key types paramiko lacks) are skipped, as ssh does.
    """
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ProvisionError(f"cannot read known_hosts file {path}: {exc.strerror}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.SSHException, ValueError, binascii.Error):
            continue
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                into.add(name, entry.key.get_name(), entry.key)


def append_known_host(path: Path, name: str, key: paramiko.PKey) -> None:
    """Add one line for `name` to `path`, keeping everything already there (comments,
    hashed entries, key types paramiko cannot parse) — which rewriting the file would lose."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    needs_newline = path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(
        b"\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(("\n" if needs_newline else "") + line)


class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """paramiko calls this for a host that known_hosts does not list at all."""

    def __init__(self, known_hosts: Path, trust_new_host: bool,
                 on_trusted: Callable[[str], None]) -> None:
        self.known_hosts = known_hosts
        self.trust_new_host = trust_new_host
        self.on_trusted = on_trusted

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        if not self.trust_new_host:
            raise UnknownHostKeyError(
                f"unknown host {hostname}: its key ({fingerprint(key)}) is not in "
                f"{self.known_hosts}. Check the fingerprint on the device (ssh-keygen -lf "
                "/etc/ssh/ssh_host_*_key.pub), then run again with --trust-new-host to add it."
            )
        append_known_host(self.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.on_trusted(f"trusted new host {hostname} ({fingerprint(key)}); added it to "
                        f"{self.known_hosts}")
