"""Reading a file a user named without hanging or filling memory.

``Path.read_bytes()`` on a named pipe waits for a writer for ever, and on ``/dev/zero`` reads
until memory runs out: a file is read only when it is a regular file within a size bound
(``joulefarm.limits``), else ``FileRefused`` says what it is.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from joulefarm.errors import InputError

__all__ = ["FileRefused", "read_regular_file", "regular_file_problem"]

# Opening a FIFO for reading blocks until a writer opens it; O_NONBLOCK returns at once, and
# then fstat tells what was opened. It changes nothing for reading a regular file. O_NOCTTY: a
# terminal device named by mistake must not become the controlling terminal.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


class FileRefused(InputError):
    """A file that is not read: not a regular file (a FIFO, device or socket), or too large.
    The message starts with what the file is (``is a named pipe (FIFO), not a model file``),
    for the caller to put its path in front."""


def read_regular_file(path: str | Path, max_bytes: int, what: str) -> bytes:
    """The bytes of the regular file ``path`` (``what`` names it in messages: "model file").

    ``FileRefused`` when it is something else or larger than ``max_bytes``; ``OSError`` as
    ``open`` raises it (``FileNotFoundError``...), ``IsADirectoryError`` for a directory."""
    fd = os.open(path, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as f:
        problem = _problem(os.fstat(f.fileno()), max_bytes, what, path)
        if problem:
            raise FileRefused(problem)
        data = f.read(max_bytes + 1)  # + 1: a file that grew since fstat is still caught
    if len(data) > max_bytes:
        raise FileRefused(_too_large(len(data), max_bytes, what))
    return data


def regular_file_problem(path: str | Path, max_bytes: int, what: str) -> str | None:
    """Why ``path`` would be refused by ``read_regular_file`` (a directory included), or None
    when it is a regular file within the bound or cannot be looked at (missing: the reader
    reports that). Only looks (``stat``): never blocks, never reads."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if stat.S_ISDIR(st.st_mode):
        return f"is a directory, not a {what}"
    return _problem(st, max_bytes, what, path)


def _problem(st: os.stat_result, max_bytes: int, what: str, path: str | Path) -> str | None:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(st.st_mode):
        return f"is a {_kind(st.st_mode)}, not a {what} (only regular files are read)"
    if st.st_size > max_bytes:
        return _too_large(st.st_size, max_bytes, what)
    return None


def _too_large(size: int, max_bytes: int, what: str) -> str:
    return f"is {size:,} bytes; a {what} may be at most {max_bytes:,} bytes"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"
