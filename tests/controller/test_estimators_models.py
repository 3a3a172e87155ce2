"""Estimators fitted on a synthetic database with a known generating function."""

from __future__ import annotations

import math

import numpy as np
import pytest

from controller.estimators.combine import Correction, lognormal_variance, whole_totals
from controller.estimators.dataset import build_dataset, load_dataset, model_family
from controller.estimators.errors import EstimatorError
from controller.estimators.features import DeviceInfo
from controller.estimators.metrics import scores
from controller.estimators.models import fit_estimator, predict_layers, predict_whole
from controller.estimators.synthetic import DEVICES, WHOLE_SCALE, build_synthetic_db
from controller.estimators.validation import run_validation, subset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = build_synthetic_db(tmp_path_factory.mktemp("est") / "syn.duckdb",
                              devices=DEVICES[:3], n_configs=80, n_chains=8, seed=1)
    return load_dataset(path)


@pytest.fixture(scope="module")
def split(dataset):
    shas = sorted({s.model_sha for s in dataset.layers})
    test = set(shas[::3])
    train = subset(dataset, lambda _d, sha: sha not in test)
    return train, test


def test_dataset_contents(dataset):
    assert sorted(dataset.devices) == sorted(d.name for d in DEVICES[:3])
    assert {s.source for s in dataset.layers} == {"layers"}
    assert all(s.simulated for s in dataset.layers)
    chains = [w for w in dataset.wholes if w.model_name.startswith("sweep:chain")]
    assert len(chains) == 8 * 3
    assert len({w.model_name for w in dataset.wholes if w.model_name.startswith("ref:")}) == 10
    assert len(dataset.data_hash()) == 64


def test_single_layer_whole_runs_become_layer_samples():
    device = DeviceInfo("d", "linux", 0, 1, 0)
    layer = {"device_name": "d", "model_name": "sweep:conv x", "model_sha256": "s",
             "layer_index": 0, "op": "CONV_2D", "macs": 100, "param_bytes": 4,
             "act_in_bytes": 4, "act_out_bytes": 4, "input_shapes": "1x1x1x1",
             "output_shapes": "1x1x1x1", "latency_s": 2e-6, "energy_j": 1e-5,
             "simulated": True}
    whole = {"device_name": "d", "model_name": "sweep:conv x", "model_sha256": "s",
             "latency_p50_s": 1e-6, "latency_mean_s": 1.5e-6, "energy_j": 8e-6,
             "simulated": True}
    other = dict(whole, device_name="e")
    data = build_dataset({"d": device}, [layer], [whole, other])
    by_device = {s.device: s for s in data.layers}
    # The whole run's median wins over the layer loop; a device that ran the model only whole
    # still gets a layer sample (the features come from the other device's layers run).
    assert by_device["d"].latency_s == 1e-6 and by_device["d"].source == "whole_single"
    assert by_device["e"].latency_s == 1e-6 and by_device["e"].energy_j == 8e-6
    assert data.layer_sums[("d", "s")]["latency"] == 2e-6


def test_model_family():
    assert model_family("sweep:conv 1x56x56x3 conv(...) seed=0") == "conv"
    assert model_family("ref:tiny_cnn") == "reference"
    assert model_family("mobilenet_v2_1.0_224") == "mobilenet_v"
    assert model_family("nmp") == "nmp"


def test_per_device_models_beat_the_flops_baseline(dataset, split):
    train, test = split
    est = fit_estimator(train, "latency")
    assert "CONV_2D" in est.ops and "DEPTHWISE_CONV_2D" in est.per_device["syn-pi5"]
    for device in est.per_device:
        rows = [s for s in dataset.layers if s.device == device and s.model_sha in test]
        predicted = predict_layers(est, device, [s.desc for s in rows])
        measured = np.array([s.latency_s for s in rows])
        gp, trees = scores(measured, predicted.values["gp"]), scores(measured,
                                                                      predicted.values["trees"])
        flops = scores(measured, predicted.values["flops"])
        assert gp.mape_pct < 12 and trees.mape_pct < 12, (device, gp, trees)
        assert gp.spearman > 0.98
        assert flops.mape_pct > 3 * max(gp.mape_pct, trees.mape_pct)
        assert predicted.gp_log_std is not None and np.all(predicted.gp_log_std > 0)


