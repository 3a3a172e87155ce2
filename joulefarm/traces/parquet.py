"""The on-disk trace: one Parquet file, columns ``t_s``, ``power_w`` and optional ``current_a``,
``voltage_v``, ``power_factor``, ``mark``, ``gpi``; the trace metadata as Parquet key/value
pairs.

Each metadata value is stored JSON-encoded, so numbers, booleans and nested values (``units``,
``notes``) read back exactly as written. Each column also carries its unit as field metadata.
A uniform trace keeps ``uniform``, ``sample_rate_hz`` and ``t0`` in the metadata; a point trace
stores its points as they are, closing point included. pyarrow is imported only here, and only
when a Parquet file is read or written: devices have no pyarrow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces.assemble import COLUMN_UNITS, readings_trace
from joulefarm.traces.model import TimestampedTrace, Trace

PARQUET_MAGIC = b"PAR1"
_OPTIONAL = ("current_a", "voltage_v", "power_factor", "mark")


def _pyarrow() -> tuple[Any, Any]:
    """pyarrow and pyarrow.parquet (an optional dependency: devices have none)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TraceInputError("Parquet traces need pyarrow (pip install pyarrow), which is "
                              "not installed here: use an .npz or CSV trace") from None
    return pa, pq


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):  # numpy scalars that slipped into the metadata
        return value.item()
    raise TypeError(f"metadata value {value!r} is not JSON-serialisable")


def write_trace(trace: Trace | TimestampedTrace, path: Path) -> None:
    """Write ``trace`` to ``path`` (zstd-compressed), replacing it atomically."""
    pa, pq = _pyarrow()
    columns: dict[str, np.ndarray] = {"t_s": np.asarray(trace.t_s, dtype=np.float64),
                                      "power_w": np.asarray(trace.power_w),
                                      **trace.channels}
    gpi = getattr(trace, "gpi", None)
    if gpi is not None:
        columns["gpi"] = np.asarray(gpi, dtype=np.uint8)
    fields, arrays = [], []
    for name, values in columns.items():
        array = (pa.array(values, type=pa.string()) if values.dtype == object
                 else pa.array(values))
        fields.append(pa.field(name, array.type, metadata={"unit": COLUMN_UNITS.get(name, "")}))
        arrays.append(array)
    meta = dict(trace.meta)
    if isinstance(trace, Trace):
        meta.update(uniform=True, sample_rate_hz=float(trace.sample_rate_hz), t0=trace.t0_s)
    else:
        meta["uniform"] = False
    metadata = {key: json.dumps(value, default=_json_default) for key, value in meta.items()}
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _decode(raw: dict[bytes, bytes]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.decode()
        if name.startswith("ARROW:") or name == "pandas":
            continue
        try:
            meta[name] = json.loads(value)
        except json.JSONDecodeError:
            meta[name] = value.decode(errors="replace")  # written by another tool
    return meta


def read_trace_parquet(path: Path) -> Trace | TimestampedTrace:
    """Read a trace written by ``write_trace`` (or any Parquet file with ``t_s`` and
    ``power_w``; its time layout is then detected from ``t_s``)."""
    pa, pq = _pyarrow()
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise TraceFormatError(f"{path}: cannot read as Parquet: {e}") from None
    missing = [c for c in ("t_s", "power_w") if c not in table.column_names]
    if missing:
        raise TraceFormatError(f"{path}: not a joulefarm trace: no column(s) {missing} "
                               f"(columns: {table.column_names})")
    meta = _decode(table.schema.metadata or {})
    t = table.column("t_s").to_numpy().astype(np.float64, copy=False)
    power = table.column("power_w").to_numpy()
    channels = {}
    for name in _OPTIONAL:
        if name in table.column_names:
            column = table.column(name)
            channels[name] = (np.asarray(column.to_pylist(), dtype=object)
                              if pa.types.is_string(column.type) else column.to_numpy())
    gpi = (table.column("gpi").to_numpy().astype(np.uint8) if "gpi" in table.column_names
           else None)
    if "uniform" not in meta:  # written by another tool: its rows are readings
        return readings_trace(path, "parquet", t, power, meta, channels=channels, gpi=gpi)
    source = f"{path.name} (parquet, {meta.get('source_format', 'trace')})"
    if meta["uniform"]:
        return Trace(power, float(meta.get("t0", t[0] if len(t) else 0.0)),
                     float(meta["sample_rate_hz"]), channels=MappingProxyType(channels),
                     gpi=gpi, source=source, meta=MappingProxyType(meta), stamps_s=t)
    return TimestampedTrace(t, np.asarray(power, dtype=np.float64), clock="meter",
                            channels=MappingProxyType(channels), meta=MappingProxyType(meta))
