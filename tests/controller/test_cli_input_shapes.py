"""Input shapes from the user: ``joulefarm bench --input-shape`` and a suite model's
``input_shapes``, checked, carried to the agent and stored with the job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.server import AgentConfig, build_server
from controller.config.registry import Device, MeterConfig
from controller.config.suite import SuiteError, load_suite
from controller.farm.sweep import Endpoint, run_sweep
from controller.store import ResultStore, query_readonly
from joulefarm.tflite.builder import RECIPES
from tests.helpers import run_cli
from tests.helpers.dynamic_models import audio_model

AUDIO_SHAPES = ["1x16000", "1x16000x1x1", "1x3998x1x8", "1x8", "1x4"]


@pytest.fixture(scope="module")
def audio_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "audio.tflite"
    path.write_bytes(audio_model())
    return path


def _json(stdout: str) -> object:
    return json.loads(stdout[min(i for i in (stdout.find("{"), stdout.find("["))
                                 if i >= 0):max(stdout.rfind("}"), stdout.rfind("]")) + 1])


def test_bench_refuses_a_dynamic_input_without_a_shape(audio_file: Path) -> None:
    proc = run_cli("bench", str(audio_file), timeout=60)
    assert proc.returncode == 2, proc.stderr
    message = " ".join(proc.stderr.split())
    assert (f"error: {audio_file}: model input 'audio' (position 0) has a dynamic shape: "
            "shape_signature [-1, -1] (-1: any size), and no shape was given for it. Give the "
            "shape to run it at: on the command line --input-shape audio=1,N, or in a suite "
            "file input_shapes = { audio = [1, N] } in the model's [[model]] table, where N is "
            "the size to measure at") in message


@pytest.mark.parametrize("mode", ["layers", "insitu"])
def test_bench_measures_at_the_given_shape_per_layer(audio_file: Path, mode: str) -> None:
    proc = run_cli("bench", str(audio_file), "--mode", mode, "--input-shape", "audio=1,16000",
                   "--min-layer-duration-s", "0.002", "--min-duration-s", "0.05", "--json",
                   timeout=120)
    if mode == "insitu" and proc.returncode == 2 and "profiler" in proc.stderr:
        pytest.skip(f"no in-situ profiler here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    data = _json(proc.stdout)
    rows = data["layers"] if isinstance(data, dict) else data
    assert isinstance(rows, list)
    assert [r["input_shapes"] for r in rows] == AUDIO_SHAPES
    assert rows[1]["op"] == "CONV_2D" and rows[1]["macs"] == 3998 * 8 * 9
    assert "batch_defaulted" not in proc.stdout


def test_bench_whole_by_position_and_the_title_says_the_shape(audio_file: Path) -> None:
    proc = run_cli("bench", str(audio_file), "--mode", "whole", "--input-shape", "0=2,8000",
                   "--min-duration-s", "0.05", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "whole, input 0=2x8000" in proc.stdout


def test_bench_reports_bad_shapes_with_exit_code_2(audio_file: Path) -> None:
    wrong_rank = run_cli("bench", str(audio_file), "--input-shape", "audio=1,16000,1",
                         timeout=60)
    assert wrong_rank.returncode == 2
    assert ("model input 'audio' (position 0): the given shape [1, 16000, 1] has 3 dimensions, "
            "the model's shape_signature [-1, -1] has 2") in " ".join(wrong_rank.stderr.split())
    unknown = run_cli("bench", str(audio_file), "--input-shape", "speech=1,16000", timeout=60)
    assert unknown.returncode == 2
    assert ("an input shape is given for 'speech', but the model has no input of that name or "
            "position; its inputs: 'audio' (position 0) shape_signature [-1, -1]"
            ) in " ".join(unknown.stderr.split())
    syntax = run_cli("bench", str(audio_file), "--input-shape", "audio:1,16000", timeout=60)
    assert syntax.returncode == 2 and "expected NAME=D0,D1" in syntax.stderr
    # A fixed dimension contradicted: the model of the recipe has a fixed 1x64x64x3 input.
    fixed = audio_file.parent / "tiny.tflite"
    fixed.write_bytes(RECIPES["tiny_cnn"](0))
    contra = run_cli("bench", str(fixed), "--input-shape", "0=1,32,32,3", timeout=60)
    assert contra.returncode == 2
    assert ("model input 'tiny_cnn/input' (position 0): the given shape [1, 32, 32, 3] "
            "contradicts the model's shape_signature [1, 64, 64, 3]: dimension 1 is fixed at "
            "64") in " ".join(contra.stderr.split())


SUITE = '''schema_version = 1
name = "speech"

[select]
tags = ["t"]

[measure]
mode = "layers"
warmup_iterations = 1
min_layer_duration_s = 0.002
min_iterations = 2
idle_duration_s = 0.06

[[model]]
name = "kws-1s"
file = "audio.tflite"
input_shapes = { audio = [1, 16000] }

[[model]]
name = "kws-half"
file = "audio.tflite"
input_shapes = { 0 = [1, 8000] }
'''


def _suite(tmp_path: Path, audio_file: Path, text: str) -> Path:
    (tmp_path / "audio.tflite").write_bytes(audio_file.read_bytes())
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def _suite_error(tmp_path: Path, audio_file: Path, text: str) -> SuiteError:
    path = _suite(tmp_path, audio_file, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value).startswith(f"{path}:")
    return info.value


def test_suite_input_shapes_load(tmp_path: Path, audio_file: Path) -> None:
    suite = load_suite(_suite(tmp_path, audio_file, SUITE))
    assert [(m.name, m.input_shapes) for m in suite.models] == [
        ("kws-1s", (("audio", (1, 16000)),)), ("kws-half", (("0", (1, 8000)),))]
    # A table of its own works as well as an inline one.
    text = SUITE.replace('input_shapes = { audio = [1, 16000] }\n',
                         '[model.input_shapes]\naudio = [1, 16000]\n')
    assert load_suite(_suite(tmp_path, audio_file, text)).models[0].input_shapes == (
        ("audio", (1, 16000)),)


def test_suite_input_shapes_problems_are_placed(tmp_path: Path, audio_file: Path) -> None:
    err = _suite_error(tmp_path, audio_file, SUITE.replace("{ audio = [1, 16000] }", "[1, 16000]"))
    assert str(err).endswith(":17: model[0].input_shapes: expected a table of input name (or "
                             "position) = shape, e.g. input_shapes = { audio = [1, 16000] }; "
                             "got array [1, 16000]")
    err = _suite_error(tmp_path, audio_file, SUITE.replace("[1, 16000]", "[1, 0]"))
    assert str(err).endswith(":17: model[0].input_shapes.audio[1]: expected an integer >= 1, "
                             "got integer 0")
    err = _suite_error(tmp_path, audio_file, SUITE.replace("[1, 16000]", '"1,16000"'))
    assert str(err).endswith(":17: model[0].input_shapes.audio: expected an array of "
                             "dimensions, e.g. [1, 16000]; got string '1,16000'")
    # The model file is readable now: its input names are checked now.
    err = _suite_error(tmp_path, audio_file, SUITE.replace("audio = [", "audoi = ["))
    assert str(err).endswith(":17: model[0].input_shapes.audoi: audio.tflite has no input "
                             "'audoi' (did you mean 'audio'?); its inputs: 'audio' (position "
                             "0, shape_signature [-1, -1])")
    err = _suite_error(tmp_path, audio_file, SUITE.replace("{ 0 = [", "{ 1 = ["))
    assert str(err).endswith(":22: model[1].input_shapes.1: audio.tflite has no input '1'; its "
                             "inputs: 'audio' (position 0, shape_signature [-1, -1])")
    err = _suite_error(tmp_path, audio_file, SUITE.replace("[1, 8000]", "[1, 8000, 1]"))
    assert str(err).endswith(":22: model[1].input_shapes: audio.tflite: model input 'audio' "
                             "(position 0): the given shape [1, 8000, 1] has 3 dimensions, the "
                             "model's shape_signature [-1, -1] has 2")
    # Not there yet: checked when the model is measured.
    path = _suite(tmp_path, audio_file, SUITE.replace("audio = [", "audoi = [").replace(
        'file = "audio.tflite"', 'file = "later.tflite"'))
    assert load_suite(path).models[0].input_shapes == (("audoi", (1, 16000)),)
    # Input shapes belong to a model, not to [measure].
    err = _suite_error(tmp_path, audio_file, SUITE.replace(
        "idle_duration_s = 0.06\n", "idle_duration_s = 0.06\ninput_shapes = { audio = [1, 2] }\n"))
    assert ":13: measure.input_shapes: unknown key 'input_shapes'" in str(err)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = AgentConfig(name="speech-agent", platform="sim", meter_kind="sim",
                         meter_profile="rpi4", cache_dir=tmp_path_factory.mktemp("cache"))
    server, port, _ = build_server(config, "tok", port=0)
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


def test_suite_input_shapes_reach_the_agent_and_are_stored(tmp_path: Path, audio_file: Path,
                                                           agent: str) -> None:
    suite = load_suite(_suite(tmp_path, audio_file, SUITE))
    device = Device(name="speech-agent", platform="sim", address="127.0.0.1",
                    meter=MeterConfig(kind="sim", profile="rpi4"), tags=("t",))
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        outcome = run_sweep(suite, [device], [Endpoint(device, agent, "tok")], store,
                            devices_file="devices.toml")
    assert outcome.status == "done", outcome
    _, rows = query_readonly(db, "SELECT j.model_name, j.config->'input_shapes', r.flags "
                                 "FROM runs r JOIN jobs j USING (job_id) ORDER BY 1")
    assert [(name, json.loads(shapes)) for name, shapes, _ in rows] == [
        ("kws-1s", {"audio": [1, 16000]}), ("kws-half", {"0": [1, 8000]})]
    # Given shapes: no input was left to a default. (Other run flags, such as
    # implausible_layer_sum when a loaded machine slows the layer loops, are not this
    # test's business.)
    assert all("batch_defaulted" not in flags for _, _, flags in rows)
    _, rows = query_readonly(db, "SELECT r.model_name, l.input_shapes FROM layer_measurements l "
                                 "JOIN runs r USING (run_id) "
                                 "WHERE l.op = 'CONV_2D' ORDER BY 1")
    assert rows == [("kws-1s", "1x16000x1x1"), ("kws-half", "1x8000x1x1")]
    # Without a shape the job fails with the rule's message, naming the input.
    bare = load_suite(_suite(tmp_path, audio_file, SUITE.split("[[model]]")[0]
                             + '[[model]]\nname = "kws"\nfile = "audio.tflite"\n'))
    with ResultStore(db) as store:
        outcome = run_sweep(bare, [device], [Endpoint(device, agent, "tok")], store,
                            devices_file="devices.toml")
    assert outcome.status == "failed"
    (error,) = outcome.devices["speech-agent"].errors
    assert "model input 'audio' (position 0) has a dynamic shape" in error
    assert "input_shapes = { audio = [1, N] }" in error


def test_model_layers_of_a_dynamic_model_without_a_shape_shows_the_file_s_and_says_so(
        tmp_path: Path) -> None:
    path = tmp_path / "audio.tflite"
    path.write_bytes(audio_model())
    done = run_cli("model", "layers", str(path), "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert "the file's shapes: the runtime cannot run the model" in done.stderr
    assert "--input-shape" in done.stderr
