"""Other CPythons on this machine, for pretend devices (this machine kind keeps them under
pyenv)."""

from __future__ import annotations

import os
from pathlib import Path


def find_python(version: str) -> Path | None:
    """CPython `version` ("3.10") for a pretend device: the env override, then pyenv's."""
    for item in os.environ.get("JOULEFARM_DEVICE_PYTHONS", "").split(","):
        name, _, path = item.partition("=")
        if name.strip() == version and path.strip():
            return Path(path.strip())
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(root.glob(f"{version}.*/bin/python{version}"))
    return found[-1] if found else None
