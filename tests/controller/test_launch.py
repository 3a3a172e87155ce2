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


def _run_without(missing: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The entry point with ``argv``, every import of package ``missing`` failing."""
    block = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {missing!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = {["joulefarm", *argv]!r}
{_LAUNCH}
"""
    return subprocess.run([sys.executable, "-c", block], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("missing", ["typer", "duckdb"])
def test_a_missing_controller_extra_names_the_install_command(missing: str,
                                                              tmp_path: Path) -> None:
    # typer is imported on start; duckdb only when a command opens the database.
    done = _run_without(missing, ["query", "--db", str(tmp_path / "none.duckdb"), "SELECT 1"])
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"({missing} is missing)" in done.stderr
    assert "pip install 'joulefarm[controller]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("missing", ["sklearn", "onnx"])
def test_fit_without_the_fit_extra_names_it(missing: str, tmp_path: Path) -> None:
    done = _run_without(missing, ["fit", "--target", "latency", "--db",
                                  str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "e")])
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"({missing} is missing)" in done.stderr
    assert "pip install 'joulefarm[fit]'" in done.stderr
    assert "Traceback" not in done.stderr
