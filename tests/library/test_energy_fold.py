"""joulefarm.fold_layers (equivalent-time folding) against known answers and numpy lstsq."""

import math
import re
import subprocess
import sys

import numpy as np
import pytest

import joulefarm as jf
from tests.helpers import REPO
from tests.helpers.signals import FOLD_FS as FS
from tests.helpers.signals import simulate_folding as simulate


def lstsq_reference(trace, starts, ends, ids, n_layers):
    """Dense least squares, the design matrix built window by window (slow, obvious)."""
    n = len(trace)
    a = np.zeros((n, n_layers + 1))
    covered = np.zeros(n)
    for s, e, k in zip(starts * FS, ends * FS, ids, strict=True):
        for j in range(math.floor(s), min(n, math.ceil(e))):
            o = min(e, j + 1) - max(s, j)
            if o > 0:
                a[j, k] += o
                covered[j] += o
    used = covered > 0
    a[:, n_layers] = 1.0 - covered
    a[np.abs(a) < 1e-9] = 0.0
    a, y = a[used], trace[used]
    beta, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ beta
    dof = len(y) - n_layers - 1
    cov = resid @ resid / dof * np.linalg.inv(a.T @ a)
    return beta, np.sqrt(np.diag(cov)), dof, int(used.sum())


def test_recovers_exact_powers_without_noise():
    rng = np.random.default_rng(1)
    trace, starts, ends, ids, powers = simulate(rng)
    r = jf.fold_layers(trace, FS, starts, ends, ids)
    np.testing.assert_allclose(r["power_w"], powers, rtol=1e-9)
    assert r["gap_power_w"] == pytest.approx(2.5, rel=1e-9)
    durations = np.bincount(ids, weights=ends - starts) / np.bincount(ids)
    np.testing.assert_allclose(r["mean_duration_s"], durations, rtol=1e-12)
    np.testing.assert_allclose(r["energy_j"], powers * durations, rtol=1e-9)
    assert (r["calls"] == 300).all() and (r["flags"] == 0).all()
    assert not r["rank_deficient"] and r["rank"] == r["unknowns"] == 16
    assert r["residual_std_w"] < 1e-9


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_numpy_lstsq_with_noise(dtype):
    rng = np.random.default_rng(2)
    trace, starts, ends, ids, powers = simulate(rng, n_layers=10, reps=400, noise_w=0.05)
    trace = trace.astype(dtype)
    r = jf.fold_layers(trace, FS, starts, ends, ids)
    beta, se, dof, used = lstsq_reference(trace.astype(np.float64), starts, ends, ids, 10)
    assert r["equations"] == used and r["dof"] == dof
    np.testing.assert_allclose(r["power_w"], beta[:10], rtol=1e-8)
    np.testing.assert_allclose(r["power_se_w"], se[:10], rtol=1e-6)
    assert r["gap_power_w"] == pytest.approx(beta[10], rel=1e-8)
    assert r["gap_power_se_w"] == pytest.approx(se[10], rel=1e-6)
    assert r["residual_std_w"] == pytest.approx(0.05, rel=0.1)
    half = r["t_multiplier"] * r["power_se_w"]
    np.testing.assert_allclose(r["power_ci_high_w"] - r["power_w"], half, rtol=1e-12)
    np.testing.assert_allclose(r["power_w"] - r["power_ci_low_w"], half, rtol=1e-12)
    inside = (r["power_ci_low_w"] <= powers) & (powers <= r["power_ci_high_w"])
    assert inside.sum() >= 8


