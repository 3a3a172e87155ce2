"""Generic CSV traces: a time column and a power column, or current and voltage columns.

Column names are matched loosely because every logger spells them differently: ``time``,
``t``, ``timestamp``, ``time_ms``, ``Time (s)``; ``power``, ``power_mw``, ``watts``,
``Power [mW]``; ``current_ma``, ``voltage_v``, ``I (A)``... A unit in the name (suffix,
parentheses or brackets) sets the scale; without one, time is in seconds and power in watts.
Time cells may also be ISO 8601 date-times, read as UTC unless they carry an offset. A ``gpi``
column (integers) holds an instrument's digital inputs, bit k = input k.

A sidecar ``<file>.json`` may say how to read the rows: ``{"sample_rate_hz": fs, "t0_s": t0}``
(a fixed-rate meter: uniform at exactly ``fs``), ``{"uniform": false}`` (points, even when the
stamps look regular), ``"simulated": true`` (the power came from a model) and
``"source": "..."`` (what recorded it).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces.assemble import readings_trace
from joulefarm.traces.model import TimestampedTrace, Trace
from joulefarm.traces.table import CsvHeader, read_columns, read_header

# Scale factors to SI, per quantity. Keys are lower case; "µ" is folded to "u".
TIME_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
              "ms": 1e-3, "msec": 1e-3, "millis": 1e-3, "milliseconds": 1e-3,
              "us": 1e-6, "usec": 1e-6, "microseconds": 1e-6, "ns": 1e-9, "nanoseconds": 1e-9}
POWER_UNITS = {"w": 1.0, "watt": 1.0, "watts": 1.0, "kw": 1e3, "mw": 1e-3, "milliwatts": 1e-3,
               "uw": 1e-6, "microwatts": 1e-6}
CURRENT_UNITS = {"a": 1.0, "amp": 1.0, "amps": 1.0, "ampere": 1.0, "amperes": 1.0,
                 "ma": 1e-3, "milliamps": 1e-3, "ua": 1e-6, "microamps": 1e-6, "na": 1e-9}
VOLTAGE_UNITS = {"v": 1.0, "volt": 1.0, "volts": 1.0, "mv": 1e-3, "millivolts": 1e-3,
                 "uv": 1e-6}

_QUANTITY_NAMES = {
    "time": {"time", "t", "timestamp", "ts", "elapsed", "time_since_start"},
    "power": {"power", "p", "pwr"},
    "current": {"current", "i", "curr"},
    "voltage": {"voltage", "v", "u"},
}
_UNITS = {"time": TIME_UNITS, "power": POWER_UNITS, "current": CURRENT_UNITS,
          "voltage": VOLTAGE_UNITS}
# A bare unit as the whole column name ("watts", "mW", "mA") says which quantity it is.
_UNIT_AS_NAME = {"watts": "power", "watt": "power", "w": "power", "mw": "power", "uw": "power",
                 "amps": "current", "ma": "current", "ua": "current", "volts": "voltage",
                 "mv": "voltage"}


@dataclass(frozen=True)
class Column:
    """A recognised header cell: which quantity it holds, its unit and field index."""

    quantity: str
    unit: str | None
    index: int
    name: str


def _split_name(cell: str) -> tuple[str, str | None]:
    """``"Power (mW)"`` -> ``("power", "mw")``; ``"time_ms"`` -> ``("time", "ms")``."""
    text = cell.strip().lower().replace("µ", "u").replace("μ", "u")
    bracket = re.fullmatch(r"(.*?)\s*[(\[]\s*([a-z]+)\s*[)\]]", text)
    if bracket:
        return bracket.group(1).strip().replace(" ", "_"), bracket.group(2)
    text = text.replace(" ", "_")
    if "_" in text:
        base, suffix = text.rsplit("_", 1)
        if any(suffix in units for units in _UNITS.values()):
            return base, suffix
    return text, None


def recognise(header: CsvHeader) -> dict[str, Column]:
    """The first column of each quantity found in the header (time, power, current, voltage)."""
    found: dict[str, Column] = {}
    for index, cell in enumerate(header.names):
        base, unit = _split_name(cell)
        quantity = next((q for q, names in _QUANTITY_NAMES.items() if base in names), None)
        if quantity is None and unit is None and base in _UNIT_AS_NAME:
            quantity, unit = _UNIT_AS_NAME[base], base
        if quantity is None or quantity in found:
            continue
        if unit is not None and unit not in _UNITS[quantity]:
            continue  # "time_zone", "power_state": a suffix that is not a unit of this quantity
        found[quantity] = Column(quantity, unit, index, cell)
    return found


def to_si(values: np.ndarray, scale: float) -> np.ndarray:
    """``values * scale``, dividing by the integer inverse for milli/micro/nano scales so that
    ``700 mW`` reads as exactly ``0.7 W`` (``700 * 1e-3`` is ``0.7000000000000001``)."""
    if scale >= 1.0:
        return values * scale if scale != 1.0 else values
    return values / float(round(1.0 / scale))


def _scale(quantity: str, unit: str | None, override: str | None, what: str) -> float:
    unit = (override or unit or "").lower().replace("µ", "u") or None
    if unit is None:
        return 1.0
    try:
        return _UNITS[quantity][unit]
    except KeyError:
        known = ", ".join(sorted(_UNITS[quantity]))
        raise TraceInputError(f"unknown {what} unit {unit!r} (known: {known})") from None


def _parse_datetime(cell: str) -> float:
    text = cell.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def _first_time_cell(path: Path, header: CsvHeader, index: int) -> str | None:
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=header.delimiter)
        for row in reader:
            if reader.line_num <= header.line or not row or row[0].lstrip().startswith("#"):
                continue
            return row[index] if index < len(row) else None
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_csv_trace(path: Path, time_unit: str | None = None,
                   power_unit: str | None = None) -> Trace | TimestampedTrace:
    """Import a generic CSV trace. ``time_unit``/``power_unit`` override the units implied by the
    header (e.g. ``"ms"``, ``"mW"``)."""
    header = read_header(path)
    columns = recognise(header)
    if "time" not in columns:
        raise TraceFormatError(
            f"{path}:{header.line}: no time column in header {header.names} (expected e.g. "
            "time, t, timestamp, time_s, time_ms)")
    has_power = "power" in columns
    if not has_power and not {"current", "voltage"} <= columns.keys():
        raise TraceFormatError(
            f"{path}:{header.line}: header {header.names} has neither a power column (power, "
            "power_w, power_mw, watts) nor both current and voltage columns (current_a, "
            "current_ma, voltage_v, voltage_mv)")
    if power_unit is not None and not has_power:
        raise TraceInputError(f"{path}: --power-unit given but the file has no power column "
                              "(power is computed from current and voltage)")

    time_col = columns["time"]
    first = _first_time_cell(path, header, time_col.index)
    dated = first is not None and not _is_number(first)
    converters = {"time": (_parse_datetime, "an ISO 8601 date-time")} if dated else {}
    wanted = {q: c.index for q, c in columns.items()}
    data = read_columns(path, header, wanted, converters)

    meta: dict[str, Any] = {"columns_used": {q: c.name for q, c in columns.items()}}
    if dated:
        if time_unit is not None:
            raise TraceInputError(f"{path}: --time-unit does not apply to date-time cells")
        t = data["time"]
        meta["time_base"] = "unix UTC seconds (ISO date-times; those without an offset read " \
                            "as UTC)"
    else:
        t_scale = _scale("time", time_col.unit, time_unit, "time")
        t = to_si(data["time"], t_scale)
        meta["time_base"] = f"as in column '{time_col.name}', in seconds (x{t_scale:g})"

    extra: dict[str, np.ndarray] = {}
    for quantity, key in (("current", "current_a"), ("voltage", "voltage_v")):
        if quantity in columns:
            col = columns[quantity]
            extra[key] = to_si(data[quantity], _scale(quantity, col.unit, None, quantity))
    if has_power:
        col = columns["power"]
        power = to_si(data["power"], _scale("power", col.unit, power_unit, "power"))
    else:
        power = extra["current_a"] * extra["voltage_v"]
    meta["meter"] = "generic CSV power log"
    side = _sidecar(path)
    gpi = _gpi_column(path, header)
    rate = side.get("sample_rate_hz")
    if rate is not None and not (isinstance(rate, int | float) and rate > 0):
        raise TraceFormatError(f"{path}.json: sample_rate_hz must be a number > 0, got {rate!r}")
    t0 = side.get("t0_s")
    if t0 is not None and not isinstance(t0, int | float):
        raise TraceFormatError(f"{path}.json: t0_s must be a number, got {t0!r}")
    if side:
        meta["sidecar"] = f"{path.name}.json"
    return readings_trace(path, "csv", t, power, meta, channels=extra,
                          rate_hz=None if rate is None else float(rate),
                          t0_s=None if t0 is None else float(t0),
                          points=side.get("uniform") is False, gpi=gpi,
                          simulated=side.get("simulated") is True,
                          source=str(side.get("source") or ""))


_SIDECAR_KEYS = ("sample_rate_hz", "t0_s", "uniform", "simulated", "source")


def _sidecar(path: Path) -> dict[str, Any]:
    """The ``<file>.json`` next to a CSV, checked; empty when there is none."""
    side = path.with_name(path.name + ".json")
    if not side.exists():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TraceFormatError(f"{side}: unreadable sidecar: {e}") from None
    if not isinstance(data, dict):
        raise TraceFormatError(f"{side}: the sidecar must be a JSON object")
    unknown = sorted(set(data) - set(_SIDECAR_KEYS))
    if unknown:
        raise TraceFormatError(f"{side}: unknown key(s) {unknown} (known: "
                               f"{', '.join(_SIDECAR_KEYS)})")
    return data


def _gpi_column(path: Path, header: CsvHeader) -> np.ndarray | None:
    if "gpi" not in header.names:
        return None
    data = read_columns(path, header, {"gpi": header.names.index("gpi")})
    return data["gpi"].astype(np.uint8)
