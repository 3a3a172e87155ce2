"""The simulated meter: a power trace synthesised from what the agent actually ran.

The agent reports its activity (idle, busy, layer windows with their work) on its own clock;
the simulator turns it into the step function of true power given by a device profile, maps it
to the meter's clock (offset, drift), and samples it like an integrating sensor: each sample is
the mean power over its interval, plus gaussian noise, quantised to the sensor's resolution.
It keeps the true step function, so the pipeline's accuracy can be checked against it.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Mapping

import numpy as np

from agent.meters.base import Meter, MeterDescription, MeterError, Trace
from joulefarm.sim_profiles import PowerProfile, get_profile

# Each run gets a clock offset drawn in +/- this range, so alignment is always exercised.
MAX_SIM_CLOCK_OFFSET_S = 0.02


MAX_OP_ENERGY_SCALE = 100.0


def _checked_scales(scales: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(scales, Mapping):
        raise MeterError(f"op_energy_scale must be a table of op name = factor, got {scales!r}")
    out = {}
    for name, factor in scales.items():
        if (not isinstance(name, str) or isinstance(factor, bool)
                or not isinstance(factor, int | float)
                or not 0 < factor <= MAX_OP_ENERGY_SCALE):
            raise MeterError(f"op_energy_scale: {name!r} = {factor!r}: expected an op name and a "
                             f"factor in (0, {MAX_OP_ENERGY_SCALE:g}]")
        out[name] = float(factor)
    return out


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
        op_energy_scale: Mapping[str, float] | None = None,
    ) -> None:
        """``op_energy_scale`` (op name -> factor, the ``op_energy_scale`` meter option)
        multiplies the true power of every layer window of that op: a device on which one op
        became dearer, to test what notices (``joulefarm compare``). Whole-model loops are not
        scaled (they note no op)."""
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.op_energy_scale = _checked_scales(op_energy_scale or {})
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
        # What ran when, one entry per reported activity: flat float arrays, because an in-situ
        # run reports every op of every inference (millions of windows) and objects per window
        # would cost ~20x the memory.
        self._seg_starts = array("d")
        self._seg_ends = array("d")
        self._seg_powers = array("d")
        self._start_s: float | None = None
        self._stop_s: float | None = None
        # The true energy's breakpoints, built once at stop(): ground truth is then asked per
        # window, and rebuilding them per query made in-situ runs quadratic in windows.
        self._truth: tuple[np.ndarray, np.ndarray] | None = None

    # -- the step function of true power ------------------------------------------------------

    def layer_power_w(self, duration_s: float, macs: int, bytes_moved: int) -> float:
        """True power while a layer runs: idle + busy CPU + compute and memory intensity."""
        p = self.profile
        macs_rate = macs / duration_s if duration_s > 0 else 0.0
        compute = p.peak_dynamic_w * min(1.0, macs_rate / p.peak_macs_per_s)
        memory = p.w_per_byte_per_s * (bytes_moved / duration_s if duration_s > 0 else 0.0)
        return p.idle_w + p.busy_w + compute + memory

    def note_activity(
        self, kind: str, start_s: float, end_s: float, *, macs: int = 0, bytes_moved: int = 0,
        op: str = "",
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
            if op and self.op_energy_scale:
                factors = [self.op_energy_scale.get(name, 1.0) for name in op.split("+")]
                power *= sum(factors) / len(factors)
        else:
            raise MeterError(f"unknown activity kind {kind!r}")
        self._seg_starts.append(start_s)
        self._seg_ends.append(end_s)
        self._seg_powers.append(power)

    def _breakpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """Times (agent clock) and cumulative true energy (J) at every change of power.

        Time not covered by a reported activity counts as busy: the agent's Python code runs.
        Activities never overlap; float jitter is clamped: each one is moved to start no earlier
        than the previous one ended, and all are clipped to the run. Zero-length ones add
        nothing. Vectorised: O(n log n) for n activities.
        """
        assert self._start_s is not None and self._stop_s is not None
        begin, stop = self._start_s, self._stop_s
        busy = self.profile.idle_w + self.profile.busy_w
        starts = np.clip(np.frombuffer(self._seg_starts), begin, stop)
        order = np.argsort(starts, kind="stable")
        starts = starts[order]
        ends = np.clip(np.frombuffer(self._seg_ends)[order], starts, stop)
        powers = np.frombuffer(self._seg_powers)[order]
        # Where the previous activity ended (or the run began): the running maximum of ends.
        before = np.maximum.accumulate(np.concatenate(([begin], ends)))[:-1]
        starts = np.maximum(starts, before)
        ends = np.maximum(ends, starts)
        # Breakpoints: begin, then each activity's (start, end), then stop. Pieces alternate
        # busy gap (before -> start) and activity (start -> end).
        times = np.empty(2 * len(starts) + 2)
        times[0], times[-1] = begin, stop
        times[1:-1:2], times[2:-1:2] = starts, ends
        pieces = np.empty(2 * len(starts) + 1)
        pieces[0:-1:2] = busy * (starts - before)
        pieces[1:-1:2] = powers * (ends - starts)
        last_end = ends[-1] if len(ends) else begin
        pieces[-1] = busy * max(stop - last_end, 0.0)
        return times, np.concatenate(([0.0], np.cumsum(pieces)))

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
        self._truth = times, cum_energy = self._breakpoints()
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
        return float(self.true_energies_j(np.array([start_s]), np.array([end_s]))[0])

    def true_energies_j(self, starts_s: np.ndarray, ends_s: np.ndarray) -> np.ndarray:
        """`true_energy_j` of many windows at once (O(log n) each)."""
        if self._truth is None:
            raise MeterError("ground truth is known only after stop()")
        times, cum_energy = self._truth
        return np.interp(ends_s, times, cum_energy) - np.interp(starts_s, times, cum_energy)
