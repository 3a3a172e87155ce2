"""``joulefarm enroll``: a device the estimator was not fitted on, placed by its reference
runs alone, predicted by the cross-hardware model with an interval calibrated on devices left
out; and the built-in reference suite run on a real local agent."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pytest

from agent.local import build_recipe
from controller.estimators.dataset import load_dataset
from controller.estimators.enroll import enroll
from controller.estimators.errors import EstimatorError
from controller.estimators.export import fit_and_export
from controller.estimators.manifest import read_manifest
from controller.estimators.predict import Estimator
from controller.estimators.synthetic import DEVICES, build_synthetic_db
from tests.helpers import REPO, run_cli

NEW = DEVICES[3].name  # syn-pi4: slower than every training device


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A latency estimator fitted on three synthetic devices, validated leaving each out."""
    root = tmp_path_factory.mktemp("enroll")
    train = build_synthetic_db(root / "train.duckdb", devices=DEVICES[:3], n_configs=60,
                               n_chains=6, seed=2)
    fit_and_export(train, "latency", root / "est", schemes=("device",))
    return root


@pytest.fixture(scope="module")
def new_db(fitted):
    """The new device: its reference runs and, to check against, the same chains whole."""
    return build_synthetic_db(fitted / "new.duckdb", devices=DEVICES[3:], n_configs=0,
                              n_chains=6, seed=2)


def _copy(fitted: Path, tmp_path: Path) -> Path:
    out = tmp_path / "est"
    out.mkdir()
    for f in (fitted / "est").iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    return out


def test_an_enrolled_device_is_predicted_within_its_calibrated_interval(fitted, new_db,
                                                                        tmp_path):
    directory = _copy(fitted, tmp_path)
    manifest = read_manifest(directory)
    new_floor = manifest["interval_new_device"]["floor"]
    assert set(new_floor) == {"cross_hw", "flops"}, manifest["interval_new_device"]
    assert manifest["interval_new_device"]["n_models"] >= 3 * 6 // 2

    dataset = load_dataset(new_db)
    done = enroll(directory, dataset, NEW, str(new_db))
    assert done.calibrated and done.few_shot.n_reference == 10
    entry = read_manifest(directory)["devices"][NEW]
    assert entry["enrolled"]["reference_runs"] == 10 and entry["correction"] is None
    est = Estimator(directory)
    assert est.enrolled(NEW) and not est.enrolled(DEVICES[0].name)

    errors, inside = [], 0
    for whole in dataset.wholes:
        descs = dataset.model_layers.get(whole.model_sha)
        if not descs:
            continue  # a reference model: calibration data, not a test
        result = est.predict_layers(descs, NEW)
        assert result.preferred == "cross_hw" and set(result.totals) == {"cross_hw", "flops"}
        low, high = result.intervals["cross_hw"]
        inside += low <= whole.latency_s <= high
        errors.append(abs(math.log(result.totals["cross_hw"][0] / whole.latency_s)))
    assert len(errors) == 6
    # The calibration holds 90% on the devices left out; six models of one device give at
    # least five inside unless it is far off. A device slower than every training device is
    # still predicted in proportion (the scale), well within a factor of 2.
    assert inside >= 5 and max(errors) < math.log(2), (inside, errors)


def test_enrolment_refusals_name_the_cause(fitted, new_db, tmp_path):
    directory = _copy(fitted, tmp_path)
    dataset = load_dataset(new_db)
    with pytest.raises(EstimatorError, match="training device of this estimator"):
        enroll(directory, dataset, DEVICES[0].name, str(new_db))
    with pytest.raises(EstimatorError, match="has no results in this database"):
        enroll(directory, dataset, "nobody", str(new_db))
    con = duckdb.connect(str(new_db))
    try:  # one reference model lost: the device cannot be placed, and says which
        before = con.execute("SELECT count(*) FROM runs").fetchone()[0]
        con.execute("CREATE TEMP TABLE gone AS SELECT run_id FROM runs "
                    "WHERE model_name = 'ref:mlp'")
        con.execute("UPDATE runs SET model_name = 'not-a-reference' "
                    "WHERE run_id IN (SELECT run_id FROM gone)")
    finally:
        con.close()
    try:
        with pytest.raises(EstimatorError, match=r"lacks a latency on 1 of the 10 reference "
                                                 r"models \(ref:mlp\).*sweep run reference"):
            enroll(directory, load_dataset(new_db), NEW, str(new_db))
    finally:
        con = duckdb.connect(str(new_db))
        con.execute("UPDATE runs SET model_name = 'ref:mlp' "
                    "WHERE model_name = 'not-a-reference'")
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == before
        con.close()


