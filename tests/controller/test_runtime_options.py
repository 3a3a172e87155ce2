"""Runtime options reach the interpreter: XNNPACK on/off, an external delegate by path, and
suites that vary them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.local import build_recipe
from agent.measure import measure
from agent.meters.sim import SimMeter
from agent.runtimes.backend import load_interpreter, runtime_info
from controller.config.suite import SuiteError, load_suite
from controller.farm.sweep import job_configs
from joulefarm.errors import ModelError
from joulefarm.results import MeasureSettings


def test_xnnpack_whole_model_runs_and_matches_truth() -> None:
    model = build_recipe("mlp", 0)
    settings = MeasureSettings(mode="whole", min_duration_s=0.1, idle_duration_s=0.1,
                               use_xnnpack=True)
    result = measure(model, hashlib.sha256(model).hexdigest(), SimMeter("host", seed=1),
                     settings, runtime_info())
    assert result.whole is not None and result.whole.iterations >= 5
    assert result.whole.energy_j == pytest.approx(result.whole.true_energy_j, rel=0.05)


def test_a_missing_or_broken_delegate_is_a_clear_error(tmp_path: Path) -> None:
    model = build_recipe("mlp", 0)
    with pytest.raises(ModelError, match="delegate library .*nope.so does not exist"):
        load_interpreter(model, delegate_path=str(tmp_path / "nope.so"))
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not a shared object")
    with pytest.raises(ModelError, match="cannot load delegate library .*junk.so"):
        load_interpreter(model, delegate_path=str(junk))


def test_suite_matrix_over_runtime_options(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('schema_version = 1\nname = "x"\n[matrix]\nuse_xnnpack = [false, true]\n'
                    'num_threads = [1, 2]\n[[model]]\nname = "m"\nrecipe = "mlp"\n')
    configs = job_configs(load_suite(path))
    assert {(c["use_xnnpack"], c["num_threads"]) for c in configs} == {
        (False, 1), (False, 2), (True, 1), (True, 2)}
    path.write_text('schema_version = 1\nname = "x"\n[matrix]\nuse_xnnpack = [1]\n'
                    '[[model]]\nname = "m"\nrecipe = "mlp"\n')
    with pytest.raises(SuiteError, match=r"s.toml:4: matrix.use_xnnpack\[0\]: expected a boolean "
                                         r"\(true or false\), got integer 1"):
        load_suite(path)


def test_repetitions_become_separate_jobs_with_their_own_seed(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('schema_version = 1\nname = "x"\n[measure]\nrepetitions = 3\nseed = 10\n'
                    '[matrix]\nnum_threads = [1, 2]\n[[model]]\nname = "m"\nrecipe = "mlp"\n')
    configs = job_configs(load_suite(path))
    assert len(configs) == 6
    assert sorted((c["num_threads"], c["repetition"], c["seed"]) for c in configs) == [
        (1, 0, 10), (1, 1, 11), (1, 2, 12), (2, 0, 10), (2, 1, 11), (2, 2, 12)]
    path.write_text('schema_version = 1\nname = "x"\n[measure]\nrepetitions = 0\n'
                    '[[model]]\nname = "m"\nrecipe = "mlp"\n')
    with pytest.raises(SuiteError, match="s.toml:4: measure.repetitions: must be >= 1, got 0"):
        load_suite(path)


def test_a_generated_layer_sweep_expands_into_models(tmp_path: Path) -> None:
    from joulefarm.tflite.parse import read_layers

    path = tmp_path / "s.toml"
    path.write_text('schema_version = 1\nname = "x"\n[[model]]\nname = "convs"\n'
                    'sweep = { count = 4, kinds = ["conv", "dwconv"], seed = 7 }\n')
    suite = load_suite(path)
    assert [m.name for m in suite.models] == ["convs-000", "convs-001", "convs-002", "convs-003"]
    ops = [read_layers(m.materialise())[-1].op for m in suite.models]
    assert ops == ["CONV_2D", "DEPTHWISE_CONV_2D"] * 2
    assert all(m.source.startswith("sweep:") for m in suite.models)
    assert load_suite(path).models[1].materialise() == suite.models[1].materialise()
    path.write_text('schema_version = 1\nname = "x"\n[[model]]\nname = "convs"\n'
                    'sweep = { count = 2, kinds = ["warp"] }\n')
    with pytest.raises(SuiteError, match=r"s.toml:5: model\[0\].sweep.kinds\[0\]: unknown sweep "
                                         r"kind 'warp'"):
        load_suite(path)
