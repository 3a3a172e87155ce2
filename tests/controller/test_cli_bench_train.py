"""`joulefarm bench MODEL --mode train`, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from joulefarm.tflite.builder import Conv2D, Flatten, FullyConnected, build_model
from joulefarm.tflite.training import trainable_model
from tests.helpers import run_cli

LAYERS = [Conv2D(8), Conv2D(8), Flatten(), FullyConnected(5)]
SHORT = ("--mode", "train", "--profile", "rpi4", "--min-duration-s", "0.2")


def test_bench_train_prints_each_layers_split_and_the_step(tmp_path: Path) -> None:
    path = tmp_path / "trainable.tflite"
    path.write_bytes(trainable_model(LAYERS, (12, 12, 3), loss="mse", optimizer="sgd",
                                     batch_size=2))
    proc = run_cli("bench", str(path), *SHORT, "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [r["layer"] for r in data["layers"]] == [0, 1, 2, 3]
    assert [r["layer"] for r in data["totals"]] == ["model-wide", "between ops", "step",
                                                    "additivity"]
    for row in data["layers"]:
        assert row["total_uj"] == pytest.approx(
            row["forward_uj"] + row["backward_uj"] + row["update_uj"], rel=1e-9)
    rows = {r["layer"]: r for r in (*data["layers"], *data["totals"])}
    step, additivity = rows["step"], rows["additivity"]
    parts = sum(float(r["total_uj"]) for r in rows.values() if r["layer"] not in (
        "step", "additivity"))
    assert parts == pytest.approx(step["total_uj"], rel=1e-9)
    assert 0 < additivity["total_us"] <= 1
    assert all(r["energy_source"] == "simulated" for r in rows.values())


def test_bench_train_makes_an_inference_model_trainable(tmp_path: Path) -> None:
    path = tmp_path / "inference.tflite"
    path.write_bytes(build_model((2, 12, 12, 3), LAYERS, seed=0))
    proc = run_cli("bench", str(path), *SHORT, timeout=60)
    assert proc.returncode != 0 and "--optimizer" in proc.stderr
    proc = run_cli("bench", str(path), *SHORT, "--optimizer", "adam", timeout=120,
                   env={"COLUMNS": "300"})  # the table's title on one line
    assert proc.returncode == 0, proc.stderr
    assert "made trainable: adam, mse" in proc.stdout
    assert "(SIMULATED)" in proc.stdout and "additivity" in proc.stdout


def test_bench_train_rebuilds_at_a_batch_and_freezes_layers(tmp_path: Path) -> None:
    path = tmp_path / "inference.tflite"
    path.write_bytes(build_model((1, 12, 12, 3), LAYERS, seed=0))
    proc = run_cli("bench", str(path), *SHORT, "--optimizer", "sgd", "--batch-size", "4",
                   "--trainable-layers", "1", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {r["layer"]: r for r in json.loads(proc.stdout)["layers"]}
    # Only the last layer with weights (the fully connected one) trains: the frozen
    # convolutions before it need no gradient at all.
    assert rows[3]["update_uj"] > 0 and rows[3]["backward_uj"] > 0
    for frozen in (0, 1):
        assert rows[frozen]["backward_uj"] == 0 and rows[frozen]["update_uj"] == 0
    proc = run_cli("bench", str(path), *SHORT, "--optimizer", "sgd", "--batch-size", "4",
                   timeout=120, env={"COLUMNS": "300"})
    assert proc.returncode == 0, proc.stderr
    assert "made trainable: sgd, mse, batch 4" in proc.stdout
    proc = run_cli("bench", str(path), *SHORT, "--batch-size", "4", timeout=60)
    assert proc.returncode == 2 and "--batch-size needs --mode train and --optimizer" in \
        proc.stderr
