"""Suite files are checked as the device registry is: file:line:field, every problem, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config.suite import SuiteError, load_suite
from tests.helpers import run_cli

GOOD = '''schema_version = 1
name = "night"

[select]
tags = ["pi"]

[measure]
mode = "whole"
min_duration_s = 0.5

[[model]]
name = "cnn"
recipe = "tiny_cnn"
'''


def _error(tmp_path: Path, text: str) -> SuiteError:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert str(info.value).startswith(f"{path}:")
    return info.value


def test_a_good_suite_loads(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(GOOD)
    suite = load_suite(path)
    assert suite.name == "night" and suite.select_tags == ("pi",)
    assert suite.settings.mode == "whole" and suite.settings.min_duration_s == 0.5
    assert [m.name for m in suite.models] == ["cnn"]


def test_wrong_types_are_errors_with_their_line_not_crashes(tmp_path: Path) -> None:
    # `measure = 5` crashed with a TypeError (exit 1); `model = ["a"]` was reported as
    # "model[0].a: unknown key".
    err = _error(tmp_path, GOOD.replace('[measure]\nmode = "whole"\nmin_duration_s = 0.5\n', "")
                 .replace('name = "night"\n', 'name = "night"\nmeasure = 5\n'))
    assert str(err).endswith(":3: measure: expected a table, got integer 5")
    err = _error(tmp_path, 'schema_version = 1\nname = "x"\nmodel = ["a"]\n')
    assert str(err).endswith(":3: model[0]: expected a table ([[model]] with name = ...), got "
                             "string 'a'")


def test_unknown_keys_and_choices_say_did_you_mean_and_every_problem_is_kept(
        tmp_path: Path) -> None:
    text = GOOD.replace('mode = "whole"', 'mode = "wholе_model"').replace(
        "min_duration_s", "min_duraton_s").replace('recipe = "tiny_cnn"', 'recipe = "tiny_cn"')
    err = _error(tmp_path, text)
    messages = [f"{e.line}: {e.field}: {e.message}" for e in err.problems]
    assert messages[0].startswith("8: measure.mode: unknown mode 'wholе_model'")
    assert messages[1] == ("9: measure.min_duraton_s: unknown key 'min_duraton_s' (did you "
                           "mean 'min_duration_s'?)")
    assert messages[2] == ("13: model[0].recipe: unknown recipe 'tiny_cn' (did you mean "
                           "'tiny_cnn'?); expected one of: concat_pad, mlp, mlp_int8, "
                           "res_block, res_block_int8, tiny_cnn, tiny_cnn_int8")
    assert str(err) == str(err.problems[0])


def test_train_mode_takes_a_train_table(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    train = GOOD.replace('mode = "whole"', 'mode = "train"')
    path.write_text(train + '\n[train]\noptimizer = "sgd"\nbatch_size = 8\n')
    suite = load_suite(path)
    assert suite.settings.mode == "train"
    assert suite.train is not None and suite.train.optimizer == "sgd"
    assert suite.train.batch_size == 8 and suite.train.loss == "mse"
    path.write_text(train)  # the defaults
    assert load_suite(path).train is not None


def test_train_table_problems_are_placed(tmp_path: Path) -> None:
    train = GOOD.replace('mode = "whole"', 'mode = "train"')
    err = _error(tmp_path, train + '\n[train]\noptimizer = "adamw"\n')
    assert "train.optimizer: unknown optimizer 'adamw'" in str(err)
    assert "did you mean 'adam'" in str(err)
    err = _error(tmp_path, train + '\n[train]\nbatch_size = 0\n')
    assert "train.batch_size" in str(err)
    err = _error(tmp_path, train + '\n[train]\nbatchsize = 8\n')
    assert "train.batchsize" in str(err) and "batch_size" in str(err)
    err = _error(tmp_path, GOOD + '\n[train]\noptimizer = "sgd"\n')
    assert 'train: a [train] table needs [measure] mode = "train"' in str(err)
    err = _error(tmp_path, train.replace("min_duration_s = 0.5", "use_xnnpack = true"))
    assert "measure.use_xnnpack: train mode attributes every op" in str(err)
    err = _error(tmp_path, train + '\n[train]\nprefixes = true\ntrainable_layers = 1\n')
    assert "train.prefixes: the prefixes train every layer with weights" in str(err)
    err = _error(tmp_path, train + '\n[train]\nprefixes = "yes"\n')
    assert "train.prefixes: expected a boolean" in str(err)
    err = _error(tmp_path, GOOD + '\n[matrix]\nmode = ["insitu", "train"]\n')
    assert "matrix.mode[1]: mode 'train' measures a trainable model" in str(err)


def test_schedule_and_select_problems_are_placed(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD + '\n[schedule]\ncron = "0 25 * * *"\n')
    assert ":16: schedule.cron: hour: '25' is not valid" in str(err)
    err = _error(tmp_path, GOOD.replace('tags = ["pi"]', 'tags = ["pi", 3]'))
    assert str(err).endswith(":5: select.tags[1]: expected a string, got integer 3")


def test_the_cli_exits_2_with_the_place(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(GOOD.replace('[measure]\nmode = "whole"\nmin_duration_s = 0.5\n', "")
                    .replace('name = "night"\n', 'name = "night"\nmeasure = 5\n'))
    done = run_cli("sweep", "run", str(path), "--db", str(tmp_path / "r.duckdb"))
    assert done.returncode == 2, done.stderr
    assert f"{path}:3: measure: expected a table, got integer 5" in done.stderr


def test_suite_init_writes_a_template_that_checks_and_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "nightly.toml"
    done = run_cli("suite", "init", str(path))
    assert done.returncode == 0, done.stderr
    suite = load_suite(path)
    assert suite.name == "nightly" and [m.name for m in suite.models] == ["tiny_cnn"]
    check = run_cli("suite", "check", str(path))
    assert check.returncode == 0, check.stderr
    assert "1 models" in check.stdout and "jobs per sweep" in check.stdout
    again = run_cli("suite", "init", str(path))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_suite_check_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GOOD.replace('mode = "whole"', 'mode = "layer"').replace(
        "[[model]]", "[[models]]"))
    done = run_cli("suite", "check", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (f"error: {path}:8: measure.mode: unknown mode 'layer' (did you mean "
                        "'layers'?); expected one of: layers, whole, insitu, train")
    assert any("models: unknown key 'models' (did you mean 'model'?)" in x for x in lines)


def test_select_tags_means_devices_carrying_all_of_them(tmp_path: Path) -> None:
    from controller.config.registry import load_registry

    devices = tmp_path / "devices.toml"
    devices.write_text(
        "schema_version = 1\n" + "".join(
            f'[[device]]\nname = "{name}"\nplatform = "linux"\naddress = "127.0.0.1"\n'
            f'local = true\ntags = {tags}\n[device.meter]\nkind = "sim"\nprofile = "host"\n'
            for name, tags in (("a", '["pi", "lab"]'), ("b", '["pi"]'), ("c", '["lab"]'))))
    suite_path = tmp_path / "s.toml"
    suite_path.write_text(GOOD.replace('tags = ["pi"]', 'tags = ["pi", "lab"]'))
    suite = load_suite(suite_path)
    chosen = load_registry(devices).select(names=suite.select_names or None,
                                           tags=suite.select_tags or None)
    assert [d.name for d in chosen] == ["a"]
    done = run_cli("suite", "check", str(suite_path), "--devices", str(devices))
    assert "devices (" in done.stdout and ": a; " in done.stdout


def test_the_reference_suite_is_built_in_and_its_models_are_the_reference_set() -> None:
    from joulefarm.tflite.sweep import reference_models

    suite = load_suite("reference")
    assert suite.path.name == "reference.toml" and suite.settings.mode == "whole"
    assert [(m.name, m.materialise()) for m in suite.models] == reference_models()
    done = run_cli("suite", "check", "reference")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("entry", "message"), [
    ('reference = true\nrecipe = "mlp"', "model[1].recipe: a reference = true entry takes no "
                                         "other source"),
    ('name = "refs"\nreference = true', "model[1].name: the reference set's models are always "
                                        "named ref:MEMBER"),
    ("reference = false", "model[1].reference: false lists nothing"),
    ('reference = "yes"', "model[1].reference: expected a boolean"),
    ('name = "ref:mlp"\nrecipe = "mlp"\n\n[[model]]\nreference = true',
     "model[2].reference: duplicate model name 'ref:mlp'"),
])
def test_reference_entries_are_checked(tmp_path: Path, entry: str, message: str) -> None:
    err = _error(tmp_path, GOOD + "\n[[model]]\n" + entry + "\n")
    assert message in str(err), str(err)


def test_a_reference_entry_lists_the_ten_models(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(GOOD + "\n[[model]]\nreference = true\n")
    names = [m.name for m in load_suite(path).models]
    assert names[0] == "cnn" and len(names) == 11 and names[1] == "ref:tiny_cnn"


# --------------------------------------------------------------------------------------------
# What a hostile or mistaken file must not do: crash, hang, or plan work that wedges a device
# --------------------------------------------------------------------------------------------

_DEEP = {
    "arrays": "a = " + "[" * 100_000 + "\n",
    "inline-tables": "a = " + "{ b = " * 50_000 + "1" + " }" * 50_000 + "\n",
    "dotted-key": "a" + ".a" * 100_000 + " = 1\n",
    "header": "[a" + ".a" * 100_000 + "]\n",
}


@pytest.mark.parametrize("deep", list(_DEEP), ids=list(_DEEP))
def test_deep_nesting_is_an_error_naming_the_file_not_a_crash(tmp_path: Path, deep: str) -> None:
    # Was: RecursionError (exit 1, "internal error"), or tomllib working for ever on the key.
    path = tmp_path / "deep.toml"
    path.write_text('schema_version = 1\nname = "x"\n' + _DEEP[deep])
    done = run_cli("suite", "check", str(path), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{path}:3: " in done.stderr and "nested more than 32 levels deep" in done.stderr


def test_nesting_within_the_bound_reads_and_beyond_it_is_placed(tmp_path: Path) -> None:
    # extra and a are two levels, each array one more: the 1 sits 32 levels down.
    inner = "[" * 30 + "1" + "]" * 30
    err = _error(tmp_path, GOOD + f"\n[extra]\na = {inner}\n")
    assert err.field == "extra" and "unknown key 'extra'" in err.message
    err = _error(tmp_path, GOOD + f"\n[extra]\na = [{inner}]\n")
    assert err.line == 16 and err.field.startswith("extra.a[0][0]")
    assert "nested more than 32 levels deep" in err.message


@pytest.mark.parametrize(("line", "message"), [
    ("num_threads = 100000", "measure.num_threads: must be <= 256, got 100000"),
    ("num_threads = 0", "measure.num_threads: must be >= 1, got 0"),
    ("warmup_iterations = 100000000", "measure.warmup_iterations: must be <= 10000, got"),
    ("min_iterations = 1000001", "measure.min_iterations: must be <= 1000000, got 1000001"),
    ("min_layer_duration_s = 1e9", "measure.min_layer_duration_s: must be <= 60, got 1000000000"),
    ("min_duration_s = 1e300", "measure.min_duration_s: must be <= 3600, got 1e+300"),
    ("min_duration_s = inf", "measure.min_duration_s: must be a finite number, got inf"),
    ("idle_duration_s = nan", "measure.idle_duration_s: must be a finite number, got nan"),
    ("idle_duration_s = -1.0", "measure.idle_duration_s: must be >= 0, got -1"),
    ("seed = 18446744073709551616", "measure.seed: must be <= 4294967295, got"),
    ("timeout_s = 1e300", "measure.timeout_s: must be <= 21600, got 1e+300"),
    ("timeout_s = inf", "measure.timeout_s: must be a finite number, got inf"),
    ("repetitions = 1001", "measure.repetitions: must be <= 1000, got 1001"),
])
def test_numeric_settings_are_bounded(tmp_path: Path, line: str, message: str) -> None:
    err = _error(tmp_path, GOOD.replace("min_duration_s = 0.5", line))
    assert f"{err.line}: {err.field}: {err.message}".startswith(f"9: {message}"), str(err)


@pytest.mark.parametrize(("entry", "message"), [
    ('name = "s"\nsweep = { count = 5000 }', "model[1].sweep.count: must be <= 1000, got 5000"),
    ('name = "s"\nsweep = { count = 2, max_macs = 0 }', "model[1].sweep.max_macs: must be >= 1"),
    ('name = "s"\nsweep = { count = 2, seed = -1 }', "model[1].sweep.seed: must be >= 0, got -1"),
    ('name = "r"\nrecipe = "mlp"\nseed = 4294967296', "model[1].seed: must be <= 4294967295"),
    ('name = "r"\nrecipe = "mlp"\ninput_shapes = { 0 = [1, 100000, 100000] }',
     "model[1].input_shapes.0: 10000000000 elements, more than 268435456"),
])
def test_model_numbers_are_bounded(tmp_path: Path, entry: str, message: str) -> None:
    err = _error(tmp_path, GOOD + "\n[[model]]\n" + entry + "\n")
    assert message in str(err), str(err)


def test_matrix_values_are_bounded_each(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD + "\n[matrix]\nnum_threads = [1, 1000]\n")
    assert str(err).endswith(":16: matrix.num_threads[1]: must be <= 256, got 1000")


def test_every_numeric_measuring_setting_has_a_bound() -> None:
    from dataclasses import fields

    from joulefarm.limits import MEASURE_BOUNDS
    from joulefarm.results import MeasureSettings

    numeric = {f.name for f in fields(MeasureSettings) if f.type in ("int", "float")}
    assert numeric == set(MEASURE_BOUNDS)


def test_a_matrix_of_a_million_jobs_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    # Was: `suite check` built every combination in memory (and `sweep run` planned them all).
    path = tmp_path / "big.toml"
    seeds = ", ".join(str(i) for i in range(1000))
    path.write_text(GOOD + f"\n[matrix]\nseed = [{seeds}]\nmin_iterations = [{seeds}]\n")
    done = run_cli("suite", "check", str(path), timeout=60)
    assert done.returncode == 2, done.stderr
    assert (f"{path}:15: matrix: the suite plans 1,000,000 jobs per device, more than 10,000: "
            "1 model x 1,000,000 configurations (seed 1,000 x min_iterations 1,000) x 1 "
            "repetition") in done.stderr


def test_sweeps_and_repetitions_count_towards_the_job_bound(tmp_path: Path) -> None:
    text = GOOD.replace("min_duration_s = 0.5", "repetitions = 20") + (
        '\n[[model]]\nname = "s"\nsweep = { count = 600 }\n')
    err = _error(tmp_path, text)
    assert err.line == 9 and err.field == "measure.repetitions"
    assert "12,020 jobs per device, more than 10,000: 601 models x 1 configuration x 20 " \
           "repetitions" in err.message


def _fifo(path: Path) -> Path:
    import os

    os.mkfifo(path)
    return path


def test_a_fifo_as_the_suite_file_is_refused(tmp_path: Path) -> None:
    path = _fifo(tmp_path / "suite.toml")
    done = run_cli("suite", "check", str(path), timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"{path}:0: is a named pipe (FIFO), not a suite file" in done.stderr


@pytest.mark.parametrize("shapes", ["", "input_shapes = { 0 = [1, 4] }\n"], ids=["plain", "shapes"])
def test_a_fifo_as_a_model_file_is_refused_at_its_line(tmp_path: Path, shapes: str) -> None:
    # Was: accepted by `suite check` (exit 0), and with input_shapes a read that never ended.
    _fifo(tmp_path / "pipe.tflite")
    path = tmp_path / "suite.toml"
    path.write_text(GOOD + f'\n[[model]]\nname = "p"\nfile = "pipe.tflite"\n{shapes}')
    done = run_cli("suite", "check", str(path), timeout=60)
    assert done.returncode == 2, done.stderr
    assert (f"{path}:17: model[1].file: pipe.tflite is a named pipe (FIFO), not a model file"
            in done.stderr)
    from controller.config.suite import ModelSpec

    with pytest.raises(SuiteError, match="is a named pipe"):  # read when a sweep runs
        ModelSpec(name="p", file=tmp_path / "pipe.tflite").materialise()


def test_a_model_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    from joulefarm.limits import MAX_MODEL_FILE_BYTES

    with open(tmp_path / "huge.tflite", "wb") as f:
        f.truncate(MAX_MODEL_FILE_BYTES + 1)  # sparse: nothing is written
    path = tmp_path / "suite.toml"
    path.write_text(GOOD + '\n[[model]]\nname = "h"\nfile = "huge.tflite"\n')
    err = _error(tmp_path, path.read_text())
    assert (err.line, err.field) == (17, "model[1].file")
    assert err.message == ("huge.tflite is 536,870,913 bytes; a model file may be at most "
                           "536,870,912 bytes")


def test_a_suite_file_over_the_size_bound_is_refused(tmp_path: Path) -> None:
    from joulefarm.limits import MAX_CONFIG_FILE_BYTES

    path = tmp_path / "suite.toml"
    with open(path, "wb") as f:
        f.truncate(MAX_CONFIG_FILE_BYTES + 1)
    with pytest.raises(SuiteError, match=r":0: is 4,194,305 bytes; a suite file may be at most "
                                         r"4,194,304 bytes$"):
        load_suite(path)
