"""Monsoon HVPM/LVPM CSV, as written by the PyPI ``monsoon`` package's ``sampleEngine``.

Header ``Time(ms),Main(mA),[USB(mA),][Aux(mA),]Main Voltage(V),[USB Voltage(V),]`` (every line
ends with a comma). Despite its name the ``Time(ms)`` column holds *seconds* since sampling
started, stamped once per USB packet (``time.time() - start`` for a whole packet of samples), so
it repeats and jumps. The meter samples at a fixed 5 kHz, so time is rebuilt as
``t0 + i / 5000`` with ``t0`` the first stamp; the stamps only serve as a sanity check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from agent.meters.monsoon import monsoon_number
from controller.traces.errors import TraceFormatError
from controller.traces.model import Trace, build_trace
from controller.traces.table import CsvHeader, read_columns, read_header

MONSOON_RATE_HZ = 5000.0
TIME_COLUMN = "Time(ms)"
# (current column, voltage column) per output channel, in order of preference: Main powers the
# device under test; USB is the passthrough channel, used only when Main was disabled.
CHANNELS = (("Main(mA)", "Main Voltage(V)"), ("USB(mA)", "USB Voltage(V)"))


def looks_like_monsoon(header: CsvHeader) -> bool:
    names = set(header.names)
    return TIME_COLUMN in names and bool(names & {"Main(mA)", "USB(mA)", "Aux(mA)"})


def read_monsoon_trace(path: Path, sample_rate_hz: float = MONSOON_RATE_HZ) -> Trace:
    """Import a Monsoon CSV. ``sample_rate_hz`` is 5000 unless the capture was decimated
    (``sampleEngine.startSampling(granularity=k)`` keeps one sample in k)."""
    header = read_header(path)
    names = header.names
    if TIME_COLUMN not in names:
        raise TraceFormatError(f"{path}:{header.line}: no '{TIME_COLUMN}' column in Monsoon "
                               f"header {names}")
    channel = next(((c, v) for c, v in CHANNELS if c in names and v in names), None)
    if channel is None:
        raise TraceFormatError(
            f"{path}:{header.line}: Monsoon header {names} has no channel with both current and "
            "voltage (Main(mA) + Main Voltage(V), or USB(mA) + USB Voltage(V))")
    current_name, voltage_name = channel
    # The monsoon package writes numpy reprs ("np.float64(0.25)") under numpy >= 2.
    plain_or_repr = (monsoon_number, "a number or np.float64(...)")
    data = read_columns(path, header, {"stamp": names.index(TIME_COLUMN),
                                       "current": names.index(current_name),
                                       "voltage": names.index(voltage_name)},
                        converters={k: plain_or_repr for k in ("stamp", "current", "voltage")})
    stamps = data["stamp"]
    n = len(stamps)
    if n == 0:
        raise TraceFormatError(f"{path}: no samples after the header")
    t0 = float(stamps[0])
    t = t0 + np.arange(n) / sample_rate_hz

    notes = []
    packet_span = float(stamps[-1] - stamps[0])
    rebuilt_span = (n - 1) / sample_rate_hz
    # Stamps come per packet, so the two spans agree to a packet or so; a large mismatch means
    # dropped samples or a decimated capture, and the rebuilt time base is then wrong.
    if abs(packet_span - rebuilt_span) > max(0.05 * rebuilt_span, 0.1):
        notes.append(
            f"packet stamps span {packet_span:.3f} s but {n} samples at {sample_rate_hz:g} Hz "
            f"span {rebuilt_span:.3f} s: samples were dropped or the capture was decimated "
            "(then pass the real rate with --sample-rate-hz)")
    others = [c for c in ("Main(mA)", "USB(mA)", "Aux(mA)") if c in names and c != current_name]
    if others:
        notes.append(f"columns {others} not imported (power is {current_name} x {voltage_name})")

    current_a = data["current"] / 1000.0
    voltage_v = data["voltage"]
    meta: dict[str, Any] = {
        "meter": f"Monsoon power monitor, {current_name.split('(')[0]} channel",
        "channel": current_name.split("(")[0],
        "time_base": "seconds since the Monsoon sampleEngine started (first packet stamp)",
        "time_rebuilt": f"t0 + i/{sample_rate_hz:g}: the '{TIME_COLUMN}' column holds per-USB-"
                        "packet stamps in seconds, not per-sample milliseconds",
        "packet_stamp_first_s": t0,
        "packet_stamp_last_s": float(stamps[-1]),
    }
    return build_trace(path, "monsoon", t, current_a * voltage_v, meta,
                       {"current_a": current_a, "voltage_v": voltage_v},
                       rate_hz=sample_rate_hz, notes=notes)
