"""Meters built on the polling sampler: rail power sensors and cumulative energy counters.

A driver supplies the rail names and a read callable; these classes own the sampler, turn its
rows into a ``TimestampedTrace`` (power) or ``CounterTrace`` (energy), and add flags from
conditions the driver checks at start and stop (e.g. a phone on USB power).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType

import numpy as np

from agent.meters.base import Meter, MeterDescription, MeterError
from agent.meters.sampler import PollingSampler, Samples
from joulefarm.traces.model import CounterTrace, TimestampedTrace


class SampledMeter(Meter):
    """Start/stop bookkeeping shared by the polled meters."""

    def __init__(self, description: MeterDescription) -> None:
        self.description = description
        self._condition_flags: list[str] = []
        self._started = False

    def conditions(self) -> list[str]:
        """Flags describing the device's state, checked at start and at stop."""
        return []

    def _note_conditions(self) -> None:
        for flag in self.conditions():
            if flag not in self._condition_flags:
                self._condition_flags.append(flag)

    def _flags(self, samples: Samples, extra: Sequence[str] = ()) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*samples.flags, *self._condition_flags, *extra]))


class PolledMeter(SampledMeter):
    """Polls ``read()`` (one value per channel) at the meter's rate from start to stop."""

    def __init__(self, description: MeterDescription, channels: Sequence[str],
                 read: Callable[[], Sequence[float]], *, what: str) -> None:
        super().__init__(description)
        if not channels:
            raise MeterError(f"{description.kind}: no {what} to read")
        self._read = read
        self._width = len(channels)
        self._sampler: PollingSampler | None = None

    def start(self) -> None:
        if self._sampler is not None:
            raise MeterError(f"{self.description.kind}: meter already started")
        self._note_conditions()
        self._sampler = PollingSampler(self._read, rate_hz=self.description.sample_rate_hz,
                                       width=self._width, name=self.description.kind)
        self._sampler.start()

    def _stop_sampler(self) -> Samples:
        """Ends polling; the rows read since ``start()``, conditions checked again."""
        if self._sampler is None:
            raise MeterError(f"{self.description.kind}: stop() without a matching start()")
        samples = self._sampler.stop()
        self._note_conditions()
        return samples


class PolledRailMeter(PolledMeter):
    """Polls ``read_rails_w()`` (one power in W per rail) and returns a ``TimestampedTrace``.

    ``total`` names the rails whose sum is reported as ``power_w``
    (``joulefarm.traces.rails.total_rails`` chooses them for boards with several).
    """

    def __init__(self, description: MeterDescription, rails: Sequence[str],
                 read_rails_w: Callable[[], Sequence[float]], *, total: Sequence[str]) -> None:
        super().__init__(description, rails, read_rails_w, what="rails")
        self.rails = tuple(rails)
        self.total = tuple(total)

    def stop(self) -> TimestampedTrace:
        samples = self._stop_sampler()
        total, rails = split_rails(samples.values, self.rails, self.total)
        return TimestampedTrace(
            t_s=samples.t_s, power_w=total, read_s=samples.read_s, rails_w=rails,
            flags=self._flags(samples), gaps=samples.gaps,
            target_rate_hz=samples.target_rate_hz, error=samples.error,
        )


class PolledCounterMeter(PolledMeter):
    """Polls cumulative energy counters and returns a ``CounterTrace``.

    ``read_raw()`` returns one raw value per channel; ``to_joules(values)`` turns the n x k raw
    matrix into cumulative joules per channel from the first row (wrap-around undone). The
    total is the sum of the channels.
    """

    def __init__(self, description: MeterDescription, channels: Sequence[str],
                 read_raw: Callable[[], Sequence[float]],
                 to_joules: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__(description, channels, read_raw, what="counters")
        self.channels = tuple(channels)
        self._to_joules = to_joules

    def stop(self) -> CounterTrace:
        samples = self._stop_sampler()
        return counter_trace(samples, self.channels, self._to_joules(samples.values),
                             self._flags(samples))


def split_rails(values: np.ndarray, rails: Sequence[str], total: Sequence[str],
                ) -> tuple[np.ndarray, MappingProxyType[str, np.ndarray]]:
    """The reported power, the sum of the ``total`` rails' columns of the n x k ``values``, and
    a read-only mapping of each rail's own column."""
    columns = MappingProxyType({name: values[:, k].copy() for k, name in enumerate(rails)})
    picked = [rails.index(name) for name in total]
    return values[:, picked].sum(axis=1), columns


def counter_trace(samples: Samples, channels: Sequence[str], joules: np.ndarray,
                  flags: tuple[str, ...], t_s: np.ndarray | None = None) -> CounterTrace:
    """A ``CounterTrace`` from per-channel cumulative joules (n x k); total = their sum."""
    rails = {name: joules[:, k].copy() for k, name in enumerate(channels)}
    return CounterTrace(
        t_s=samples.t_s if t_s is None else t_s, energy_j=joules.sum(axis=1),
        rails_j=MappingProxyType(rails), read_s=samples.read_s, flags=flags,
        gaps=samples.gaps, target_rate_hz=samples.target_rate_hz, error=samples.error,
    )


def unwrap_counter(raw: np.ndarray, wrap: float) -> np.ndarray:
    """Cumulative increase of a counter that wraps to 0 at ``wrap``: each step is
    ``(e1 - e0) mod wrap``, so one wrap between reads is undone (two are not detectable)."""
    raw = np.asarray(raw, dtype=np.float64)
    if len(raw) == 0:
        return raw
    steps = np.mod(np.diff(raw), wrap)
    return np.concatenate(([0.0], np.cumsum(steps)))
