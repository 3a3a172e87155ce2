"""``joulefarm fit --workload train``: a training step's estimators, fitted on train runs measured
here (simulated meter, short windows), predicted from the exported ONNX, beside the FLOPs
baseline; and inference fitting untouched by train runs in the same database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import cast

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from controller.cli import fit_cmd, predict_cmd
from controller.estimators.collect import TrainToMeasure, measure_train_into_store
from controller.estimators.dataset import Row, load_dataset
from controller.estimators.errors import EstimatorError
from controller.estimators.export import FitResult, fit_and_export
from controller.estimators.manifest import read_manifest
from controller.estimators.predict import Estimator, part_table
from controller.estimators.synthetic import DEVICES, build_synthetic_db
from controller.estimators.train_dataset import build_train_dataset, load_train_dataset
from controller.estimators.train_features import PartDesc
from joulefarm.tflite.builder import (
    Conv2D,
    DepthwiseConv2D,
    Flatten,
    FullyConnected,
    LayerSpec,
    MaxPool2D,
    Mean,
    Softmax,
    build_model,
)
from joulefarm.tflite.parse import read_layers
from tests.helpers import run_cli

DEVICE = "sim-pi4"
SPECS: list[list[LayerSpec]] = [
    [Conv2D(4), MaxPool2D(), Flatten(), FullyConnected(10), Softmax()],
    [Conv2D(8, stride=(2, 2)), Conv2D(8, (1, 1)), Flatten(), FullyConnected(10), Softmax()],
    [Conv2D(8), DepthwiseConv2D(), Conv2D(12, (1, 1)), Mean(), FullyConnected(10), Softmax()],
    [Conv2D(6, (5, 5)), MaxPool2D(), Conv2D(8), Flatten(), FullyConnected(10), Softmax()],
    [Conv2D(12, stride=(2, 2)), Flatten(), FullyConnected(16, activation="RELU"),
     FullyConnected(10), Softmax()],
    [Conv2D(4, (1, 1)), Conv2D(8), MaxPool2D(), Flatten(), FullyConnected(10), Softmax()],
]
HELD_OUT = [Conv2D(6), MaxPool2D(), Conv2D(8, (1, 1)), Flatten(), FullyConnected(10), Softmax()]


def _model(specs: list[LayerSpec], seed: int) -> bytes:
    return build_model((4, 12, 12, 3), specs, seed=seed)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(inference-only database, the same with train runs added)."""
    work = tmp_path_factory.mktemp("train-est")
    inference = build_synthetic_db(work / "inference.duckdb", devices=DEVICES[1:2],
                                   n_configs=20, n_chains=4, seed=3)
    mixed = work / "mixed.duckdb"
    shutil.copy(inference, mixed)
    models = [TrainToMeasure(f"cnn:{i}", _model(s, i)) for i, s in enumerate(SPECS)]
    measure_train_into_store(mixed, DEVICE, "rpi4", models)
    return inference, mixed


