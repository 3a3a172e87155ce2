"""Defaults of ``joulefarm demo``: the demo farm of devices.toml and the demo suite.

Paths resolve against the working directory first, then the joulefarm source tree, so the
demo runs from anywhere after ``pip install -e .``.
"""

from __future__ import annotations

from pathlib import Path

from controller.provenance import SOURCE_ROOT

DEMO_SUITE = Path("benchmarks/demo.toml")
DEVICES_FILE = Path("devices.toml")


def resolve_default(path: Path | None, default: Path) -> Path:
    """An explicit path as given; else ``default`` in the working directory if it exists,
    else the one shipped in the joulefarm source tree."""
    if path is not None:
        return path
    if default.exists():
        return default
    return SOURCE_ROOT / default