def test_correction_learns_the_non_additivity(dataset):
    est = fit_estimator(dataset, "latency", with_gp=False, with_cross=False)
    assert est.correction.n_models == 8 * 3
    for device in DEVICES[:3]:
        correction = est.correction_for(device.name)
        assert correction is est.device_corrections[device.name]
        assert correction.alpha == pytest.approx(WHOLE_SCALE, abs=0.02)
        assert correction.beta == pytest.approx(-device.overhead_s, rel=0.2)
    for w in [w for w in dataset.wholes if w.model_name.startswith("sweep:chain")]:
        total = predict_whole(est, w.device, dataset.model_layers[w.model_sha])["trees"][0]
        assert total == pytest.approx(w.latency_s, rel=0.08)


def test_cross_hardware_model_serves_every_device(dataset, split):
    train, test = split
    est = fit_estimator(train, "energy", with_gp=False)
    assert set(est.device_blocks) == set(est.per_device)
    for device in est.per_device:
        rows = [s for s in dataset.layers if s.device == device and s.model_sha in test]
        predicted = predict_layers(est, device, [s.desc for s in rows]).values["cross_hw"]
        assert scores(np.array([s.energy_j for s in rows]), predicted).mape_pct < 15


def test_gp_spread_is_propagated_as_lognormal_variances():
    rng = np.random.default_rng(0)
    mean, std = np.array([-9.0, -7.5]), np.array([0.2, 0.05])
    draws = np.exp(mean + std * rng.standard_normal((400_000, 2)))
    assert lognormal_variance(mean, std) == pytest.approx(draws.var(axis=0), rel=0.02)
    values = {"gp": np.exp(mean), "flops": np.array([1e-4, 2e-4])}
    correction = Correction(alpha=1.2, beta=-1e-6, n_models=5)
    totals = whole_totals(values, std, correction, 2)
    corrected = 1.2 * np.exp(mean).sum() - 1e-6
    factor = corrected / np.exp(mean).sum()
    assert totals["gp"][0] == pytest.approx(corrected)
    assert totals["gp"][1] == pytest.approx(factor * math.sqrt(lognormal_variance(mean,
                                                                                   std).sum()))
    assert totals["flops"] == (pytest.approx(3e-4), None)  # the baseline is a plain sum


def test_validation_table(dataset):
    rows = run_validation(dataset, "energy", folds=2, schemes=("grouped", "device"),
                          with_gp=False)
    table = {(r.split, r.level, r.estimator): r.scores for r in rows}
    for name in ("trees", "cross_hw", "flops", "const_power"):
        assert ("grouped_2fold", "layer", name) in table
        assert ("grouped_2fold", "model", name) in table
    assert set(k[2] for k in table if k[0] == "leave_device_out_fewshot") == {"cross_hw",
                                                                             "flops"}
    assert table[("grouped_2fold", "layer", "trees")].mape_pct < 15
    assert table[("grouped_2fold", "model", "trees")].n == 8 * 3
    few_shot = table[("leave_device_out_fewshot", "model", "cross_hw")]
    assert few_shot.n > 0 and few_shot.spearman > 0.9
    assert table[("grouped_2fold", "layer", "flops")].mape_pct > table[
        ("grouped_2fold", "layer", "trees")].mape_pct


def test_nothing_to_fit(dataset):
    empty = subset(dataset, lambda _d, _s: False)
    with pytest.raises(EstimatorError, match="no layer measurements"):
        fit_estimator(empty, "latency")


