"""Export results to Parquet, partitioned by sweep and device, for use outside joulefarm."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from controller.store import StoreError

# One folder tree per table; the partition columns are folder names (Hive style), so
# polars, pyarrow and DuckDB read ``DIR/layers/**/*.parquet`` back with them.
EXPORTS = {
    "layers": """SELECT r.sweep_id, r.device_name, r.model_name, r.mode,
                        l.* EXCLUDE (run_id), r.run_id
                 FROM layer_measurements l JOIN runs r USING (run_id)""",
    "whole": """SELECT r.sweep_id, r.device_name, r.model_name, w.* EXCLUDE (run_id), r.run_id
                FROM whole_measurements w JOIN runs r USING (run_id)""",
    "pairs": """SELECT sweep_id, device_name, model_name, * EXCLUDE (sweep_id, device_name,
                       model_name) FROM layer_pairs""",
    "runs": "SELECT * FROM runs",
}


def _replace_dir(new: Path, target: Path) -> None:
    """Swap ``new`` in for ``target``: a failed export never leaves a half-written folder."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _sql_string(text: str) -> str:
    """``text`` as an SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def export_parquet(db: Path, out: Path, *, sweep_id: str | None = None) -> dict[str, int]:
    """Write every table of ``EXPORTS`` under ``out`` (replacing ``out/<table>`` only once its
    new copy is complete); returns the row count of each. With ``sweep_id``, only that sweep's
    rows (none when no sweep has that id)."""
    if not db.exists():
        raise StoreError(f"{db}: no results database here")
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(db), read_only=True)
    where, params = (" WHERE sweep_id = ?", [sweep_id]) if sweep_id is not None else ("", [])
    counts = {}
    try:
        for name, sql in EXPORTS.items():
            query = f"SELECT * FROM ({sql}){where}"
            row = con.execute(f"SELECT count(*) FROM ({query})", params).fetchone()
            assert row is not None  # count(*) returns one row
            counts[name] = row[0]
            staging = out / f".{name}.partial"
            shutil.rmtree(staging, ignore_errors=True)
            if counts[name]:
                # A literal, not a parameter: DuckDB 1.2 (our floor) refuses `COPY ... TO ?`.
                con.execute(f"COPY ({query}) TO {_sql_string(str(staging))} (FORMAT parquet, "
                            "PARTITION_BY (sweep_id, device_name))", params)
            else:
                staging.mkdir()
            _replace_dir(staging, out / name)
    except duckdb.Error as e:
        raise StoreError(f"export failed: {e}") from e
    finally:
        con.close()
    return counts
