"""Energy of windows over a trace, by the Rust core.

Uniform traces go to ``joulefarm.integrate_windows`` (sample ``i`` covers
``[t0 + i/fs, t0 + (i+1)/fs)``); others to ``joulefarm.integrate_timestamped`` (each point held
until the next; the trace ends at its last point).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

import joulefarm
from joulefarm.errors import TraceInputError
from joulefarm.traces.imported import Trace

# Timestamped traces: an interval this many times the median one is a gap (a meter that stopped
# logging), excluded and flagged rather than bridged by holding the last value.
AUTO_GAP_FACTOR = 3.0


def auto_max_gap_s(trace: Trace) -> float | None:
    """``AUTO_GAP_FACTOR`` x the median sample interval (None for uniform or 1-sample traces)."""
    if trace.uniform or trace.samples < 2:
        return None
    steps = np.diff(trace.t_s)
    steps = steps[steps > 0]
    return float(AUTO_GAP_FACTOR * np.median(steps)) if len(steps) else None


def window_energy(trace: Trace, starts: npt.ArrayLike, ends: npt.ArrayLike, *,
                  model: str = "hold", offset_s: float = 0.0, drift_ppm: float = 0.0,
                  max_gap_s: float | None = None) -> dict[str, np.ndarray]:
    """Per-window ``energy_j``, ``mean_power_w``, ``samples``, ``coverage``, ``flags``.

    Windows are on the trace's time base shifted by the clock model
    ``trace_t = window_t * (1 + drift_ppm * 1e-6) + offset_s``. ``max_gap_s`` applies to
    non-uniform traces (None: ``auto_max_gap_s``; ``inf``: no gap detection).
    """
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    try:
        if trace.uniform:
            return dict(joulefarm.integrate_windows(
                trace.power_w, float(trace.meta["sample_rate_hz"]), starts, ends, t0=trace.t0,
                offset_s=offset_s, drift_ppm=drift_ppm, model=model))
        gap = auto_max_gap_s(trace) if max_gap_s is None else max_gap_s
        columns, _quality = joulefarm.integrate_timestamped(
            trace.t_s, trace.power_w, starts, ends, offset_s=offset_s, drift_ppm=drift_ppm,
            model=model, max_gap_s=None if gap is None or np.isinf(gap) else gap)
        return dict(columns)
    except joulefarm.TraceError as e:
        raise TraceInputError(str(e)) from None


@dataclass(frozen=True)
class TraceSummary:
    """Whole-trace figures: the span covered, mean power over it (W) and its energy (J)."""

    samples: int
    start_s: float
    end_s: float
    rate_hz: float
    uniform: bool
    mean_power_w: float
    energy_j: float
    flags: list[str]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "start_s": self.start_s, "end_s": self.end_s,
                "duration_s": self.duration_s, "rate_hz": self.rate_hz,
                "uniform": self.uniform, "mean_power_w": self.mean_power_w,
                "energy_j": self.energy_j, "flags": self.flags}


def summarize(trace: Trace) -> TraceSummary:
    """Energy and mean power over the whole trace, with the flags the integration raised."""
    start, end = trace.start_s, trace.end_s
    if trace.uniform:
        rate = float(trace.meta["sample_rate_hz"])
    else:
        rate = (trace.samples - 1) / (end - start) if end > start else float("nan")
    result = window_energy(trace, [start], [end])
    mask = int(result["flags"][0])
    if result["coverage"][0] >= 1.0 - 1e-3 / trace.samples:
        # The window is the trace's own span; rounding (t0 + n/fs, unix-time bases near 1.7e9)
        # can leave a sliver of a sample "uncovered", which is no finding about the trace.
        mask &= ~joulefarm.FLAG_PARTIAL_COVERAGE
    return TraceSummary(
        samples=trace.samples, start_s=start, end_s=end, rate_hz=rate, uniform=trace.uniform,
        mean_power_w=float(result["mean_power_w"][0]), energy_j=float(result["energy_j"][0]),
        flags=joulefarm.flag_names(mask))
