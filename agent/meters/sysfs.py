"""Reading sysfs attribute files: small, fast, and loud when they disappear.

Every read opens, reads and closes the file (a few microseconds). Keeping descriptors open
would be faster still, but an unlinked file stays readable through its descriptor, so a
sensor that goes away could keep "answering"; reopening makes it fail with OSError.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.meters.base import MeterParseError

_MAX_ATTR_BYTES = 4096


def read_text(path: Path | str) -> str:
    """The file's content, stripped. Raises OSError if it cannot be read."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, _MAX_ATTR_BYTES).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)


def read_int(path: Path | str) -> int:
    """The file's integer value. Raises OSError if unreadable, MeterParseError if not an int."""
    text = read_text(path)
    try:
        return int(text)
    except ValueError:
        raise MeterParseError(str(path), 0, text, "expected an integer") from None


def read_optional_text(path: Path) -> str | None:
    """The file's content, or None if it does not exist or cannot be read."""
    try:
        return read_text(path)
    except OSError:
        return None


def sort_numeric(paths: list[Path]) -> list[Path]:
    """Sort paths like hwmon2 < hwmon10 (by the digits in each name, then by name)."""
    def key(p: Path) -> tuple[tuple[int, ...], str]:
        digits = "".join(c if c.isdigit() else " " for c in p.name).split()
        return tuple(int(d) for d in digits), p.name
    return sorted(paths, key=key)
