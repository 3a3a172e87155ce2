"""The Parquet trace format and window energy through the Python API."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import joulefarm
from joulefarm.errors import TraceFormatError, TraceInputError
from joulefarm.traces import import_trace, read_trace, read_trace_parquet, window_energy
from joulefarm.traces import write_trace as write_parquet
from joulefarm.traces.windows import read_windows
from tests.helpers import FIXTURES as HELPERS_FIXTURES

FIXTURES = HELPERS_FIXTURES / "traces"


def test_round_trip_keeps_columns_and_metadata(tmp_path: Path) -> None:
    source = FIXTURES / "spl.txt"
    trace = import_trace(source)
    out = tmp_path / "spl.parquet"
    write_parquet(trace, out)
    back = read_trace_parquet(out)
    assert back.meta == trace.meta
    np.testing.assert_array_equal(back.t_s, trace.t_s)
    np.testing.assert_array_equal(back.power_w, trace.power_w)
    assert set(back.channels) == {"current_a", "voltage_v", "power_factor", "mark"}
    assert list(back.channels["mark"]) == list(trace.channels["mark"])
    meta = back.meta
    assert meta["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert meta["source_file"] == "spl.txt" and meta["simulated"] is False
    assert meta["uniform"] is True and isinstance(meta["sample_rate_hz"], float)
    assert meta["units"]["power_w"] == "W"


def test_parquet_is_compressed_with_units_on_fields(tmp_path: Path) -> None:
    out = tmp_path / "m.parquet"
    write_parquet(import_trace(FIXTURES / "monsoon_hvpm.csv"), out)
    parquet = pq.ParquetFile(out)
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    schema = parquet.schema_arrow
    assert schema.field("power_w").metadata == {b"unit": b"W"}
    assert schema.field("current_a").metadata == {b"unit": b"A"}
    assert schema.metadata[b"source_format"] == b'"monsoon"'
    assert not out.with_name("m.parquet.tmp").exists()


def test_foreign_parquet_gets_time_layout_detected(tmp_path: Path) -> None:
    import pyarrow as pa

    out = tmp_path / "other.parquet"
    pq.write_table(pa.table({"t_s": [0.0, 0.5, 1.0], "power_w": [1.0, 2.0, 3.0]}), out)
    trace = read_trace(out)
    assert trace.uniform and trace.sample_rate_hz == 2.0
    pq.write_table(pa.table({"time": [0.0], "watts": [1.0]}), out)
    with pytest.raises(TraceFormatError, match=r"not a joulefarm trace"):
        read_trace(out)


def test_importing_a_parquet_trace_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "p.parquet"
    write_parquet(import_trace(FIXTURES / "piecewise_10hz.csv"), out)
    with pytest.raises(TraceInputError, match="already a Parquet trace"):
        import_trace(out)


def test_window_energy_uniform_known_answers() -> None:
    trace = import_trace(FIXTURES / "piecewise_10hz.csv")
    windows = read_windows(FIXTURES / "windows_piecewise.csv")
    result = window_energy(trace, windows.start_s, windows.end_s)
    np.testing.assert_allclose(result["energy_j"][:4], [4.0, 2.0, 3.0, 1.5])
    assert np.isnan(result["energy_j"][4])
    flags = [joulefarm.flag_names(int(f)) for f in result["flags"]]
    assert flags[:4] == [[], [], [], ["partial_coverage"]]
    assert "no_samples" in flags[4]
    np.testing.assert_allclose(result["coverage"], [1, 1, 1, 0.5, 0])


def test_window_energy_timestamped_hold_and_gap() -> None:
    # Non-uniform points held until the next one; the 5 s hole is a gap (> 3x median interval).
    from joulefarm.traces import TimestampedTrace

    t = np.array([0.0, 1.0, 2.0, 2.5, 7.5, 8.5])
    p = np.array([1.0, 2.0, 4.0, 4.0, 8.0, 8.0])
    trace = TimestampedTrace(t, p, clock="meter")
    result = window_energy(trace, [0.0, 0.0, 7.5], [2.5, 8.5, 8.5])
    np.testing.assert_allclose(result["energy_j"][0], 1 + 2 + 2)
    assert "gap" in joulefarm.flag_names(int(result["flags"][1]))
    np.testing.assert_allclose(result["energy_j"][1], 1 + 2 + 2 + 8)
    np.testing.assert_allclose(result["energy_j"][2], 8.0)
    bridged = window_energy(trace, [0.0], [8.5], max_gap_s=float("inf"))
    np.testing.assert_allclose(bridged["energy_j"][0], 1 + 2 + 2 + 4 * 5 + 8)


def test_window_energy_signal_models_and_unknown_model() -> None:
    from joulefarm.traces import TimestampedTrace, Trace

    uniform = Trace(np.array([1.0, 3.0]), 0.0, 1.0)
    points = TimestampedTrace(np.array([0.0, 1.0, 2.0]), np.array([1.0, 3.0, 3.0]))
    for trace in (uniform, points):
        result = window_energy(trace, [0.0], [2.0], model="linear")
        assert list(result) == ["energy_j", "mean_power_w", "samples", "coverage", "flags"]
        with pytest.raises(TraceInputError, match="unknown signal model"):
            window_energy(trace, [0.0], [2.0], model="cubic")