@pytest.fixture(scope="module")
def fitted(dbs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> FitResult:
    out = tmp_path_factory.mktemp("train-est") / "energy"
    return fit_and_export(dbs[1], "energy", out, workload="train", schemes=("grouped",),
                          folds=3)


def _cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

    @app.callback()
    def _root() -> None:
        pass

    fit_cmd.register(app)
    predict_cmd.register(app)
    return app


def test_train_runs_never_enter_the_inference_dataset(dbs: tuple[Path, Path]) -> None:
    inference, mixed = dbs
    before, after = load_dataset(inference), load_dataset(mixed)
    assert after.data_hash() == before.data_hash()
    assert len(after.layers) == len(before.layers) and len(after.wholes) == len(before.wholes)
    assert not any(isinstance(s.desc, PartDesc) for s in after.layers)
    # And the train dataset holds only the train runs.
    train = load_train_dataset(mixed)
    assert train.workload == "train" and {s.device for s in train.layers} == {DEVICE}
    assert all(isinstance(s.desc, PartDesc) and s.source == "train" for s in train.layers)
    assert len(train.wholes) == len(SPECS) and train.setups == {
        "adam, softmax_cross_entropy": len(SPECS)}


def test_each_layer_is_described_by_its_parts(dbs: tuple[Path, Path]) -> None:
    train = load_train_dataset(dbs[1])
    descs = train.model_layers[train.wholes[0].model_sha]
    kernels = [d.kernel for d in descs]
    assert kernels[:3] == ["CONV_2D|forward", "CONV_2D|backward", "CONV_2D|update"]
    assert kernels[-1] == "STEP|other"
    first = descs[1]
    assert isinstance(first, PartDesc) and first.weight_gradient and not first.input_gradient
    # The FLOPs proxy: 3 x forward MACs over the step's parts.
    forward = sum(d.macs for d in descs if isinstance(d, PartDesc) and d.part == "forward")
    assert sum(d.flops_weight * d.macs for d in descs if isinstance(d, PartDesc)) == \
        pytest.approx(3 * forward)


def test_fit_on_train_runs_writes_a_train_estimator(fitted: FitResult) -> None:
    manifest = read_manifest(fitted.directory)
    assert manifest["workload"] == "train" and manifest["target"] == "energy"
    assert manifest["train"]["optimizer"] == "adam"
    assert manifest["train"]["loss"] == "softmax_cross_entropy"
    assert "part=backward" in manifest["features"]["per_device_input"]
    assert any(f.startswith("gp-") and "CONV_2D_forward" in f for f in fitted.files)
    rows = {(r.level, r.estimator): r.scores for r in fitted.metrics}
    assert {("model", "gp"), ("model", "trees"), ("model", "flops")} <= set(rows)
    assert rows[("model", "flops")].n == len(SPECS)
    assert 0 < rows[("model", "gp")].mape_pct < 200
    assert manifest["interval"]["n_models"] == len(SPECS)
    # How far 3 x forward is from the measured parts, per layer type.
    ratios = {r["op"]: r for r in manifest["train"]["part_ratios"]}
    assert {"CONV_2D", "FULLY_CONNECTED", "all"} <= set(ratios)
    assert ratios["all"]["backward_update_over_forward"] > 0
    assert manifest["train"]["step_over_forward"]["n_steps"] == len(SPECS)


def test_a_held_out_models_step_is_predicted_with_an_interval(
        fitted: FitResult, tmp_path: Path) -> None:
    content = _model(HELD_OUT, 99)
    db = tmp_path / "held.duckdb"
    measure_train_into_store(db, DEVICE, "rpi4", [TrainToMeasure("held", content)], seed=7)
    con = duckdb.connect(str(db), read_only=True)
    [(measured,)] = con.execute("SELECT energy_j FROM whole_measurements").fetchall()
    con.close()

    est = Estimator(fitted.directory)
    prediction = est.predict(content, DEVICE)
    assert est.workload == "train"
    total, std = prediction.totals["gp"]
    assert prediction.intervals is not None
    low, high = prediction.intervals["gp"]
    assert low < total < high and std is not None and std > 0
    assert measured / 4 < total < measured * 4  # generous: six training models
    # The baseline is k x 3 x forward MACs, uncorrected.
    forward = sum(i.macs or 0 for i in read_layers(content))
    ratio = est.manifest["devices"][DEVICE]["flops_ratio"]
    assert prediction.totals["flops"][0] == pytest.approx(ratio * 3 * forward)
    parts = {index: p for index, _, p in part_table(prediction, "gp")}
    assert set(parts[0]) == {"forward", "backward", "update"}
    assert set(parts[1]) == {"forward", "backward"}  # a pool: nothing to update
    assert set(parts[None]) == {"other"}


def test_predict_cli_gives_parts_and_the_step(fitted: FitResult, tmp_path: Path) -> None:
    model = tmp_path / "held.tflite"
    model.write_bytes(_model(HELD_OUT, 5))
    runner = CliRunner()
    args = ["predict", str(model), "--device", DEVICE, "--estimator", str(fitted.directory)]
    result = runner.invoke(_cli(), [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["workload"] == "train"
    assert {row["part"] for row in data["layers"]} == {"forward", "backward", "update", "other"}
    gp = {t["estimator"]: t for t in data["totals"]}["gp"]
    assert gp["low90_mJ"] < gp["total_mJ"] < gp["high90_mJ"]
    result = runner.invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert "one training step" in result.stdout and "backward_uJ" in result.stdout


def test_flagged_and_untagged_runs_are_left_out_and_counted() -> None:
    layer: Row = {"model_sha256": "m", "layer_index": 0, "op": "FULLY_CONNECTED", "macs": 40,
             "param_bytes": 176, "act_in_bytes": 64, "act_out_bytes": 40,
             "input_shapes": "4x4", "output_shapes": "4x10"}

    def phases(run: str, flags: list[str], phase: str = "forward") -> list[Row]:
        return [cast(Row, {"run_id": run, "device_name": "d", "model_name": "fc",
                           "model_sha256": "m", "layer_index": 0, "phase": phase,
                           "latency_s": 1e-5, "energy_j": 1e-5, "simulated": True,
                           "flags": flags})]

    def whole(run: str, flags: list[str]) -> Row:
        return cast(Row, {"run_id": run, "device_name": "d", "model_name": "fc",
                          "model_sha256": "m", "latency_p50_s": 1e-4, "latency_mean_s": 1e-4,
                          "energy_j": 1e-4, "simulated": True, "flags": flags})

    rows = (phases("good", []) + phases("bad", ["host_contended"])
            + phases("meter", ["low_coverage"]) + phases("untagged", [], "untagged"))
    data = build_train_dataset({}, rows, [whole("good", []), whole("bad", ["host_contended"])],
                               [layer])
    assert data.unusable == 2 and data.energy_only_unusable == 1 and data.excluded_steps == 1
    assert len(data.wholes) == 1
    [sample] = data.layers
    assert sample.energy_j == pytest.approx(1e-5)  # the meter-flagged energy left out


def test_train_workload_on_a_database_without_train_runs_is_one_line(
        dbs: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(EstimatorError, match="no training steps to fit on"):
        fit_and_export(dbs[0], "energy", tmp_path / "x", workload="train")
    result = run_cli("fit", "--target", "energy", "--workload", "train", "--db", str(dbs[0]),
                     "--out", str(tmp_path / "y"))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no training steps to fit on" in lines[0], result.stderr
    with pytest.raises(EstimatorError, match="--workload"):
        fit_and_export(dbs[1], "energy", tmp_path / "z", workload="serve")
