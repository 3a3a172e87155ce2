"""What a meter hands back: three trace types sharing one small protocol.

* ``Trace`` — uniformly sampled, on the METER clock (simulator, external integrating meters).
  Needs clock alignment (the sync pattern) before windows can be integrated.
* ``TimestampedTrace`` — point readings of a polled on-board sensor, each stamped with the
  AGENT clock (``time.perf_counter()``) at read time. No alignment needed.
* ``CounterTrace`` — snapshots of a cumulative energy counter (RAPL, ODPM), agent clock.
  ``to_timestamped()`` turns it into exact mean power between consecutive snapshots.

Every trace has ``clock`` (``"meter"`` or ``"agent"``), ``flags`` (tuple of quality flag names,
e.g. ``"meter_vanished"``), ``duration_s`` and ``to_timestamped()``; the agent dispatches on
``clock`` (align or not) and integrates the timestamped form with
``joulefarm.integrate_timestamped`` (or a uniform one with ``joulefarm.integrate_windows``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Protocol

import numpy as np

# Quality flags a trace can carry (free-form strings; these are the ones drivers set).
FLAG_METER_VANISHED = "meter_vanished"  # a read failed with OSError: sensor gone mid-run
FLAG_METER_ERROR = "meter_error"  # a read returned something unparseable; sampling stopped
FLAG_GAPS = "gaps"  # some reads were late by far more than the period (see ``gaps``)
FLAG_CHARGING = "charging"  # battery current includes charge current: not the device's draw
FLAG_LINES_BUFFERED = "lines_buffered"  # log lines arrived in bursts: arrival stamps are late



def _no_rails() -> Mapping[str, np.ndarray]:
    return MappingProxyType({})


class PowerTrace(Protocol):
    """The protocol every trace type satisfies."""

    @property
    def clock(self) -> str: ...
    @property
    def flags(self) -> tuple[str, ...]: ...
    @property
    def duration_s(self) -> float: ...
    def to_timestamped(self) -> TimestampedTrace: ...


@dataclass(frozen=True)
class Trace:
    """A uniformly sampled power trace on the meter's own clock.

    Sample ``i`` is the mean power in watts over ``[t0_s + i/fs, t0_s + (i+1)/fs)``.
    """

    power_w: np.ndarray
    t0_s: float
    sample_rate_hz: float
    flags: tuple[str, ...] = ()
    clock: ClassVar[str] = "meter"

    @property
    def duration_s(self) -> float:
        return len(self.power_w) / self.sample_rate_hz

    def to_timestamped(self) -> TimestampedTrace:
        """The same hold signal as points: sample ``i`` at its interval's start, plus an end
        point closing the last interval. Still on the METER clock (``clock="meter"``)."""
        n = len(self.power_w)
        t = self.t0_s + np.arange(n + 1, dtype=np.float64) / self.sample_rate_hz
        p = np.asarray(self.power_w, dtype=np.float64)
        power = np.append(p, p[-1] if n else np.nan)
        return TimestampedTrace(t_s=t, power_w=power, flags=self.flags, clock="meter")


@dataclass(frozen=True)
class TimestampedTrace:
    """Point readings of a polled sensor, stamped on the AGENT clock.

    ``t_s[i]`` (float64 s, ``time.perf_counter()``) is the midpoint of the read call that
    returned ``power_w[i]`` (W); ``read_s[i]`` is that call's duration, the uncertainty of the
    stamp. Signal model "hold": ``power_w[i]`` holds over ``[t_s[i], t_s[i+1])``; the trace
    covers ``[t_s[0], t_s[-1]]``, so the last value only closes the trace. This is exactly
    ``joulefarm.integrate_timestamped(..., model="hold")``.

    An averaging sensor (INA3221/INA2xx averaging several conversions, a fuel gauge) reports
    the mean over a window *ending* at the read, so the held value lags true power by about
    half that window. The lag is constant and small against a layer window; the sync pattern
    can estimate it. ``rails_w`` holds per-rail power on the same stamps (``power_w`` is the
    total the driver chose: see its description). ``gaps`` counts intervals that exceeded the
    sampler's gap threshold; integrate with ``max_gap_s`` to exclude them.
    """

    t_s: np.ndarray
    power_w: np.ndarray
    read_s: np.ndarray | None = None
    rails_w: Mapping[str, np.ndarray] = field(default_factory=_no_rails)
    flags: tuple[str, ...] = ()
    gaps: int = 0
    target_rate_hz: float = 0.0
    error: str | None = None
    clock: str = "agent"

    def __post_init__(self) -> None:
        if self.t_s.shape != self.power_w.shape:
            raise ValueError(f"t_s {self.t_s.shape} and power_w {self.power_w.shape} differ")

    @property
    def duration_s(self) -> float:
        return float(self.t_s[-1] - self.t_s[0]) if len(self.t_s) > 1 else 0.0

    def to_timestamped(self) -> TimestampedTrace:
        return self

    def to_uniform(self, sample_rate_hz: float, max_gap_s: float | None = None) -> Trace:
        """Resample onto a uniform grid starting at ``t_s[0]`` (same clock): each output sample
        is the exact mean of the hold signal over its interval. Intervals longer than
        ``max_gap_s`` and NaN readings count as missing; an output sample less than half
        covered is NaN. For code that only takes uniform traces."""
        t = np.asarray(self.t_s, dtype=np.float64)
        m = int(np.floor((t[-1] - t[0]) * sample_rate_hz)) if len(t) > 1 else 0
        if m <= 0:
            return Trace(np.empty(0, np.float64), float(t[0]) if len(t) else 0.0,
                         sample_rate_hz, self.flags)
        dt = np.diff(t)
        p = np.asarray(self.power_w[:-1], dtype=np.float64)
        valid = np.isfinite(p) & (dt > 0)
        if max_gap_s is not None:
            valid &= dt <= max_gap_s
        # Cumulative energy and covered time are piecewise linear in t: np.interp is exact.
        energy = np.concatenate(([0.0], np.cumsum(np.where(valid, p * dt, 0.0))))
        covered = np.concatenate(([0.0], np.cumsum(np.where(valid, dt, 0.0))))
        edges = t[0] + np.arange(m + 1, dtype=np.float64) / sample_rate_hz
        d_energy = np.diff(np.interp(edges, t, energy))
        d_covered = np.diff(np.interp(edges, t, covered))
        ok = d_covered > 0.5 / sample_rate_hz
        mean = np.full(m, np.nan)
        mean[ok] = d_energy[ok] / d_covered[ok]
        return Trace(mean, float(t[0]), sample_rate_hz, self.flags)


@dataclass(frozen=True)
class CounterTrace:
    """Snapshots of a cumulative energy counter, stamped on the AGENT clock.

    ``energy_j[i]`` (float64 J) is the energy counted from the first snapshot to the one read
    at ``t_s[i]`` (midpoint of the read, or the counter's own refresh time mapped to the agent
    clock where the source reports one), wrap-around already undone, so ``energy_j[0] == 0``.
    The energy between two snapshots is exact; how it spread inside the interval is unknown,
    so the mean power ``(E[i+1] - E[i]) / (t[i+1] - t[i])`` is held over ``[t_s[i], t_s[i+1])``
    (``to_timestamped``). Energy over a window is then the linear interpolation of the
    cumulative counter at the window's ends: a window must span several snapshots to be
    meaningful. ``rails_j`` holds per-rail cumulative energy on the same stamps.
    """

    t_s: np.ndarray
    energy_j: np.ndarray
    rails_j: Mapping[str, np.ndarray] = field(default_factory=_no_rails)
    read_s: np.ndarray | None = None
    flags: tuple[str, ...] = ()
    gaps: int = 0
    target_rate_hz: float = 0.0
    error: str | None = None
    clock: ClassVar[str] = "agent"

    def __post_init__(self) -> None:
        if self.t_s.shape != self.energy_j.shape:
            raise ValueError(f"t_s {self.t_s.shape} and energy_j {self.energy_j.shape} differ")

    @property
    def duration_s(self) -> float:
        return float(self.t_s[-1] - self.t_s[0]) if len(self.t_s) > 1 else 0.0

    @property
    def total_energy_j(self) -> float:
        return float(self.energy_j[-1]) if len(self.energy_j) else 0.0

    def to_timestamped(self) -> TimestampedTrace:
        """Mean power between consecutive snapshots, held from the earlier one. The last
        point repeats the last interval's power: under "hold" it only closes the trace."""
        power = _interval_power(self.t_s, self.energy_j)
        rails = {name: _interval_power(self.t_s, e) for name, e in self.rails_j.items()}
        return TimestampedTrace(
            t_s=np.asarray(self.t_s, dtype=np.float64), power_w=power, read_s=self.read_s,
            rails_w=MappingProxyType(rails), flags=self.flags, gaps=self.gaps,
            target_rate_hz=self.target_rate_hz, error=self.error,
        )


def _interval_power(t_s: np.ndarray, energy_j: np.ndarray) -> np.ndarray:
    n = len(t_s)
    power = np.full(n, np.nan)
    if n >= 2:
        power[:-1] = np.diff(energy_j) / np.diff(t_s)
        power[-1] = power[-2]
    return power


AnyTrace = Trace | TimestampedTrace | CounterTrace
