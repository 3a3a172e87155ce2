"""SPEC PTDaemon sample logs (``spl.txt``), as kept by MLPerf Power runs.

One line per analyzer reading (1 Hz)::

    Time,12-28-2020 15:21:14.682,Watts,95.34,Volts,229.48,Amps,0.6153,PF,0.6754,Mark,run_1

Fields come as ``key,value`` pairs; Time and Watts are required, Volts, Amps, PF and Mark are
kept when present. The time is the analyzer host's wall clock with millisecond resolution and
no zone. MLPerf's own tools read it as month-day-year, while some logs are day-month-year; the
order is worked out from the whole file (a first field above 12 can only be a day) and falls
back to month-day-year, the PTDaemon default, when no date tells. The clock is taken as UTC
unless ``tz_offset_s`` says otherwise (MLPerf's ``server.json`` records it as ``timezone``:
seconds to add to the logged local time to get UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError, TraceInputError, at
from joulefarm.traces.imported import Trace, build_trace

_DATE = re.compile(r"(\d{1,2})-(\d{1,2})-(\d{4}) (\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")
_NUMERIC_KEYS = {"Watts": "power_w", "Volts": "voltage_v", "Amps": "current_a",
                 "PF": "power_factor"}
DATE_ORDERS = ("auto", "mdy", "dmy")


def looks_like_spl(first_line: str) -> bool:
    return first_line.startswith("Time,") and ",Watts," in first_line


def _pairs(fields: list[str]) -> dict[str, str]:
    """First value of each known key; multichannel logs repeat keys per channel."""
    out: dict[str, str] = {}
    for i, key in enumerate(fields[:-1]):
        if key in ("Time", "Mark", *_NUMERIC_KEYS) and key not in out:
            out[key] = fields[i + 1]
    return out


def _date_order(path: Path, dates: list[tuple[int, re.Match[str]]], forced: str) -> str:
    if forced != "auto":
        return forced
    first_over_12 = next((ln for ln, m in dates if int(m.group(1)) > 12), None)
    second_over_12 = next((ln for ln, m in dates if int(m.group(2)) > 12), None)
    if first_over_12 is not None and second_over_12 is not None:
        raise TraceFormatError(
            f"{path}: dates are day-first on line {first_over_12} but month-first on line "
            f"{second_over_12}")
    return "dmy" if first_over_12 is not None else "mdy"


def read_spl_trace(path: Path, tz_offset_s: float = 0.0, date_order: str = "auto") -> Trace:
    """Import a PTDaemon ``spl.txt``. Times become unix UTC seconds:
    the logged wall-clock time read as UTC, plus ``tz_offset_s``."""
    if date_order not in DATE_ORDERS:
        raise TraceInputError(f"date order must be one of {DATE_ORDERS}, got {date_order!r}")
    dates: list[tuple[int, re.Match[str]]] = []
    columns: dict[str, list[float]] = {key: [] for key in _NUMERIC_KEYS.values()}
    marks: list[str] = []
    present: set[str] = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = [x.strip() for x in line.rstrip("\r\n").split(",")]
            pairs = _pairs(fields)
            if fields[0] != "Time" or "Time" not in pairs or "Watts" not in pairs:
                raise TraceFormatError(f"{at(path, lineno)}: not a PTDaemon sample line "
                                       "(expected 'Time,<date>,Watts,<W>,...')")
            match = _DATE.match(pairs["Time"])
            if match is None:
                raise TraceFormatError(f"{at(path, lineno)}: cannot read time "
                                       f"{pairs['Time']!r} (expected MM-DD-YYYY HH:MM:SS.fff)")
            dates.append((lineno, match))
            for key, column in _NUMERIC_KEYS.items():
                text = pairs.get(key)
                if text is not None:
                    present.add(column)
                try:
                    columns[column].append(float(text) if text is not None else np.nan)
                except ValueError:
                    raise TraceFormatError(
                        f"{at(path, lineno)}: {key} value {text!r} is not a number") from None
            marks.append(pairs.get("Mark", ""))
    if not dates:
        raise TraceFormatError(f"{path}: no PTDaemon sample lines")

    order = _date_order(path, dates, date_order)
    t = np.empty(len(dates))
    for k, (lineno, m) in enumerate(dates):
        a, b, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        month, day = (a, b) if order == "mdy" else (b, a)
        seconds = float(m.group(6))
        try:
            stamp = datetime(year, month, day, int(m.group(4)), int(m.group(5)), tzinfo=UTC)
        except ValueError as e:
            raise TraceFormatError(f"{at(path, lineno)}: invalid date {m.group(0)!r} read as "
                                   f"{order}: {e}") from None
        t[k] = stamp.timestamp() + seconds + tz_offset_s

    extra: dict[str, np.ndarray] = {c: np.asarray(columns[c]) for c in
                                    ("current_a", "voltage_v", "power_factor") if c in present}
    if any(marks):
        extra["mark"] = np.asarray(marks, dtype=object)
    meta: dict[str, Any] = {
        "meter": "power analyzer via SPEC PTDaemon (spl.txt)",
        "time_base": "unix UTC seconds",
        "time_zone_assumption": (f"logged wall-clock time read as UTC, plus tz_offset_s="
                                 f"{tz_offset_s:g} s"),
        "date_order": order + (" (assumed: no date in the file tells)"
                               if date_order == "auto" and order == "mdy"
                               and all(int(m.group(2)) <= 12 for _, m in dates) else ""),
        "timestamp_meaning": "time PTDaemon logged the reading; the analyzer value is its mean "
                             "over the update interval ending about then (not shifted)",
    }
    return build_trace(path, "spl", t, np.asarray(columns["power_w"]), meta, extra)
