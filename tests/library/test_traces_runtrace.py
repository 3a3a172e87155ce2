"""A run's trace as the results store keeps it (``<db>.traces/<run_id>.parquet``: min/max/mean
buckets) reads with joulefarm's own trace readers and ``joulefarm trace`` commands."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agent.measure import decimate_trace
from controller.store import ResultStore
from joulefarm.errors import TraceFormatError
from joulefarm.results import DecimatedTrace, MeterDescription
from joulefarm.traces import Trace, detect_format, read_trace, summarize, write_trace
from tests.helpers import run_cli
from tests.helpers.results import SIM, facts, layer, new_sweep, result

RAPL = MeterDescription(kind="rapl", simulated=False, sample_rate_hz=1000.0, profile="")


def decimated(seed: int = 0) -> DecimatedTrace:
    """What the agent sends for a 3 s capture at 10 kHz: 3750 buckets of 8 samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(30_000) / 10_000.0
    power = (2.0 + 0.5 * np.sin(2 * np.pi * 3 * t) + rng.normal(0, 0.1, t.size)).astype(np.float32)
    d = decimate_trace(Trace(power, 12.5, 10_000.0))
    assert d is not None and len(d.mean_w) == 3750
    return d


def store_run_with_trace(tmp_path: Path, meter: MeterDescription = SIM) -> tuple[Path, str]:
    """Store one run with a trace, as a sweep does; the trace file and the run id."""
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        sweep = new_sweep(store)
        job = store.add_job(sweep, "dev", "m", "a" * 64)
        run = dataclasses.replace(result((layer(0),)), meter=meter, trace=decimated())
        run_id = store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                                 result=run)
        _, rows = store.query("SELECT trace_path FROM runs WHERE run_id = ?", [run_id])
    (rel,), = rows
    path = db.parent / rel
    assert path.parent.name == "r.traces" and path.suffix == ".parquet"
    return path, run_id


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return store_run_with_trace(tmp_path_factory.mktemp("store"))


def columns(path: Path) -> tuple[pa.Table, float]:
    table = pq.read_table(path)
    assert set(table.column_names) == {"t_s", "min_w", "max_w", "mean_w"}  # the store's layout
    return table, float(table.schema.metadata[b"bucket_s"])


def test_reads_as_a_uniform_trace_of_the_bucket_means(stored: tuple[Path, str]) -> None:
    path, run_id = stored
    table, bucket = columns(path)
    assert detect_format(path) == "parquet"
    trace = read_trace(path)
    assert isinstance(trace, Trace)
    np.testing.assert_array_equal(trace.power_w, table.column("mean_w").to_numpy())
    np.testing.assert_array_equal(trace.channels["min_w"], table.column("min_w").to_numpy())
    np.testing.assert_array_equal(trace.channels["max_w"], table.column("max_w").to_numpy())
    np.testing.assert_allclose(trace.t_s, table.column("t_s").to_numpy(), rtol=0, atol=1e-12)
    assert trace.t0_s == 12.5 and trace.sample_rate_hz == pytest.approx(1 / bucket)
    assert trace.meta["simulated"] is True and "simulated" in trace.source
    assert trace.meta["source_format"] == "joulefarm_run" and trace.meta["run_id"] == run_id
    assert trace.meta["meter_kind"] == "sim" and trace.meta["raw_samples"] == 30_000
    assert trace.meta["bucket_s"] == bucket and trace.meta["clock"] == "meter"
    s = summarize(trace)
    energy = float(np.sum(table.column("mean_w").to_numpy(), dtype=np.float64)) * bucket
    assert s.energy_j == pytest.approx(energy, rel=1e-9)
    assert s.samples == 3750 and s.flags == []


