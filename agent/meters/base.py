"""The meter interface every power source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

from joulefarm.errors import MeterError, MeterParseError
from joulefarm.results import MeterDescription
from joulefarm.traces.model import AnyTrace, CounterTrace, TimestampedTrace, Trace

__all__ = [
    "AnyTrace", "CounterTrace", "Meter", "MeterDescription", "MeterError", "MeterParseError",
    "TimestampedTrace", "Trace",
]


class Meter(ABC):
    """A power source sampled between ``start()`` and ``stop()``.

    Times given to a meter are on the agent's clock (``time.perf_counter()``).
    """

    description: MeterDescription

    @abstractmethod
    def start(self) -> None:
        """Begin recording."""

    @abstractmethod
    def stop(self) -> AnyTrace:
        """End recording and return everything recorded since ``start()``.

        A ``Trace`` (uniform, meter clock: align it), a ``TimestampedTrace`` (polled sensor,
        agent clock) or a ``CounterTrace`` (cumulative energy, agent clock); see traces.py.
        A sensor that failed mid-run is reported in the trace's ``flags``, not hidden.
        """

    def note_activity(
        self, kind: str, start_s: float, end_s: float, *, macs: int = 0, bytes_moved: int = 0,
        op: str = "",
    ) -> None:
        """Tell the meter what the device did in ``[start_s, end_s)``.

        Real meters measure and ignore this; the simulator needs it to know what ran.
        ``kind`` is ``"idle"`` (sleeping), ``"busy"`` (CPU busy, no model work) or ``"layer"``;
        ``op`` names a layer's op (``"CONV_2D"``; ``"A+B"`` for a pair; empty for a whole model).
        """
        del kind, start_s, end_s, macs, bytes_moved, op
