"""The installed joulefarm version: the agent and the controller ship together, so one number
names both."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    """The installed joulefarm distribution's version ("0+unknown" when not installed)."""
    try:
        return metadata.version("joulefarm")
    except metadata.PackageNotFoundError:
        return "0+unknown"
