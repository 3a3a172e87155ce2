"""Sharing one DuckDB file between the process that writes results and the ones that read them.

DuckDB lets one process open a file for writing, or any number of processes open it read-only,
never both at once. A sweep writes for a whole night while a user runs ``joulefarm sweep
status`` or ``joulefarm query``, so neither side holds the file longer than it needs:

- the writer (``WriterConnection``) opens the file for each burst of writes and closes it when
  none has come for ``IDLE_CLOSE_S``, or at once after a write when a reader has asked for the
  file (it left ``<db>.read-request``);
- a reader (``read_only``) that finds the file locked leaves that request and retries, for up to
  ``READ_WAIT_S``; a writer that finds the file held by readers retries for ``WRITE_WAIT_S``.

A write is a short transaction (a run's rows land in one), so a reader waits at most about one
write; back-to-back writes (bulk ingest) keep the connection open and pay nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from joulefarm.errors import JoulefarmError

IDLE_CLOSE_S = 0.25
"""The writer closes the file when no write came for this long."""
READ_WAIT_S = 30.0
"""How long a reader waits for a writer to let go of the file."""
WRITE_WAIT_S = 120.0
"""How long a writer waits for readers to let go of the file."""
_RETRY_S = 0.005
_REQUEST_FRESH_S = 60.0  # an older request file was left by a reader that died
_READER_GRACE_S = 1.0
"""How long a writer that let go for a reader waits for it to take the file before reopening:
without it the writer wins the race back and closes again after its next write, paying a
close and an open for nothing."""


class DatabaseBusy(JoulefarmError):
    """The file stayed locked by another process for the whole wait."""


def _is_lock_conflict(error: duckdb.Error) -> bool:
    text = str(error)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set" in text)


def request_path(db: Path) -> Path:
    """The file a waiting reader leaves beside the database."""
    return db.with_name(db.name + ".read-request")


def _reader_waiting(db: Path) -> bool:
    try:
        return time.time() - request_path(db).stat().st_mtime < _REQUEST_FRESH_S
    except OSError:
        return False


def _open(
    connect: Callable[[], duckdb.DuckDBPyConnection],
    wait_s: float,
    on_wait: Callable[[], None] = lambda: None,
) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return connect()
        except duckdb.Error as e:
            if not _is_lock_conflict(e):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseBusy(str(e)) from e
            on_wait()
            time.sleep(_RETRY_S)


@contextmanager
def read_only(db: Path, wait_s: float = READ_WAIT_S) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection, waiting (and asking) for a writer to let go of the file."""
    request = request_path(db)

    def ask() -> None:
        if not request.exists():
            request.touch()

    try:
        con = _open(lambda: duckdb.connect(str(db), read_only=True), wait_s, ask)
    finally:
        request.unlink(missing_ok=True)
    try:
        yield con
    finally:
        con.close()


class WriterConnection:
    """The writer's side: ``hold()`` gives the open connection for one write (opening it when
    closed); the connection closes when idle or when a reader asks. Thread-safe."""

    def __init__(
        self, db: Path, *, idle_close_s: float = IDLE_CLOSE_S, wait_s: float = WRITE_WAIT_S
    ) -> None:
        self.db = db
        self.idle_close_s = idle_close_s
        self.wait_s = wait_s
        self._lock = threading.RLock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._timer: threading.Timer | None = None
        self.opened = 0
        """How many times the file was opened (for benchmarks and tests)."""

    @contextmanager
    def hold(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._con is None:
                # One thread: a write is a small transaction that DuckDB's parallel insert
                # only slows down (17% more rows/s on 2 cores, benchmarks/bench_controller.py).
                self._con = _open(
                    lambda: duckdb.connect(str(self.db), config={"threads": 1}), self.wait_s
                )
                self.opened += 1
            try:
                yield self._con
            finally:
                self._after_write()

    def _after_write(self) -> None:
        if _reader_waiting(self.db):
            self._close()
            return
        self._timer = threading.Timer(self.idle_close_s, self._close_if_idle)
        self._timer.daemon = True
        self._timer.start()

    def _close_if_idle(self) -> None:
        # A write that started meanwhile holds the lock and has cancelled this timer.
        if self._lock.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._lock.release()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._close()


__all__ = ["DatabaseBusy", "WriterConnection", "read_only", "request_path"]
