"""Power traces: the trace model, every reader of meter logs, and energy over windows.

``read_trace(path)`` reads any supported file (format detected from its content, else its
extension) into a ``Trace`` (uniform) or a ``TimestampedTrace`` (readings held until the next);
``write_trace``/``read_trace_parquet`` store and load the common Parquet form;
``window_energy`` integrates windows over any trace with the Rust core, and ``summarize`` the
whole of it. The agent's replay meter reads recordings with the same readers, so a file means
the same on a device and on the controller.

Formats: ``csv`` (generic time + power or current + voltage columns, optional sidecar JSON),
``monsoon`` (the ``monsoon`` package's CSV), ``spl`` (SPEC PTDaemon / MLPerf Power),
``tegrastats`` (NVIDIA Jetson logs, JetPack 4 to 7), ``jls`` (Joulescope, needs ``pyjls``),
``npz`` (numpy), ``parquet`` (this package's own, and the results store's per-run traces of
min/max/mean buckets; needs ``pyarrow``). Traces read from meter logs are measurements: their
``meta["simulated"]`` is false unless the file says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces.energy import TraceSummary, summarize, window_energy
from joulefarm.traces.jls import JLS_MAGIC
from joulefarm.traces.model import (
    AnyTrace,
    CounterTrace,
    TimestampedTrace,
    Trace,
)
from joulefarm.traces.npz import NPZ_MAGIC
from joulefarm.traces.parquet import PARQUET_MAGIC, read_trace_parquet, write_trace

FORMATS = ("csv", "monsoon", "spl", "tegrastats", "jls", "npz", "parquet")
_EXTENSIONS = {".jls": "jls", ".parquet": "parquet", ".pq": "parquet", ".csv": "csv",
               ".npz": "npz"}


@dataclass(frozen=True)
class ReadOptions:
    """Reader settings; each applies to the formats in ``APPLIES_TO``."""

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
    """One of ``FORMATS``, from the file's first bytes, else its extension."""
    from joulefarm.traces.csv_generic import recognise
    from joulefarm.traces.monsoon import looks_like_monsoon_header
    from joulefarm.traces.ptdaemon import looks_like_spl
    from joulefarm.traces.table import read_header
    from joulefarm.traces.tegrastats import looks_like_tegrastats

    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as e:
        raise TraceInputError(f"{path}: cannot read: {e.strerror}") from None
    if head.startswith(JLS_MAGIC):
        return "jls"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(NPZ_MAGIC):
        return "npz"
    if b"\0" not in head:
        line = _first_line(head.decode("utf-8", errors="replace"))
        if looks_like_spl(line):
            return "spl"
        if looks_like_tegrastats(line):
            return "tegrastats"
        if looks_like_monsoon_header(line):
            return "monsoon"
        if line:
            found = recognise(read_header(path))
            if "time" in found and ("power" in found or {"current", "voltage"} <= found.keys()):
                return "csv"
    by_extension = _EXTENSIONS.get(path.suffix.lower())
    if by_extension is not None:
        return by_extension
    raise TraceFormatError(f"{path}: cannot tell the trace format from its content; pass "
                           f"--format ({', '.join(FORMATS)})")


def read_trace(path: Path, fmt: str = "auto", options: ReadOptions | None = None
               ) -> Trace | TimestampedTrace:
    """Read a trace file of any format. ``fmt`` forces the format (``auto`` detects it)."""
    options = options or ReadOptions()
    path = Path(path)
    if not path.is_file():
        raise TraceInputError(f"{path}: no such file")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise TraceInputError(f"unknown format {fmt!r} (known: auto, {', '.join(FORMATS)})")
    defaults = ReadOptions()
    for f in fields(ReadOptions):
        if (getattr(options, f.name) != getattr(defaults, f.name)
                and fmt not in APPLIES_TO[f.name]):
            option = "--" + f.name.replace("_", "-")
            raise TraceInputError(f"{option} does not apply to {fmt} files (only to "
                                  f"{', '.join(APPLIES_TO[f.name])})")
    # Each reader is imported when its format is read: optional dependencies stay optional.
    if fmt == "csv":
        from joulefarm.traces.csv_generic import read_csv_trace

        return read_csv_trace(path, options.time_unit, options.power_unit)
    if fmt == "monsoon":
        from joulefarm.traces.monsoon import MONSOON_RATE_HZ, read_monsoon_trace

        return read_monsoon_trace(path, options.sample_rate_hz or MONSOON_RATE_HZ)
    if fmt == "spl":
        from joulefarm.traces.ptdaemon import read_spl_trace

        return read_spl_trace(path, options.tz_offset_s, options.date_order)
    if fmt == "tegrastats":
        from joulefarm.traces.tegrastats import read_tegrastats_trace

        return read_tegrastats_trace(path, options.interval_ms, options.rail,
                                     options.tz_offset_s)
    if fmt == "npz":
        from joulefarm.traces.npz import read_npz_trace

        return read_npz_trace(path)
    if fmt == "parquet":
        return read_trace_parquet(path)
    from joulefarm.traces.jls import read_jls_trace

    return read_jls_trace(path)


def import_trace(path: Path, fmt: str = "auto", options: ReadOptions | None = None
                 ) -> Trace | TimestampedTrace:
    """Read a meter log to store it as a Parquet trace (``joulefarm trace import``): any format
    but Parquet itself."""
    if fmt == "auto" and Path(path).is_file() and detect_format(Path(path)) == "parquet":
        raise TraceInputError(f"{path}: already a Parquet trace; nothing to import")
    return read_trace(path, fmt, options)


__all__ = [
    "APPLIES_TO",
    "FORMATS",
    "AnyTrace",
    "CounterTrace",
    "ReadOptions",
    "TimestampedTrace",
    "Trace",
    "TraceSummary",
    "detect_format",
    "import_trace",
    "read_trace",
    "read_trace_parquet",
    "summarize",
    "window_energy",
    "write_trace",
]
