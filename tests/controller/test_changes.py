"""Nights in a results database: the results API's frames, ``joulefarm compare`` as a CI gate,
series changes, and the change points a finished sweep records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from controller.changes import detect_changes
from controller.cli.app import main
from controller.results_frames import CHANGE_POINT_SCHEMA, SERIES_CHANGE_SCHEMA, open_results
from controller.store import ResultStore
from tests.helpers.nights import MODEL, facts, night, store_night

STEP_LAYER = 2  # MODEL's largest CONV_2D


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """Four nights of one series, 5 repetitions each: night 2 repeats night 1; from night 3 on,
    layer 2 draws 20% more power; night 4 runs a new runtime version."""
    db = tmp_path_factory.mktemp("nights") / "r.duckdb"
    rng = np.random.default_rng(3)
    with ResultStore(db) as store:
        sweeps = [store_night(store, night(rng, 5)), store_night(store, night(rng, 5)),
                  store_night(store, night(rng, 5, power_scale={STEP_LAYER: 1.2})),
                  store_night(store, night(rng, 5, power_scale={STEP_LAYER: 1.2}),
                              device=facts(runtime_version="2.3.1"))]
    yield db, sweeps


def _joulefarm(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``joulefarm ARGS`` in this process: exit code, stdout, stderr."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def test_the_frames_say_what_they_hold_and_whether_it_was_simulated(
        nights: tuple[Path, list[str]]) -> None:
    db, sweeps = nights
    results = open_results(db)
    assert results.sweeps()["sweep_id"].to_list() == sweeps
    assert results.sweeps()["simulated_runs"].to_list() == [5, 5, 5, 5]
    runs = results.runs(sweeps[:2])
    assert runs.height == 10 and runs["simulated"].all() and runs["usable"].all()
    # Repetitions (seed + k) are one series; the settings leave seed and repetition out.
    assert runs["series_id"].n_unique() == 1
    assert sorted(runs["repetition"].to_list()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert json.loads(runs["settings"][0]) == {"mode": "layers", "num_threads": 1}
    assert runs["power_w"].to_numpy() == pytest.approx(
        (runs["energy_j"] / runs["latency_s"]).to_numpy())
    layers = results.layers([sweeps[0]])
    assert layers.height == 5 * len(MODEL) and layers["simulated"].all()
    assert {"series_id", "layer_index", "op", "energy_err_j", "latency_low_s",
            "power_w"} <= set(layers.columns)
    assert results.whole([sweeps[0]]).height == 0  # these runs did not loop the whole model
    # A new runtime version starts a new series.
    assert results.runs([sweeps[3]])["series_id"][0] != runs["series_id"][0]
    assert results.change_points().schema == pl.Schema(CHANGE_POINT_SCHEMA)


def test_the_results_api_only_reads(nights: tuple[Path, list[str]], tmp_path: Path) -> None:
    db, _ = nights
    before = db.stat().st_mtime_ns
    results = open_results(db)
    results.runs(), results.layers(), results.change_points(), results.series_changes()
    assert db.stat().st_mtime_ns == before
    with pytest.raises(Exception, match="no results database here"):
        open_results(tmp_path / "none.duckdb")


def test_compare_exits_1_and_names_the_layer_that_regressed(
        nights: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    db, sweeps = nights
    code, out, _ = _joulefarm(capsys, "compare", sweeps[1], sweeps[2], "--db", str(db))
    assert code == 1, out
    assert f"{STEP_LAYER} CONV_2D" in out and "regression beyond 5.0%" in out
    assert "energies are simulated" in out
    code, out, _ = _joulefarm(capsys, "compare", sweeps[1], sweeps[2], "--db", str(db),
                              "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["summary"][0]["regressions"] > 0
    layer_rows = [r for r in data["changes"] if r["scope"] == "layer"]
    assert {(r["metric"], r["layer_index"], r["op"], r["direction"]) for r in layer_rows} >= {
        ("energy_j", STEP_LAYER, "CONV_2D", "regression"),
        ("power_w", STEP_LAYER, "CONV_2D", "regression")}
    assert {r["layer_index"] for r in layer_rows} == {STEP_LAYER}
    energy = next(r for r in layer_rows if r["metric"] == "energy_j")
    assert energy["ratio_low"] <= 1.2 <= energy["ratio_high"] and energy["simulated"] is True
    whole = [r for r in data["changes"] if r["scope"] == "whole" and r["metric"] == "power_w"]
    assert whole and whole[0]["layers"][0] == STEP_LAYER


@pytest.mark.parametrize("extra", [(), ("--threshold", "25%"), ("--metric", "latency_s")])
def test_compare_exits_0_without_a_regression_beyond_the_threshold(
        nights: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str],
        extra: tuple[str, ...]) -> None:
    db, sweeps = nights
    pair = (sweeps[0], sweeps[1]) if not extra else (sweeps[1], sweeps[2])
    code, out, err = _joulefarm(capsys, "compare", *pair, "--db", str(db), *extra)
    assert code == 0, out + err
    assert "no regression beyond" in out


def test_a_series_change_is_reported_not_compared_across(
        nights: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]) -> None:
    db, sweeps = nights
    code, out, err = _joulefarm(capsys, "compare", sweeps[2], sweeps[3], "--db", str(db),
                                "--format", "csv")
    assert code == 2, out + err
    assert "runtime_version,2.3.0,2.3.1" in out
    assert "no measurement series in common" in err


@pytest.mark.parametrize(("args", "message"), [
    (("no-such-sweep", "LAST"), "no sweep 'no-such-sweep'"),
    (("LAST", "LAST"), "the same sweep"),
    (("FIRST", "LAST", "--threshold", "5"), "--threshold"),
    (("FIRST", "LAST", "--metric", "joules"), "unknown metric joules"),
    (("1999-01-01", "LAST"), "no sweep started on 1999-01-01"),
])
def test_compare_refuses_bad_input_with_exit_2(
        nights: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str],
        args: tuple[str, ...], message: str) -> None:
    db, sweeps = nights
    named = [sweeps[0] if a == "FIRST" else sweeps[-1] if a == "LAST" else a for a in args]
    code, _, err = _joulefarm(capsys, "compare", *named, "--db", str(db))
    assert code == 2 and message in err, err


def test_a_date_means_the_last_sweep_started_that_day(nights: tuple[Path, list[str]]) -> None:
    db, sweeps = nights
    results = open_results(db)
    started = results.sweeps()["started_at"][-1]
    assert results.resolve_sweep(started.astimezone().date().isoformat()) == sweeps[-1]


def test_detect_changes_records_change_points_and_series_changes_once(
        nights: tuple[Path, list[str]], tmp_path: Path) -> None:
    source, sweeps = nights
    db = tmp_path / "copy.duckdb"
    db.write_bytes(source.read_bytes())
    assert detect_changes(db, sweeps[1]).change_points() == []  # no step: nothing recorded
    for _ in range(2):  # detecting again replaces, never duplicates
        found = detect_changes(db, sweeps[2])
    points = open_results(db).change_points()
    assert points.height == len(found.change_points()) > 0
    assert set(points["after_sweep"]) == {sweeps[2]} and set(points["before_sweep"]) == {
        sweeps[1]}
    layer_points = points.filter(pl.col("scope") == "layer")
    assert set(layer_points["layer_index"]) == {STEP_LAYER}
    assert set(points["direction"]) == {"regression"} and points["simulated"].all()
    assert (points["p_value"] <= points["alpha"]).all()
    # Night 4 changed runtime: a series change, and no change point across it.
    detect_changes(db, sweeps[3])
    changes = open_results(db).series_changes([sweeps[3]])
    assert changes.select("field", "before_value", "after_value").rows() == [
        ("runtime_version", "2.3.0", "2.3.1")]
    assert changes["before_sweep"].to_list() == [sweeps[2]]
    assert open_results(db).change_points([sweeps[3]]).height == 0


def test_the_tables_hold_the_frames_columns(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    ResultStore(db).close()
    con = duckdb.connect(str(db), read_only=True)
    for table, schema in (("change_points", CHANGE_POINT_SCHEMA),
                          ("series_changes", SERIES_CHANGE_SCHEMA)):
        columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        assert columns == list(schema), table
    con.close()
