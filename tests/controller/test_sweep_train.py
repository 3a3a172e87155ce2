"""Train mode through a sweep: a suite's models made trainable (``[train]``), measured by a real
local agent over gRPC, stored by layer and phase in DuckDB, and read back by ``query``, the
polars results API, ``export`` and the report. Models TensorFlow's converter wrote: the one of
builtin ops is measured per op type; the one with Flex ops fails its job with the ops named,
and the sweep goes on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest

from controller.export import export_parquet
from controller.farm.runner import run_suite
from controller.farm.timing import Timing
from controller.results_frames import open_results
from controller.train_prefixes import prefix_splits
from joulefarm.tflite.builder import Conv2D, Flatten, FullyConnected, build_model, tiny_cnn
from joulefarm.tflite.parse import read_layers
from tests.helpers import REPO, run_cli
from tests.helpers.browser import render

pytestmark = pytest.mark.slow

SUITES = REPO / "tests/fixtures/suites"
CONVERTED = REPO / "tests/fixtures/models/tf_trainable"
FAST = Timing(heartbeat_timeout_s=20.0, retries=1, backoff_base_s=0.1, backoff_max_s=0.5,
              health_patience_s=20.0, health_poll_s=0.2)
BATCH = 4


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("train")
    shutil.copy(SUITES / "train.toml", work / "suite.toml")
    shutil.copy(SUITES / "devices_two.toml", work / "devices.toml")
    # As TensorFlow's converter writes them (tests/fixtures/models/tf_trainable/README.md).
    shutil.copy(CONVERTED / "dense_builtin.tflite", work / "converted.tflite")
    shutil.copy(CONVERTED / "conv_flex.tflite", work / "flex.tflite")
    db = work / "results.duckdb"
    report = run_suite(work / "devices.toml", work / "suite.toml", db, timing=FAST)
    return db, report.outcome.sweep_id


def _rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_each_layer_of_the_step_is_stored_by_phase(swept: tuple[Path, str]) -> None:
    db, _ = swept
    rows = _rows(db, "SELECT p.layer_index, p.op, p.phase, p.ops, p.energy_j, p.latency_s, "
                     "p.true_energy_j, p.simulated FROM phase_measurements p JOIN runs r "
                     "USING (run_id) WHERE r.model_name = 'tiny_cnn'")
    by_layer: dict[int | None, set[str]] = {}
    for layer, _, phase, ops, energy, latency, truth, simulated in rows:
        by_layer.setdefault(layer, set()).add(phase)
        assert ops >= 1 and energy > 0 and latency > 0 and truth is not None and simulated
    ops_of = {layer: op for layer, op, *_ in rows if layer is not None}
    assert ops_of[0] == "CONV_2D" and ops_of[6] == "FULLY_CONNECTED"
    assert set(by_layer) == {None, *range(8)}
    # The first layer passes no gradient on; the others do; every layer with weights updates.
    assert {"forward", "backward-weights", "update"} <= by_layer[0]
    assert "backward-input" not in by_layer[0]
    assert {"forward", "backward-input", "backward-weights", "update"} <= by_layer[3]
    assert "loss" in by_layer[None]


def test_the_run_is_the_step_and_its_op_windows_add_up_to_part_of_it(
        swept: tuple[Path, str]) -> None:
    db, _ = swept
    [(mode, layer_count, energy, latency, step_energy, step_latency, iterations, simulated)] = \
        _rows(db, "SELECT r.mode, r.layer_count, r.energy_j, r.latency_s, w.energy_j, "
                  "w.latency_mean_s, w.iterations, r.simulated FROM runs r "
                  "JOIN whole_measurements w USING (run_id) WHERE r.model_name = 'tiny_cnn'")
    assert mode == "train" and layer_count == 8 and simulated and iterations >= 3
    [(phase_energy, phase_latency)] = _rows(
        db, "SELECT sum(energy_j), sum(latency_s) FROM train_phase_energy "
            "WHERE model_name = 'tiny_cnn'")
    assert energy == pytest.approx(phase_energy) and latency == pytest.approx(phase_latency)
    # The op windows are disjoint parts of the step loop: never more than the step.
    assert 0 < latency < step_latency and 0 < energy < step_energy
    # The additivity view divides by the median step, which contention on a busy machine can
    # put below the mean that the op windows are a share of: a ratio near 1, on either side.
    [(ratio, energy_ratio)] = _rows(db, "SELECT latency_ratio, energy_ratio FROM additivity "
                                        "WHERE model_name = 'tiny_cnn'")
    assert 0.3 < ratio < 1.5
    assert energy_ratio == pytest.approx(energy / step_energy)


def test_the_stored_model_is_trainable_at_the_batch_and_its_layers_are_the_inference_ones(
        swept: tuple[Path, str]) -> None:
    db, _ = swept
    [(source, content)] = _rows(db, "SELECT m.source, c.content FROM models m JOIN "
                                    "model_contents c USING (sha256) WHERE m.name = 'tiny_cnn'")
    assert "trainable: adam, softmax_cross_entropy, batch 4" in source
    stored = _rows(db, "SELECT l.layer_index, l.op, l.macs FROM model_layers l JOIN models m "
                       "ON m.sha256 = l.model_sha256 WHERE m.name = 'tiny_cnn' "
                       "ORDER BY l.layer_index")
    single = read_layers(tiny_cnn())
    assert [(i, op) for i, op, _ in stored] == [(x.index, x.op) for x in single]
    assert [macs for *_, macs in stored] == [BATCH * (x.macs or 0) for x in single]
    assert b"joulefarm.training" in bytes(content)


def test_a_converted_model_is_measured_per_op_type_and_a_custom_op_is_named(
        swept: tuple[Path, str]) -> None:
    db, sweep_id = swept
    phases = {phase for (phase,) in _rows(
        db, "SELECT DISTINCT phase FROM train_phase_energy WHERE model_name = 'converted'")}
    assert phases == {"untagged"}
    [(status, error)] = _rows(db, "SELECT status, error FROM jobs WHERE model_name = 'flex'")
    assert status == "failed"
    assert "custom ops (FlexConv2DBackpropFilter, FlexReluGrad)" in error
    assert "builtin" in error
    [(status,)] = _rows(db, f"SELECT status FROM sweeps WHERE sweep_id = '{sweep_id}'")
    assert status == "partial"


def test_query_polars_and_export_see_the_phases(swept: tuple[Path, str],
                                                tmp_path: Path) -> None:
    db, sweep_id = swept
    frame = open_results(db).phases([sweep_id])
    tiny = frame.filter(frame["model_name"] == "tiny_cnn")
    assert set(tiny["part"]) == {"forward", "backward", "update", "other"}
    assert set(tiny["mode"]) == {"train"} and tiny["simulated"].all()
    counts = export_parquet(db, tmp_path / "out")
    assert counts["phases"] == len(frame)
    result = run_cli("query", "--db", str(db), "--format", "json",
                     "SELECT part, sum(energy_j) AS energy_j FROM train_phase_energy "
                     "WHERE model_name = 'tiny_cnn' GROUP BY part ORDER BY part")
    assert result.returncode == 0, result.stderr
    parts = {row["part"]: row["energy_j"] for row in json.loads(result.stdout)}
    assert set(parts) == {"backward", "forward", "other", "update"}
    assert all(v > 0 for v in parts.values())


def test_the_report_shows_the_training_steps(swept: tuple[Path, str], tmp_path: Path) -> None:
    db, _ = swept
    out = tmp_path / "report.html"
    result = run_cli("report", "--db", str(db), "--out", str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    section = page[page.index("<h2>Training steps</h2>"):]
    assert "tiny_cnn on sim-a: one training step per layer" in section
    assert "SIMULATED" in section and "<svg" in section
    # A training step is not an inference: not among the devices' energies per inference.
    devices = page[page.index("<h2>Devices side by side</h2>"):page.index("<h2>Training")] \
        if "<h2>Devices side by side</h2>" in page else ""
    assert "tiny_cnn" not in devices


@pytest.mark.must_run  # a page is checked in a real browser, never skipped in CI
def test_the_training_section_renders_in_a_real_browser(swept: tuple[Path, str],
                                                        tmp_path: Path) -> None:
    db, _ = swept
    out = tmp_path / "report.html"
    assert run_cli("report", "--db", str(db), "--out", str(out)).returncode == 0
    shot = Path(os.environ.get("JOULEFARM_TEST_ARTIFACTS", tmp_path)) / "report-train.png"
    seen = render(out, shot)
    assert seen.console_errors == [] and seen.resources_loaded == 0
    assert seen.plots and all(w > 200 and h > 100 and paths > 10 for w, h, paths in seen.plots)


# -- THOR's subtraction method through a sweep ([train] prefixes = true) --------------------

PREFIX_CNN = [Conv2D(16), Conv2D(16), Conv2D(16, stride=(2, 2)), Flatten(), FullyConnected(10)]


@pytest.fixture(scope="module")
def prefixes_swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("prefixes")
    shutil.copy(SUITES / "train_prefixes.toml", work / "suite.toml")
    shutil.copy(SUITES / "devices_two.toml", work / "devices.toml")
    (work / "cnn.tflite").write_bytes(build_model((1, 16, 16, 8), PREFIX_CNN, seed=0))
    db = work / "results.duckdb"
    report = run_suite(work / "devices.toml", work / "suite.toml", db, timing=FAST)
    assert report.ok, report.errors()
    return db, report.outcome.sweep_id


def test_the_prefixes_are_stored_as_models_of_their_own(prefixes_swept: tuple[Path, str]
                                                        ) -> None:
    db, _ = prefixes_swept
    names = {name: source for name, source in _rows(db, "SELECT name, source FROM models")}
    assert set(names) == {"cnn", *(f"cnn/prefix-{k}" for k in range(6))}
    assert "first 3 layers" in names["cnn/prefix-3"] and "mse" in names["cnn/prefix-3"]
    # Three repetitions of each, every one stored by phase.
    counts = dict(_rows(db, "SELECT model_name, count(*) FROM runs GROUP BY ALL"))
    assert set(counts.values()) == {3}


def test_the_subtraction_is_computed_from_the_stored_prefixes(
        prefixes_swept: tuple[Path, str]) -> None:
    db, sweep_id = prefixes_swept
    split = prefix_splits(open_results(db), [sweep_id])
    assert split["layer_index"].to_list() == [0, 1, 2, 3, 4]
    assert split["op"].to_list() == ["CONV_2D", "CONV_2D", "CONV_2D", "RESHAPE",
                                     "FULLY_CONNECTED"]
    assert split["simulated"].all() and (split["events_energy_j"] > 0).all()
    # The differences add up to E(5) - E(0) of the repetitions chosen: positive, and about
    # what the events of the full prefix hold (they leave out the runtime between ops).
    total = float(split["subtraction_energy_j"].sum())
    events = float(split["events_energy_j"].sum())
    assert 0.5 * events < total < 2.0 * events
    # Vouched large layers are near the simulator's truth (the method's accuracy is tested
    # in tests/agent/test_measure_prefixes.py with more rounds; here the bound is loose).
    largest = split.sort("true_energy_j", descending=True).row(0, named=True)
    if largest["vouched"]:
        assert largest["subtraction_energy_j"] == pytest.approx(largest["true_energy_j"],
                                                                rel=0.5)
    page = tmp_page(db)
    assert "Per layer by subtraction (THOR)" in page and "cnn/prefix-" not in page.split(
        "Per layer by subtraction")[0].split("<h2>Training steps</h2>")[1]


def tmp_page(db: Path) -> str:
    out = db.parent / "report.html"
    assert run_cli("report", "--db", str(db), "--out", str(out)).returncode == 0
    return out.read_text()
