"""Type stub for the Rust extension ``joulefarm._core`` (hand-written; keep in sync with
``rust_core/python/src/lib.rs``).

Times are float64 seconds, power watts, energy joules. Windows are on the agent clock;
``meter_t = agent_t * (1 + drift_ppm * 1e-6) + offset_s``. Sample ``i`` of a trace covers
``[t0 + i/fs, t0 + (i+1)/fs)`` on the meter clock.
"""

from typing import Literal, TypedDict, final, type_check_only

import numpy as np
import numpy.typing as npt
from typing_extensions import Self  # typing.Self is 3.11+; the agent runs on 3.10

__all__ = [
    "__version__",
    "TraceError",
    "FLAG_NO_SAMPLES",
    "FLAG_PARTIAL_COVERAGE",
    "FLAG_NAN_SAMPLES",
    "FLAG_GAP",
    "FLAG_NON_MONOTONIC",
    "FLAG_SATURATED",
    "FLAG_UNIDENTIFIABLE",
    "integrate",
    "integrate_windows",
    "integrate_windows_iv",
    "idle_power",
    "align_offset",
    "integrate_timestamped",
    "align_clock",
    "decimate_minmax",
    "fold_layers",
    "StreamingIntegrator",
    "build_profile",
]

__version__: str

FLAG_NO_SAMPLES: int
"""No valid sample in the window (or zero duration): energy and mean power are NaN."""
FLAG_PARTIAL_COVERAGE: int
"""Part of the window is not covered by valid trace; see ``coverage``."""
FLAG_NAN_SAMPLES: int
"""NaN/inf samples fell in the window and were excluded."""
FLAG_GAP: int
"""(Timestamped traces) a gap between samples exceeded ``max_gap_s``."""
FLAG_NON_MONOTONIC: int
"""(Timestamped traces) timestamps were not strictly increasing."""
FLAG_SATURATED: int
"""Samples at or above ``saturation_w`` (the meter's over-range reading) fell in the window;
they were excluded like NaN, never integrated."""
FLAG_UNIDENTIFIABLE: int
"""(``fold_layers``) the unknown cannot be separated from others (its column of the
least-squares system is a combination of theirs); its estimate is NaN."""

class TraceError(ValueError):
    """Invalid trace, window or parameter; the message names the argument and window index."""

_Power = npt.NDArray[np.float32] | npt.NDArray[np.float64] | npt.ArrayLike
_Times = npt.NDArray[np.float64] | npt.ArrayLike
_Model = Literal["hold", "linear"]

# The TypedDicts below describe the plain dicts the core returns: they exist only for type
# checkers (import them under ``if TYPE_CHECKING``).

@type_check_only
class WindowColumns(TypedDict):
    energy_j: npt.NDArray[np.float64]
    mean_power_w: npt.NDArray[np.float64]
    samples: npt.NDArray[np.int64]
    coverage: npt.NDArray[np.float64]
    flags: npt.NDArray[np.uint32]

@type_check_only
class AlignmentResult(TypedDict):
    offset_s: float
    correlation: float
    residual_w: float

def integrate(
    power: _Power,
    sample_rate_hz: float,
    starts: _Times,
    ends: _Times,
    t0: float = 0.0,
    offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    model: _Model = "hold",
    saturation_w: float | None = None,
) -> npt.NDArray[np.float64]:
    """Energy in joules of each window ``[starts[k], ends[k]]`` (agent clock).

    NaN for windows without valid samples. Use ``integrate_windows`` to see flags and coverage.
    Raises ``TraceError`` on invalid arguments (sample rate, lengths, end < start, NaN bounds,
    unknown model).
    """

def integrate_windows(
    power: _Power,
    sample_rate_hz: float,
    starts: _Times,
    ends: _Times,
    t0: float = 0.0,
    offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    model: _Model = "hold",
    saturation_w: float | None = None,
) -> WindowColumns:
    """Per-window columns: ``energy_j`` (J, over the covered part), ``mean_power_w`` (W, energy /
    covered duration), ``samples`` (valid sample intervals overlapping the window),
    ``coverage`` (0..1 of the window's duration on valid trace) and ``flags`` (``FLAG_*``).

    Samples at or above ``saturation_w`` (the meter's over-range reading; ``None``: no level)
    are excluded like NaN and flag ``FLAG_SATURATED``: a clipped reading is never integrated."""

