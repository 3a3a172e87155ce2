"""`joulefarm bench` and `joulefarm model layers` on a generated model, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.local import build_recipe
from joulefarm.tflite.parse import read_layers
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny_cnn.tflite"
    path.write_bytes(build_recipe("tiny_cnn", 0))
    return path


def test_model_layers_json_lists_every_layer(model_file: Path) -> None:
    proc = run_cli("model", "layers", str(model_file), "--format", "json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    expected = read_layers(model_file.read_bytes())
    assert [r["op"] for r in rows] == [x.op for x in expected]
    assert rows[0]["op"] == "CONV_2D" and rows[0]["macs"] == expected[0].macs > 0
    assert rows[0]["kernel"] == [3, 3]


def test_bench_layers_json_is_labelled_simulated(model_file: Path) -> None:
    proc = run_cli("bench", str(model_file), "--profile", "rpi4", "--min-layer-duration-s",
                   "0.005", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    start = proc.stdout.index("[")
    rows = json.loads(proc.stdout[start:proc.stdout.rindex("]") + 1])
    assert len(rows) == len(read_layers(model_file.read_bytes()))
    for row in rows:
        assert row["energy_uj"] == pytest.approx(row["sim_truth_uj"], rel=0.1)
        assert row["energy_source"] == "simulated"


def test_bench_whole_reports_percentiles(model_file: Path) -> None:
    proc = run_cli("bench", str(model_file), "--mode", "whole", "--min-duration-s", "0.2",
                   "--format", "csv", timeout=120)
    assert proc.returncode == 0, proc.stderr
    header, row = [line for line in proc.stdout.splitlines() if "," in line][:2]
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert int(values["iterations"]) >= 5
    p50, p90, p99 = (float(values[k]) for k in ("latency_p50_ms", "latency_p90_ms",
                                                 "latency_p99_ms"))
    assert 0 < p50 <= p90 <= p99
    assert float(values["energy_mj"]) == pytest.approx(float(values["sim_truth_mj"]), rel=0.05)


def test_bench_rejects_bad_input_with_exit_code_2(tmp_path: Path, model_file: Path) -> None:
    missing = run_cli("bench", str(tmp_path / "none.tflite"), timeout=60)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    bad = run_cli("bench", str(junk), timeout=60)
    assert bad.returncode == 2 and "junk.tflite" in bad.stderr
    mode = run_cli("bench", str(model_file), "--mode", "turbo", timeout=60)
    assert mode.returncode == 2 and "unknown mode 'turbo'" in mode.stderr
