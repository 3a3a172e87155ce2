"""Host keys checked against known_hosts, OpenSSH-style; new hosts only on request.

A host that known_hosts does not list is refused unless the user passed ``--trust-new-host``;
then its key is appended to that same file (and the caller says so). A host listed with a
different key is refused whatever the options: that is what a man-in-the-middle looks like,
and a reinstalled device is fixed by removing the stale line on purpose (``ssh-keygen -R``).
paramiko raises `BadHostKeyException` for that case itself; `ssh.connect` words it.

A key on a ``@revoked`` line is refused for every host, even one that another line lists it
for, and even with ``--trust-new-host``. Lines paramiko cannot use (``@cert-authority``: it
checks no host certificates; damaged keys) are skipped with a warning naming the line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from controller.provision.errors import HostKeyError, ProvisionError, UnknownHostKeyError

DEFAULT_SSH_PORT = 22
REVOKED = "@revoked"
CERT_AUTHORITY = "@cert-authority"


class RevokedHostKeyError(HostKeyError):
    """The host presented a key that known_hosts marks ``@revoked``: refused, always."""


def default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def host_key_name(host: str, port: int) -> str:
    """The name known_hosts files index a host by: ``host``, or ``[host]:port`` off port 22."""
    return host if port == DEFAULT_SSH_PORT else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """``ssh-ed25519 SHA256:...``, as ``ssh-keygen -lf`` and ssh's prompts show it."""
    return f"{key.get_name()} {key.fingerprint}"


@dataclass
class KnownHosts:
    """What a known_hosts file says: the keys each host may present, and the revoked keys."""

    entries: list[paramiko.hostkeys.HostKeyEntry] = field(default_factory=list)
    revoked: list[paramiko.PKey] = field(default_factory=list)

    def is_revoked(self, key: paramiko.PKey) -> bool:
        # By type and bytes, as paramiko compares host keys (`HostKeys.check`).
        return any(key.get_name() == bad.get_name() and key.asbytes() == bad.asbytes()
                   for bad in self.revoked)


class _SkippedLine(Exception):
    """A known_hosts line that cannot be used; the message says why."""


def _parse_line(line: str, number: int) -> tuple[str | None, paramiko.hostkeys.HostKeyEntry | None]:
    """``(marker, entry)`` of one line; entry None for a key type paramiko lacks (ssh too
    ignores such lines: no server can make paramiko use that type)."""
    # OpenSSH separates fields by any whitespace; paramiko by exactly one space or tab.
    fields = line.split()
    marker = fields.pop(0) if fields[0].startswith("@") else None
    if marker == CERT_AUTHORITY:
        raise _SkippedLine("@cert-authority lines are not supported (paramiko checks no host "
                           "certificates); list the host's own key instead")
    if marker not in (None, REVOKED):
        raise _SkippedLine(f"unknown marker {marker}")
    if len(fields) < 3:
        raise _SkippedLine("not `host-patterns key-type base64-key`")
    try:
        entry = paramiko.hostkeys.HostKeyEntry.from_line(" ".join(fields[:3]), number)
    except Exception as exc:
        # paramiko's key parsers raise many types for damaged data (InvalidHostKey,
        # SSHException, ValueError, UnicodeDecodeError, ...): none may stop provisioning.
        raise _SkippedLine(f"damaged {fields[1]} key ({type(exc).__name__})") from None
    return marker, entry


def read_known_hosts(path: Path, on_event: Callable[[str], None] = lambda _: None
                     ) -> KnownHosts:
    """The usable lines of `path`; a missing file holds none (every host is new).

    Line by line, because paramiko's own loader gives up on the whole file at a line it
    cannot decode; here such lines are skipped, each with a warning to `on_event`.
    """
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return KnownHosts()
    except OSError as exc:
        raise ProvisionError(f"cannot read known_hosts file {path}: {exc.strerror}") from None
    known = KnownHosts()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            marker, entry = _parse_line(line, number)
        except _SkippedLine as why:
            on_event(f"warning: known_hosts {path}, line {number}: {why}; line skipped")
            continue
        if entry is None or entry.key is None:
            continue
        if marker == REVOKED:
            known.revoked.append(entry.key)
        else:
            known.entries.append(entry)
    return known


def load_known_hosts(path: Path, into: paramiko.HostKeys,
                     on_event: Callable[[str], None] = lambda _: None) -> None:
    """Add the keys of `path` to `into`, leaving out every revoked key.

    Left out, a revoked key is not the host's known key: paramiko then asks
    `KnownHostsPolicy`, which refuses it by name (or, when the host has a known key of another
    type, refuses it as a changed key).
    """
    known = read_known_hosts(path, on_event)
    for entry in known.entries:
        if known.is_revoked(entry.key):
            continue
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
        # Read again, not passed in: `load_known_hosts` keeps revoked keys out of paramiko's
        # store, so a revoked key lands here; no line may let it in, nor --trust-new-host.
        if read_known_hosts(self.known_hosts).is_revoked(key):
            raise RevokedHostKeyError(
                f"host {hostname} presented a key that {self.known_hosts} marks REVOKED "
                f"({fingerprint(key)}): refusing to connect. The device needs a new host key; "
                "check it on the device (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub).")
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
