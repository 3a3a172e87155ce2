"""`joulefarm bench MODEL --mode train --prefixes`: THOR's subtraction beside the events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.app import app
from joulefarm.errors import InputError
from joulefarm.tflite.builder import Conv2D, Flatten, FullyConnected, build_model
from joulefarm.tflite.training import trainable_model

LAYERS = [Conv2D(8), Conv2D(8), Flatten(), FullyConnected(5)]
SHORT = ("--mode", "train", "--profile", "rpi4", "--min-duration-s", "0.1", "--rounds", "1")


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["bench", *args], env={"COLUMNS": "300"})
    return result.exit_code, result.stdout, result.stderr


def _refused(*args: str) -> str:
    """The InputError's one line (``main`` prints it and exits 2; in-process it is raised)."""
    result = CliRunner().invoke(app, ["bench", *args])
    assert isinstance(result.exception, InputError), result.output
    assert result.exception.exit_code == 2
    message = str(result.exception)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def inference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prefixes") / "inference.tflite"
    path.write_bytes(build_model((2, 12, 12, 3), LAYERS, seed=0))
    return path


def test_prints_events_subtraction_and_truth_per_layer(inference: Path) -> None:
    code, out, err = _invoke(str(inference), *SHORT, "--prefixes", "--optimizer", "sgd",
                             "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["layer"] for r in rows] == [0, 1, 2, 3]
    assert [r["op"] for r in rows] == ["CONV_2D", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    for r in rows:
        assert r["events_uj"] > 0 and r["sim_truth_uj"] > 0
        assert r["energy_source"] == "simulated"
        assert r["difference_pct"] == pytest.approx(
            (r["subtraction_uj"] - r["events_uj"]) / r["events_uj"] * 100)
    assert "median |subtraction - events|" in err and "additivity" in err


def test_the_table_ends_with_the_summary(inference: Path) -> None:
    code, out, err = _invoke(str(inference), *SHORT, "--prefixes", "--optimizer", "adam")
    assert code == 0, err
    assert "(SIMULATED)" in out and "subtraction_uj" in out
    assert out.rstrip().splitlines()[-1].startswith("step ")
    assert "median |subtraction - truth|" in out


@pytest.mark.parametrize(("extra", "message"), [
    ((), "--prefixes needs --optimizer"),
    (("--optimizer", "rmsprop"), "unknown optimizer 'rmsprop'"),
    (("--optimizer", "sgd", "--loss", "softmax_cross_entropy"), "trains every prefix with mse"),
])
def test_bad_options_are_one_line_errors(inference: Path, extra: tuple[str, ...],
                                         message: str) -> None:
    assert message in _refused(str(inference), *SHORT, "--prefixes", *extra)


def test_a_trainable_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "trainable.tflite"
    path.write_bytes(trainable_model(LAYERS, (12, 12, 3), loss="mse", optimizer="sgd",
                                     batch_size=2))
    assert "trainable already" in _refused(str(path), *SHORT, "--prefixes", "--optimizer", "sgd")


def test_prefixes_need_train_mode(inference: Path) -> None:
    assert "--prefixes needs --mode train" in _refused(str(inference), "--mode", "whole",
                                                       "--prefixes")
