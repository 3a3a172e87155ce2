"""Looking at processes the tests start."""

from __future__ import annotations

from pathlib import Path


def is_zombie(pid: int) -> bool:
    """The process is gone or a zombie (a container's init may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
