"""Cancelling a benchmark: the caller went away, so the measurement stops and frees the agent.

The gRPC thread sets a ``Cancel`` when the call ends (cancelled, timed out, disconnected); the
benchmark thread checks it in every loop that can run long: the timed loops (at most every
``CHECK_INTERVAL_S``, never per call, so the hot loop stays as it was), warm-ups, idle waits,
and the per-layer work of preparing a model. A cancelled benchmark therefore releases the
agent's benchmark lock within about a second, whatever its settings asked for.
"""

from __future__ import annotations

import threading

from joulefarm.errors import JoulefarmError

CHECK_INTERVAL_S = 0.25
"""How often a timed loop looks at the cancel flag (between calls, never inside one)."""


class Cancelled(JoulefarmError):
    """The benchmark was cancelled by its caller (or its deadline passed)."""

    grpc_status = "CANCELLED"


class Cancel:
    """A one-way flag: once set, ``check`` and ``sleep`` raise ``Cancelled``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if the benchmark was cancelled."""
        if self._event.is_set():
            raise Cancelled("the benchmark was cancelled by its caller")

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or raise ``Cancelled`` as soon as the benchmark is cancelled."""
        if seconds > 0 and self._event.wait(seconds):
            raise Cancelled("the benchmark was cancelled by its caller")
        self.check()
