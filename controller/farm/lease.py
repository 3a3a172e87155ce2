"""The running controller's lease on a sweep, and what a sweep's status really is.

A sweep row says ``running`` from its start until its controller finishes it. A controller
killed in the middle (``kill -9``, a reboot, a closed laptop) cannot say anything more, so the
running controller renews a lease instead: its host, its pid and a heartbeat every
``Timing.lease_interval_s``. A ``running`` sweep whose heartbeat is older than
``LEASE_MISSED`` intervals, or whose controller pid is gone from this host, was interrupted:
``sweep status`` says so, with the command that resumes it (liveness by comparing timestamps,
as Flower stores ``online_until``).
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime
from types import TracebackType

from controller.farm.processes import pid_alive
from controller.store import ResultStore

LEASE_MISSED = 3


class SweepLease:
    """Renews the lease on ``sweep_id`` from a background thread while the context is open."""

    def __init__(self, store: ResultStore, sweep_id: str, interval_s: float) -> None:
        self.store, self.sweep_id, self.interval_s = store, sweep_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.store.heartbeat(self.sweep_id)
            except Exception:  # noqa: BLE001 - a missed renewal is retried next interval
                continue

    def __enter__(self) -> SweepLease:
        self.store.heartbeat(self.sweep_id)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def sweep_state(
    status: str,
    host: str | None,
    pid: int | None,
    heartbeat_at: datetime | None,
    interval_s: float,
    now: datetime | None = None,
) -> str:
    """``status`` as stored, or ``interrupted`` for a ``running`` sweep whose controller is
    gone (its pid has left this host, or its lease was not renewed in time)."""
    if status != "running":
        return status
    now = now or datetime.now(UTC)
    if host == socket.gethostname() and pid is not None and not pid_alive(pid):
        return "interrupted"
    if heartbeat_at is None or (now - heartbeat_at).total_seconds() > LEASE_MISSED * interval_s:
        return "interrupted"
    return "running"
