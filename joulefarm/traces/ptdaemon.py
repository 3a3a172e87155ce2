"""SPEC PTDaemon sample logs (``spl.txt``), as kept by MLPerf Power runs.

One line per analyzer reading (1 Hz)::

    Time,12-28-2020 15:21:14.682,Watts,95.34,Volts,229.48,Amps,0.6153,PF,0.6754,Mark,run_1

Fields come as ``key,value`` pairs; Time and Watts are required, Volts, Amps, PF and Mark are
kept when present. A multichannel log (``...,Mark,m,Ch1,Watts,...,Ch2,...``) starts with the
sum over the channels, which is what is read. PTDaemon writes -1 for a reading it could not
take: those samples are NaN (integrated as missing, flagged), never -1 W.

A log written with ``-l`` holds more than samples: ``Time,<date>,NOTICE,...``,
``Time,<date>,ERROR,...`` and ``WARNING`` lines, and continuation text without a prefix
(``Buffer was ...``). As in MLPerf's power-dev (``ptd_client_server/lib/server.py`` keeps only
lines matching ``Time,<date>,Watts,...``), such lines are skipped; how many, and the first of
each level, go into the trace's notes. The time is the analyzer host's wall clock with millisecond
resolution and
no zone. MLPerf's own tools read it as month-day-year, while some logs are day-month-year; the
order is worked out from the whole file (a first field above 12 can only be a day) and falls
back to month-day-year, the PTDaemon default, when no date tells. The clock is taken as UTC
unless ``tz_offset_s`` says otherwise (MLPerf's ``server.json`` records it as ``timezone``:
seconds to add to the logged local time to get UTC).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError, TraceInputError, at
from joulefarm.traces.assemble import readings_trace
from joulefarm.traces.model import TimestampedTrace, Trace

_DATE = re.compile(r"(\d{1,2})-(\d{1,2})-(\d{4}) (\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)$")
_NUMERIC_KEYS = {"Watts": "power_w", "Volts": "voltage_v", "Amps": "current_a",
                 "PF": "power_factor"}
DATE_ORDERS = ("auto", "mdy", "dmy")


_MESSAGE_LEVELS = ("NOTICE", "ERROR", "WARNING", "INFO")
INVALID_READING = -1.0
"""What PTDaemon writes for a reading it could not take."""


def looks_like_spl(first_line: str) -> bool:
    """A PTDaemon log starts with a ``Time,<date>,`` line: a sample, or a message of ``-l``."""
    fields = first_line.split(",")
    return (len(fields) >= 3 and fields[0] == "Time"
            and (fields[2] == "Watts" or fields[2].strip() in _MESSAGE_LEVELS))


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


def read_spl_trace(path: Path, tz_offset_s: float = 0.0, date_order: str = "auto"
                   ) -> Trace | TimestampedTrace:
    """Import a PTDaemon ``spl.txt``. Times become unix UTC seconds:
    the logged wall-clock time read as UTC, plus ``tz_offset_s``."""
    if date_order not in DATE_ORDERS:
        raise TraceInputError(f"date order must be one of {DATE_ORDERS}, got {date_order!r}")
    dates: list[tuple[int, re.Match[str]]] = []
    columns: dict[str, list[float]] = {key: [] for key in _NUMERIC_KEYS.values()}
    marks: list[str] = []
    present: set[str] = set()
    skipped: dict[str, tuple[int, int, str]] = {}  # kind -> (count, first line, its text)
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            fields = [x.strip() for x in text.split(",")]
            if fields[0] != "Time" or len(fields) < 4 or fields[2] != "Watts":
                kind = (fields[2] if fields[0] == "Time" and len(fields) > 2
                        and fields[2] in _MESSAGE_LEVELS else "other text")
                count, first, first_text = skipped.get(kind, (0, lineno, text))
                skipped[kind] = (count + 1, first, first_text)
                continue
            pairs = _pairs(fields)
            match = _DATE.match(pairs["Time"])
            if match is None:
                raise TraceFormatError(f"{at(path, lineno)}: cannot read time "
                                       f"{pairs['Time']!r} (expected MM-DD-YYYY HH:MM:SS.fff)")
            dates.append((lineno, match))
            for key, column in _NUMERIC_KEYS.items():
                value = pairs.get(key)
                if value is not None:
                    present.add(column)
                try:
                    number = float(value) if value is not None else np.nan
                except ValueError:
                    raise TraceFormatError(
                        f"{at(path, lineno)}: {key} value {value!r} is not a number") from None
                columns[column].append(np.nan if number == INVALID_READING else number)
            marks.append(pairs.get("Mark", ""))
    if not dates:
        raise TraceFormatError(f"{path}: no PTDaemon sample lines (expected "
                               "'Time,<date>,Watts,<W>,...')")
    notes = [f"skipped {count} {kind} line(s), the first on line {first}: {text[:120]!r}"
             for kind, (count, first, text) in skipped.items()]
    invalid = int(np.count_nonzero(np.isnan(columns["power_w"])))
    if invalid:
        notes.append(f"{invalid} reading(s) of -1 W (PTDaemon's invalid reading) are NaN: "
                     "windows over them are flagged nan_samples")

    order = _date_order(path, dates, date_order)
    t = np.empty(len(dates))
    for k, (lineno, m) in enumerate(dates):
        a, b, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        month, day = (a, b) if order == "mdy" else (b, a)
        seconds = float(m.group(6))
        try:
            stamp = datetime(year, month, day, int(m.group(4)), int(m.group(5)),
                             tzinfo=timezone.utc)
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
    return readings_trace(path, "spl", t, np.asarray(columns["power_w"]), meta, channels=extra,
                          notes=notes)