def test_trace_info_shows_the_stored_numbers_labelled_simulated(
        stored: tuple[Path, str]) -> None:
    path, run_id = stored
    table, bucket = columns(path)
    mean_w = table.column("mean_w").to_numpy().astype(np.float64)
    done = run_cli("trace", "info", str(path), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["metadata"]["simulated"] is True
    assert doc["metadata"]["run_id"] == run_id
    summary = doc["summary"]
    assert summary["energy_j"] == pytest.approx(mean_w.sum() * bucket, rel=1e-9)
    assert summary["mean_power_w"] == pytest.approx(mean_w.mean(), rel=1e-9)
    assert summary["samples"] == 3750 and summary["uniform"] is True
    assert summary["rate_hz"] == pytest.approx(1 / bucket)
    assert summary["start_s"] == pytest.approx(12.5)
    assert summary["duration_s"] == pytest.approx(3750 * bucket)

    shown = run_cli("trace", "info", str(path), timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "(simulated)" in shown.stdout
    assert ["simulated", "true"] in [[cell.strip() for cell in line.split("│")[1:3]]
                                     for line in shown.stdout.splitlines()]


def test_trace_energy_integrates_the_bucket_means(tmp_path: Path,
                                                  stored: tuple[Path, str]) -> None:
    path, _ = stored
    table, bucket = columns(path)
    mean_w = table.column("mean_w").to_numpy().astype(np.float64)
    t0 = 12.5
    windows = tmp_path / "w.csv"
    windows.write_text("name,start_s,end_s\n"
                       f"all,{t0!r},{t0 + 3750 * bucket!r}\n"
                       f"some,{t0 + 100 * bucket!r},{t0 + 1100 * bucket!r}\n"
                       f"half,{t0 + 10.5 * bucket!r},{t0 + 11 * bucket!r}\n")
    done = run_cli("trace", "energy", str(path), "--windows", str(windows), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "simulated" in done.stderr
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(done.stdout))}
    assert float(rows["all"]["energy_j"]) == pytest.approx(mean_w.sum() * bucket, rel=1e-9)
    assert float(rows["some"]["energy_j"]) == pytest.approx(mean_w[100:1100].sum() * bucket,
                                                            rel=1e-9)
    assert float(rows["some"]["mean_power_w"]) == pytest.approx(mean_w[100:1100].mean(),
                                                                rel=1e-9)
    assert float(rows["half"]["energy_j"]) == pytest.approx(mean_w[10] * bucket / 2, rel=1e-6)
    assert all(r["flags"] == "" for r in rows.values())


def test_a_measured_run_is_not_labelled_simulated(tmp_path: Path) -> None:
    path, _ = store_run_with_trace(tmp_path, RAPL)
    trace = read_trace(path)
    assert trace.meta["simulated"] is False and "simulated" not in trace.source
    done = run_cli("trace", "info", str(path), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metadata"]["simulated"] is False
    assert "simulated" not in done.stderr


def test_written_back_as_a_trace_file_it_keeps_min_max_and_the_label(
        tmp_path: Path, stored: tuple[Path, str]) -> None:
    path, _ = stored
    trace = read_trace(path)
    assert isinstance(trace, Trace)
    copy = tmp_path / "copy.parquet"
    write_trace(trace, copy)
    again = read_trace(copy)
    assert isinstance(again, Trace)
    np.testing.assert_array_equal(again.power_w, trace.power_w)
    for name in ("min_w", "max_w"):
        np.testing.assert_array_equal(again.channels[name], trace.channels[name])
    assert again.meta["simulated"] is True
    assert summarize(again).energy_j == pytest.approx(summarize(trace).energy_j, rel=1e-12)


def test_a_run_trace_without_its_bucket_width_is_refused(tmp_path: Path,
                                                          stored: tuple[Path, str]) -> None:
    path, _ = stored
    table = pq.read_table(path)
    meta = {k: v for k, v in table.schema.metadata.items() if k != b"bucket_s"}
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.replace_schema_metadata(meta), bad)
    with pytest.raises(TraceFormatError, match="bucket_s"):
        read_trace(bad)
    done = run_cli("trace", "info", str(bad), timeout=120)
    assert done.returncode != 0 and "bucket_s" in done.stderr
    assert "Traceback" not in done.stderr
