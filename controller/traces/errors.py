"""Errors raised on bad trace or windows files: one line that names the file and line."""

from __future__ import annotations

from pathlib import Path

from controller.errors import JoulefarmError


class TraceInputError(JoulefarmError, ValueError):
    """A trace, windows file or option that joulefarm cannot use (bad input, exit code 2)."""


class TraceFormatError(TraceInputError):
    """A file whose content does not match the format being read."""


def at(path: Path | str, line: int | None = None) -> str:
    """``file:line`` prefix for error messages (just ``file`` when the line is unknown)."""
    return f"{path}:{line}" if line is not None else str(path)
