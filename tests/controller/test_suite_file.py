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
