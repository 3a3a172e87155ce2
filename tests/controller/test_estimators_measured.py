"""End to end on real measurements: generated sweeps measured in-process on this host (real
latency, SIMULATED energy from two sim profiles), fitted, exported, predicted."""

from __future__ import annotations

import math

import pytest

from agent.local import build_recipe
from controller.estimators.collect import ModelToMeasure, measure_into_store
from controller.estimators.dataset import load_dataset
from controller.estimators.export import fit_and_export
from controller.estimators.manifest import read_manifest
from controller.estimators.predict import Estimator
from joulefarm.tflite.sweep import reference_models, sample_chains, sample_configs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("measured") / "measured.duckdb"
    configs = sample_configs(10, seed=3, max_macs=2_000_000)
    models = [ModelToMeasure(c.name, c.build()) for c in configs]
    models += [ModelToMeasure(c.name, c.build(), ("layers", "whole"))
               for c in sample_chains(2, seed=0, max_macs=5_000_000)]
    models += [ModelToMeasure(name, content, ("whole",)) for name, content in reference_models()]
    for device, profile in (("sim-host", "host"), ("sim-rpi4", "rpi4")):
        measure_into_store(path, device, profile, models)
    return path


def test_measured_database_fits_and_predicts(measured_db, tmp_path):
    data = load_dataset(measured_db)
    assert set(data.devices) == {"sim-host", "sim-rpi4"}
    assert all(s.simulated for s in data.layers)
    result = fit_and_export(measured_db, "energy", tmp_path / "energy", folds=2,
                            schemes=("grouped",), validate_gp=False)
    manifest = read_manifest(result.directory)
    assert manifest["energy_source"] == "simulated"
    assert {r.estimator for r in result.metrics} >= {"trees", "flops", "const_power"}
    estimator = Estimator(result.directory)
    host = estimator.predict(build_recipe("tiny_cnn", 0), "sim-host")
    rpi = estimator.predict(build_recipe("tiny_cnn", 0), "sim-rpi4")
    for prediction in (host, rpi):
        total, std = prediction.totals["gp"]
        assert math.isfinite(total) and total > 0 and std is not None and std >= 0
    # Same CPU, different simulated boards: the host profile draws more power.
    assert host.totals["trees"][0] > rpi.totals["trees"][0]
