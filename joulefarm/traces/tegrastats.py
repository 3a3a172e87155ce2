"""NVIDIA Jetson ``tegrastats`` logs: one line per ``--interval`` ms.

Power rails appear as ``NAME current/average``: JetPack 5/6 ``VDD_IN 5832mW/5852mW``, JetPack 4
``POM_5V_IN 4520/4680`` (no unit, still mW), JetPack 7.2 (L4T r39.2) three numbers,
``VDD_GPU_SOC 5139mW/5139mW/5139mW`` (current/average/and a third, at least as large: the
maximum, as far as public logs show). Readings can be negative at idle (Thor ``VDD_GPU
-392mW/-392mW``). Only the first (instantaneous) number is read: the others summarise the
whole run of tegrastats, useless for windows. ``parse_line`` is the one parser: the live meter
(``agent.meters.tegrastats``) and this log reader both use it, and both take the total from
``joulefarm.traces.rails.total_rails``.

Lines may start with a date (``MM-DD-YYYY HH:MM:SS`` from ``--logfile``, or ISO
``YYYY-MM-DD HH:MM:SS[.fff]`` from wrappers). Whole-second dates are too coarse to time 1 s
samples directly, so times are, in order of preference: ``a + i * interval`` when every line
falls in its date's second that way (``a`` placed mid-way in the range that allows it); a
least-squares line ``a + i*b`` through the dates (``b`` absorbs tegrastats running slower than
its nominal interval over long logs); else the dates themselves, mid-second (gaps, pauses).
Without dates, time is the line index times ``interval_ms``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from joulefarm.errors import MeterParseError, TraceFormatError, TraceInputError, at
from joulefarm.traces.assemble import readings_trace
from joulefarm.traces.model import TimestampedTrace, Trace
from joulefarm.traces.rails import (
    SUM,
    UNCONNECTED,
    input_rail,
    total_description,
    total_rails,
)

DEFAULT_INTERVAL_MS = 1000.0

# NAME current[mW]/average[mW][/maximum[mW]], followed by a space or the line end. The lookahead
# keeps out "RAM 2468/7620MB" and "IRAM 0/252kB(lfb ...)"; the lookbehind keeps out tails such as
# "cpu@47C" or "0%@729". Rails are upper case; so are all of tegrastats' other fields that carry a
# slash, which the unit guard excludes.
_NUMBER = r"-?\d+(?:\.\d+)?"
_RAIL = re.compile(
    rf"(?<![\w@%/.-])([A-Z][A-Z0-9_]*) ({_NUMBER})(mW)?((?:/{_NUMBER}(?:mW)?){{1,2}})(?=\s|$)")
_DATES = (
    (re.compile(r"^(\d{2})-(\d{2})-(\d{4}) (\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)\s"), "mdy"),
    (re.compile(r"^\[?(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)\]?\s"), "ymd"),
)


@dataclass(frozen=True)
class TegrastatsLine:
    """The power rails of one tegrastats line: instantaneous watts per rail, in line order
    (unconnected ``NC`` channels left out), whether the numbers had no unit (JetPack 4), and
    the leading date as (unix seconds read as UTC, has a fractional part), if any."""

    rails_w: dict[str, float]
    unitless: bool
    date: tuple[float, bool] | None


def parse_line(line: str, line_no: int = 0, source: str = "tegrastats") -> TegrastatsLine:
    """The rails of a tegrastats line; ``MeterParseError`` names the line when it has none or
    mixes mW and bare numbers."""
    rails: dict[str, float] = {}
    unitless = False
    for m in _RAIL.finditer(line):
        name, first, unit, rest = m.group(1), m.group(2), m.group(3), m.group(4)
        units = {unit is not None, *(part.endswith("mW") for part in rest.split("/")[1:])}
        if len(units) > 1:
            raise MeterParseError(source, line_no, line.rstrip(),
                                  f"rail {name} mixes mW and bare numbers")
        unitless = unitless or unit is None
        if name not in UNCONNECTED:
            rails[name] = float(first) / 1000.0
    if not rails:
        raise MeterParseError(source, line_no, line.rstrip(),
                              "no power rail (expected e.g. 'VDD_IN 5832mW/5852mW' or "
                              "'POM_5V_IN 4520/4680')")
    return TegrastatsLine(rails, unitless, _line_date(line))


def looks_like_tegrastats(first_line: str) -> bool:
    rails = {m.group(1) for m in _RAIL.finditer(first_line)}
    return bool(rails) and (input_rail(sorted(rails)) is not None or " RAM " in f" {first_line}")


def _line_date(line: str) -> tuple[float, bool] | None:
    """(unix seconds read as UTC, has a fractional part) of a leading date, or None."""
    for pattern, order in _DATES:
        m = pattern.match(line)
        if m is None:
            continue
        g = [m.group(k) for k in range(1, 7)]
        year, month, day = (int(g[2]), int(g[0]), int(g[1])) if order == "mdy" else (
            int(g[0]), int(g[1]), int(g[2]))
        base = datetime(year, month, day, int(g[3]), int(g[4]), tzinfo=timezone.utc).timestamp()
        return base + float(g[5]), "." in g[5]
    return None


def _anchor(stamps: np.ndarray, period: float, resolution: float) -> float | None:
    """Start time ``a`` such that every ``a + i*period`` falls in its line's date bucket
    ``[stamp, stamp + resolution)`` (give or take a tenth of a period of jitter), or None."""
    i = np.arange(len(stamps))
    slack = 0.1 * period
    low = float(np.max(stamps - i * period)) - slack
    high = float(np.min(stamps + resolution - i * period)) + slack
    return (low + high) / 2 if low <= high else None


def _fit_dates(stamps: np.ndarray, resolution: float) -> tuple[float, float] | None:
    """(t0, period) of a least-squares line through the dates when they all lie within their
    quantisation band of it: tegrastats runs a little slower than its nominal interval."""
    if len(stamps) < 2:
        return None
    i = np.arange(len(stamps))
    rel = stamps + resolution / 2 - stamps[0]  # relative: unix seconds would cost precision
    period, t0 = np.polyfit(i, rel, 1)
    if period <= 0:
        return None
    if float(np.max(np.abs(rel - (t0 + period * i)))) > resolution / 2 + 0.25 * period:
        return None
    rate = 1.0 / period
    if abs(rate - round(rate)) <= 1e-6 * rate:
        period = 1.0 / round(rate)
    return float(stamps[0]) + float(t0), float(period)


def _dated_times(stamps: np.ndarray, resolution: float, interval_ms: float | None,
                 meta: dict[str, Any], notes: list[str]) -> tuple[np.ndarray, float | None]:
    """Times of dated lines (see the module docstring) and the rate when they are uniform."""
    n = len(stamps)
    nominal = (interval_ms or DEFAULT_INTERVAL_MS) / 1000.0
    anchor = _anchor(stamps, nominal, resolution) if n > 1 else None
    if anchor is not None:
        meta["time_from_dates"] = (f"first date + i x {nominal * 1e3:g} ms (the interval), "
                                   "placed within the dates' whole seconds")
        return anchor + np.arange(n) * nominal, 1.0 / nominal
    fit = _fit_dates(stamps, resolution)
    if fit is not None:
        t0, period = fit
        meta["time_from_dates"] = f"line fitted through the dates: period {period * 1e3:.4g} ms"
        if abs(period - nominal) > 0.1 * nominal:
            notes.append(f"dates give a period of {period * 1e3:.4g} ms, not the "
                         f"{nominal * 1e3:g} ms interval (--interval-ms)")
        return t0 + np.arange(n) * period, 1.0 / period
    meta["time_from_dates"] = "the dates themselves (they fit no single period)" + (
        ", shifted +0.5 s to the middle of their second" if resolution else "")
    return stamps + resolution / 2, None


def read_tegrastats_trace(path: Path, interval_ms: float | None = None, rail: str = "auto",
                          tz_offset_s: float = 0.0) -> Trace | TimestampedTrace:
    """Import a tegrastats log. ``rail``: ``auto`` (the total of ``rails.total_rails``),
    ``sum`` (every connected rail), or a rail name. Dated lines give unix UTC seconds (the
    device's wall clock read as UTC, plus ``tz_offset_s``); undated lines give
    ``index * interval_ms``."""
    if interval_ms is not None and interval_ms <= 0:
        raise TraceInputError(f"--interval-ms must be > 0, got {interval_ms:g}")
    chosen: tuple[str, ...] | None = None
    first_rails: tuple[str, ...] = ()
    unitless = False
    power_w: list[float] = []
    dates: list[tuple[float, bool] | None] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                parsed = parse_line(line, lineno, str(path))
            except MeterParseError as e:
                raise TraceFormatError(f"{at(path, lineno)}: {e.problem}; is this a "
                                       "tegrastats log?") from None
            rails = parsed.rails_w
            unitless = unitless or parsed.unitless
            if chosen is None:
                first_rails = tuple(rails)
                if rail not in ("auto", SUM) and rail not in first_rails:
                    raise TraceInputError(f"{at(path, lineno)}: no rail {rail!r}; rails on "
                                          f"this line: {', '.join(first_rails)}")
                chosen = total_rails(first_rails, None if rail == "auto" else rail)
            missing = [r for r in chosen if r not in rails]
            if missing:
                raise TraceFormatError(f"{at(path, lineno)}: rail {missing[0]} missing (present "
                                       f"on the first line)")
            power_w.append(sum(rails[r] for r in chosen))
            if dates and (parsed.date is None) != (dates[0] is None):
                raise TraceFormatError(f"{at(path, lineno)}: "
                                       + ("no date, unlike the first line" if parsed.date is None
                                          else "a date, unlike the first line"))
            dates.append(parsed.date)
    if chosen is None:
        raise TraceFormatError(f"{path}: no tegrastats lines")

    notes: list[str] = []
    meta: dict[str, Any] = {
        "meter": "NVIDIA tegrastats (on-board monitors; only Thor's VIN includes the carrier "
                 "board)",
        "rail": chosen[0] if len(chosen) == 1 else "sum of " + "+".join(chosen),
        "total": total_description(first_rails, chosen),
        "rail_units": "mW (JetPack 4 form without unit)" if unitless else "mW",
        "value_read": "first number of each rail (instantaneous), not the running average",
    }
    n = len(power_w)
    rate_hz: float | None = None
    if dates[0] is None:
        step = (interval_ms or DEFAULT_INTERVAL_MS) / 1000.0
        t = np.arange(n) * step
        rate_hz = 1.0 / step
        meta["time_base"] = f"seconds since the first line (line index x {step * 1000:g} ms)"
    else:
        stamps = np.array([d[0] for d in dates if d is not None]) + tz_offset_s
        # Whole-second dates are truncated: the print happened somewhere in that second.
        resolution = 0.0 if all(d is not None and d[1] for d in dates) else 1.0
        meta["time_base"] = "unix UTC seconds (line dates, device wall clock read as UTC plus " \
                            f"tz_offset_s={tz_offset_s:g})"
        t, rate_hz = _dated_times(stamps, resolution, interval_ms, meta, notes)
    return readings_trace(path, "tegrastats", t, np.asarray(power_w), meta, rate_hz=rate_hz,
                          notes=notes)
