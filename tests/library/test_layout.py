"""The layout's promises that an import can break: the library imports without a TFLite wheel,
and the boundaries between the library and the two programs hold (lint-imports checks the
import graph in the test command; this checks what actually loads)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

# Hides the TFLite runtime wheels from this process: find_spec() finds nothing, imports fail.
_NO_TFLITE = """
import importlib.abc, os, pkgutil, sys
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ai_edge_litert", "tflite_runtime"):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, _Hide())
os.environ.pop("JOULEFARM_TFLITE_SCHEMA", None)
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _NO_TFLITE + code], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def test_every_library_module_and_the_store_import_without_a_tflite_wheel() -> None:
    done = _run(
        "import joulefarm\n"
        "names = [m.name for m in pkgutil.walk_packages(joulefarm.__path__, 'joulefarm.')\n"
        "         if m.name != 'joulefarm._core']\n"
        "for name in names:\n"
        "    __import__(name)\n"
        "import controller.store, controller.estimators.features\n"
        "print(len(names), 'ai_edge_litert' in sys.modules)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    count, loaded = done.stdout.split()
    assert int(count) > 20 and loaded == "False"


def test_reading_a_model_without_the_schema_says_where_to_get_it() -> None:
    done = _run(
        "from joulefarm.tflite import read_layers\n"
        "from joulefarm.tflite.schema import SchemaUnavailableError\n"
        "try:\n"
        "    read_layers(b'\\x10\\x00\\x00\\x00TFL3' + bytes(64))\n"
        "except SchemaUnavailableError as e:\n"
        "    print('REFUSED', e)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "REFUSED" in done.stdout and "install ai-edge-litert" in done.stdout
    assert "JOULEFARM_TFLITE_SCHEMA" in done.stdout


def test_the_agent_loads_nothing_of_the_controller() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, agent.__main__, agent.server, agent.local\n"
                               "print([m for m in sys.modules if m.startswith('controller')])"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_every_error_joulefarm_raises_on_purpose_is_under_the_root() -> None:
    # Agent errors once sat outside JoulefarmError, so the CLI printed tracebacks for them and
    # the agent's server needed its own list of status codes.
    done = subprocess.run([sys.executable, "-c", """
import importlib, inspect, pkgutil, sys
import agent, controller, joulefarm
from joulefarm.errors import JoulefarmError
outside = []
for package in (joulefarm, agent, controller):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name == "joulefarm._core":
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and not name.startswith("_")
                    and not issubclass(obj, JoulefarmError)):
                outside.append(f"{module.__name__}.{name}")
print("OUTSIDE", outside)
"""], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OUTSIDE []" in done.stdout, done.stdout


def test_no_test_or_benchmark_imports_a_test_module() -> None:
    # Shared helpers live in tests/helpers (or a conftest): a test module is never imported.
    import ast

    offenders = []
    for path in [*REPO.glob("tests/**/*.py"), *REPO.glob("benchmarks/*.py")]:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                parts = name.split(".")
                if parts[0] == "tests" and (path.parts[-2] == "benchmarks"
                                            or any(p.startswith("test_") for p in parts)):
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []
