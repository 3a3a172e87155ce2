"""DuckDB results: migrations, atomic runs, read-only queries, simulated labelling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from controller.store import (
    SCHEMA_VERSION,
    DuplicateRunError,
    ResultStore,
    StoreError,
    query_readonly,
)
from joulefarm.results import LayerRecord
from tests.helpers.results import facts, layer, new_sweep, result


def test_migrations_apply_once_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    with ResultStore(db):
        pass
    with ResultStore(db) as store:
        _, rows = store.query("SELECT version FROM schema_migrations ORDER BY version")
    # Each migration is recorded once, in order, however often the file is opened.
    assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        store.query("INSERT INTO schema_migrations VALUES (999, now())")
    with pytest.raises(StoreError, match="schema version 999 was written by a newer joulefarm"):
        ResultStore(db)


def test_run_and_layers_stored_together_and_labelled_simulated(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        sweep = new_sweep(store)
        store.upsert_device(facts(), address="127.0.0.1:1", tags=["demo"])
        job = store.add_job(sweep, "dev", "m", "a" * 64)
        store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                        result=result((layer(0), layer(1, 2e-3))))
    cols, rows = query_readonly(
        db, "SELECT layer_index, energy_j, flags, energy_source FROM layer_energy ORDER BY 1")
    assert cols == ["layer_index", "energy_j", "flags", "energy_source"]
    assert rows == [(0, 1e-3, [], "simulated"), (1, 2e-3, ["partial_coverage"], "simulated")]
    _, jobs = query_readonly(db, "SELECT status FROM jobs")
    assert jobs == [("done",)]
    _, runs = query_readonly(db, "SELECT simulated, meter_kind, energy_j FROM runs")
    assert runs == [(True, "sim", pytest.approx(3e-3))]


def test_a_failed_run_leaves_no_rows(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        sweep = new_sweep(store)
        job = store.add_job(sweep, "dev", "m", "a" * 64)
        duplicate = (layer(0), layer(0))
        with pytest.raises(StoreError, match="lists a layer more than once"):
            store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                            result=result(duplicate))
        store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                        result=result((layer(0), layer(1))))
        # A second copy of the same job is refused inside the transaction, after its rows
        # were inserted: they are rolled back.
        with pytest.raises(DuplicateRunError):
            store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                            result=result((layer(0), layer(1), layer(2))))
        _, counts = store.query("SELECT (SELECT count(*) FROM runs), "
                                "(SELECT count(*) FROM layer_measurements), "
                                "(SELECT status FROM jobs)")
    assert counts == [(1, 2, "done")]


def test_readonly_query_cannot_write(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    with ResultStore(db):
        pass
    with pytest.raises(StoreError, match="query failed"):
        query_readonly(db, "DELETE FROM runs")
    with pytest.raises(StoreError, match="no results database here"):
        query_readonly(tmp_path / "missing.duckdb", "SELECT 1")


def test_trace_file_is_written_and_removed_with_a_failed_run(tmp_path: Path) -> None:
    import dataclasses

    import numpy as np

    from joulefarm.results import DecimatedTrace

    trace = DecimatedTrace(clock="meter", t0_s=1.0, bucket_s=0.01,
                           min_w=np.ones(5, np.float32), max_w=np.full(5, 3, np.float32),
                           mean_w=np.full(5, 2, np.float32), raw_samples=500)
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        sweep = new_sweep(store)
        job = store.add_job(sweep, "dev", "ok", "a" * 64)
        good = dataclasses.replace(result((layer(0),)), trace=trace)
        store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="ok",
                        result=good)
        with pytest.raises(DuplicateRunError):  # fails inside the transaction
            store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="ok",
                            result=good)
        _, rows = store.query("SELECT trace_path FROM runs")
    (rel,), = rows
    files = list((tmp_path / "r.traces").iterdir())
    assert files == [tmp_path / rel]  # the refused copy's file is gone


def test_the_usable_view_knows_the_unusable_flags(tmp_path: Path) -> None:
    # layer_energy.usable spells UNUSABLE_FLAGS out in a migration: a changed list needs a
    # migration that replaces the view, and this fails until it has one.
    import re

    from joulefarm.results import UNUSABLE_FLAGS

    path = tmp_path / "r.duckdb"
    ResultStore(path).close()
    _, rows = query_readonly(path, "SELECT sql FROM duckdb_views() WHERE view_name = "
                                   "'layer_energy'")
    # DuckDB keeps the view as list_has_any(flags, list_value('a', 'b', ...)).
    listed = re.search(r"list_has_any\(.*, list_value\(('[^)]*)\)\)", rows[0][0])
    assert listed is not None, rows[0][0]
    assert tuple(re.findall(r"'([a-z_]+)'", listed.group(1))) == UNUSABLE_FLAGS


def test_a_database_whose_layer_table_drifted_from_the_layer_record_is_refused(
        tmp_path: Path) -> None:
    # LayerRecord declares the per-layer columns once; ingest derives its Arrow schema from it
    # and checks the migrated table against it when a database opens.
    import duckdb

    from joulefarm.results import LAYER_COLUMNS, LayerTable
    from joulefarm.wire import layers_from_proto, layers_to_proto

    path = tmp_path / "r.duckdb"
    ResultStore(path).close()
    con = duckdb.connect(str(path))
    names = [row[0] for row in con.execute("DESCRIBE layer_measurements").fetchall()]
    # Ingest inserts by name; migrations append columns at the end.
    assert sorted(names) == sorted(["run_id", "meter_kind", "simulated",
                                    *(c.name for c in LAYER_COLUMNS)])
    con.execute("ALTER TABLE layer_measurements DROP COLUMN coverage")
    con.close()
    with pytest.raises(StoreError, match="layer_measurements has columns .* lacks its migration"):
        ResultStore(path)
    # Every field crosses the wire.
    record = LayerRecord(3, "CONV_2D", 10, 1, 2, 3, "1x2", "1x3", 5, 0.5, 0.6, 1e-3, 2e-3, 1e-3,
                         2.0, 7, 0.9, ("gap",), 2.5e-3, 1.1e-3, 0.9e-3, 1.2e-3, 20, 3e-4)
    assert list(layers_from_proto(layers_to_proto(LayerTable.from_records([record])))) == [
        record]


def test_unusable_rows_are_stored_shown_and_never_trained_on(tmp_path: Path) -> None:
    from dataclasses import replace

    from controller.estimators.dataset import load_dataset

    path = tmp_path / "r.duckdb"
    clean = layer(0)
    short = replace(layer(1), coverage=0.6, flags=("gap", "low_coverage"))
    noisy = replace(layer(2), flags=("latency_unstable",))
    with ResultStore(path) as store:
        sweep = new_sweep(store)
        (job,) = store.add_jobs(sweep, [("dev", "m", "a" * 64, {})])
        store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                        result=result((clean, short, noisy)))
    _, rows = query_readonly(path, "SELECT layer_index, usable, coverage FROM layer_energy "
                                   "ORDER BY layer_index")
    assert rows == [(0, True, 1.0), (1, False, 0.6), (2, False, 1.0)]
    data = load_dataset(path)
    # low_coverage speaks of the meter: the energy is left out, the latency (the agent's
    # clock) still trains; latency_unstable leaves out both.
    assert [s.layer_index for s in data.layers] == [0, 1]
    assert math.isnan(data.layers[1].energy_j) and data.layers[1].latency_s > 0
    assert (data.unusable, data.energy_only_unusable) == (1, 1)
    # Every layer still describes the model; only the measurements are left out.
    assert len(data.model_layers["a" * 64]) == 3


def test_a_run_flag_makes_every_row_of_the_run_unusable(tmp_path: Path) -> None:
    from dataclasses import replace

    from controller.estimators.dataset import load_dataset

    path = tmp_path / "r.duckdb"
    with ResultStore(path) as store:
        sweep = new_sweep(store)
        (job,) = store.add_jobs(sweep, [("dev", "m", "a" * 64, {})])
        run = replace(result((layer(0), layer(1))), flags=("implausible_layer_sum",))
        store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m", result=run)
    _, rows = query_readonly(path, "SELECT bool_or(usable) FROM layer_energy")
    assert rows == [(False,)]
    assert load_dataset(path).layers == [] and load_dataset(path).unusable == 2
