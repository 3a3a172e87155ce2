"""Add a device to a devices file without losing anything already in it.

The new entry is appended as text (comments and layout of the file are kept), the whole
result is validated, and only a valid file replaces the old one, atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path

from controller.config.registry import Registry, RegistryError, parse_registry


def _toml(value: object) -> str:
    # JSON strings, numbers, booleans and lists of strings are valid TOML values.
    return json.dumps(value)


def device_entry(*, name: str, platform: str, address: str, port: int | None, local: bool,
                 tags: Sequence[str], meter_kind: str, profile: str | None,
                 sample_rate_hz: float | None, token_file: str | None,
                 ssh_user: str | None, ssh_port: int | None, ssh_key: str | None) -> str:
    lines = ["", "[[device]]", f"name = {_toml(name)}", f"platform = {_toml(platform)}",
             f"address = {_toml(address)}"]
    if port is not None:
        lines.append(f"port = {port}")
    if local:
        lines.append("local = true")
    if tags:
        lines.append(f"tags = {_toml(list(tags))}")
    if token_file:
        lines.append(f"token_file = {_toml(token_file)}")
    lines += ["", "[device.meter]", f"kind = {_toml(meter_kind)}"]
    if profile:
        lines.append(f"profile = {_toml(profile)}")
    if sample_rate_hz:
        lines.append(f"sample_rate_hz = {sample_rate_hz}")
    if ssh_user:
        lines += ["", "[device.ssh]", f"user = {_toml(ssh_user)}"]
        if ssh_port is not None:
            lines.append(f"port = {ssh_port}")
        if ssh_key:
            lines.append(f"key = {_toml(ssh_key)}")
    return "\n".join(lines) + "\n"


def add_device(path: Path, entry: str, *, sim_profiles: Collection[str] | None = None) -> Registry:
    """Append ``entry`` to ``path`` (created with a schema_version if missing) if the result
    is valid; raise RegistryError (naming the line in the combined file) otherwise."""
    old = path.read_text() if path.exists() else "schema_version = 1\n"
    new = old + ("" if old.endswith("\n") else "\n") + entry
    registry = parse_registry(new, str(path), sim_profiles=sim_profiles)  # raises; nothing written
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return registry


__all__ = ["RegistryError", "add_device", "device_entry"]
