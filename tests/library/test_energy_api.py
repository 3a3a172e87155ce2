"""The public joulefarm API: exports, build profile, stub in sync with the extension."""

import ast
from pathlib import Path

import joulefarm
from joulefarm import _core


def test_build_profile_and_version():
    assert joulefarm.build_profile() in {"release", "debug"}
    assert joulefarm.__version__ == _core.__version__
    assert joulefarm.__version__.count(".") == 2


def test_every_public_name_is_exported():
    for name in joulefarm.__all__:
        assert hasattr(joulefarm, name), name


def test_stub_declares_every_extension_name():
    stub = Path(joulefarm.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    declared = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            declared.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            declared.add(node.target.id)
    public = {name for name in dir(_core) if not name.startswith("_")} | {"__version__"}
    assert public <= declared, public - declared
    assert (Path(joulefarm.__file__).parent / "py.typed").exists()
