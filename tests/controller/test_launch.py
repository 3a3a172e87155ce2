"""The `joulefarm` entry point on a Python or an install that cannot run the controller: one
clear line and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.helpers.pythons import find_python

_LAUNCH = "from controller.cli.launch import main; main()"


def test_an_old_python_is_told_the_controller_needs_3_11() -> None:
    python = find_python("3.10")
    if python is None:
        pytest.skip("no CPython 3.10 here (pyenv)")
    done = subprocess.run([str(python), "-c", _LAUNCH, "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2
    assert "the controller needs Python 3.11 or newer; this is 3.10" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("missing", ["typer", "duckdb"])
def test_a_missing_controller_extra_names_the_install_command(missing: str,
                                                              tmp_path: Path) -> None:
    # typer is imported on start; duckdb only when a command opens the database.
    block = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {missing!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["joulefarm", "query", "--db", {str(tmp_path / "none.duckdb")!r}, "SELECT 1"]
{_LAUNCH}
"""
    done = subprocess.run([sys.executable, "-c", block], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"({missing} is missing)" in done.stderr
    assert "pip install 'joulefarm[controller]'" in done.stderr
    assert "Traceback" not in done.stderr
