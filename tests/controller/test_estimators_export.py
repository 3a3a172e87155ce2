"""Export to ONNX + manifest, prediction with onnxruntime only, and the two commands."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from agent.local import build_recipe
from controller.cli import fit_cmd, predict_cmd
from controller.estimators.errors import EstimatorError
from controller.estimators.export import fit_and_export
from controller.estimators.features import from_layer_info
from controller.estimators.manifest import MANIFEST_NAME, read_manifest
from controller.estimators.models import predict_layers, predict_whole
from controller.estimators.predict import Estimator
from controller.estimators.synthetic import DEVICES, build_synthetic_db
from joulefarm.tflite import read_layers
from joulefarm.tflite.builder import Unary, build_model
from tests.helpers import REPO

FORBIDDEN = {"sklearn", "duckdb", "scipy", "skl2onnx", "onnx", "joblib", "polars", "pyarrow"}


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return build_synthetic_db(tmp_path_factory.mktemp("est") / "syn.duckdb",
                              devices=DEVICES[1:4], n_configs=60, n_chains=6, seed=2)


@pytest.fixture(scope="module")
def fitted(db, tmp_path_factory):
    out = tmp_path_factory.mktemp("est") / "latency"
    return fit_and_export(db, "latency", out, schemes=())


def _model_layers(name: str):
    content = build_recipe(name, 0)
    return content, [from_layer_info(x) for x in read_layers(content)]


def test_manifest(fitted):
    manifest = read_manifest(fitted.directory)
    assert manifest["target"] == "latency" and manifest["unit"] == "s"
    assert len(manifest["training_data_sha256"]) == 64
    assert {"scikit-learn", "onnxruntime", "onnx", "numpy"} <= set(manifest["libraries"])
    features = manifest["features"]
    assert features["per_device_input"][:2] == ["log_macs", "log_param_bytes"]
    assert features["cross_hw_input"][-10:] == [f"ref={r}" for r in
                                                features["reference_models"]]
    assert all("unit" in f for f in features["layer"])
    assert set(manifest["devices"]) == {d.name for d in DEVICES[1:4]}
    for device in manifest["devices"].values():
        assert len(device["device_block"]) == len(features["cross_hw_input"]) - len(
            features["per_device_input"])
    kinds = {e["kind"] for e in manifest["estimators"]}
    assert kinds == {"gp", "trees", "cross_hw"}
    for entry in manifest["estimators"]:
        assert (fitted.directory / entry["file"]).stat().st_size > 0
    assert manifest["correction"]["n_models"] == 6 * 3
    assert all(d["correction"]["n_models"] == 6 for d in manifest["devices"].values())


@pytest.mark.parametrize("name", ["tiny_cnn", "res_block", "concat_pad", "mlp"])
def test_onnx_equals_scikit_learn(fitted, name):
    content, descs = _model_layers(name)
    est = Estimator(fitted.directory)
    for device in est.devices:
        expected = predict_layers(fitted.estimator, device, descs)
        got = est.predict(content, device)
        assert set(got.values) == {"gp", "trees", "cross_hw", "flops"}
        for kind, values in expected.values.items():
            np.testing.assert_allclose(got.values[kind], values, rtol=1e-5)
        # The GP's posterior variance is a small difference of large terms near training
        # points: compare its spread against the prior's scale, not its own.
        gp = fitted.estimator.per_device[device]
        prior = max(m.gp.kernel_parts[0] ** 0.5 * float(np.ravel(m.gp.gp._y_train_std)[0])
                    for m in gp.values() if m.gp is not None)
        assert got.gp_std is not None and got.gp_log_std is not None
        np.testing.assert_allclose(got.gp_log_std, expected.gp_log_std, rtol=0,
                                   atol=1e-5 * prior)
        totals = predict_whole(fitted.estimator, device, descs)
        for kind, (total, std) in totals.items():
            assert got.totals[kind][0] == pytest.approx(total, rel=1e-5)
            if std is not None:
                assert got.totals[kind][1] == pytest.approx(std, rel=1e-3)


def test_unknown_device_lists_the_known_ones(fitted):
    content, _ = _model_layers("tiny_cnn")
    with pytest.raises(EstimatorError, match="unknown device 'pixel-9'.*syn-laptop"):
        Estimator(fitted.directory).predict(content, "pixel-9")


def test_not_an_estimator_directory(tmp_path):
    with pytest.raises(EstimatorError, match="not an estimator directory"):
        Estimator(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": "other"}))
    with pytest.raises(EstimatorError, match="not a joulefarm estimator"):
        Estimator(tmp_path)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_predict_needs_no_scikit_learn_or_duckdb():
    # Walk predict.py and every controller.estimators module it reaches.
    todo, seen = ["controller.estimators.predict"], set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for name in _imports(REPO / (module.replace(".", "/") + ".py")):
            assert name.split(".")[0] not in FORBIDDEN, f"{module} imports {name}"
            if name.startswith("controller.estimators."):
                todo.append(name)
    assert {"controller.estimators.features", "controller.estimators.combine"} <= seen
    # And at run time, nothing pulls them in indirectly (joulefarm.tflite, joulefarm.errors...).
    code = ("import sys, controller.estimators.predict, controller.cli.predict_cmd; "
            f"bad = sorted(m for m in {sorted(FORBIDDEN)!r} if m in sys.modules); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def _cli() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

    @app.callback()
    def _root() -> None:
        pass

    fit_cmd.register(app)
    predict_cmd.register(app)
    return app


def test_cli_fit_and_predict(db, tmp_path):
    runner = CliRunner()
    out = tmp_path / "energy"
    result = runner.invoke(_cli(), ["fit", "--target", "energy", "--db", str(db), "--out",
                                    str(out), "--folds", "2", "--splits", "grouped",
                                    "--no-validate-gp", "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "split,level,estimator,n,mape_pct,rmspe_pct,within_5_pct," \
                       "within_10_pct,spearman"
    assert any(",const_power," in line for line in lines)
    assert (out / "metrics.csv").read_text().splitlines()[0] == lines[0]
    assert "energy SIMULATED" in (out / "metrics.md").read_text()
    manifest = read_manifest(out)
    assert manifest["energy_source"] == "simulated" and manifest["preferred"] in (
        "gp", "trees", "cross_hw")

    model = tmp_path / "tiny.tflite"
    model.write_bytes(build_recipe("tiny_cnn", 0))
    result = runner.invoke(_cli(), ["predict", str(model), "--device", "syn-pi5",
                                    "--estimator", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["energy_source"] == "simulated" and len(data["layers"]) == 8
    totals = {t["estimator"]: t for t in data["totals"]}
    assert totals["gp"]["std_mJ"] > 0 and totals["flops"]["std_mJ"] is None
    # Calibrated on the chains the grouped folds held out (whole models of 2+ layers).
    assert manifest["interval"]["n_models"] > 0 and "gp" in manifest["interval"]["floor"]
    assert data["interval_level"] == 0.9 and data["unseen_ops"] == []
    gp = totals["gp"]
    assert gp["low90_mJ"] < gp["total_mJ"] < gp["high90_mJ"]

    # An op no training sample had: named, priced by its family, its interval wider.
    sine = tmp_path / "sine.tflite"
    sine.write_bytes(build_model((1, 8, 8, 16), [Unary("SIN")]))
    result = runner.invoke(_cli(), ["predict", str(sine), "--device", "syn-pi5",
                                    "--estimator", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    unseen = json.loads(result.stdout)
    assert unseen["unseen_ops"] == ["SIN"]
    sine_gp = {t["estimator"]: t for t in unseen["totals"]}["gp"]
    assert sine_gp["high90_mJ"] / sine_gp["total_mJ"] > 1.5 * gp["high90_mJ"] / gp["total_mJ"]
    result = runner.invoke(_cli(), ["predict", str(sine), "--device", "syn-pi5",
                                    "--estimator", str(out)])
    assert "ops never seen in training: SIN" in result.stdout
    result = runner.invoke(_cli(), ["predict", str(model), "--device", "syn-pi5",
                                    "--estimator", str(out)])
    assert result.exit_code == 0 and "whole model" in result.stdout
    result = runner.invoke(_cli(), ["predict", str(model), "--device", "nope", "--estimator",
                                    str(out)])
    assert isinstance(result.exception, EstimatorError)


def test_cli_rejects_bad_input(db, tmp_path):
    runner = CliRunner()
    result = runner.invoke(_cli(), ["fit", "--target", "power", "--db", str(db), "--out",
                                    str(tmp_path)])
    assert isinstance(result.exception, EstimatorError) and "--target" in str(result.exception)
    result = runner.invoke(_cli(), ["fit", "--target", "latency", "--db", str(db), "--out",
                                    str(tmp_path), "--splits", "random"])
    assert isinstance(result.exception, EstimatorError)
    result = runner.invoke(_cli(), ["fit", "--target", "latency", "--db",
                                    str(tmp_path / "none.duckdb"), "--out", str(tmp_path)])
    assert isinstance(result.exception, EstimatorError) and "no results database" in str(
        result.exception)


def test_an_estimator_of_another_feature_set_asks_for_a_refit(fitted, tmp_path):
    for f in fitted.directory.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["features"]["per_device_input"].remove("family=fft")  # as fitted before it
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(EstimatorError, match="another feature set.*refit it"):
        Estimator(tmp_path)
