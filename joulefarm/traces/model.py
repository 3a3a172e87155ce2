"""The power-trace model: what meters hand back, what readers return, what is integrated.

Three types, one per kind of source:

* ``Trace``: uniformly sampled. Sample ``i`` is the mean power in watts over
  ``[t0_s + i/fs, t0_s + (i+1)/fs)``. Lab instruments and the simulator sample on their own
  crystal (``clock == "meter"``): the agent aligns them with its sync pattern before
  integrating windows. Files from fixed-rate meters (Monsoon, JLS, PTDaemon, tegrastats) read
  into this type too.
* ``TimestampedTrace``: point readings, each held until the next (a polled on-board sensor
  stamped on the agent clock at read time; a log whose stamps are not uniform). The trace
  covers ``[t_s[0], t_s[-1]]``: the last point only closes it.
* ``CounterTrace``: snapshots of a cumulative energy counter (RAPL, ODPM), agent clock.

Every trace has ``clock`` (``"meter"`` or ``"agent"``), ``flags`` (quality flag names such as
``"meter_vanished"``), ``samples``, ``start_s``/``end_s``/``duration_s`` and
``to_timestamped()``; ``joulefarm.traces.window_energy`` integrates any of them. Traces read
from files carry ``meta``: provenance (format, file name and hash), units, notes, and
``simulated`` (true only when the power came from a model).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

# Quality flags a trace can carry (free-form strings; these are the ones joulefarm sets).
FLAG_METER_VANISHED = "meter_vanished"  # a read failed with OSError: sensor gone mid-run
FLAG_METER_ERROR = "meter_error"  # a read returned something unparseable; sampling stopped
FLAG_GAPS = "gaps"  # some reads were late by far more than the period (see ``gaps``)
FLAG_CHARGING = "charging"  # battery current includes charge current: not the device's draw
FLAG_LINES_BUFFERED = "lines_buffered"  # log lines arrived in bursts: arrival stamps are late
FLAG_REPLAY_SHORT = "replay_short"  # a replayed recording ended before the run did

UNIFORM_TOLERANCE = 0.01
"""Stamps within this fraction of one period of a straight line count as uniform: meters that
log at a fixed rate stamp with a few ms of jitter (PTDaemon at 1 Hz), which changes nothing
about which interval a sample covers."""


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Trace:
    """A uniformly sampled power trace (see the module docstring for the time convention).

    ``channels`` holds other per-sample columns of a file (``current_a``, ``voltage_v``,
    ``power_factor``, ``mark``). ``gpi`` (uint8, one per sample, or None) holds an
    instrument's general-purpose inputs: bit ``k`` is input ``k``; a wire from a device GPIO
    marks windows in the meter's own stream (``gpi_windows``). ``missing`` counts samples the
    instrument or the transport lost (NaN in ``power_w``, with the ``gaps`` flag); ``error``
    says what ended a capture early; ``source`` names the instrument or file. ``stamps_s``
    keeps a file's own time stamps when they were only near-uniform (for the record: energy
    uses ``t0_s`` and the rate).
    """

    power_w: np.ndarray
    t0_s: float
    sample_rate_hz: float
    flags: tuple[str, ...] = ()
    channels: Mapping[str, np.ndarray] = field(default_factory=_empty)
    gpi: np.ndarray | None = None
    missing: int = 0
    error: str | None = None
    source: str = ""
    meta: Mapping[str, Any] = field(default_factory=_empty)
    stamps_s: np.ndarray | None = None
    clock: ClassVar[str] = "meter"
    uniform: ClassVar[bool] = True

    @property
    def samples(self) -> int:
        return len(self.power_w)

    @property
    def duration_s(self) -> float:
        return len(self.power_w) / self.sample_rate_hz

    @property
    def start_s(self) -> float:
        return float(self.t0_s)

    @property
    def end_s(self) -> float:
        """End of the last sample's interval."""
        return self.t0_s + self.duration_s

    @property
    def t_s(self) -> np.ndarray:
        """Where each sample's interval starts (float64 s): the file's stamps when kept, else
        the grid ``t0 + i/fs``."""
        if self.stamps_s is not None:
            return self.stamps_s
        return self.t0_s + np.arange(len(self.power_w), dtype=np.float64) / self.sample_rate_hz

    def gpi_windows(self, bit: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Start and end times (meter clock, s) of each run of samples where input ``bit`` is
        high. A run still high at the trace's end ends there."""
        if self.gpi is None:
            return np.empty(0), np.empty(0)
        high = ((np.asarray(self.gpi) >> bit) & 1).astype(np.int8)
        edges = np.diff(np.concatenate(([0], high, [0])))
        starts = np.flatnonzero(edges == 1)
        ends = np.flatnonzero(edges == -1)
        period = 1.0 / self.sample_rate_hz
        return self.t0_s + starts * period, self.t0_s + ends * period

    def to_timestamped(self) -> TimestampedTrace:
        """The same hold signal as points: sample ``i`` at its interval's start, plus an end
        point closing the last interval. Still on the meter clock."""
        n = len(self.power_w)
        t = self.t0_s + np.arange(n + 1, dtype=np.float64) / self.sample_rate_hz
        p = np.asarray(self.power_w, dtype=np.float64)
        power = np.append(p, p[-1] if n else np.nan)
        return TimestampedTrace(t_s=t, power_w=power, flags=self.flags, clock="meter",
                                error=self.error, meta=self.meta)


class _Points:
    """The time span of a trace of stamped points (``t_s``, float64 s)."""

    t_s: np.ndarray

    def _check_length(self, values: np.ndarray, name: str) -> None:
        if self.t_s.shape != values.shape:
            raise ValueError(f"t_s {self.t_s.shape} and {name} {values.shape} differ")

    @property
    def samples(self) -> int:
        return len(self.t_s)

    @property
    def duration_s(self) -> float:
        return float(self.t_s[-1] - self.t_s[0]) if len(self.t_s) > 1 else 0.0

    @property
    def start_s(self) -> float:
        return float(self.t_s[0]) if len(self.t_s) else 0.0

    @property
    def end_s(self) -> float:
        """The last point, which closes the trace."""
        return float(self.t_s[-1]) if len(self.t_s) else 0.0


@dataclass(frozen=True)
class TimestampedTrace(_Points):
    """Point readings, each held until the next; stamped on the agent clock for live sensors.

    ``t_s[i]`` (float64 s) is when ``power_w[i]`` (W) was read: for a polled sensor the
    midpoint of the read call (``time.perf_counter()``), whose duration ``read_s[i]`` is the
    stamp's uncertainty. Signal model "hold": ``power_w[i]`` holds over ``[t_s[i], t_s[i+1])``;
    the trace covers ``[t_s[0], t_s[-1]]``, so the last value only closes the trace. This is
    exactly ``joulefarm.integrate_timestamped(..., model="hold")``.

    An averaging sensor (INA3221/INA2xx averaging several conversions, a fuel gauge) reports
    the mean over a window *ending* at the read, so the held value lags true power by about
    half that window. The lag is constant and small against a layer window; the sync pattern
    can estimate it. ``rails_w`` holds per-rail power on the same stamps (``power_w`` is the
    total the driver chose: see its description). ``gaps`` counts intervals that exceeded the
    sampler's gap threshold; ``target_rate_hz`` is the rate the sampler aimed at (0 for logs).
    """

    t_s: np.ndarray
    power_w: np.ndarray
    read_s: np.ndarray | None = None
    rails_w: Mapping[str, np.ndarray] = field(default_factory=_empty)
    flags: tuple[str, ...] = ()
    gaps: int = 0
    target_rate_hz: float = 0.0
    error: str | None = None
    clock: str = "agent"
    channels: Mapping[str, np.ndarray] = field(default_factory=_empty)
    meta: Mapping[str, Any] = field(default_factory=_empty)
    uniform: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self._check_length(self.power_w, "power_w")

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
class CounterTrace(_Points):
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
    rails_j: Mapping[str, np.ndarray] = field(default_factory=_empty)
    read_s: np.ndarray | None = None
    flags: tuple[str, ...] = ()
    gaps: int = 0
    target_rate_hz: float = 0.0
    error: str | None = None
    clock: ClassVar[str] = "agent"
    uniform: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self._check_length(self.energy_j, "energy_j")

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


def uniform_fit(t: np.ndarray, tolerance: float = UNIFORM_TOLERANCE
                ) -> tuple[float, float] | None:
    """``(sample_rate_hz, t0)`` when ``t`` is uniform within ``tolerance`` of a period, else None.

    The rate comes from the end points (exact for a file written as ``t0 + i/fs``) and is rounded
    to an integer when within 1 ppm of one, so that 4999.9999997 Hz reads as 5000 Hz.
    """
    n = len(t)
    if n < 2 or not np.all(np.isfinite(t)):
        return None
    span = float(t[-1] - t[0])
    if span <= 0 or not np.all(np.diff(t) > 0):
        return None
    rate = (n - 1) / span
    if abs(rate - round(rate)) <= 1e-6 * rate:
        rate = float(round(rate))
    t0 = float(t[0])
    if float(np.max(np.abs(t - (t0 + np.arange(n) / rate)))) > tolerance / rate:
        return None
    return rate, t0