def test_gp_hyperparameters_are_searched_once_per_op_and_kept_in_folds(dataset, split):
    from controller.estimators.models import gp_kernels
    est = fit_estimator(dataset, "latency", with_cross=False)
    kernels = gp_kernels(est)
    devices = sorted(est.per_device)
    op = "CONV_2D"
    first, second = (est.per_device[d][op].gp for d in devices[:2])
    assert first is not None and second is not None
    # Shared length scales, each device its own posterior (its own data and base).
    np.testing.assert_array_equal(first.gp.kernel_.theta, second.gp.kernel_.theta)
    assert not np.array_equal(first.gp.alpha_, second.gp.alpha_)
    # A fold keeps the full fit's hyperparameters and refits only the posterior.
    train, _ = split
    fold = fit_estimator(train, "latency", with_cross=False, kernels=kernels)
    for device in devices:
        for key, m in fold.per_device[device].items():
            if m.gp is not None and (device, key) in kernels:
                np.testing.assert_array_equal(m.gp.gp.kernel_.theta,
                                              kernels[(device, key)].theta)


def test_a_fold_reuses_exactly_the_models_it_did_not_change(dataset):
    from controller.estimators.models import Reuse, gp_kernels

    full = fit_estimator(dataset, "latency", seed=3)
    kernels = gp_kernels(full)
    conv = {sha for sha, name in dataset.model_names.items() if model_family(name) == "conv"}
    removed = [s for s in dataset.layers if s.model_sha in conv]
    train = subset(dataset, lambda _d, sha: sha not in conv)
    refit = fit_estimator(train, "latency", seed=3, kernels=kernels)
    reused = fit_estimator(train, "latency", seed=3, kernels=kernels,
                           reuse=Reuse(full, removed))
    device = DEVICES[0].name
    # Untouched op models are the full fit's own objects; CONV_2D and _OTHER are refitted.
    assert reused.per_device[device]["MAX_POOL_2D"] is full.per_device[device]["MAX_POOL_2D"]
    assert reused.per_device[device]["CONV_2D"] is not full.per_device[device]["CONV_2D"]
    assert reused.cross_hw["MAX_POOL_2D"] is full.cross_hw["MAX_POOL_2D"]
    # ... and predict what a refit predicts, for every estimator, on every kind of layer.
    descs = [s.desc for s in dataset.layers if s.device == device][::7]
    a = predict_layers(refit, device, descs).values
    b = predict_layers(reused, device, descs).values
    assert a.keys() == b.keys() and {"gp", "trees", "cross_hw"} <= a.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-6)
    assert reused.correction == refit.correction


def test_a_repetition_set_trains_its_op_on_the_slope():
    """1, 2, 4 and 8 copies of a small op measured whole: the slope (what one more copy costs
    inside a model) trains the op; the single-copy call, which carries the call's own cost,
    no longer does."""
    device = DeviceInfo("d", "linux", 0, 1, 0)
    call, op = 3e-6, 0.4e-6
    layer_rows, whole_rows = [], []
    for k in (1, 2, 4, 8):
        name, sha = f"sweep:repeat 1x64 {' '.join(['exp'] * k)} seed=0", f"s{k}"
        for i in range(k):
            layer_rows.append({"device_name": "d", "model_name": name, "model_sha256": sha,
                               "mode": "insitu", "layer_index": i, "op": "EXP", "macs": 64,
                               "param_bytes": 0, "act_in_bytes": 256, "act_out_bytes": 256,
                               "input_shapes": "1x64", "output_shapes": "1x64",
                               "latency_s": 2e-6, "energy_j": 2e-5, "simulated": True})
        whole_rows.append({"device_name": "d", "model_name": name, "model_sha256": sha,
                           "latency_p50_s": call + k * op, "latency_mean_s": call + k * op,
                           "energy_j": 10 * (call + k * op), "simulated": True})
    data = build_dataset({"d": device}, layer_rows, whole_rows)
    (marginal,) = [s for s in data.layers if s.source == "marginal"]
    assert marginal.latency_s == pytest.approx(op) and marginal.energy_j == pytest.approx(10 * op)
    assert marginal.desc.op == "EXP" and marginal.trains
    (single,) = [s for s in data.layers if s.model_sha == "s1" and s.source == "whole_single"]
    assert single.latency_s == pytest.approx(call + op) and not single.trains
    # Two copies only: no slope is trusted.
    few = build_dataset({"d": device}, [r for r in layer_rows if r["model_sha256"] in ("s1", "s2")],
                        [r for r in whole_rows if r["model_sha256"] in ("s1", "s2")])
    assert not [s for s in few.layers if s.source == "marginal"]