def test_one_training_device_enrolls_without_an_interval_and_none_refuses(new_db, tmp_path):
    single = build_synthetic_db(tmp_path / "single.duckdb", devices=DEVICES[:1], n_configs=20,
                                n_chains=2, seed=1)
    lone = fit_and_export(single, "latency", tmp_path / "lone", schemes=("device",)).directory
    dataset = load_dataset(new_db)
    # Placed by its scale alone, with no device left out to calibrate an interval on.
    assert not enroll(lone, dataset, NEW, str(new_db)).calibrated
    result = Estimator(lone).predict(build_recipe("tiny_cnn", 0), NEW)
    assert result.preferred == "cross_hw" and not result.intervals

    con = duckdb.connect(str(single))  # no device ran the reference set: nothing to place by
    con.execute("UPDATE runs SET model_name = 'x' || model_name "
                "WHERE model_name LIKE 'ref:%'")
    con.close()
    blind = fit_and_export(single, "latency", tmp_path / "blind", schemes=()).directory
    with pytest.raises(EstimatorError, match="no cross-hardware model"):
        enroll(blind, dataset, NEW, str(new_db))


DEVICES_TOML = '''schema_version = 1

[[device]]
name = "fresh-sim"
platform = "sim"
address = "127.0.0.1"
local = true

[device.meter]
kind = "sim"
profile = "rpi4"
'''


@pytest.mark.slow
def test_cli_enroll_runs_the_reference_suite_on_a_real_agent(fitted, tmp_path):
    directory = _copy(fitted, tmp_path)
    devices = tmp_path / "devices.toml"
    devices.write_text(DEVICES_TOML)
    # The built-in suite with shorter loops (its [[model]] entry unchanged): what --suite is for.
    suite = tmp_path / "reference-quick.toml"
    suite.write_text((REPO / "controller/suites/reference.toml").read_text().replace(
        "min_duration_s = 1.0", "min_duration_s = 0.05"))
    db = tmp_path / "lab.duckdb"
    done = run_cli("enroll", "fresh-sim", "--estimator", str(directory), "--db", str(db),
                   "--devices", str(devices), "--suite", str(suite), timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running the reference suite on fresh-sim" in done.stdout
    assert "enrolled fresh-sim in" in done.stdout and "from 10 reference runs" in done.stdout
    con = duckdb.connect(str(db), read_only=True)
    jobs = con.execute("SELECT s.suite, j.status, count(*) FROM jobs j JOIN sweeps s "
                       "USING (sweep_id) GROUP BY ALL").fetchall()
    modes = con.execute("SELECT DISTINCT mode FROM runs").fetchall()
    con.close()
    assert jobs == [("reference", "done", 10)] and modes == [("whole",)]

    model = tmp_path / "tiny.tflite"
    model.write_bytes(build_recipe("tiny_cnn", 0))
    shown = run_cli("predict", str(model), "--device", "fresh-sim", "--estimator",
                    str(directory))
    assert shown.returncode == 0, shown.stderr
    assert "fresh-sim was enrolled from its 10 reference runs" in shown.stdout
    data = json.loads(run_cli("predict", str(model), "--device", "fresh-sim", "--estimator",
                              str(directory), "--format", "json").stdout)
    cross = next(t for t in data["totals"] if t["estimator"] == "cross_hw")
    assert cross["preferred"] and cross["low90_ms"] < cross["total_ms"] < cross["high90_ms"]

    # Enrolling again measures nothing: the reference runs are in the database.
    again = run_cli("enroll", "fresh-sim", "--estimator", str(directory), "--db", str(db),
                    "--devices", str(devices))
    assert again.returncode == 0, again.stderr
    assert "running the reference suite" not in again.stdout
    # A device the registry lacks is refused before anything runs.
    wrong = run_cli("enroll", "nobody", "--estimator", str(directory), "--db", str(db),
                    "--devices", str(devices), "--measure", "always")
    assert wrong.returncode == 2 and "nobody" in wrong.stderr
