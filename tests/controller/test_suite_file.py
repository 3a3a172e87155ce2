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
                        "'layers'?); expected one of: layers, whole, insitu")
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
