"""The simulated meter: a power trace synthesised from what the agent actually ran.

The agent reports its activity (idle, busy, layer windows with their work) on its own clock;
the simulator turns it into the step function of true power given by a device profile, maps it
to the meter's clock (offset, drift), and samples it like an integrating sensor: each sample is
the mean power over its interval, plus gaussian noise, quantised to the sensor's resolution.
It keeps the true step function, so the pipeline's accuracy can be checked against it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from agent.meters.base import Meter, MeterDescription, MeterError, Trace
from joulefarm.sim_profiles import PowerProfile, get_profile

# Each run gets a clock offset drawn in +/- this range, so alignment is always exercised.
MAX_SIM_CLOCK_OFFSET_S = 0.02


@dataclass(frozen=True)
class _Segment:
    start_s: float
    end_s: float
    power_w: float


class SimMeter(Meter):
    """A simulated meter for one device profile. Always labelled ``simulated``."""

    def __init__(
        self,
        profile: str | PowerProfile,
        *,
        sample_rate_hz: float | None = None,
        seed: int = 0,
        clock_offset_s: float | None = None,
        drift_ppm: float = 0.0,
    ) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        rate = sample_rate_hz or self.profile.default_sample_rate_hz
        if not rate > 0:
            raise MeterError(f"sample_rate_hz must be > 0, got {rate}")
        self.description = MeterDescription(
            kind="sim",
            simulated=True,
            sample_rate_hz=float(rate),
            profile=self.profile.name,
            description=f"simulated: {self.profile.description}",
        )
        self._rng = np.random.default_rng(seed)
        if clock_offset_s is None:
            limit = MAX_SIM_CLOCK_OFFSET_S
            clock_offset_s = float(self._rng.uniform(-limit, limit))
        self.clock_offset_s = clock_offset_s
        self.drift_ppm = drift_ppm
        self._segments: list[_Segment] = []
        self._start_s: float | None = None
        self._stop_s: float | None = None

    # -- the step function of true power ------------------------------------------------------

    def layer_power_w(self, duration_s: float, macs: int, bytes_moved: int) -> float:
        """True power while a layer runs: idle + busy CPU + compute and memory intensity."""
        p = self.profile
        macs_rate = macs / duration_s if duration_s > 0 else 0.0
        compute = p.peak_dynamic_w * min(1.0, macs_rate / p.peak_macs_per_s)
        memory = p.w_per_byte_per_s * (bytes_moved / duration_s if duration_s > 0 else 0.0)
        return p.idle_w + p.busy_w + compute + memory

    def note_activity(
        self, kind: str, start_s: float, end_s: float, *, macs: int = 0, bytes_moved: int = 0
    ) -> None:
        if self._start_s is None or self._stop_s is not None:
            raise MeterError("note_activity() outside start()/stop()")
        if end_s < start_s:
            raise MeterError(f"activity ends ({end_s}) before it starts ({start_s})")
        if kind == "idle":
            power = self.profile.idle_w
        elif kind == "busy":
            power = self.profile.idle_w + self.profile.busy_w
        elif kind == "layer":
            power = self.layer_power_w(end_s - start_s, macs, bytes_moved)
        else:
            raise MeterError(f"unknown activity kind {kind!r}")
        self._segments.append(_Segment(start_s, end_s, power))

    def _breakpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """Times (agent clock) and cumulative true energy (J) at every change of power.

        Time not covered by a reported activity counts as busy: the agent's Python code runs.
        """
        assert self._start_s is not None and self._stop_s is not None
        busy = self.profile.idle_w + self.profile.busy_w
        times = [self._start_s]
        energy = [0.0]
        now = self._start_s
        for seg in sorted(self._segments, key=lambda s: s.start_s):
            start = max(seg.start_s, now)  # activities never overlap; clamp float jitter
            end = min(max(seg.end_s, start), self._stop_s)
            if start > now:
                energy.append(energy[-1] + busy * (start - now))
                times.append(start)
            if end > start:
                energy.append(energy[-1] + seg.power_w * (end - start))
                times.append(end)
                now = end
        if self._stop_s > now:
            energy.append(energy[-1] + busy * (self._stop_s - now))
            times.append(self._stop_s)
        return np.asarray(times), np.asarray(energy)

    def to_meter_clock(self, agent_s: np.ndarray | float) -> np.ndarray | float:
        return agent_s * (1.0 + self.drift_ppm * 1e-6) + self.clock_offset_s

    # -- the Meter interface -----------------------------------------------------------------

    def start(self) -> None:
        if self._start_s is not None:
            raise MeterError("meter already started")
        self._start_s = time.perf_counter()

    def stop(self) -> Trace:
        if self._start_s is None or self._stop_s is not None:
            raise MeterError("stop() without a matching start()")
        self._stop_s = time.perf_counter()
        times, cum_energy = self._breakpoints()
        fs = self.description.sample_rate_hz
        t0 = float(self.to_meter_clock(self._start_s))
        n = int((self._stop_s - self._start_s) * fs)
        # Sample boundaries on the meter clock, mapped back to the agent clock, where the
        # cumulative energy is piecewise linear: np.interp is exact there.
        edges_meter = t0 + np.arange(n + 1) / fs
        edges_agent = (edges_meter - self.clock_offset_s) / (1.0 + self.drift_ppm * 1e-6)
        cum = np.interp(edges_agent, times, cum_energy)
        mean_power = np.diff(cum) / np.diff(edges_agent)
        noisy = mean_power + self._rng.normal(0.0, self.profile.noise_w, size=n)
        quantised = np.round(noisy / self.profile.lsb_w) * self.profile.lsb_w
        return Trace(power_w=quantised.astype(np.float32), t0_s=t0, sample_rate_hz=fs)

    # -- ground truth ----------------------------------------------------------------------

    def true_energy_j(self, start_s: float, end_s: float) -> float:
        """Exact energy of the true power over ``[start_s, end_s]`` on the agent clock."""
        if self._stop_s is None:
            raise MeterError("ground truth is known only after stop()")
        times, cum_energy = self._breakpoints()
        e0, e1 = np.interp([start_s, end_s], times, cum_energy)
        return float(e1 - e0)
