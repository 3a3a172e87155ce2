"""`joulefarm export`: Parquet partitioned by sweep and device, readable by polars."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import controller.store as store_module
from controller.export import export_parquet
from controller.store import ResultStore
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
    assert counts == {"layers": 4, "whole": 0, "pairs": 0, "runs": 2}
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
    assert counts == {"layers": 2, "whole": 0, "pairs": 0, "runs": 1}
    df = pl.read_parquet(out / "layers" / "**" / "*.parquet", hive_partitioning=True)
    assert df.height == 2 and set(df["device_name"]) == {"dev-a"}
    assert set(df["sweep_id"]) == {"sweep-o'brien"}  # the folder name is percent-encoded


@pytest.mark.parametrize("sweep_id", ["x' OR '1'='1", "x'; DROP TABLE runs; --", ""])
def test_export_of_a_sweep_id_that_is_sql_exports_nothing(tmp_path: Path, sweep_id: str) -> None:
    db = tmp_path / "r.duckdb"
    store_two_sweeps(db)
    out = tmp_path / "out"
    assert export_parquet(db, out, sweep_id=sweep_id) == {
        "layers": 0, "whole": 0, "pairs": 0, "runs": 0}
    assert not list(out.rglob("*.parquet"))
    assert export_parquet(db, out)["runs"] == 2  # and the database is as it was
