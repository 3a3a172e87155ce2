"""The ``joulefarm`` command's entry point: says plainly when this Python, or this install,
cannot run the controller, before importing anything that would fail with a traceback.

Kept to syntax every Python 3 parses: it is what a user on a device's old Python sees.
"""

from __future__ import annotations

import sys

MIN_PYTHON = (3, 11)
# What the `controller` extra installs (pyproject.toml), by import name.
CONTROLLER_PACKAGES = ("duckdb", "pytz", "pyarrow", "polars", "typer", "paramiko", "packaging",
                       "onnxruntime", "rich", "cronsim", "matplotlib", "scipy",
                       "cryptography")
# What the `fit` extra installs (joulefarm fit), by import name.
FIT_PACKAGES = ("sklearn", "onnx")


def main() -> None:
    if sys.version_info < MIN_PYTHON:
        have = f"{sys.version_info[0]}.{sys.version_info[1]}"
        sys.stderr.write(
            f"joulefarm: the controller needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; "
            f"this is {have} ({sys.executable}).\nA device runs only the agent, on Python 3.10 "
            "or newer: `joulefarm provision` installs it there.\n")
        sys.exit(2)
    try:
        from controller.cli.app import main as app_main

        # Commands import what they need when they run (--help stays fast): a missing
        # package shows up here too, not only at the import above.
        app_main()
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in FIT_PACKAGES:
            sys.stderr.write(
                f"joulefarm: fitting estimators needs the fit extra ({exc.name} is missing). "
                "Install it with: pip install 'joulefarm[fit]' (from a checkout: "
                "pip install -e '.[controller,fit]'). Predicting needs only the controller "
                "extra.\n")
            sys.exit(2)
        if missing not in CONTROLLER_PACKAGES:
            raise
        sys.stderr.write(
            f"joulefarm: the controller's packages are not installed ({exc.name} is missing). "
            "Install them with: pip install 'joulefarm[controller]' (from a checkout: "
            "pip install -e '.[controller]').\n")
        sys.exit(2)
