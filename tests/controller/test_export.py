"""`joulefarm export`: Parquet partitioned by sweep and device, readable by polars."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import controller.export as export_module
import controller.store as store_module
from controller.export import export_parquet
from controller.store import ResultStore, StoreError, StoreInputError
from tests.helpers import run_cli
from tests.helpers.results import facts, layer, new_sweep, result


def store_two_sweeps(db: Path) -> None:
    """One sweep per device, each one run of two layers."""
    with ResultStore(db) as store:
        for device in ("dev-a", "dev-b"):
            sweep = new_sweep(store)
            job = store.add_job(sweep, device, "m", "a" * 64)
            store.store_run(job_id=job, sweep_id=sweep, device=facts(device), model_name="m",
                            result=result((layer(0), layer(1))))


def test_export_partitions_by_sweep_and_device_and_replaces_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    store_two_sweeps(db)
    out = tmp_path / "out"
    for _ in range(2):  # a second export replaces the first, no duplicates
        counts = export_parquet(db, out)
    assert counts == {"layers": 4, "whole": 0, "pairs": 0, "phases": 0, "runs": 2}
    parts = sorted(p.relative_to(out).parts[:3] for p in out.glob("layers/*/*/*.parquet"))
    assert [p[2].split("=")[0] for p in parts] == ["device_name", "device_name"]
    df = pl.read_parquet(out / "layers" / "**" / "*.parquet", hive_partitioning=True)
    assert df.height == 4 and set(df["device_name"]) == {"dev-a", "dev-b"}
    assert df["simulated"].all()


def test_export_of_one_sweep_with_quotes_in_its_id_and_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = iter(["sweep-o'brien", "sweep-other"])
    plain_id = store_module.new_id
    monkeypatch.setattr(store_module, "new_id",
                        lambda prefix: next(ids) if prefix == "sweep" else plain_id(prefix))
    db = tmp_path / "r.duckdb"
    store_two_sweeps(db)
    out = tmp_path / "out'dir"
    counts = export_parquet(db, out, sweep_id="sweep-o'brien")
    assert counts == {"layers": 2, "whole": 0, "pairs": 0, "phases": 0, "runs": 1}
    df = pl.read_parquet(out / "layers" / "**" / "*.parquet", hive_partitioning=True)
    assert df.height == 2 and set(df["device_name"]) == {"dev-a"}
    assert set(df["sweep_id"]) == {"sweep-o'brien"}  # the folder name is percent-encoded


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def sweep_ids(db: Path) -> list[str]:
    """The sweeps of ``store_two_sweeps``: dev-a's, then dev-b's."""
    with ResultStore(db) as store:
        return [str(row[0]) for row in store.query("SELECT sweep_id FROM runs "
                                                   "ORDER BY device_name")[1]]


def sweep_folders(out: Path, table: str) -> set[str]:
    return {p.name for p in (out / table).iterdir()}


def test_export_of_one_sweep_keeps_other_sweeps_and_user_files(tmp_path: Path) -> None:
    # The bug: `export --sweep A` into a folder holding sweep B's export deleted B's files.
    db = tmp_path / "r.duckdb"
    store_two_sweeps(db)
    a, b = sweep_ids(db)
    out = tmp_path / "out"
    export_parquet(db, out, sweep_id=b)
    (out / "notes.txt").write_text("mine")
    (out / "layers" / "README").write_text("also mine")
    (out / "layers" / "sweep_id=elsewhere").mkdir()
    (out / "layers" / "sweep_id=elsewhere" / "x.parquet").write_bytes(b"not ours")
    before = snapshot(out)
    assert any(f"sweep_id={b}" in path for path in before)

    counts = export_parquet(db, out, sweep_id=a)
    assert counts == {"layers": 2, "whole": 0, "pairs": 0, "phases": 0, "runs": 1}
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before  # byte-identical
    assert set(after) - set(before)  # and A is there too
    assert all(f"sweep_id={a}" in path for path in set(after) - set(before))
    assert sweep_folders(out, "layers") == {
        f"sweep_id={a}", f"sweep_id={b}", "sweep_id=elsewhere", "README"}
    assert sweep_folders(out, "runs") == {f"sweep_id={a}", f"sweep_id={b}"}
    df = pl.read_parquet(out / "runs" / "sweep_id=*" / "**" / "*.parquet",
                         hive_partitioning=True)
    assert sorted(df["sweep_id"]) == sorted([a, b])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_re_export_of_a_sweep_replaces_that_sweep_only(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    store_two_sweeps(db)
    a, b = sweep_ids(db)
    out = tmp_path / "out"
    export_parquet(db, out, sweep_id=a)
    export_parquet(db, out, sweep_id=b)
    stale = out / "layers" / f"sweep_id={a}" / "device_name=dev-a" / "stale.parquet"
    stale.write_bytes(b"from an older export of A")
    b_files = {k: v for k, v in snapshot(out).items() if f"sweep_id={b}" in k}
    assert b_files

    # A gains a run: the re-export holds it, and nothing of the old copy of A is left.
    with ResultStore(db) as store:
        job = store.add_job(a, "dev-c", "m", "a" * 64)
        store.store_run(job_id=job, sweep_id=a, device=facts("dev-c"), model_name="m",
                        result=result((layer(0), layer(1), layer(2))))
    assert export_parquet(db, out, sweep_id=a)["layers"] == 5
    assert not stale.exists()
    assert {k: v for k, v in snapshot(out).items() if f"sweep_id={b}" in k} == b_files
    df = pl.read_parquet(out / "layers" / "**" / "*.parquet", hive_partitioning=True)
    assert df.group_by("sweep_id").len().sort("sweep_id").rows() == sorted([(a, 5), (b, 2)])


def test_a_failed_export_leaves_the_previous_export_of_the_sweep(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.duckdb"
    store_two_sweeps(db)
    a, _ = sweep_ids(db)
    out = tmp_path / "out"
    export_parquet(db, out, sweep_id=a)
    before = snapshot(out)
    with ResultStore(db) as store:  # so that a new copy of A would differ from the old one
        job = store.add_job(a, "dev-c", "m", "a" * 64)
        store.store_run(job_id=job, sweep_id=a, device=facts("dev-c"), model_name="m",
                        result=result((layer(0),)))
    # The last table's query fails, after the others were written to staging.
    monkeypatch.setitem(export_module.EXPORTS, "runs", "SELECT * FROM no_such_table")
    with pytest.raises(StoreError, match="export failed"):
        export_parquet(db, out, sweep_id=a)
    assert snapshot(out) == before
    assert sorted(p.name for p in out.iterdir()) == ["layers", "pairs", "phases", "runs", "whole"]


def test_export_of_an_unknown_sweep_is_bad_input_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    store_two_sweeps(db)
    a, _ = sweep_ids(db)
    out = tmp_path / "out"
    export_parquet(db, out, sweep_id=a)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    names = sorted(p.relative_to(out) for p in out.rglob("*"))

    done = run_cli("export", "--out", str(out), "--sweep", "sweep-nope", "--db", str(db))
    assert done.returncode == 2, done.stderr
    assert "sweep-nope" in done.stderr and str(db) in done.stderr.replace("\n", "")
    assert snapshot(out) == before
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == names

    fresh = tmp_path / "fresh"  # nor is a folder made for it
    assert run_cli("export", "--out", str(fresh), "--sweep", "sweep-nope",
                   "--db", str(db)).returncode == 2
    assert not fresh.exists()


@pytest.mark.parametrize("sweep_id", ["x' OR '1'='1", "x'; DROP TABLE runs; --", ""])
def test_export_of_a_sweep_id_that_is_sql_is_an_unknown_sweep(tmp_path: Path,
                                                              sweep_id: str) -> None:
    db = tmp_path / "r.duckdb"
    store_two_sweeps(db)
    out = tmp_path / "out"
    with pytest.raises(StoreInputError, match="no sweep"):
        export_parquet(db, out, sweep_id=sweep_id)
    assert not out.exists()
    assert export_parquet(db, out)["runs"] == 2  # and the database is as it was