def integrate_windows_iv(
    current_a: _Power,
    voltage_v: _Power,
    sample_rate_hz: float,
    starts: _Times,
    ends: _Times,
    t0: float = 0.0,
    offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    model: _Model = "hold",
    saturation_w: float | None = None,
) -> WindowColumns:
    """``integrate_windows`` over power = ``current_a * voltage_v`` (amperes x volts), multiplied
    sample by sample as the trace is read: no power array is allocated. Each channel may be
    float32 or float64 (no copy when contiguous); they must have the same length. A NaN in
    either channel makes the sample invalid; ``saturation_w`` applies to the product."""

def idle_power(
    power: _Power,
    sample_rate_hz: float,
    starts: _Times,
    ends: _Times,
    t0: float = 0.0,
    offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    model: _Model = "hold",
    saturation_w: float | None = None,
) -> float:
    """Mean power in watts over idle windows: total energy / total covered duration.

    NaN when no window has a valid sample (no baseline: flag it, do not use zero).
    """

def align_offset(
    power: _Power,
    sample_rate_hz: float,
    busy_starts: _Times,
    busy_ends: _Times,
    t0: float = 0.0,
    max_offset_s: float = 0.05,
) -> AlignmentResult:
    """Clock offset (``meter_t = agent_t + offset_s``, |offset_s| <= max_offset_s) that best
    aligns busy intervals (agent clock) with the trace, by normalised cross-correlation with
    the expected busy occupancy of each sample, refined below one sample.

    ``correlation`` is the Pearson correlation at that offset and ``residual_w`` the RMS of
    ``trace - (a + b * occupancy)``. Use a non-periodic busy pattern.
    """

@type_check_only
class TraceQuality(TypedDict):
    samples: int
    nan_samples: int
    saturated_samples: int
    non_monotonic: int
    gaps: int
    gap_s: float
    max_interval_s: float
    mean_interval_s: float
    start_s: float
    end_s: float

def integrate_timestamped(
    t: _Times,
    power: _Power,
    starts: _Times,
    ends: _Times,
    offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    model: _Model = "hold",
    max_gap_s: float | None = None,
    saturation_w: float | None = None,
) -> tuple[WindowColumns, TraceQuality]:
    """Per-window columns (as ``integrate_windows``) over a trace with timestamps ``t`` (meter
    clock, s), plus a whole-trace quality summary.

    Sample ``i`` is the point ``(t[i], power[i])``; the trace covers ``[t[0], t[-1]]``. "hold"
    keeps ``power[i]`` until ``t[i+1]``; "linear" joins the points. Intervals longer than
    ``max_gap_s`` are excluded and flag ``FLAG_GAP`` (``None``: no gap detection). Samples whose
    timestamp does not increase are dropped and flag ``FLAG_NON_MONOTONIC`` on windows
    containing the spot. Values at or above ``saturation_w`` are excluded like NaN and flag
    ``FLAG_SATURATED``.
    """

@type_check_only
class ClockFitResult(TypedDict):
    offset_s: float
    drift_ppm: float
    anchor_times_s: list[float]
    anchor_offsets_s: list[float]
    correlation: list[float]
    residual_w: list[float]

def align_clock(
    power: _Power,
    sample_rate_hz: float,
    busy_starts: _Times,
    busy_ends: _Times,
    t0: float = 0.0,
    max_offset_s: float = 0.05,
    split_at: float | None = None,
) -> ClockFitResult:
    """Offset and drift from two busy patterns: intervals starting before ``split_at`` (agent
    clock; default halfway through the pattern span) and the rest. Each is aligned like
    ``align_offset`` (the second within ``max_offset_s`` of the first); the two offsets at the
    patterns' centres give ``meter_t = agent_t * (1 + drift_ppm * 1e-6) + offset_s``.
    """

@type_check_only
class DecimatedColumns(TypedDict):
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    mean: npt.NDArray[np.float64]

def decimate_minmax(power: _Power, factor: int) -> DecimatedColumns:
    """Min, max and mean of each block of ``factor`` samples (the last block may be shorter),
    ignoring NaN samples; NaN for blocks without valid samples. For plotting long traces."""

