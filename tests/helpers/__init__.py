"""What several tests share: the repository's paths and running the joulefarm command. Test
modules import shared helpers from this package, never from one another."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``joulefarm ARGS`` as a separate process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", "from controller.cli.app import main; main()", *args],
        cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout, env=full_env)
