"""Monsoon HVPM/LVPM CSV, as written by the PyPI ``monsoon`` package's ``sampleEngine``.

Header ``Time(ms),Main(mA),[USB(mA),][Aux(mA),]Main Voltage(V),[USB Voltage(V),]`` (every line
ends with a comma). Despite its name the ``Time(ms)`` column holds *seconds* since sampling
started, stamped once per USB packet (``time.time() - start`` for a whole packet of samples), so
it repeats and jumps. The meter samples at a fixed 5 kHz, so time is rebuilt as
``t0 + i / 5000``. A sample cannot be stamped before it has ended, so ``t0`` is the tightest
``stamp_i - (i + 1) / 5000`` over the file (``MonsoonCsv.t0_by_arrival``); the stamps otherwise
serve as a check for dropped samples. With numpy >= 2 the package writes values with ``repr``
(``np.float64(0.1234)``): both spellings are read. ``read_monsoon_csv`` is the one parser: the
live meter (``agent.meters.monsoon``) reads its own capture with it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from joulefarm.errors import TraceFormatError, at
from joulefarm.traces.assemble import readings_trace
from joulefarm.traces.model import TimestampedTrace, Trace
from joulefarm.traces.table import read_header

MONSOON_RATE_HZ = 5000.0
TIME_COLUMN = "Time(ms)"
# Output channel -> (current column in mA, voltage column in V), as the engine names them, in
# order of preference: Main powers the device under test; USB is the passthrough channel, used
# only when Main was disabled.
CHANNELS = {"main": ("Main(mA)", "Main Voltage(V)"), "usb": ("USB(mA)", "USB Voltage(V)")}


@dataclass(frozen=True)
class MonsoonCsv:
    """One channel of a Monsoon CSV. ``stamps_s`` is the ``Time(ms)`` column (seconds since
    the engine started, one stamp per USB packet)."""

    stamps_s: npt.NDArray[np.float64]
    current_a: npt.NDArray[np.float64]
    voltage_v: npt.NDArray[np.float64]
    channel: str

    @property
    def power_w(self) -> npt.NDArray[np.float64]:
        return self.current_a * self.voltage_v

    def t0_by_arrival(self, rate_hz: float = MONSOON_RATE_HZ) -> float:
        """Start of sample 0 on the stamps' time base: the tightest ``stamp - (i + 1)/fs``."""
        i = np.arange(1, len(self.stamps_s) + 1, dtype=np.float64)
        return float(np.min(self.stamps_s - i / rate_hz))

    def stamp_mismatch(self, rate_hz: float = MONSOON_RATE_HZ) -> str | None:
        """Why the fixed-rate time base is wrong (dropped samples), or None. Stamps come per
        packet, so the two spans agree to a packet or so, plus the host's lateness."""
        n = len(self.stamps_s)
        if n < 2:
            return None
        packet_span = float(self.stamps_s[-1] - self.stamps_s[0])
        rebuilt_span = (n - 1) / rate_hz
        if abs(packet_span - rebuilt_span) <= max(0.05 * rebuilt_span, 0.1):
            return None
        return (f"packet stamps span {packet_span:.3f} s but {n} samples at {rate_hz:g} Hz span "
                f"{rebuilt_span:.3f} s: samples were dropped")


def looks_like_monsoon_header(line: str) -> bool:
    names = {c.strip() for c in line.split(",")}
    return TIME_COLUMN in names and bool(names & {"Main(mA)", "USB(mA)", "Aux(mA)"})


def monsoon_number(cell: str) -> float:
    # numpy >= 2 repr: "np.float64(0.25)"; older numpy and Python floats: "0.25".
    cell = cell.strip()
    if cell.endswith(")") and "(" in cell:
        cell = cell[cell.index("(") + 1:-1]
    return float(cell)


