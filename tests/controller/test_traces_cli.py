"""``joulefarm trace import|energy|info`` run as a user would, in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

from joulefarm.errors import TraceInputError
from joulefarm.traces import read_trace_parquet
from joulefarm.traces.windows import read_windows
from tests.helpers import FIXTURES as HELPERS_FIXTURES
from tests.helpers import run_cli

FIXTURES = HELPERS_FIXTURES / "traces"

def trace_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("trace", *args)


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_import_writes_parquet_and_summary(tmp_path: Path) -> None:
    src = tmp_path / "piecewise.csv"
    src.write_bytes((FIXTURES / "piecewise_10hz.csv").read_bytes())
    result = trace_cli("import", str(src))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "piecewise.parquet"
    assert result.stdout.strip() == (f"{out}: csv, 20 samples, 2 s, 10 Hz (uniform), mean 2 W, "
                                     "4 J")
    trace = read_trace_parquet(out)
    assert trace.meta["source_format"] == "csv" and trace.samples == 20


def test_energy_known_answers_with_passthrough(tmp_path: Path) -> None:
    out = tmp_path / "piecewise.parquet"
    assert trace_cli("import", str(FIXTURES / "piecewise_10hz.csv"), "--out",
                     str(out)).returncode == 0
    result = trace_cli("energy", str(out), "--windows", str(FIXTURES / "windows_piecewise.csv"))
    assert result.returncode == 0, result.stderr
    rows = _rows(result.stdout)
    assert list(rows[0]) == ["name", "layer", "start_s", "end_s", "energy_j", "mean_power_w",
                             "samples", "coverage", "flags"]
    by_name = {r["name"]: r for r in rows}
    assert [float(by_name[n]["energy_j"]) for n in ("all", "straddle", "second_half")] == [
        4.0, 2.0, 3.0]
    assert by_name["straddle"]["mean_power_w"] == "2.0"
    assert by_name["straddle"]["samples"] == "10"
    assert by_name["straddle"]["layer"] == "1"
    assert by_name["all"]["flags"] == ""
    assert float(by_name["tail"]["energy_j"]) == 1.5
    assert by_name["tail"]["flags"] == "partial_coverage"
    assert by_name["outside"]["energy_j"] == "nan"
    assert "no_samples" in by_name["outside"]["flags"].split(";")


def test_energy_from_raw_log_with_offset_and_out_file(tmp_path: Path) -> None:
    windows = tmp_path / "w.csv"
    windows.write_text("start_s,end_s\n-0.5,0.5\n")
    out = tmp_path / "energy.csv"
    # Window [-0.5, 0.5] + 1 s offset = trace [0.5, 1.5]: 0.5 J + 1.5 J.
    result = trace_cli("energy", str(FIXTURES / "piecewise_10hz.csv"), "--windows",
                       str(windows), "--offset-s", "1.0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "1 windows, 0 flagged" in result.stdout
    assert float(_rows(out.read_text())[0]["energy_j"]) == pytest.approx(2.0)


def test_energy_windows_on_another_clock_get_a_hint(tmp_path: Path) -> None:
    result = trace_cli("energy", str(FIXTURES / "spl.txt"), "--windows",
                       str(FIXTURES / "windows_piecewise.csv"))
    assert result.returncode == 0, result.stderr
    assert all(r["energy_j"] == "nan" for r in _rows(result.stdout))
    assert "no window overlaps the trace" in result.stderr
    assert "unix UTC seconds" in result.stderr


def test_energy_linear_model(tmp_path: Path) -> None:
    windows = tmp_path / "w.csv"
    windows.write_text("start_s,end_s\n0.0,2.0\n")
    result = trace_cli("energy", str(FIXTURES / "piecewise_10hz.csv"), "--windows",
                       str(windows), "--model", "linear")
    assert result.returncode == 0, result.stderr
    # Linear between midpoints 0.95 s (1 W) and 1.05 s (3 W) keeps the total at 4 J.
    assert float(_rows(result.stdout)[0]["energy_j"]) == pytest.approx(4.0)


@pytest.mark.parametrize(("content", "message"), [
    ("start_s,end_s\n0,1\n2,1.5\n", "w.csv:3: end_s 1.5 is before start_s 2"),
    ("start_s,end_s\n0,abc\n", "w.csv:2: column 'end_s': 'abc' is not a number"),
    ("start_s,end_s\n# note\n0,nan\n", "w.csv:3: column 'end_s': 'nan' is not finite"),
    ("begin,end_s\n0,1\n", "w.csv:1: windows header lacks start_s"),
    ("name,start_s,end_s\nx,0\n", "w.csv:2: 2 fields, the header has 3"),
    ("start_s,end_s,energy_j\n0,1,2\n", "w.csv:1: windows header already has result column"),
    ("", "w.csv: empty windows file"),
])
def test_malformed_windows(tmp_path: Path, content: str, message: str) -> None:
    windows = tmp_path / "w.csv"
    windows.write_text(content)
    with pytest.raises(TraceInputError) as e:
        read_windows(windows)
    assert str(e.value).startswith(f"{tmp_path}/{message}")


def test_energy_malformed_windows_exit_code(tmp_path: Path) -> None:
    windows = tmp_path / "w.csv"
    windows.write_text("start_s,end_s\n0,1\n2,1.5\n")
    result = trace_cli("energy", str(FIXTURES / "piecewise_10hz.csv"), "--windows", str(windows))
    assert result.returncode == 2
    assert "w.csv:3: end_s 1.5 is before start_s 2" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


def test_import_malformed_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time_s,power_w\n0,1\n0.1,x\n")
    result = trace_cli("import", str(bad))
    assert result.returncode == 2
    assert "bad.csv:3: column 'power_w': cannot read 'x' as a number" in result.stderr.replace(
        "\n", "")
    assert not (tmp_path / "bad.parquet").exists()


def test_import_forced_format_and_units(tmp_path: Path) -> None:
    src = tmp_path / "log.dat"
    src.write_text("time,power\n0,500\n100,700\n")
    out = tmp_path / "x.parquet"
    result = trace_cli("import", str(src), "--format", "csv", "--time-unit", "ms",
                       "--power-unit", "mW", "--out", str(out))
    assert result.returncode == 0, result.stderr
    trace = read_trace_parquet(out)
    assert list(trace.t_s) == [0.0, 0.1]
    assert list(trace.power_w) == [0.5, 0.7]


def test_info_json_and_table(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    assert trace_cli("import", str(FIXTURES / "tegrastats_nano_jp4.log"), "--out",
                     str(out)).returncode == 0
    result = trace_cli("info", str(out), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["metadata"]["source_format"] == "tegrastats"
    assert doc["metadata"]["rail"] == "POM_5V_IN"
    assert doc["metadata"]["simulated"] is False
    assert doc["summary"]["energy_j"] == pytest.approx(1.289 + 4.520 + 4.480)
    table = trace_cli("info", str(FIXTURES / "spl.txt"))
    assert table.returncode == 0, table.stderr
    assert "source_sha256" in table.stdout and "unix UTC" in table.stdout
