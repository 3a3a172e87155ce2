"""Fixtures shared by the controller's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from controller.provision.errors import ProvisionError
from controller.provision.wheel import build_wheel
from tests.helpers.nights import TwoNights, run_two_nights
from tests.helpers.sshd import sshd_server

# A fixture is found by name in a conftest; naming it here is the one import it needs.
__all__ = ["agent_wheel", "in_virtualenv", "sshd_server", "two_nights"]


def in_virtualenv() -> bool:
    return sys.prefix != sys.base_prefix


@pytest.fixture(scope="session")
def agent_wheel() -> Path:
    """The joulefarm wheel (abi3: one for every device Python >= 3.10), built at most once per
    session and cached across sessions."""
    try:
        return build_wheel()
    except ProvisionError as exc:
        pytest.skip(f"cannot build the joulefarm wheel here: {exc}")


@pytest.fixture(scope="session")
def two_nights(tmp_path_factory: pytest.TempPathFactory) -> TwoNights:
    """Two real sweeps on the local simulated farm, one op type dearer on the second night
    (``tests.helpers.nights``): what ``compare`` and ``report`` are tested on (about 25 s)."""
    return run_two_nights(tmp_path_factory.mktemp("nights"))
