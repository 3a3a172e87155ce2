"""The common in-memory trace: timestamps, power, optional current/voltage, and metadata.

``t_s[i]`` is where sample ``i``'s interval starts on the trace's time base. A *uniform* trace
also carries ``t0`` and ``sample_rate_hz`` in its metadata: sample ``i`` then represents
``[t0 + i/fs, t0 + (i+1)/fs)`` (the project-wide convention), and energy is computed from those
two numbers rather than from ``t_s``. A non-uniform trace is a list of points, each held until
the next one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from joulefarm.errors import TraceFormatError

# Timestamps within this fraction of one period of a straight line count as uniform: meters
# that log at a fixed rate stamp with a few ms of jitter (PTDaemon at 1 Hz), which changes
# nothing about which interval a sample covers.
UNIFORM_TOLERANCE = 0.01

TRACE_FORMAT_VERSION = 1

# Columns the Parquet file may hold besides t_s and power_w, with their units.
COLUMN_UNITS: dict[str, str] = {
    "t_s": "s",
    "power_w": "W",
    "current_a": "A",
    "voltage_v": "V",
    "power_factor": "1",
    "mark": "",
}


@dataclass
class Trace:
    """A power trace on one time base. ``extra`` holds optional columns (``current_a``,
    ``voltage_v``, ``power_factor``, ``mark``) of the same length as ``t_s``."""

    t_s: npt.NDArray[np.float64]
    power_w: npt.NDArray[np.floating[Any]]
    meta: dict[str, Any]
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.t_s) != len(self.power_w):
            raise ValueError(f"t_s has {len(self.t_s)} samples but power_w {len(self.power_w)}")
        for name, col in self.extra.items():
            if len(col) != len(self.t_s):
                raise ValueError(f"column {name} has {len(col)} rows, expected {len(self.t_s)}")

    @property
    def samples(self) -> int:
        return len(self.t_s)

    @property
    def uniform(self) -> bool:
        return bool(self.meta.get("uniform", False))

    @property
    def sample_rate_hz(self) -> float | None:
        rate = self.meta.get("sample_rate_hz")
        return float(rate) if rate is not None else None

    @property
    def t0(self) -> float:
        return float(self.meta.get("t0", self.t_s[0] if len(self.t_s) else 0.0))

    @property
    def start_s(self) -> float:
        return self.t0 if self.uniform else float(self.t_s[0])

    @property
    def end_s(self) -> float:
        """End of the covered span: the last interval's end (uniform) or the last point."""
        if self.uniform:
            return self.t0 + self.samples / float(self.meta["sample_rate_hz"])
        return float(self.t_s[-1])


def uniform_fit(t: npt.NDArray[np.float64],
                tolerance: float = UNIFORM_TOLERANCE) -> tuple[float, float] | None:
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
    deviation = np.abs(t - (t0 + np.arange(n) / rate))
    if float(deviation.max()) > tolerance / rate:
        return None
    return rate, t0


def time_meta(t: npt.NDArray[np.float64], rate_hz: float | None = None,
              t0: float | None = None) -> dict[str, Any]:
    """``uniform``/``sample_rate_hz``/``t0`` metadata, given (a meter's fixed rate) or detected."""
    if rate_hz is not None:
        return {"uniform": True, "sample_rate_hz": float(rate_hz),
                "t0": float(t[0] if t0 is None else t0)}
    fit = uniform_fit(t)
    if fit is None:
        return {"uniform": False}
    return {"uniform": True, "sample_rate_hz": fit[0], "t0": fit[1]}


def source_meta(path: Path, source_format: str) -> dict[str, Any]:
    """Provenance every importer records: format, file name and content hash, and the fact that
    an imported trace is a measurement (``simulated`` is False), unlike the demo's sim meter."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {
        "trace_format_version": TRACE_FORMAT_VERSION,
        "source_format": source_format,
        "source_file": path.name,
        "source_sha256": digest.hexdigest(),
        "simulated": False,
    }


def build_trace(path: Path, source_format: str, t_s: np.ndarray, power_w: np.ndarray,
                meta: dict[str, Any], extra: dict[str, np.ndarray] | None = None,
                rate_hz: float | None = None, notes: list[str] | None = None) -> Trace:
    """Assemble a trace with the common metadata (provenance, units, time layout, notes)."""
    extra = extra or {}
    t = np.ascontiguousarray(t_s, dtype=np.float64)
    if len(t) == 0:
        raise TraceFormatError(f"{path}: no samples")
    full: dict[str, Any] = source_meta(path, source_format)
    full["units"] = {c: COLUMN_UNITS[c] for c in ("t_s", "power_w", *extra)}
    full.update(time_meta(t, rate_hz))
    full.update(meta)
    full["samples"] = len(t)
    non_increasing = int(np.count_nonzero(np.diff(t) <= 0))
    notes = list(notes or [])
    if non_increasing:
        notes.append(f"{non_increasing} timestamps do not increase; energy windows over them "
                     "are flagged non_monotonic")
    full["notes"] = notes
    return Trace(t, power_w, full, extra)
