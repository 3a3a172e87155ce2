"""Shared fixtures: repository paths and a helper to run the joulefarm command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests with derandomized examples: a submission that passed keeps
# passing. Locally they explore new random examples each run (set HYPOTHESIS_PROFILE=ci to
# reproduce CI).
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``joulefarm ARGS`` as a separate process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli.app import main; main()", *args],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture
def repo() -> Path:
    return REPO