def read_monsoon_csv(path: Path, channel: str | None = None) -> MonsoonCsv:
    """Parse a CSV written by ``sampleEngine.enableCSVOutput``. ``channel`` is ``main`` or
    ``usb``; None takes Main, else USB. A last line without its newline (the engine was
    still writing) is ignored."""
    source = str(path)
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] != "":
        lines = lines[:-1]  # incomplete: the writer had not finished it
    if not lines or not lines[0].strip():
        raise TraceFormatError(f"{at(source, 1)}: empty Monsoon CSV")
    header = lines[0].rstrip("\r")
    names = [c.strip() for c in header.split(",")]
    if names and names[-1] == "":
        names = names[:-1]  # every line ends with a comma
    if not looks_like_monsoon_header(header):
        raise TraceFormatError(f"{at(source, 1)}: not a Monsoon CSV header (needs "
                               f"{TIME_COLUMN!r} and a current column such as 'Main(mA)'): "
                               f"{header!r}")
    wanted = [channel] if channel else ["main", "usb"]
    chosen = next((c for c in wanted if c in CHANNELS
                   and all(col in names for col in CHANNELS[c])), None)
    if chosen is None:
        raise TraceFormatError(f"{at(source, 1)}: Monsoon header {names} has no "
                               f"{'/'.join(wanted)} channel with both current (mA) and voltage "
                               "(V) columns")
    cols = [names.index(TIME_COLUMN), *(names.index(c) for c in CHANNELS[chosen])]
    rows: list[tuple[float, float, float]] = []
    for line_no, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        cells = line.split(",")
        if cells and cells[-1].strip() == "":
            cells = cells[:-1]
        if len(cells) != len(names):
            raise TraceFormatError(f"{at(source, line_no)}: {len(cells)} cells for "
                                   f"{len(names)} columns: {line!r}")
        row = []
        for column, index in zip((TIME_COLUMN, *CHANNELS[chosen]), cols, strict=True):
            try:
                row.append(monsoon_number(cells[index]))
            except ValueError:
                raise TraceFormatError(f"{at(source, line_no)}: column '{column}': cannot read "
                                       f"{cells[index].strip()!r} as a number (or "
                                       "np.float64(...))") from None
        rows.append((row[0], row[1], row[2]))
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    return MonsoonCsv(data[:, 0].copy(), data[:, 1] / 1000.0, data[:, 2].copy(), chosen)


def read_monsoon_trace(path: Path, sample_rate_hz: float = MONSOON_RATE_HZ
                       ) -> Trace | TimestampedTrace:
    """Import a Monsoon CSV (the Main channel, else USB). ``sample_rate_hz`` is 5000 unless the
    capture was decimated (``sampleEngine.startSampling(granularity=k)`` keeps one in k)."""
    csv = read_monsoon_csv(path)
    n = len(csv.stamps_s)
    if n == 0:
        raise TraceFormatError(f"{path}: no samples after the header")
    notes = []
    mismatch = csv.stamp_mismatch(sample_rate_hz)
    if mismatch:
        notes.append(f"{mismatch} or the capture was decimated (then pass the real rate "
                     "with --sample-rate-hz)")
    names = read_header(path).names
    current_name, voltage_name = CHANNELS[csv.channel]
    others = [c for c in ("Main(mA)", "USB(mA)", "Aux(mA)") if c in names and c != current_name]
    if others:
        notes.append(f"columns {others} not imported (power is {current_name} x {voltage_name})")
    t0 = csv.t0_by_arrival(sample_rate_hz)
    meta: dict[str, Any] = {
        "meter": f"Monsoon power monitor, {current_name.split('(')[0]} channel",
        "channel": current_name.split("(")[0],
        "time_base": "seconds since the Monsoon sampleEngine started (its packet stamps)",
        "time_rebuilt": f"t0 + i/{sample_rate_hz:g}, t0 the tightest stamp - (i + 1)/rate: the "
                        f"'{TIME_COLUMN}' column holds per-USB-packet stamps in seconds, not "
                        "per-sample milliseconds",
        "packet_stamp_first_s": float(csv.stamps_s[0]),
        "packet_stamp_last_s": float(csv.stamps_s[-1]),
    }
    t = t0 + np.arange(n) / sample_rate_hz
    return readings_trace(path, "monsoon", t, csv.power_w, meta,
                          channels={"current_a": csv.current_a, "voltage_v": csv.voltage_v},
                          rate_hz=sample_rate_hz, t0_s=t0, notes=notes)
