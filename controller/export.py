"""Export results to Parquet, partitioned by sweep and device, for use outside joulefarm."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote

import duckdb

from controller.store import StoreError, StoreInputError

# One folder tree per table; the partition columns are folder names (Hive style), so
# polars, pyarrow and DuckDB read ``DIR/layers/**/*.parquet`` back with them.
EXPORTS = {
    "layers": """SELECT r.sweep_id, r.device_name, r.model_name, r.mode,
                        l.* EXCLUDE (run_id), r.run_id
                 FROM layer_measurements l JOIN runs r USING (run_id)""",
    "whole": """SELECT r.sweep_id, r.device_name, r.model_name, r.mode, w.* EXCLUDE (run_id),
                       r.run_id
                FROM whole_measurements w JOIN runs r USING (run_id)""",
    "pairs": """SELECT sweep_id, device_name, model_name, * EXCLUDE (sweep_id, device_name,
                       model_name) FROM layer_pairs""",
    "phases": """SELECT sweep_id, device_name, model_name, * EXCLUDE (sweep_id, device_name,
                        model_name) FROM train_phase_energy""",
    "runs": "SELECT * FROM runs",
}
SWEEP_PREFIX = "sweep_id="


def _sql_string(text: str) -> str:
    """``text`` as an SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _partitions(folder: Path, sweep_id: str) -> list[Path]:
    """The folders of ``sweep_id`` in ``folder`` (``sweep_id=<percent-encoded id>``): matched by
    the decoded name, so any encoding of the id is found, and nothing else is."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
            and p.name.startswith(SWEEP_PREFIX)
            and unquote(p.name[len(SWEEP_PREFIX):]) == sweep_id]


def _swap_in(staged: Path, target: Path, sweep_ids: list[str], trash: Path) -> None:
    """Replace each sweep's partition in ``target`` with its copy in ``staged`` (none when the
    sweep has no rows in this table). Only those partitions move; the old one is restored if the
    new one cannot be put in place."""
    target.mkdir(exist_ok=True)
    for n, sweep_id in enumerate(sweep_ids):
        old = _partitions(target, sweep_id)
        new = _partitions(staged, sweep_id)
        moved: list[tuple[Path, Path]] = []
        try:
            for i, path in enumerate(old):
                aside = trash / f"{n}-{i}"
                path.rename(aside)
                moved.append((aside, path))
            for path in new:
                path.rename(target / path.name)
        except OSError:
            for path in new:
                if (target / path.name).exists() and not path.exists():
                    (target / path.name).rename(path)
            for aside, path in moved:
                aside.rename(path)
            raise


def export_parquet(db: Path, out: Path, *, sweep_id: str | None = None) -> dict[str, int]:
    """Write every table of ``EXPORTS`` under ``out/<table>/sweep_id=.../device_name=...``;
    returns the row count of each. With ``sweep_id`` only that sweep, else every sweep in the
    database.

    Only the partitions of the exported sweeps are replaced: other sweeps' folders (another
    ``--sweep`` export, another database) and any other file in ``out`` stay as they are. All of
    it is written to a staging folder first, so a failed export changes nothing in ``out``.
    An unknown ``sweep_id`` is a ``StoreInputError`` and leaves ``out`` untouched."""
    if not db.exists():
        raise StoreInputError(f"{db}: no results database here")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as e:
        raise StoreError(f"{db}: cannot open the database: {e}") from e
    try:
        if sweep_id is None:
            sweep_ids = [r[0] for r in con.execute(
                "SELECT sweep_id FROM sweeps UNION SELECT sweep_id FROM runs "
                "ORDER BY sweep_id").fetchall()]
            where, params = "", []
        else:
            if con.execute("SELECT count(*) FROM sweeps WHERE sweep_id = ?",
                           [sweep_id]).fetchone() == (0,):
                raise StoreInputError(f"{db}: no sweep {sweep_id!r} in this database "
                                      "(`joulefarm sweep status` lists them)")
            sweep_ids = [sweep_id]
            where, params = " WHERE sweep_id = ?", [sweep_id]
        for path in (out, *(out / name for name in EXPORTS)):
            if path.exists() and not path.is_dir():
                raise StoreInputError(f"{path}: exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        # Our own staging folder, next to the tables so that moving a partition is a rename.
        staging = Path(tempfile.mkdtemp(prefix=".joulefarm-export-", dir=out))
        try:
            counts = {}
            for name, sql in EXPORTS.items():
                query = f"SELECT * FROM ({sql}){where}"
                row = con.execute(f"SELECT count(*) FROM ({query})", params).fetchone()
                assert row is not None  # count(*) returns one row
                counts[name] = row[0]
                if counts[name]:
                    # A literal, not a parameter: DuckDB 1.2 (our floor) refuses `COPY ... TO ?`.
                    con.execute(f"COPY ({query}) TO {_sql_string(str(staging / name))} "
                                "(FORMAT parquet, PARTITION_BY (sweep_id, device_name))", params)
            # Everything is written; only now is anything in `out` replaced.
            trash = staging / ".replaced"
            trash.mkdir()
            for name in EXPORTS:
                table_trash = trash / name
                table_trash.mkdir()
                _swap_in(staging / name, out / name, sweep_ids, table_trash)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except (duckdb.Error, OSError) as e:
        raise StoreError(f"export failed: {e}") from e
    finally:
        con.close()
    return counts
