"""Power-trace files: importers for meter logs, the common Parquet trace, and window energy.

``import_trace(path)`` reads a meter log (format detected from content, else extension) into a
``Trace``; ``write_trace``/``read_trace_parquet`` store it; ``load_trace`` accepts either;
``window_energy`` integrates windows over it with the Rust core. Imported traces are
measurements: their metadata says ``simulated: false``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces.csv_generic import read_csv_trace, recognise
from joulefarm.traces.energy import TraceSummary, summarize, window_energy
from joulefarm.traces.imported import Trace
from joulefarm.traces.jls import looks_like_jls, read_jls_trace
from joulefarm.traces.monsoon import MONSOON_RATE_HZ, looks_like_monsoon, read_monsoon_trace
from joulefarm.traces.parquet import PARQUET_MAGIC, read_trace_parquet, write_trace
from joulefarm.traces.ptdaemon import looks_like_spl, read_spl_trace
from joulefarm.traces.table import read_header
from joulefarm.traces.tegrastats import looks_like_tegrastats, read_tegrastats_trace

FORMATS = ("csv", "monsoon", "spl", "tegrastats", "jls")
_EXTENSIONS = {".jls": "jls", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class ImportOptions:
    """Importer settings; each applies to the formats in ``APPLIES_TO``."""

    time_unit: str | None = None
    power_unit: str | None = None
    sample_rate_hz: float | None = None
    interval_ms: float | None = None
    rail: str = "auto"
    tz_offset_s: float = 0.0
    date_order: str = "auto"


APPLIES_TO: dict[str, tuple[str, ...]] = {
    "time_unit": ("csv",), "power_unit": ("csv",), "sample_rate_hz": ("monsoon",),
    "interval_ms": ("tegrastats",), "rail": ("tegrastats",),
    "tz_offset_s": ("spl", "tegrastats"), "date_order": ("spl",),
}


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line
    return ""


def detect_format(path: Path) -> str:
    """One of ``FORMATS`` or ``"parquet"``, from the file's first bytes, else its extension."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as e:
        raise TraceInputError(f"{path}: cannot read: {e.strerror}") from None
    if looks_like_jls(head):
        return "jls"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if b"\0" not in head:
        line = _first_line(head.decode("utf-8", errors="replace"))
        if looks_like_spl(line):
            return "spl"
        if looks_like_tegrastats(line):
            return "tegrastats"
        if line:
            header = read_header(path)
            if looks_like_monsoon(header):
                return "monsoon"
            found = recognise(header)
            if "time" in found and ("power" in found or {"current", "voltage"} <= found.keys()):
                return "csv"
    by_extension = _EXTENSIONS.get(path.suffix.lower())
    if by_extension is not None:
        return by_extension
    raise TraceFormatError(f"{path}: cannot tell the trace format from its content; pass "
                           f"--format ({', '.join(FORMATS)})")


def import_trace(path: Path, fmt: str = "auto", options: ImportOptions | None = None) -> Trace:
    """Read a meter log into a ``Trace``. ``fmt`` forces the format (``auto`` detects it)."""
    options = options or ImportOptions()
    path = Path(path)
    if not path.is_file():
        raise TraceInputError(f"{path}: no such file")
    if fmt == "auto":
        fmt = detect_format(path)
        if fmt == "parquet":
            raise TraceInputError(f"{path}: already a Parquet trace; nothing to import")
    if fmt not in FORMATS:
        raise TraceInputError(f"unknown format {fmt!r} (known: auto, {', '.join(FORMATS)})")
    defaults = ImportOptions()
    for f in fields(ImportOptions):
        if getattr(options, f.name) != getattr(defaults, f.name) and fmt not in APPLIES_TO[
                f.name]:
            option = "--" + f.name.replace("_", "-")
            raise TraceInputError(f"{option} does not apply to {fmt} files (only to "
                                  f"{', '.join(APPLIES_TO[f.name])})")
    if fmt == "csv":
        return read_csv_trace(path, options.time_unit, options.power_unit)
    if fmt == "monsoon":
        return read_monsoon_trace(path, options.sample_rate_hz or MONSOON_RATE_HZ)
    if fmt == "spl":
        return read_spl_trace(path, options.tz_offset_s, options.date_order)
    if fmt == "tegrastats":
        return read_tegrastats_trace(path, options.interval_ms, options.rail,
                                     options.tz_offset_s)
    return read_jls_trace(path)


def load_trace(path: Path, fmt: str = "auto", options: ImportOptions | None = None) -> Trace:
    """A Parquet trace as stored, or any importable meter log imported on the fly."""
    path = Path(path)
    if fmt == "auto" and path.is_file() and detect_format(path) == "parquet":
        return read_trace_parquet(path)
    return import_trace(path, fmt, options)


__all__ = [
    "FORMATS",
    "ImportOptions",
    "Trace",
    "TraceFormatError",
    "TraceInputError",
    "TraceSummary",
    "detect_format",
    "import_trace",
    "load_trace",
    "read_trace_parquet",
    "summarize",
    "window_energy",
    "write_trace",
]
