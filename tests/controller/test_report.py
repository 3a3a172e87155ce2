"""``joulefarm report``: one self-contained HTML page, checked as text and in a real browser.

The browser is Debian's Chromium (``tests.helpers.browser``): the page must open with no
console error, load nothing, and draw every plot. A screenshot is saved for a person to
look at (its path is printed; set JOULEFARM_TEST_ARTIFACTS to keep it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from controller.estimators.export import fit_and_export
from controller.estimators.synthetic import DEVICES, build_synthetic_db
from tests.helpers import run_cli
from tests.helpers.browser import render
from tests.helpers.nights import DEARER_OP, TwoNights

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def page(two_nights: TwoNights, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    done = run_cli("report", "--db", str(two_nights.db), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"wrote {out}" in " ".join(done.stdout.split())
    return out


def test_the_page_loads_nothing_and_marks_simulated_data(page: Path) -> None:
    text = page.read_text()
    assert "<script" not in text
    # Nothing fetched: no src or href to a network, no CSS import.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(http" not in text
    svgs = text.count("<svg")
    assert svgs >= 5  # devices, layers, two traces, history
    assert text.count("SIMULATED data") >= svgs  # every plot's title says so
    assert "SIMULATED data:</b>" in text  # and the banner


def test_the_page_shows_the_night_that_made_one_op_dearer(page: Path) -> None:
    text = page.read_text()
    changes = text[text.index("What changed"):text.index("Devices side by side")]
    assert "rpi4-sim" in changes and DEARER_OP in changes and "regression" in changes
    assert re.search(r"\+(1[5-9]|2[0-5])\.\d%", changes)  # about 20% up
    history = text[text.index("History of each series"):]
    assert history.count("<svg") == 2  # both series have two nights
    # A whole-model change point is drawn on its series' history (matplotlib keeps each
    # text's words in a comment beside its paths).
    if "whole model" in changes:
        assert "regression" in history


@pytest.mark.must_run  # a page is checked in a real browser, never skipped in CI
def test_the_page_renders_in_a_real_browser(page: Path, tmp_path: Path) -> None:
    shot = Path(os.environ.get("JOULEFARM_TEST_ARTIFACTS", tmp_path)) / "report.png"
    seen = render(page, shot)
    assert seen.console_errors == []
    assert len(seen.plots) >= 5
    assert all(w > 200 and h > 100 and paths > 10 for w, h, paths in seen.plots), seen.plots
    assert seen.resources_loaded == 0  # nothing was loaded
    assert shot.stat().st_size > 50_000


def test_estimators_are_drawn_against_what_was_measured(tmp_path: Path) -> None:
    db = build_synthetic_db(tmp_path / "syn.duckdb", devices=DEVICES[:2], n_configs=40,
                            n_chains=4, seed=3)
    fit_and_export(db, "latency", tmp_path / "est", schemes=())
    out = tmp_path / "report.html"
    done = run_cli("report", "--db", str(db), "--out", str(out), "--estimator",
                   str(tmp_path / "est"))
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    section = text[text.index("predicted against measured"):]
    assert "latency_s predicted vs measured" in section and section.count("<svg") == 1


def test_a_scheduled_sweep_logs_its_change_points_and_writes_its_report(
        two_nights: TwoNights) -> None:
    log = " ".join(two_nights.second_output.split())
    assert "change point: regression" in log and "rpi4-sim: tiny_cnn, layer" in log
    assert f"report: {two_nights.report}" in log
    text = two_nights.report.read_text()
    assert "What changed" in text and DEARER_OP in text and "<script" not in text


def test_bad_requests_name_their_cause(two_nights: TwoNights, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    for args, words in ((["--sweep", "sweep-nope"], "no sweep"),
                        (["--since", "yesterday"], "--since"),
                        (["--since", "2999-01-01"], "no sweep started"),
                        (["--sweep", two_nights.after, "--since", "2026-01-01"], "not both")):
        done = run_cli("report", "--db", str(two_nights.db), "--out", str(out), *args)
        assert done.returncode == 2 and words in done.stderr, (args, done.stderr)
    missing = run_cli("report", "--db", str(tmp_path / "none.duckdb"), "--out", str(out))
    assert missing.returncode == 2 and "no results database" in missing.stderr
    assert not out.exists()
    both = run_cli("report", "--db", str(two_nights.db), "--out", str(out), "--since",
                   "2000-01-01")
    assert both.returncode == 0 and "2 sweep(s) since" in both.stdout
