"""What the estimators promise on models they never saw: in-situ training rows, meter flags
that do not cost a latency, a fixed call cost in the correction, calibrated intervals, ops
never seen named and priced wider, and no estimator preferred over a baseline it loses to."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from controller.estimators.dataset import Dataset, LayerSample, WholeSample, build_dataset
from controller.estimators.features import DeviceInfo, LayerDesc
from controller.estimators.intervals import (
    UNSEEN_LOG_SIGMA,
    Calibration,
    calibrate,
    needed_floor,
    z_value,
)
from controller.estimators.metrics import scores
from controller.estimators.models import fit_correction
from controller.estimators.validation import MetricRow, preferred_estimator

DEVICE = DeviceInfo("d", "linux", 0, 1, 0)


def _layer_row(mode: str, index: int, latency: float, flags: list[str] | None = None,
               sha: str = "m") -> dict[str, object]:
    return {"device_name": "d", "model_name": "pkg/model", "model_sha256": sha, "mode": mode,
            "layer_index": index, "op": "ADD", "macs": 10, "param_bytes": 0,
            "act_in_bytes": 80, "act_out_bytes": 40, "input_shapes": "1x10,1x10",
            "output_shapes": "1x10", "latency_s": latency, "energy_j": 1e-6,
            "simulated": True, "flags": flags or []}


def test_in_situ_rows_train_instead_of_isolated_ones():
    rows = [_layer_row("layers", i, 5e-6) for i in range(2)]
    rows += [_layer_row("insitu", i, 1e-6) for i in range(2)]
    data = build_dataset({"d": DEVICE}, rows, [])
    assert {s.source for s in data.layers} == {"insitu"}
    assert [s.latency_s for s in data.layers] == [1e-6, 1e-6]
    assert data.layer_sums[("d", "m")]["latency"] == pytest.approx(2e-6)


def test_a_meter_flag_drops_the_energy_and_keeps_the_latency():
    rows = [_layer_row("insitu", 0, 1e-6, ["no_samples"]),
            _layer_row("insitu", 1, 2e-6, ["latency_unstable"]),
            _layer_row("insitu", 2, 3e-6, ["below_timer_resolution"])]
    data = build_dataset({"d": DEVICE}, rows, [])
    by_index = {s.layer_index: s for s in data.layers}
    assert set(by_index) == {0, 2}  # a latency no statistic pins down trains nothing
    assert by_index[0].latency_s == 1e-6 and math.isnan(by_index[0].energy_j)
    assert by_index[2].energy_j == 1e-6
    assert (data.unusable, data.energy_only_unusable) == (1, 1)


def _desc(n: int) -> LayerDesc:
    return LayerDesc("ADD", n, 0, 4 * n, 4 * n, ((1, n),), ((1, n),))


def _in_situ_models(layer_counts: list[int], whole_of: Callable[[np.ndarray], float],
                    rng: np.random.Generator) -> Dataset:
    """One model per count, its layers' in-situ times drawn in 1-50 us, its whole time
    ``whole_of(times)``."""
    layers, wholes, model_layers = [], [], {}
    for m, n_layers in enumerate(layer_counts):
        sha = f"m{m}"
        times = rng.uniform(1e-6, 50e-6, n_layers)
        model_layers[sha] = tuple(_desc(10 + i) for i in range(n_layers))
        for i, t in enumerate(times):
            layers.append(LayerSample("d", sha, sha, i, model_layers[sha][i], float(t), 1.0,
                                      True, "insitu"))
        wholes.append(WholeSample("d", sha, sha, float(whole_of(times)), 1.0, True))
    return Dataset(layers, wholes, model_layers, {}, {"d": DEVICE})


def test_correction_learns_a_fixed_call_cost():
    """whole = sum(in-situ layers) - 0.2 us per extra layer (the profiler's own cost) + 4 us
    per call: single-layer and multi-layer models pin both down."""
    rng = np.random.default_rng(0)
    data = _in_situ_models([1 if m < 15 else int(rng.integers(2, 40)) for m in range(30)],
                           lambda times: times.sum() - 0.2e-6 * (len(times) - 1) + 4e-6, rng)
    correction = fit_correction(data, "latency", {"d"})
    assert correction.gamma == pytest.approx(4e-6, rel=0.05)
    assert correction.beta == pytest.approx(-0.2e-6, rel=0.1)
    assert correction.alpha == pytest.approx(1.0, abs=0.01)
    assert correction.apply(10e-6, 1)[0] == pytest.approx(14e-6, rel=0.02)


@pytest.mark.parametrize("sigma", [0.05, 0.3])
def test_calibrated_intervals_cover_new_models_at_their_level(sigma):
    """Split conformal: a floor fitted on 40 residuals covers fresh ones at 37/41 = 90.2% in
    expectation (the 37th of 40 floors); over 200 draws the mean is within 3 of its standard
    errors (~0.3 points) of that, and far from 100%: the interval is not padded."""
    coverage = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        fitted = calibrate({"gp": [(float(r), 0.0, 0.0) for r in rng.normal(0, sigma, 40)]})
        fresh = rng.normal(0, sigma, 200)
        bounds = fitted.interval("gp", 1.0, 0.0, 0.0)
        assert bounds is not None
        low, high = bounds
        coverage.append(np.mean((np.exp(fresh) >= 1 / high) & (np.exp(fresh) <= 1 / low)))
    assert 0.89 <= float(np.mean(coverage)) <= 0.93


def test_what_the_gp_knows_and_unseen_ops_widen_the_interval():
    calibration = Calibration(0.9, {"gp": 0.1}, 20)
    base = calibration.interval("gp", 1.0, 0.0, 0.0)
    known = calibration.interval("gp", 1.0, 0.2, 0.0)
    unseen = calibration.interval("gp", 1.0, 0.0, 0.5)
    assert base is not None and known is not None and unseen is not None
    assert base[1] == pytest.approx(math.exp(z_value(0.9) * 0.1))
    assert known[1] == pytest.approx(math.exp(z_value(0.9) * math.hypot(0.1, 0.2)))
    assert unseen[1] == pytest.approx(math.exp(z_value(0.9) * math.hypot(
        0.1, 0.5 * UNSEEN_LOG_SIGMA)))
    assert calibration.interval("trees", 1.0, 0.0, 0.0) is None  # no floor, no interval
    # A residual the spread already explains needs no floor.
    assert needed_floor((0.1, 0.2, 0.0), z_value(0.9)) == 0.0
    assert Calibration.from_json(calibration.to_json()) == calibration


def test_too_few_residuals_give_no_interval():
    assert calibrate({"gp": [(0.1, 0.0, 0.0)]}).floor == {}


def _row(level: str, estimator: str, mape: float) -> MetricRow:
    base = scores(np.ones(4), np.ones(4))
    return MetricRow("grouped_5fold", level, estimator,
                     type(base)(4, mape, mape, 0.0, 0.0, 1.0))


def test_an_estimator_that_loses_to_a_baseline_is_not_preferred():
    rows = [_row("model", "gp", 40.0), _row("model", "trees", 30.0),
            _row("model", "flops", 25.0)]
    assert preferred_estimator(rows) is None
    rows.append(_row("model", "const_power", 50.0))
    rows[2] = _row("model", "flops", 35.0)
    assert preferred_estimator(rows) == "trees"


def test_a_compute_layer_without_macs_trains_nothing():
    """A fully connected layer whose MAC formula could not read its shapes (0 MACs, 200 KB
    of weights, milliseconds) would teach the FC model that no work costs milliseconds."""
    rows = [dict(_layer_row("insitu", 0, 2e-3), op="FULLY_CONNECTED", macs=0,
                 param_bytes=196_992),
            dict(_layer_row("insitu", 1, 1e-6), op="RANGE", macs=None)]
    data = build_dataset({"d": DEVICE}, rows, [])
    assert [s.desc.op for s in data.layers] == ["RANGE"]  # no formula at all: its own model
    assert data.no_features == 1
    assert len(data.model_layers["m"]) == 2  # still a layer of its model


def test_single_op_models_do_not_outvote_real_ones_in_the_correction():
    # Single-op models run 30% faster whole than in situ; real models add up.
    data = _in_situ_models([1] * 290 + [30] * 10,
                           lambda times: 0.7 * times.sum() if len(times) == 1 else times.sum(),
                           np.random.default_rng(1))
    assert fit_correction(data, "latency", {"d"}).alpha == pytest.approx(1.0, abs=0.02)


def test_in_situ_times_under_the_timer_resolution_count_but_do_not_train():
    rows = [_layer_row("insitu", 0, 0.4e-6, ["below_timer_resolution"]),
            _layer_row("insitu", 1, 30e-6)]
    single = [_layer_row("insitu", 0, 1.2e-6, ["below_timer_resolution"], sha="one")]
    whole = {"device_name": "d", "model_name": "one", "model_sha256": "one",
             "latency_p50_s": 0.7e-6, "latency_mean_s": 0.8e-6, "energy_j": 1e-6,
             "simulated": True, "flags": []}
    data = build_dataset({"d": DEVICE}, rows + single, [whole])
    by_key = {(s.model_sha, s.layer_index): s for s in data.layers}
    assert not by_key[("m", 0)].trains and by_key[("m", 1)].trains
    assert data.layer_sums[("d", "m")]["latency"] == pytest.approx(30.4e-6)
    # A one-op model measured whole: the whole run's median call, timed precisely, trains.
    assert by_key[("one", 0)].trains and by_key[("one", 0)].source == "whole_single"
    assert by_key[("one", 0)].latency_s == 0.7e-6


def test_no_model_teaches_an_op_model_more_than_its_share():
    from controller.estimators.models import MAX_ROWS_PER_MODEL, _balanced
    models = ["big"] * 60 + [f"sweep{i}" for i in range(20)]
    kept = _balanced(np.arange(80), models, seed=0)
    assert sum(1 for i in kept if models[i] == "big") == MAX_ROWS_PER_MODEL
    assert {models[i] for i in kept} >= {f"sweep{i}" for i in range(20)}
    assert np.array_equal(kept, _balanced(np.arange(80), models, seed=0))
