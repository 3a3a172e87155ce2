"""Energy of windows over any trace, by the Rust core: the one place that chooses how.

Uniform traces go to ``joulefarm.integrate_windows`` (sample ``i`` covers
``[t0 + i/fs, t0 + (i+1)/fs)``); every other trace, as points held until the next
(``to_timestamped``), to ``joulefarm.integrate_timestamped``. The agent integrates its layer
windows here and ``joulefarm trace energy`` integrates a user's windows here, so a trace has one
definition of energy wherever it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

import joulefarm
from joulefarm.errors import TraceInputError
from joulefarm.traces.model import AnyTrace, Trace

if TYPE_CHECKING:
    from joulefarm._core import WindowColumns

GAP_FACTOR = 3.0
"""Points further apart than this many sampling periods are a gap (a sensor or a logger that
stopped): excluded and flagged, never bridged by holding the last value. The period is the
rate the sampler aimed at when the trace knows it, else the median interval."""


def auto_max_gap_s(trace: AnyTrace) -> float | None:
    """``GAP_FACTOR`` sampling periods of a point trace (None for uniform or 1-point traces)."""
    if trace.uniform or trace.samples < 2:
        return None
    target = getattr(trace, "target_rate_hz", 0.0)
    if target:
        return GAP_FACTOR / float(target)
    steps = np.diff(np.asarray(trace.t_s, dtype=np.float64))
    steps = steps[steps > 0]
    return float(GAP_FACTOR * np.median(steps)) if len(steps) else None


def window_energy(trace: AnyTrace, starts: npt.ArrayLike, ends: npt.ArrayLike, *,
                  model: str = "hold", offset_s: float = 0.0, drift_ppm: float = 0.0,
                  max_gap_s: float | None = None) -> dict[str, np.ndarray]:
    """Per-window ``energy_j``, ``mean_power_w``, ``samples``, ``coverage``, ``flags``.

    Windows are on the trace's time base shifted by the clock model
    ``trace_t = window_t * (1 + drift_ppm * 1e-6) + offset_s``. ``max_gap_s`` applies to point
    traces (None: ``auto_max_gap_s``; ``inf``: no gap detection).
    """
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    signal = _signal_model(model)
    try:
        if isinstance(trace, Trace):
            return _as_dict(joulefarm.integrate_windows(
                trace.power_w, float(trace.sample_rate_hz), starts, ends, t0=trace.t0_s,
                offset_s=offset_s, drift_ppm=drift_ppm, model=signal))
        points = trace.to_timestamped()
        gap = auto_max_gap_s(trace) if max_gap_s is None else max_gap_s
        columns, _quality = joulefarm.integrate_timestamped(
            points.t_s, points.power_w, starts, ends, offset_s=offset_s, drift_ppm=drift_ppm,
            model=signal, max_gap_s=None if gap is None or np.isinf(gap) else gap)
        return _as_dict(columns)
    except joulefarm.TraceError as e:
        raise TraceInputError(str(e)) from None


def _signal_model(model: str) -> Literal["hold", "linear"]:
    """``model`` as the core's literal type; the core's own message for any other name."""
    if model == "hold":
        return "hold"
    if model == "linear":
        return "linear"
    raise TraceInputError(f'unknown signal model "{model}" (expected "hold" or "linear")')


def _as_dict(columns: WindowColumns) -> dict[str, np.ndarray]:
    """The core's columns as a plain dict, in the core's order."""
    return {"energy_j": columns["energy_j"], "mean_power_w": columns["mean_power_w"],
            "samples": columns["samples"], "coverage": columns["coverage"],
            "flags": columns["flags"]}


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


def summarize(trace: AnyTrace) -> TraceSummary:
    """Energy and mean power over the whole trace, with the flags the integration raised."""
    points = trace.to_timestamped()
    start = float(points.t_s[0]) if points.samples else 0.0
    end = float(points.t_s[-1]) if points.samples else 0.0
    meta = getattr(trace, "meta", {})
    samples = int(meta.get("samples", trace.samples))  # a log's readings, not its closing point
    if isinstance(trace, Trace):
        rate = float(trace.sample_rate_hz)
    else:
        rate = samples / (end - start) if end > start else float("nan")
    result = window_energy(trace, [start], [end])
    mask = int(result["flags"][0])
    if result["coverage"][0] >= 1.0 - 1e-3 / max(samples, 1):
        # The window is the trace's own span; rounding (t0 + n/fs, unix-time bases near 1.7e9)
        # can leave a sliver of a sample "uncovered", which is no finding about the trace.
        mask &= ~joulefarm.FLAG_PARTIAL_COVERAGE
    return TraceSummary(
        samples=samples, start_s=start, end_s=end, rate_hz=rate, uniform=trace.uniform,
        mean_power_w=float(result["mean_power_w"][0]), energy_j=float(result["energy_j"][0]),
        flags=joulefarm.flag_names(mask))
