"""The main job end to end: `joulefarm demo` as a user runs it, checked in a fresh DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from agent.local import build_recipe
from controller.config.suite import load_suite
from joulefarm.tflite.parse import read_layers
from tests.helpers import REPO, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("demo") / "results.duckdb"
    proc = run_cli("demo", "--db", str(db))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return db, proc.stdout


def test_demo_stores_every_device_model_and_layer(demo_db: tuple[Path, str]) -> None:
    db, _ = demo_db
    suite = load_suite(REPO / "benchmarks/demo.toml")
    expected_layers = {m.name: len(read_layers(build_recipe(m.recipe, m.seed)))
                       for m in suite.models}
    con = duckdb.connect(str(db), read_only=True)
    devices = {r[0] for r in con.execute("SELECT name FROM devices").fetchall()}
    assert devices == {"host", "rpi4-sim", "orin-nano-sim"}
    rows = con.execute(
        "SELECT device_name, model_name, count(*), count(DISTINCT layer_index) "
        "FROM layer_energy GROUP BY ALL").fetchall()
    assert len(rows) == len(devices) * len(expected_layers)
    for device, model, n, distinct in rows:
        assert n == distinct == expected_layers[model], (device, model)
    jobs = con.execute("SELECT status, count(*) FROM jobs GROUP BY ALL").fetchall()
    assert jobs == [("done", len(devices) * len(expected_layers))]
    sweep = con.execute("SELECT status, rust_core_profile, git_revision FROM sweeps").fetchall()
    assert sweep[0][0] == "done" and sweep[0][1] in ("release", "debug") and sweep[0][2]


def test_demo_energy_matches_the_simulators_ground_truth(demo_db: tuple[Path, str]) -> None:
    db, _ = demo_db
    con = duckdb.connect(str(db), read_only=True)
    measured, truth = con.execute(
        "SELECT sum(energy_j), sum(true_energy_j) FROM layer_measurements").fetchone()
    assert measured == pytest.approx(truth, rel=0.05)
    # Per device and model too, and no layer silently missing its samples.
    per_run = con.execute(
        "SELECT r.device_name, r.model_name, sum(l.energy_j) / sum(l.true_energy_j) "
        "FROM layer_measurements l JOIN runs r USING (run_id) GROUP BY ALL").fetchall()
    for device, model, ratio in per_run:
        assert ratio == pytest.approx(1.0, abs=0.05), (device, model)
    n_empty = con.execute(
        "SELECT count(*) FROM layer_measurements WHERE samples = 0 OR energy_j IS NULL "
        "OR isnan(energy_j)").fetchone()[0]
    assert n_empty == 0


def test_demo_rows_are_labelled_simulated_everywhere(demo_db: tuple[Path, str]) -> None:
    db, stdout = demo_db
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT bool_and(simulated), min(meter_kind), max(meter_kind) "
                       "FROM layer_measurements").fetchone() == (True, "sim", "sim")
    assert con.execute("SELECT bool_and(simulated) FROM runs").fetchone() == (True,)
    assert con.execute("SELECT bool_and(meter_simulated) FROM devices").fetchone() == (True,)
    assert con.execute("SELECT DISTINCT energy_source FROM layer_energy").fetchall() == [
        ("simulated",)]
    assert "simulated" in stdout and str(db.name) in stdout


def test_query_prints_table_csv_and_json(demo_db: tuple[Path, str]) -> None:
    db, _ = demo_db
    sql = "SELECT device_name, count(*) AS n FROM layer_energy GROUP BY 1 ORDER BY 1"
    csv_out = run_cli("query", sql, "--db", str(db), "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    lines = csv_out.stdout.strip().splitlines()
    assert lines[0] == "device_name,n" and lines[1].startswith("host,")
    json_out = run_cli("query", sql, "--db", str(db), "--format", "json")
    assert '"device_name": "host"' in json_out.stdout
    table_out = run_cli("query", sql, "--db", str(db))
    assert "orin-nano-sim" in table_out.stdout and "device_name" in table_out.stdout
    write = run_cli("query", "DROP TABLE runs", "--db", str(db))
    assert write.returncode == 2 and "read-only" in write.stderr.lower()


def test_unreachable_agent_is_reported_and_others_are_stored(tmp_path: Path) -> None:
    token = tmp_path / "remote.token"
    token.write_text("secret-token-never-logged")
    devices = (REPO / "devices.toml").read_text() + f'''
[[device]]
name = "lab-pi-offline"
platform = "raspberry-pi"
address = "127.0.0.1"
port = 9
tags = ["demo"]
token_file = "{token}"

[device.meter]
kind = "ina2xx"
'''
    devices_path = tmp_path / "devices.toml"
    devices_path.write_text(devices)
    db = tmp_path / "r.duckdb"
    proc = run_cli("demo", "--devices", str(devices_path), "--db", str(db))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "lab-pi-offline" in proc.stderr and "UNAVAILABLE" in proc.stderr
    assert "secret-token-never-logged" not in proc.stdout + proc.stderr
    con = duckdb.connect(str(db), read_only=True)
    stored = {r[0] for r in con.execute("SELECT DISTINCT device_name FROM runs").fetchall()}
    assert stored == {"host", "rpi4-sim", "orin-nano-sim"}
    failed = con.execute("SELECT DISTINCT device_name, status FROM jobs "
                         "WHERE status <> 'done'").fetchall()
    assert failed == [("lab-pi-offline", "unreachable")]
    assert con.execute("SELECT status FROM sweeps").fetchone() == ("partial",)


def test_each_run_references_its_decimated_trace(demo_db: tuple[Path, str]) -> None:
    import pyarrow.parquet as pq

    db, _ = demo_db
    con = duckdb.connect(str(db), read_only=True)
    paths = [r[0] for r in con.execute("SELECT trace_path FROM runs").fetchall()]
    assert paths and all(paths)
    for rel in paths:
        table = pq.read_table(db.parent / rel)
        meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        assert meta["simulated"] == "true" and meta["clock"] == "meter"
        assert 100 < table.num_rows <= 4000
        mins, maxs = table["min_w"].to_numpy(), table["max_w"].to_numpy()
        assert (mins <= maxs).all() and mins.min() > 0


def test_layers_mode_reports_additivity_against_the_whole_model(
        demo_db: tuple[Path, str]) -> None:
    db, stdout = demo_db
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT a.model_name, a.latency_ratio, a.energy_ratio, r.latency_s, w.latency_p50_s, "
        "r.energy_j, w.energy_j, r.flags FROM additivity a JOIN runs r USING (run_id) "
        "JOIN whole_measurements w USING (run_id)").fetchall()
    assert len(rows) == 9  # every device x model
    for model, latency_ratio, energy_ratio, layers_s, whole_s, layers_j, whole_j, flags in rows:
        # Against the whole model's median call: a median, as each layer's latency is.
        assert latency_ratio == pytest.approx(layers_s / whole_s)
        assert energy_ratio == pytest.approx(layers_j / whole_j)
        # The agent flags what no splitting explains.
        assert ("implausible_layer_sum" in flags) == (not 1 / 3 <= latency_ratio <= 3), model
        # Splitting changes costs (lost fusion, cache effects, one call per layer), and on a
        # busy machine the layers and the whole model compete for the CPU at different moments;
        # a unit or per-call/per-window mix-up would still be off by orders of magnitude.
        assert 0.1 < latency_ratio < 10.0, model
        assert 0.1 < energy_ratio < 10.0, model
    assert "layers_vs_whole" in stdout


def test_model_features_are_stored_once_per_model(demo_db: tuple[Path, str]) -> None:
    db, _ = demo_db
    suite = load_suite(REPO / "benchmarks/demo.toml")
    con = duckdb.connect(str(db), read_only=True)
    for spec in suite.models:
        content = build_recipe(spec.recipe, spec.seed)
        expected = read_layers(content)
        rows = con.execute(
            "SELECT l.layer_index, l.op, l.macs FROM model_layers l JOIN models m "
            "ON m.sha256 = l.model_sha256 WHERE m.name = ? ORDER BY 1", [spec.name]).fetchall()
        assert rows == [(x.index, x.op, x.macs) for x in expected]


def test_agents_sharing_the_host_never_measure_at_once(demo_db: tuple[Path, str]) -> None:
    # The demo's agents all run on this machine: each run holds the host's measuring lease.
    db, _ = demo_db
    con = duckdb.connect(str(db), read_only=True)
    runs = con.execute("SELECT device_name, epoch(started_at), epoch(finished_at), flags "
                       "FROM runs ORDER BY started_at").fetchall()
    assert len({r[0] for r in runs}) > 1
    for (_, _, end, flags), (_, start, _, _) in zip(runs, runs[1:], strict=False):
        assert start >= end or "host_contended" in flags


def test_the_summary_fits_80_columns_and_explains_itself(demo_db: tuple[Path, str]) -> None:
    db, stdout = demo_db
    lines = stdout.splitlines()
    title = next(k for k, line in enumerate(lines) if line.strip().startswith("sweep sweep-")
                 and "energy per inference" in line)
    legend = next(k for k, line in enumerate(lines) if line.startswith("ms, mJ:"))
    table = lines[title + 1:legend]
    assert table and max(len(line.rstrip()) for line in table) <= 80, "\n".join(table)
    text = "\n".join(table)
    assert "…" not in text  # no name cut short: tiny_cnn and res_block read in full
    for name in ("orin-nano-sim", "rpi4-sim", "tiny_cnn", "res_block", "L/W", "err %"):
        assert name in text
    # Each column that needs it is explained where the user sees the table.
    after = "\n".join(lines[legend:])
    for word in ("(error_pct):", "(layers_vs_whole):", "(flagged):", "--wide"):
        assert word in after


def test_the_wide_summary_has_every_column(demo_db: tuple[Path, str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from controller.cli.summary import print_summary

    db, _ = demo_db
    (sweep_id,) = duckdb.connect(str(db), read_only=True).execute(
        "SELECT sweep_id FROM sweeps").fetchone()
    report = SimpleNamespace(outcome=SimpleNamespace(sweep_id=sweep_id), errors=lambda: [])
    print_summary(report, db, wide=True)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    for column in ("meter", "energy_source", "sim_truth_mj", "idle_w", "error_pct"):
        assert column in out
    assert "--wide" not in out
