"""The on-disk trace: one Parquet file, columns ``t_s``, ``power_w`` and optional ``current_a``,
``voltage_v``, ``power_factor``, ``mark``; the trace metadata as Parquet key/value pairs.

Each metadata value is stored JSON-encoded, so numbers, booleans and nested values (``units``,
``notes``) read back exactly as written. Each column also carries its unit as field metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces.imported import COLUMN_UNITS, Trace, time_meta

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


def _field(name: str, values: np.ndarray) -> tuple[Any, Any]:
    pa, _ = _pyarrow()
    array = pa.array(values, type=pa.string()) if values.dtype == object else pa.array(values)
    field = pa.field(name, array.type, metadata={"unit": COLUMN_UNITS.get(name, "")})
    return field, array


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):  # numpy scalars that slipped into the metadata
        return value.item()
    raise TypeError(f"metadata value {value!r} is not JSON-serialisable")


def write_trace(trace: Trace, path: Path) -> None:
    """Write ``trace`` to ``path`` (zstd-compressed), replacing it atomically."""
    pa, pq = _pyarrow()
    columns = {"t_s": trace.t_s, "power_w": trace.power_w, **trace.extra}
    fields, arrays = zip(*(_field(name, values) for name, values in columns.items()), strict=True)
    metadata = {key: json.dumps(value, default=_json_default) for key, value in trace.meta.items()}
    schema = pa.schema(list(fields), metadata=metadata)
    table = pa.Table.from_arrays(list(arrays), schema=schema)
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


def read_trace_parquet(path: Path) -> Trace:
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
    if "uniform" not in meta:
        meta.update(time_meta(t))
    extra = {}
    for name in _OPTIONAL:
        if name in table.column_names:
            column = table.column(name)
            extra[name] = (np.asarray(column.to_pylist(), dtype=object)
                           if pa.types.is_string(column.type) else column.to_numpy())
    return Trace(t, table.column("power_w").to_numpy(), meta, extra)
