"""``.npz`` traces (``numpy.savez``): the format to use on devices, which need nothing but numpy.

Arrays: ``power_w`` (W), and either ``sample_rate_hz`` [+ ``t0_s``] for a uniform trace (sample
``i`` covers ``[t0 + i/fs, t0 + (i+1)/fs)``) or ``t_s`` (s) stamps of readings (uniform when
within 1 % of a period of a straight line, as every reader decides); optional ``gpi`` (uint8 per
sample, bit k = input k) and ``simulated`` (bool: the power came from a model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError
from joulefarm.traces.assemble import readings_trace
from joulefarm.traces.model import TimestampedTrace, Trace

NPZ_MAGIC = b"PK\x03\x04"


def read_npz_trace(path: Path) -> Trace | TimestampedTrace:
    """Read an ``.npz`` trace (see the module docstring)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as e:
        raise TraceFormatError(f"{path}: cannot read as .npz: {e}") from None
    if "power_w" not in arrays:
        raise TraceFormatError(f"{path}: no 'power_w' array (arrays: {sorted(arrays)})")
    power = arrays["power_w"].astype(np.float64).ravel()
    if len(power) == 0:
        raise TraceFormatError(f"{path}: power_w is empty")
    gpi = arrays.get("gpi")
    if gpi is not None:
        if gpi.shape != power.shape:
            raise TraceFormatError(f"{path}: gpi has shape {gpi.shape}, expected "
                                   f"({len(power)},)")
        gpi = gpi.astype(np.uint8)
    simulated = bool(arrays["simulated"]) if "simulated" in arrays else False
    meta: dict[str, Any] = {"meter": "numpy .npz trace"}
    if "sample_rate_hz" in arrays:
        rate = float(arrays["sample_rate_hz"])
        if not rate > 0:
            raise TraceFormatError(f"{path}: sample_rate_hz must be > 0, got {rate}")
        t0 = float(arrays["t0_s"]) if "t0_s" in arrays else (
            float(arrays["t_s"].ravel()[0]) if "t_s" in arrays else 0.0)
        meta["time_base"] = "seconds, from t0_s and sample_rate_hz"
        t = t0 + np.arange(len(power)) / rate
        return readings_trace(path, "npz", t, power, meta, rate_hz=rate, t0_s=t0, gpi=gpi,
                              simulated=simulated)
    if "t_s" not in arrays:
        raise TraceFormatError(f"{path}: needs 't_s' stamps or 'sample_rate_hz' (arrays: "
                               f"{sorted(arrays)})")
    t = arrays["t_s"].astype(np.float64).ravel()
    if len(t) != len(power):
        raise TraceFormatError(f"{path}: t_s has {len(t)} values but power_w {len(power)}")
    if len(t) < 2:
        raise TraceFormatError(f"{path}: a trace of stamped readings needs at least 2, found "
                               f"{len(t)}")
    if not np.all(np.diff(t) > 0):
        bad = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise TraceFormatError(f"{path}: t_s must increase (sample {bad}: {t[bad]!r} after "
                               f"{t[bad - 1]!r})")
    meta["time_base"] = "seconds, from t_s"
    return readings_trace(path, "npz", t, power, meta, gpi=gpi, simulated=simulated)
