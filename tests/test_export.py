"""`joulefarm export`: Parquet partitioned by sweep and device, readable by polars."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from controller.export import export_parquet
from controller.store import ResultStore, StoreError
from tests.test_store import facts, layer, new_sweep, result


def test_export_partitions_by_sweep_and_device_and_replaces_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        for device in ("dev-a", "dev-b"):
            sweep = new_sweep(store)
            job = store.add_job(sweep, device, "m", "a" * 64)
            store.store_run(job_id=job, sweep_id=sweep, device=facts(device), model_name="m",
                            result=result((layer(0), layer(1))))
    out = tmp_path / "out"
    for _ in range(2):  # a second export replaces the first, no duplicates
        counts = export_parquet(db, out)
    assert counts == {"layers": 4, "whole": 0, "pairs": 0, "runs": 2}
    parts = sorted(p.relative_to(out).parts[:3] for p in out.glob("layers/*/*/*.parquet"))
    assert [p[2].split("=")[0] for p in parts] == ["device_name", "device_name"]
    df = pl.read_parquet(out / "layers" / "**" / "*.parquet", hive_partitioning=True)
    assert df.height == 4 and set(df["device_name"]) == {"dev-a", "dev-b"}
    assert df["simulated"].all()
    with pytest.raises(StoreError, match="not a sweep id"):
        export_parquet(db, out, sweep_id="x'; DROP TABLE runs; --")
