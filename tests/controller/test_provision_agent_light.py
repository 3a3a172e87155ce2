"""The agent stays light on a device: it never imports controller-side packages, and what it
does import is covered by the ONE requirements list provisioning installs."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from controller.provision.requirements import (
    AGENT_REQUIREMENTS,
    HEAVY_DISTRIBUTIONS,
    HEAVY_MODULES,
    LITERT_REQUIREMENT,
    UnsupportedDeviceError,
    agent_requirements,
)
from tests.helpers import REPO

# Shipped to the device: the agent and the generated gRPC code (not protos/generate.py, a
# development tool). joulefarm/ is the Rust core's thin Python front.
DEVICE_SOURCES = [*sorted((REPO / "agent").rglob("*.py")),
                  *sorted((REPO / "protos" / "joulefarm").rglob("*.py")),
                  REPO / "joulefarm" / "__init__.py"]
# Import name -> the distribution that provides it.
PROVIDED_BY = {
    "grpc": "grpcio",
    "grpc_health": "grpcio-health-checking",
    "grpc_reflection": "grpcio-reflection",
    "google": "protobuf",
    "numpy": "numpy",
    "flatbuffers": "flatbuffers",
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
}
OWN_PACKAGES = {"agent", "protos", "joulefarm"}  # inside the joulefarm wheel
CONTROLLER_ONLY = {"duckdb", "pyarrow", "polars", "typer", "rich", "paramiko"}


def _optional_imports(tree: ast.AST) -> set[int]:
    """ids of import nodes inside ``try: ... except ImportError`` (optional extras)."""
    optional: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {t.id for t in types if isinstance(t, ast.Name)}
        if caught & {"ImportError", "ModuleNotFoundError"}:
            for stmt in node.body:
                optional |= {id(n) for n in ast.walk(stmt)
                             if isinstance(n, ast.Import | ast.ImportFrom)}
    return optional


def imported_modules(path: Path) -> set[str]:
    """Top-level modules `path` needs, at any depth (lazy imports count too; imports guarded by
    ``except ImportError`` are optional extras and do not)."""
    names = set()
    tree = ast.parse(path.read_text(), str(path))
    optional = _optional_imports(tree)
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def dist_name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()


def test_device_code_never_imports_heavy_packages() -> None:
    offenders = {
        f"{path.relative_to(REPO)}: {name}"
        for path in DEVICE_SOURCES for name in imported_modules(path) if name in HEAVY_MODULES
    }
    assert not offenders


def test_every_third_party_import_is_installed_on_the_device() -> None:
    installed = {dist_name(r) for r in agent_requirements((3, 11), "x86_64")}
    installed |= {dist_name(r) for r in agent_requirements((3, 10), "aarch64")}
    missing = set()
    for path in DEVICE_SOURCES:
        for name in imported_modules(path):
            if name in sys.stdlib_module_names or name in OWN_PACKAGES:
                continue
            if PROVIDED_BY.get(name) not in installed:
                missing.add(f"{path.relative_to(REPO)}: {name}")
    assert not missing


def test_requirements_agree_with_pyproject() -> None:
    """pyproject's base dependencies are exactly what a device gets: the controller's packages
    are an extra, so `pip install joulefarm` on a device pulls in nothing heavy either."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == sorted([*AGENT_REQUIREMENTS, LITERT_REQUIREMENT])
    assert project["requires-python"] == ">=3.10"
    for python in ((3, 10), (3, 11), (3, 13)):
        assert agent_requirements(python, "aarch64") == (*AGENT_REQUIREMENTS, LITERT_REQUIREMENT)
    controller = {dist_name(r) for r in project["optional-dependencies"]["controller"]}
    assert set(HEAVY_DISTRIBUTIONS) - {"scikit-learn", "scipy", "onnx"} <= controller
    assert not controller & {dist_name(r) for r in agent_requirements((3, 11), "x86_64")}


@pytest.mark.parametrize("python", [(3, 8), (3, 9)])
def test_an_old_device_python_is_refused_with_what_to_do(python: tuple[int, int]) -> None:
    # JetPack 5 ships Python 3.8: the error names the fixes, whichever runtime is asked for.
    for python_runtime in (True, False):
        with pytest.raises(UnsupportedDeviceError) as err:
            agent_requirements(python, "aarch64", python_runtime=python_runtime)
        message = str(err.value)
        assert f"Python is {python[0]}.{python[1]}" in message and "3.10 or newer" in message
        assert "ssh.python" in message and "deadsnakes" in message
        assert "ssh.litert_lib" in message


def test_32_bit_arm_is_refused_unless_given_a_litert_library() -> None:
    with pytest.raises(UnsupportedDeviceError, match="64-bit OS"):
        agent_requirements((3, 11), "armv7l")
    assert agent_requirements((3, 11), "armv7l", python_runtime=False) == AGENT_REQUIREMENTS


def test_agent_starts_where_controller_packages_cannot_be_imported() -> None:
    # As on a device: importing any controller-only package fails outright.
    code = f"""
import importlib.abc, sys
BLOCKED = {sorted(HEAVY_MODULES)!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on the device")
sys.meta_path.insert(0, Block())
import agent.__main__, agent.server
print(sorted(m for m in BLOCKED if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
