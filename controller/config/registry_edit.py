"""Add a device to a devices file, or pin a device's TLS certificate in it, without losing
anything already in it.

The change is made as text (comments and layout of the file are kept), the whole result is
validated, and only a valid file replaces the old one, atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path

from controller.config.registry import Registry, RegistryError, TlsConfig, parse_registry
from controller.config.toml_check import LineIndex, parse_toml


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
    _replace_file(path, new)
    return registry


def tls_table(tls: TlsConfig) -> str:
    """``[device.tls]`` as devices.toml writes it."""
    lines = ["[device.tls]",
             "# The agent's certificate: the only one this controller trusts for the device.",
             f"cert = {_toml(tls.cert)}"]
    if tls.key is not None:
        lines.append(f"key = {_toml(tls.key)}")
    if tls.sha256 is not None:
        lines.append(f"sha256 = {_toml(tls.sha256)}")
    return "\n".join(lines) + "\n"


def set_device_tls(path: Path, name: str, tls: TlsConfig, *,
                   sim_profiles: Collection[str] | None = None) -> Registry:
    """Give device ``name`` of ``path`` the ``[device.tls]`` table ``tls`` (replacing the one
    it has), leaving every other line as it was; RegistryError, and the file unchanged, when
    the result would not be exactly that (a table written inline, say)."""
    old = path.read_text()
    before = parse_registry(old, str(path), sim_profiles=sim_profiles)
    before.get(name)  # an unknown name: its clear error
    keys = ", ".join(line for line in tls_table(tls).splitlines()[2:])
    manual = RegistryError(path, 0, "", f"cannot pin the TLS certificate of {name!r} "
                                        f"automatically; give it a [device.tls] table with "
                                        f"{keys}")
    new = _with_tls_table(old, path, before.names.index(name), tls)
    if new is None:
        raise manual
    after = parse_registry(new, str(path), sim_profiles=sim_profiles)
    expected = tuple(replace(d, tls=tls) if d.name == name else d for d in before)
    if after.devices != expected:
        raise manual
    _replace_file(path, new)
    return after


def _with_tls_table(text: str, path: Path, index: int, tls: TlsConfig) -> str | None:
    """``text`` with the ``index``-th device's ``[device.tls]`` table (header to the next
    header) removed and the new one put after the device's last key line; None when its
    table is not written as a ``[device.tls]`` header (inline, dotted keys)."""
    document = parse_toml(text, path, RegistryError)
    lines = LineIndex(text)
    rows = text.splitlines(keepends=True)
    devices = document["device"]
    start = lines.line_of(("device", index))
    end = lines.line_of(("device", index + 1)) if index + 1 < len(devices) else len(rows) + 1
    block = rows[start - 1:end - 1]
    if "tls" in devices[index]:
        tls_line = lines.line_of(("device", index, "tls")) - start
        if not block[tls_line].lstrip().startswith("["):
            return None
        following = next((i for i in range(tls_line + 1, len(block))
                          if block[i].lstrip().startswith("[")), len(block))
        # The table ends at its last key: blank lines and comments after it belong to what
        # follows. The blank lines before it go too, so that pinning again gives the same file.
        stop = 1 + max(i for i in range(tls_line, following) if _is_content(block[i]))
        begin = tls_line
        while begin > 0 and not block[begin - 1].strip():
            begin -= 1
        block = block[:begin] + block[stop:]
    # After the last line that is not blank or a comment: comments above the next
    # [[device]] describe that device.
    last = max(i for i, row in enumerate(block) if _is_content(row))
    if not block[last].endswith("\n"):
        block[last] += "\n"
    block[last + 1:last + 1] = ["\n", tls_table(tls)]
    return "".join(rows[:start - 1] + block + rows[end - 1:])


def _is_content(row: str) -> bool:
    """A header or key line: not blank, not only a comment."""
    return bool(row.strip()) and not row.lstrip().startswith("#")


def _replace_file(path: Path, new: str) -> None:
    """Write ``new`` to ``path`` atomically, keeping the file's mode."""
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


__all__ = ["RegistryError", "add_device", "device_entry", "set_device_tls", "tls_table"]