def test_clock_map_known_gap_and_confidence():
    rng = np.random.default_rng(3)
    trace, starts, ends, ids, powers = simulate(rng, n_layers=6, reps=150, noise_w=0.02)
    offset_s, drift_ppm = 0.75, -30.0
    rate = 1.0 + drift_ppm * 1e-6
    agent_starts, agent_ends = (starts - offset_s) / rate, (ends - offset_s) / rate
    r = jf.fold_layers(trace, FS, agent_starts, agent_ends, ids, offset_s=offset_s,
                       drift_ppm=drift_ppm, gap_power_w=2.5, confidence=0.99)
    assert r["unknowns"] == 6 and r["gap_power_w"] == 2.5 and r["gap_power_se_w"] == 0.0
    np.testing.assert_allclose(r["power_w"], powers, rtol=0.1)
    # Student t at 99% with a few hundred degrees of freedom: just above the normal 2.576.
    assert r["confidence"] == 0.99 and 2.576 < r["t_multiplier"] < 2.6


def test_rank_deficiency_is_flagged():
    rng = np.random.default_rng(4)
    trace, starts, ends, ids, powers = simulate(rng, n_layers=4, reps=100)
    # Layer 4 repeats every window of layer 1: the two cannot be told apart.
    twin = ids == 1
    starts = np.concatenate([starts, starts[twin]])
    ends = np.concatenate([ends, ends[twin]])
    ids = np.concatenate([ids, np.full(twin.sum(), 4)])
    r = jf.fold_layers(trace, FS, starts, ends, ids.tolist(), n_layers=6)
    assert r["rank_deficient"] and r["rank"] == r["unknowns"] - 2
    assert np.isnan(r["power_w"][[1, 4, 5]]).all()
    assert jf.flag_names(r["flags"][1]) == ["unidentifiable"]
    assert jf.flag_names(r["flags"][4]) == ["unidentifiable"]
    assert jf.flag_names(r["flags"][5]) == ["no_samples"]
    np.testing.assert_allclose(r["power_w"][[0, 2, 3]], powers[[0, 2, 3]], rtol=1e-9)


def test_invalid_samples_are_skipped():
    rng = np.random.default_rng(5)
    trace, starts, ends, ids, powers = simulate(rng, n_layers=5, reps=100)
    j = int(starts[17] * FS)
    trace[j] = np.nan
    r = jf.fold_layers(trace, FS, starts, ends, ids)
    assert r["excluded_samples"] == 1
    assert r["flags"][ids[17]] & jf.FLAG_NAN_SAMPLES
    np.testing.assert_allclose(r["power_w"], powers, rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layer_ids": [0.0]}, "layer_ids must be integers, got dtype float64"),
        ({"layer_ids": [-1]}, "window 0: layer id -1 is negative"),
        ({"layer_ids": [0, 1]}, "got 2 layer ids and 1 windows"),
        ({"layer_ids": [[0]]}, "layer_ids must be 1-dimensional"),
        ({"layer_ids": [3], "n_layers": 2}, "window 0: layer id 3 is out of range (layers = 2)"),
        ({"confidence": 1.5}, "confidence (1.5) must be in (0, 1)"),
        ({"gap_power_w": math.nan}, "gap_power_w (NaN) must be finite"),
        ({"sample_rate_hz": 0.0}, "sample rate must be finite and > 0"),
        ({"ends": [0.1]}, "window 0: end (0.1) is before start (0.2)"),
    ],
)
def test_invalid_arguments(kwargs, message):
    args = {"power": np.ones(10), "sample_rate_hz": 1.0, "starts": [0.2], "ends": [0.4],
            "layer_ids": [0]} | kwargs
    with pytest.raises(jf.TraceError, match=re.escape(message)):
        jf.fold_layers(**args)


def test_no_windows_gives_an_empty_result():
    r = jf.fold_layers(np.ones(10), 1.0, [], [], [])
    assert len(r["power_w"]) == 0 and r["equations"] == 0
    assert r["gap_flags"] == jf.FLAG_NO_SAMPLES


def test_fold_study_runs():
    # The study's simulation and table, on a tiny grid (the full study takes a few seconds).
    root = REPO
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "fold_study.py"), "--trials", "2",
         "--reps", "10,100"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    assert "repetitions for 5% error" in out
    assert re.search(r"^\s+100\s+\d+\s+[\d.]+%", out, re.MULTILINE), out
