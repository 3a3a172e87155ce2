"""The meter interface every power source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The trace types live in traces.py; ``Trace`` is re-exported here for existing imports.
from agent.meters.traces import AnyTrace, CounterTrace, TimestampedTrace, Trace

__all__ = [
    "AnyTrace", "CounterTrace", "Meter", "MeterDescription", "MeterError", "MeterParseError",
    "TimestampedTrace", "Trace", "open_meter",
]


class MeterError(RuntimeError):
    """A meter could not be opened, vanished, or was used out of order."""


class MeterParseError(MeterError):
    """A sensor file, command output or log line did not have the expected format.

    ``str(err)`` names the source, the line number (1-based, 0 when not line-oriented) and
    the offending text.
    """

    def __init__(self, source: str, line_no: int, line: str, problem: str) -> None:
        self.source, self.line_no, self.line, self.problem = source, line_no, line, problem
        where = f"{source}: line {line_no}" if line_no else source
        super().__init__(f"{where}: {problem}: {line!r}")


@dataclass(frozen=True)
class MeterDescription:
    """What produced a trace. ``simulated`` is True whenever power comes from a model."""

    kind: str
    simulated: bool
    sample_rate_hz: float
    profile: str = ""
    description: str = ""


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
        self, kind: str, start_s: float, end_s: float, *, macs: int = 0, bytes_moved: int = 0
    ) -> None:
        """Tell the meter what the device did in ``[start_s, end_s)``.

        Real meters measure and ignore this; the simulator needs it to know what ran.
        ``kind`` is ``"idle"`` (sleeping), ``"busy"`` (CPU busy, no model work) or ``"layer"``.
        """
        del kind, start_s, end_s, macs, bytes_moved


def open_meter(
    kind: str,
    *,
    profile: str = "",
    sample_rate_hz: float | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    root: Path = Path("/"),
) -> Meter:
    """Open the meter named by a device's ``meter.kind`` (see ``agent.meters.factory``)."""
    from agent.meters.factory import open_meter as _open

    return _open(kind, profile=profile, sample_rate_hz=sample_rate_hz, seed=seed,
                 options=options, root=root)