@type_check_only
class FoldColumns(TypedDict):
    # One entry per layer id.
    power_w: npt.NDArray[np.float64]
    power_se_w: npt.NDArray[np.float64]
    power_ci_low_w: npt.NDArray[np.float64]
    power_ci_high_w: npt.NDArray[np.float64]
    energy_j: npt.NDArray[np.float64]
    energy_ci_low_j: npt.NDArray[np.float64]
    energy_ci_high_j: npt.NDArray[np.float64]
    mean_duration_s: npt.NDArray[np.float64]
    calls: npt.NDArray[np.int64]
    samples: npt.NDArray[np.int64]
    flags: npt.NDArray[np.uint32]
    # The power between windows (fitted, or the given value with zero standard error).
    gap_power_w: float
    gap_power_se_w: float
    gap_ci_low_w: float
    gap_ci_high_w: float
    gap_samples: int
    gap_flags: int
    # The fit.
    equations: int
    excluded_samples: int
    saturated_samples: int
    unknowns: int
    rank: int
    rank_deficient: bool
    dof: int
    residual_std_w: float
    confidence: float
    t_multiplier: float

def fold_layers(
    power: _Power,
    sample_rate_hz: float,
    starts: _Times,
    ends: _Times,
    layer_ids: npt.NDArray[np.integer] | npt.ArrayLike,
    t0: float = 0.0,
    offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    gap_power_w: float | None = None,
    n_layers: int | None = None,
    confidence: float = 0.95,
    saturation_w: float | None = None,
) -> FoldColumns:
    """Mean power of each layer from many inferences whose layers are shorter than a sample
    (equivalent-time folding).

    Window ``w`` is ``[starts[w], ends[w]]`` (agent clock) of layer ``layer_ids[w]`` (integers
    ``0 .. n_layers-1``; default ``n_layers``: largest id + 1). Each sample ``j`` of the
    integrating meter gives one equation ``y_j = sum_k p_k * O_jk + p_gap * U_j``: ``O_jk`` the
    fraction of the sample covered by layer ``k``'s windows, ``U_j`` the fraction covered by no
    window. Samples overlapping no window are not used. ``p_gap`` (idle and between-layer
    overhead) is fitted unless ``gap_power_w`` gives it. Least squares; memory O(K^2).

    Per layer: ``power_w`` and its standard error (residual variance x diag((A^T A)^-1)) and
    two-sided ``confidence`` interval (Student t, ``dof`` = equations - rank); ``energy_j`` per
    call = ``power_w x mean_duration_s`` (meter clock) with its interval. Layers that cannot be
    estimated are NaN with ``flags``: ``FLAG_NO_SAMPLES`` (never overlaps a valid sample),
    ``FLAG_UNIDENTIFIABLE`` (inseparable from other unknowns; ``rank_deficient`` is then True).
    ``FLAG_NAN_SAMPLES`` / ``FLAG_SATURATED``: invalid or saturated (``>= saturation_w``)
    samples overlapping the layer were skipped;
    ``FLAG_PARTIAL_COVERAGE``: some of its windows are not fully on the trace.
    Windows should not overlap each other. Assumes each layer draws the same mean power on every
    call and that windows fall at varied phases of the sample clock.
    """

@final
class StreamingIntegrator:
    """``integrate_windows`` over a uniform trace that arrives in chunks, with bounded memory
    (the windows plus one chunk). Same results as the one-shot call up to summation order."""

    def __new__(
        cls,
        sample_rate_hz: float,
        starts: _Times,
        ends: _Times,
        t0: float = 0.0,
        offset_s: float = 0.0,
        drift_ppm: float = 0.0,
        model: _Model = "hold",
        saturation_w: float | None = None,
    ) -> Self: ...
    def feed(self, chunk: _Power) -> None:
        """Adds the next samples (float32 or float64)."""
    @property
    def samples_seen(self) -> int:
        """Samples received so far."""
    def finish(self) -> WindowColumns:
        """Ends the trace; returns the per-window columns. Further calls raise ``TraceError``."""

def build_profile() -> Literal["release", "debug"]:
    """Cargo profile the extension was built with; benchmark figures need "release"."""
