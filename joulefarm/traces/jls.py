"""Joulescope JLS v2 recordings, read with PyPI ``pyjls`` (an optional dependency).

A JLS file holds fixed-rate signals per source (instrument): ``current`` (A), ``voltage`` (V),
``power`` (W), GPI bits... Power is taken from the ``power`` signal when recorded, else as
current x voltage. Digital input signals named ``gpi[k]``/``in[k]`` become the trace's GPI bits
(bit k = input k) when they run at the power signal's rate. Sample ids are 0-based in
``pyjls.Reader``; the file's UTC time map dates
sample 0.

Time base: seconds since the first sample. The UTC time of that sample is kept in the metadata
(``utc_t0_unix``) instead of being added to every timestamp: at 1 MS/s a unix time in float64
(2.4e-7 s resolution near 1.7e9) would smear a quarter of a sample.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces.assemble import readings_trace
from joulefarm.traces.model import TimestampedTrace, Trace

JLS_MAGIC = b"jlsfmt\r\n"
_ROLES = {"power": ("power", "W"), "current": ("current", "A"), "voltage": ("voltage", "V")}


def _pyjls() -> Any:
    try:
        import pyjls
    except ImportError:
        raise TraceInputError("reading JLS files needs the 'pyjls' package "
                              "(pip install 'pyjls>=0.17')") from None
    return pyjls


def _signals_by_role(signals: list[Any]) -> dict[str, Any]:
    """power/current/voltage signal of one source, matched by name, else by units."""
    out: dict[str, Any] = {}
    for role, (name, units) in _ROLES.items():
        match = next((s for s in signals if (s.name or "").lower() == name), None)
        match = match or next((s for s in signals if (s.units or "") == units), None)
        if match is not None:
            out[role] = match
    return out


def read_jls_trace(path: Path) -> Trace | TimestampedTrace:
    """Import the first source of a JLS v2 file that has power, or current and voltage."""
    pyjls = _pyjls()
    try:
        reader = pyjls.Reader(str(path))
    except Exception as e:  # pyjls raises RuntimeError with a code on corrupt or v1 files
        raise TraceFormatError(f"{path}: cannot open as JLS v2: {e}") from None
    with reader as r:
        fsr = [s for s in r.signals.values() if s.signal_type == pyjls.SignalType.FSR]
        chosen: dict[str, Any] | None = None
        for source_id in sorted({s.source_id for s in fsr}):
            roles = _signals_by_role([s for s in fsr if s.source_id == source_id])
            if "power" in roles or {"current", "voltage"} <= roles.keys():
                chosen = roles
                break
        if chosen is None:
            names = [f"{s.name} ({s.units})" for s in fsr]
            raise TraceFormatError(f"{path}: no source with a power signal or current and "
                                   f"voltage signals (signals: {names})")
        rates = {float(s.sample_rate) for s in chosen.values()}
        if len(rates) != 1:
            raise TraceFormatError(f"{path}: signals {list(chosen)} have different sample "
                                   f"rates {sorted(rates)}")
        rate = rates.pop()
        n = min(int(s.length) for s in chosen.values())
        if n == 0:
            raise TraceFormatError(f"{path}: the signals hold no samples")
        data = {role: np.asarray(r.fsr(s.signal_id, 0, n), dtype=np.float32)
                for role, s in chosen.items()}
        first_source = next(iter(chosen.values())).source_id
        gpi = _gpi_bits(r, [s for s in fsr if s.source_id == first_source], rate, n)
        first = next(iter(chosen.values()))
        # Without UTC entries pyjls reports time 0 (its 2018-01-01 epoch): no date known.
        stamp = r.sample_id_to_timestamp(first.signal_id, 0)
        utc_t0 = float(pyjls.time64.as_timestamp(stamp)) if stamp else None
        source = r.sources[first.source_id]

    notes = []
    lengths = {role: int(s.length) for role, s in chosen.items()}
    if len(set(lengths.values())) > 1:
        notes.append(f"signal lengths differ {lengths}; kept the first {n} samples of each")
    if "power" in data:
        power = data["power"]
        derivation = f"signal '{chosen['power'].name}'"
    else:
        power = data["current"] * data["voltage"]
        derivation = f"'{chosen['current'].name}' x '{chosen['voltage'].name}'"
    extra = {key: data[role] for role, key in (("current", "current_a"), ("voltage", "voltage_v"))
             if role in data}
    meta: dict[str, Any] = {
        "meter": " ".join(x for x in (source.vendor, source.model, source.serial_number) if x)
                 or source.name,
        "jls_source": source.name,
        "jls_signals": {role: f"{s.name} ({s.units})" for role, s in chosen.items()},
        "power_from": derivation,
        "time_base": "seconds since the first sample",
        "utc_t0_unix": utc_t0,
    }
    t = np.arange(n, dtype=np.float64) / rate
    return readings_trace(path, "jls", t, power, meta, channels=extra, rate_hz=rate, gpi=gpi,
                          notes=notes, source=f"{path.name} (jls, {meta['meter']})")


_GPI_SIGNAL = re.compile(r"^(?:gpi|in)\[?(\d)\]?$", re.IGNORECASE)


def _gpi_bits(reader: Any, signals: list[Any], rate: float, n: int) -> np.ndarray | None:
    """The source's digital inputs as one uint8 per sample (bit k = input k), or None."""
    gpi = None
    for s in signals:
        match = _GPI_SIGNAL.match(s.name or "")
        if not match or float(s.sample_rate) != rate or int(s.length) < n:
            continue
        raw = np.asarray(reader.fsr(s.signal_id, 0, n))
        # pyjls returns 1-bit signals packed eight to a byte.
        bits = np.unpackbits(raw, bitorder="little")[:n] if len(raw) < n else raw[:n]
        gpi = np.zeros(n, np.uint8) if gpi is None else gpi
        gpi |= (bits.astype(np.uint8) & 1) << int(match.group(1))
    return gpi
