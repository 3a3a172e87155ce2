"""The meter interface every power source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


class MeterError(RuntimeError):
    """A meter could not be opened, vanished, or was used out of order."""


@dataclass(frozen=True)
class MeterDescription:
    """What produced a trace. ``simulated`` is True whenever power comes from a model."""

    kind: str
    simulated: bool
    sample_rate_hz: float
    profile: str = ""
    description: str = ""


@dataclass(frozen=True)
class Trace:
    """A uniformly sampled power trace on the meter's own clock.

    Sample ``i`` is the mean power in watts over ``[t0_s + i/fs, t0_s + (i+1)/fs)``.
    """

    power_w: np.ndarray
    t0_s: float
    sample_rate_hz: float

    @property
    def duration_s(self) -> float:
        return len(self.power_w) / self.sample_rate_hz


class Meter(ABC):
    """A power source sampled between ``start()`` and ``stop()``.

    Times given to a meter are on the agent's clock (``time.perf_counter()``).
    """

    description: MeterDescription

    @abstractmethod
    def start(self) -> None:
        """Begin recording."""

    @abstractmethod
    def stop(self) -> Trace:
        """End recording and return everything recorded since ``start()``."""

    def note_activity(
        self, kind: str, start_s: float, end_s: float, *, macs: int = 0, bytes_moved: int = 0
    ) -> None:
        """Tell the meter what the device did in ``[start_s, end_s)``.

        Real meters measure and ignore this; the simulator needs it to know what ran.
        ``kind`` is ``"idle"`` (sleeping), ``"busy"`` (CPU busy, no model work) or ``"layer"``.
        """
        del kind, start_s, end_s, macs, bytes_moved


def open_meter(
    kind: str, *, profile: str = "", sample_rate_hz: float | None = None, seed: int = 0
) -> Meter:
    """Open the meter named by a device's ``meter.kind`` (only ``sim`` exists so far)."""
    if kind == "sim":
        from agent.meters.sim import SimMeter

        return SimMeter(profile or "host", sample_rate_hz=sample_rate_hz, seed=seed)
    raise MeterError(f"meter kind {kind!r} has no driver in this agent yet (available: sim)")
