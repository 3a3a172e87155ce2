"""Fixtures of the agent's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from joulefarm.tflite.published import BASIC_PITCH_NMP, DownloadError, fetch


@pytest.fixture(scope="session")
def nmp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """basic-pitch 0.4.0's nmp.tflite (Apache-2.0, float32, 222 ops), fetched from its PyPI
    wheel once and kept in pytest's cache directory."""
    pytest_cache = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    if pytest_cache is not None:
        cache = Path(pytest_cache.mkdir("joulefarm-models"))
    else:  # the cache plugin is off (-p no:cacheprovider): download per session
        cache = tmp_path_factory.mktemp("joulefarm-models")
    try:
        return fetch(BASIC_PITCH_NMP, cache)
    except DownloadError as e:
        pytest.skip(f"{e} (network unreachable?)")
