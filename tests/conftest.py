"""Shared fixtures and settings: property tests, the repository path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import REPO

# CI runs the property tests with derandomized examples: a submission that passed keeps
# passing. Locally they explore new random examples each run (set HYPOTHESIS_PROFILE=ci to
# reproduce CI).
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def repo() -> Path:
    return REPO


# Paths that matter are never silently skipped in CI: provisioning over the real sshd (into the
# device Pythons too), the controller's refusal of an old Python, and the
# real published models. A skip there (sshd, runit or PyPI missing) fails a CI run instead.
_MUST_RUN_MODULES = ("test_provision_", "test_launch")
_MUST_RUN_FIXTURES = ("nmp", "sshd_server", "corpus_model")
_must_run: set[str] = set()
_skipped_must_run: list[str] = []


def _must_run_item(item: pytest.Item) -> bool:
    module = item.nodeid.split("::")[0].rsplit("/", 1)[-1]
    fixtures = getattr(item, "fixturenames", ())
    return (item.get_closest_marker("ssh") is not None
            or item.get_closest_marker("must_run") is not None
            or module.startswith(_MUST_RUN_MODULES)
            or any(f in fixtures for f in _MUST_RUN_FIXTURES))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _must_run.update(item.nodeid for item in items if _must_run_item(item))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and report.nodeid in _must_run:
        _skipped_must_run.append(f"{report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _skipped_must_run:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("CI: tests of paths that matter were skipped (install what "
                                ".ci/run installs):", red=True)
            for line in _skipped_must_run:
                reporter.write_line(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
