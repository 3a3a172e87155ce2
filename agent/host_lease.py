"""One measurement at a time on a host: agents that share a CPU never measure at once.

Several agents can run on one machine (the local demo farm; a lab box serving two meters).
Measuring at the same time they contaminate each other: one simulated device stored a layer at
7,875 µs where the others measured 581 and 905 µs on the same host. So a measurement holds an
exclusive ``flock`` on a lock file shared by every agent of the host (and every user: the
file is in the system's temporary folder unless ``$JOULEFARM_HOST_LOCK`` names another);
an agent that finds it taken says so and waits. The kernel drops the lock when its holder
exits, however it exits, so a killed agent never blocks the host.

A wait longer than ``MAX_WAIT_S`` (an agent hung while measuring) measures anyway and flags
the run ``host_contended``: its rows are shown but never trained on.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_ENV = "JOULEFARM_HOST_LOCK"
LOCK_NAME = "joulefarm-measure.lock"
MAX_WAIT_S = 900.0
_POLL_S = 0.05
_SAY_EVERY_S = 10.0


def default_lock_path() -> Path:
    """``$JOULEFARM_HOST_LOCK``, else ``joulefarm-measure.lock`` in the temporary folder."""
    return Path(os.environ.get(LOCK_ENV) or Path(tempfile.gettempdir()) / LOCK_NAME)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except PermissionError:
        # Another user's file in a sticky folder with fs.protected_regular: open, not create.
        return os.open(path, os.O_RDONLY)


@contextmanager
def measuring_lease(path: Path | None = None, *, wait_s: float = MAX_WAIT_S,
                    on_wait: Callable[[float], None] = lambda waited_s: None,
                    check: Callable[[], None] = lambda: None,
                    ) -> Iterator[bool]:
    """Hold the host's measuring lease; yields whether the host was **contended** (the lease
    could not be had within ``wait_s`` and the measurement runs beside another). ``on_wait``
    is called with the seconds waited so far, at once and then every ``_SAY_EVERY_S``;
    ``check`` at every poll. Either may raise to give up (a cancelled request)."""
    fd = _open(path or default_lock_path())
    try:
        contended = not _acquire(fd, wait_s, on_wait, check)
        try:
            yield contended
        finally:
            if not contended:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, wait_s: float, on_wait: Callable[[float], None],
             check: Callable[[], None]) -> bool:
    start = time.monotonic()
    said = -_SAY_EVERY_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        waited = time.monotonic() - start
        if waited >= wait_s:
            return False
        if waited - said >= _SAY_EVERY_S:
            on_wait(waited)
            said = waited
        check()
        time.sleep(_POLL_S)


__all__ = ["LOCK_ENV", "MAX_WAIT_S", "default_lock_path", "measuring_lease"]
