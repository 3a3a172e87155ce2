"""Turning a file's readings into a trace, the same way for every reader.

A reader hands over one time stamp and one power value per reading. Which trace type that
becomes, and how much time each reading covers, is decided here once:

* a meter with a known fixed rate (Monsoon, JLS, tegrastats anchored on its interval) gives a
  uniform ``Trace`` at that rate;
* otherwise stamps that lie within ``UNIFORM_TOLERANCE`` of a period of a straight line give a
  uniform ``Trace`` at the fitted rate (the stamps are kept for the record);
* otherwise the readings become a ``TimestampedTrace``, each held until the next, and the last
  one held for the median interval, by a closing point.

So every reading covers one interval in every case: a 1 Hz log whose stamps jitter by 11 ms and
one whose stamps jitter by 10 ms have the same energy, last sample included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError
from joulefarm.traces.model import TimestampedTrace, Trace, uniform_fit

TRACE_FORMAT_VERSION = 1

COLUMN_UNITS: dict[str, str] = {
    "t_s": "s",
    "power_w": "W",
    "current_a": "A",
    "voltage_v": "V",
    "power_factor": "1",
    "mark": "",
    "gpi": "bits",
}
"""Columns a trace file may hold, with their units."""


def source_meta(path: Path, source_format: str, *, simulated: bool = False) -> dict[str, Any]:
    """Provenance every reader records: format, file name and content hash, and whether the
    power came from a model (``simulated``; false for every meter log)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {
        "trace_format_version": TRACE_FORMAT_VERSION,
        "source_format": source_format,
        "source_file": path.name,
        "source_sha256": digest.hexdigest(),
        "simulated": simulated,
    }


def readings_trace(path: Path, source_format: str, t_s: np.ndarray, power_w: np.ndarray,
                   meta: Mapping[str, Any], *, channels: Mapping[str, np.ndarray] | None = None,
                   rate_hz: float | None = None, t0_s: float | None = None,
                   points: bool = False, gpi: np.ndarray | None = None,
                   notes: list[str] | None = None, simulated: bool = False,
                   source: str = "") -> Trace | TimestampedTrace:
    """The trace of a file's readings (see the module docstring), with the common metadata:
    provenance, units, time layout, notes. ``rate_hz`` (and ``t0_s``, default the first
    stamp) declare a fixed-rate meter; ``points`` keeps the readings as points even when
    their stamps are regular."""
    channels = dict(channels or {})
    t = np.ascontiguousarray(t_s, dtype=np.float64)
    power = np.asarray(power_w)
    n = len(t)
    if n == 0:
        raise TraceFormatError(f"{path}: no samples")
    full: dict[str, Any] = source_meta(path, source_format, simulated=simulated)
    full["units"] = {c: COLUMN_UNITS[c] for c in ("t_s", "power_w", *channels)}
    full.update(meta)
    full["samples"] = n
    notes = list(notes or [])
    non_increasing = int(np.count_nonzero(np.diff(t) <= 0))
    if non_increasing:
        notes.append(f"{non_increasing} timestamps do not increase; energy windows over them "
                     "are flagged non_monotonic")
    if rate_hz is not None:
        fit: tuple[float, float] | None = (rate_hz, float(t[0]) if t0_s is None else t0_s)
    else:
        fit = None if points else uniform_fit(t)
    source = source or f"{path.name} ({source_format})"
    if fit is not None:
        rate, t0 = fit
        full.update(uniform=True, sample_rate_hz=float(rate), t0=t0)
        full["notes"] = notes
        stamps = None if rate_hz is not None else t
        return Trace(power, t0, float(rate), channels=MappingProxyType(channels), gpi=gpi,
                     source=source, meta=MappingProxyType(full),
                     stamps_s=stamps)
    steps = np.diff(t)
    positive = steps[steps > 0]
    hold = float(np.median(positive)) if len(positive) else 0.0
    full.update(uniform=False, last_reading_held_s=hold)
    if n > 1 and hold > 0:
        notes.append(f"not uniform: each reading holds until the next, the last for the median "
                     f"interval ({hold:.6g} s)")
    full["notes"] = notes
    closed_t = np.append(t, t[-1] + hold)
    closed_p = np.append(np.asarray(power, dtype=np.float64), float(power[-1]))
    closed = {name: np.append(col, col[-1:]) for name, col in channels.items()}
    return TimestampedTrace(closed_t, closed_p, clock="meter",
                            channels=MappingProxyType(closed), meta=MappingProxyType(full))

