"""The on-disk trace: one Parquet file, columns ``t_s``, ``power_w`` and optional ``current_a``,
``voltage_v``, ``power_factor``, ``mark``, ``gpi``; the trace metadata as Parquet key/value
pairs.

The results store keeps each run's trace in another layout (``<db>.traces/<run_id>.parquet``):
columns ``t_s``, ``min_w``, ``max_w``, ``mean_w`` (one row per bucket of ``bucket_s`` seconds)
and metadata ``clock``, ``bucket_s``, ``raw_samples``, ``clock_offset_s``, ``meter_kind``,
``simulated``, ``run_id``. It reads as a uniform ``Trace`` at one sample per bucket: power is
``mean_w``, ``min_w`` and ``max_w`` are channels, and the store's metadata is kept.

Each metadata value is stored JSON-encoded, so numbers, booleans and nested values (``units``,
``notes``) read back exactly as written. Each column also carries its unit as field metadata.
A uniform trace keeps ``uniform``, ``sample_rate_hz`` and ``t0`` in the metadata; a point trace
stores its points as they are, closing point included. pyarrow is imported only here, and only
when a Parquet file is read or written: devices have no pyarrow.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces.assemble import COLUMN_UNITS, readings_trace, source_meta
from joulefarm.traces.model import UNIFORM_TOLERANCE, TimestampedTrace, Trace

PARQUET_MAGIC = b"PAR1"
_OPTIONAL = ("current_a", "voltage_v", "power_factor", "mark")
RUN_TRACE_FORMAT = "joulefarm_run"
"""``source_format`` of a run trace from the results store."""
_RUN_CHANNELS = ("min_w", "max_w")  # a run trace's per-bucket extremes, kept as channels
_UNITS = {**COLUMN_UNITS, "min_w": "W", "max_w": "W"}
_CLOCKS = {"meter": "seconds on the meter's clock (agent time = t_s - clock_offset_s)",
           "agent": "seconds on the agent's clock (perf_counter)"}


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
        fields.append(pa.field(name, array.type, metadata={"unit": _UNITS.get(name, "")}))
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


def _is_run_trace(columns: list[str]) -> bool:
    """A run trace from the results store: min/max/mean per bucket, no ``power_w``."""
    return "power_w" not in columns and {"t_s", "mean_w", *_RUN_CHANNELS} <= set(columns)


def _simulated(value: Any) -> bool:
    """The store writes ``"true"``/``"false"``; a hand-edited file may say ``True``."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _read_run_trace(path: Path, table: Any, stored: dict[str, Any]) -> Trace:
    """A run trace (see the module docstring) as a uniform trace of ``mean_w`` at
    ``1 / bucket_s``: bucket ``i`` covers ``[t_s[i], t_s[i] + bucket_s)``."""
    bucket = stored.get("bucket_s")
    if (not isinstance(bucket, int | float) or isinstance(bucket, bool)
            or not math.isfinite(bucket) or bucket <= 0):
        raise TraceFormatError(f"{path}: a run trace (min_w, max_w, mean_w) needs metadata "
                               f"bucket_s, a positive number of seconds (found {bucket!r})")
    bucket = float(bucket)
    t = table.column("t_s").to_numpy().astype(np.float64, copy=False)
    n = len(t)
    if n == 0:
        raise TraceFormatError(f"{path}: no samples")
    t0 = float(t[0])
    grid = t0 + bucket * np.arange(n, dtype=np.float64)
    if not np.all(np.isfinite(t)) or float(np.max(np.abs(t - grid))) > UNIFORM_TOLERANCE * bucket:
        raise TraceFormatError(f"{path}: a run trace's t_s must step by bucket_s ({bucket:g} s)")
    power = table.column("mean_w").to_numpy().astype(np.float64)
    channels = {name: table.column(name).to_numpy().astype(np.float64)
                for name in _RUN_CHANNELS}
    simulated = _simulated(stored.get("simulated"))
    clock = stored.get("clock")
    meter = stored.get("meter_kind", "unknown")
    meta: dict[str, Any] = source_meta(path, RUN_TRACE_FORMAT, simulated=simulated)
    meta["units"] = {"t_s": "s", "power_w": "W", "min_w": "W", "max_w": "W"}
    meta.update(stored)
    notes = [f"a run's stored trace: {n} buckets of {bucket:g} s; power_w is each bucket's "
             f"mean_w, min_w and max_w are channels"]
    if simulated:
        notes.append("simulated: the power came from the simulator's model, not a meter")
    meta.update(simulated=simulated, meter=f"{meter} (joulefarm run)", samples=n,
                time_base=_CLOCKS.get(str(clock), f"seconds on the {clock} clock"),
                uniform=True, sample_rate_hz=1.0 / bucket, t0=t0, notes=notes)
    label = f"{path.name} (joulefarm run trace, {meter} meter{', simulated' if simulated else ''})"
    return Trace(power, t0, 1.0 / bucket, channels=MappingProxyType(channels), source=label,
                 meta=MappingProxyType(meta))


def read_trace_parquet(path: Path) -> Trace | TimestampedTrace:
    """Read a trace written by ``write_trace``, a run's trace from the results store (see the
    module docstring), or any Parquet file with ``t_s`` and ``power_w`` (its time layout is
    then detected from ``t_s``)."""
    pa, pq = _pyarrow()
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise TraceFormatError(f"{path}: cannot read as Parquet: {e}") from None
    if _is_run_trace(table.column_names):
        return _read_run_trace(path, table, _decode(table.schema.metadata or {}))
    missing = [c for c in ("t_s", "power_w") if c not in table.column_names]
    if missing:
        raise TraceFormatError(f"{path}: not a joulefarm trace: no column(s) {missing} "
                               f"(columns: {table.column_names})")
    meta = _decode(table.schema.metadata or {})
    t = table.column("t_s").to_numpy().astype(np.float64, copy=False)
    power = table.column("power_w").to_numpy()
    channels = {}
    # Our own files may also hold a run trace's channels (a run trace passed to write_trace).
    for name in _OPTIONAL + (_RUN_CHANNELS if "uniform" in meta else ()):
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
