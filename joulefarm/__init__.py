"""joulefarm: energy of ML workloads on edge devices, from power traces.

The heavy lifting is in the Rust extension ``joulefarm._core``; this module re-exports it.

Units: times are float64 seconds, power is watts, energy is joules.

Clocks: workload windows (``starts``/``ends``, busy intervals) are taken on the *agent* clock
(``time.perf_counter()`` on the device). The power trace is on the *meter* clock, and

    meter_t = agent_t * (1 + drift_ppm * 1e-6) + offset_s

A uniform trace has a start time ``t0`` (meter clock) and a sample rate ``sample_rate_hz``;
sample ``i`` represents the interval ``[t0 + i/fs, t0 + (i+1)/fs)``. With ``model="hold"`` power
is constant over each interval; with ``model="linear"`` each value sits at its interval's
midpoint and power is linear between midpoints (flat before the first and after the last).

Meters that report current and voltage channels separately: ``integrate_windows_iv`` multiplies
them per sample while integrating.

Timestamped traces (``integrate_timestamped``) are points ``(t[i], power[i])`` on the meter
clock: "hold" keeps ``power[i]`` until ``t[i+1]``, "linear" joins the points; the trace covers
``[t[0], t[-1]]``.

Per-layer energy when layers are shorter than the sample period (on-board sensors at
100 Hz - 1 kHz): ``fold_layers`` solves for each layer's mean power from many repetitions of a
whole-model inference falling at random phases of the sample clock (equivalent-time folding).

Windows that do not lie fully on valid trace are not errors: each result carries a bitmask of
``FLAG_*`` values (``flag_names`` spells them out) and a ``coverage`` fraction. A window with no
valid samples has NaN energy: invalid, not zero. Every integration takes an optional
``saturation_w``: samples at or above it (a meter's over-range reading) are excluded like NaN and
flag ``FLAG_SATURATED``, never silently integrated. Bad arguments raise ``TraceError``
(a ``ValueError``).
"""

from typing import TYPE_CHECKING, Any

# The Rust core (and numpy with it) loads at the first use of one of its names, not at
# ``import joulefarm``: the library's light modules (errors, enums) and the ``joulefarm``
# command's --help stay fast. Type checkers see the names directly.
if TYPE_CHECKING:
    from joulefarm._core import (
        FLAG_GAP,
        FLAG_NAN_SAMPLES,
        FLAG_NO_SAMPLES,
        FLAG_NON_MONOTONIC,
        FLAG_PARTIAL_COVERAGE,
        FLAG_SATURATED,
        FLAG_UNIDENTIFIABLE,
        StreamingIntegrator,
        TraceError,
        __version__,
        align_clock,
        align_offset,
        build_profile,
        decimate_minmax,
        fold_layers,
        idle_power,
        integrate,
        integrate_timestamped,
        integrate_windows,
        integrate_windows_iv,
    )

__all__ = [
    "FLAG_GAP",
    "FLAG_NAN_SAMPLES",
    "FLAG_NO_SAMPLES",
    "FLAG_NON_MONOTONIC",
    "FLAG_PARTIAL_COVERAGE",
    "FLAG_SATURATED",
    "FLAG_UNIDENTIFIABLE",
    "StreamingIntegrator",
    "TraceError",
    "__version__",
    "align_clock",
    "align_offset",
    "build_profile",
    "decimate_minmax",
    "flag_names",
    "fold_layers",
    "idle_power",
    "integrate",
    "integrate_timestamped",
    "integrate_windows",
    "integrate_windows_iv",
]
_CORE_NAMES = frozenset(__all__) - {"flag_names"}


def __getattr__(name: str) -> Any:
    if name in _CORE_NAMES:
        from joulefarm import _core

        return getattr(_core, name)
    raise AttributeError(f"module 'joulefarm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_CORE_NAMES})


# Bit order; names match the constants without the FLAG_ prefix, in lower case.
_FLAG_NAMES: tuple[str, ...] = ("no_samples", "partial_coverage", "nan_samples", "gap",
                                "non_monotonic", "saturated", "unidentifiable")


def flag_names(mask: int) -> list[str]:
    """Names of the flags set in ``mask``, in bit order, e.g. ``["partial_coverage"]``.

    Bits that joulefarm does not define are reported as ``"unknown_0x..."`` rather than dropped.
    """
    mask = int(mask)
    if mask < 0:
        raise ValueError(f"flag mask must be >= 0, got {mask}")
    from joulefarm import _core

    bits = [(getattr(_core, f"FLAG_{name.upper()}"), name) for name in _FLAG_NAMES]
    names = [name for bit, name in bits if mask & bit]
    unknown = mask & ~sum(bit for bit, _ in bits)
    if unknown:
        names.append(f"unknown_{unknown:#x}")
    return names
