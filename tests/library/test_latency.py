"""The per-call latency statistic that one interruption cannot move (joulefarm.latency)."""

from __future__ import annotations

import numpy as np
import pytest

from joulefarm.latency import batch_latencies, loop_latency, median_interval


def test_interval_is_the_textbook_order_statistics() -> None:
    # n = 20 at 95%: x(6) and x(15), 1-based (coverage 95.9%).
    values = np.arange(1.0, 21.0)[::-1]
    median, low, high = median_interval(values)
    assert (median, low, high) == (10.5, 6.0, 15.0)
    # Too few values for 95%: the full range.
    assert median_interval([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


def test_interval_covers_the_true_median_as_often_as_it_says() -> None:
    rng = np.random.default_rng(1)
    hits = 0
    trials = 2000
    for _ in range(trials):
        _, low, high = median_interval(rng.exponential(1.0, 20))
        hits += low <= np.log(2) <= high
    assert 0.93 <= hits / trials <= 0.98


def test_batches_split_the_calls_evenly() -> None:
    ends = np.arange(1, 101) * 1e-3  # 100 calls of 1 ms from t = 0
    per_batch = batch_latencies(0.0, ends, max_batches=20)
    assert len(per_batch) == 20
    assert per_batch == pytest.approx(np.full(20, 1e-3))
    assert len(batch_latencies(0.0, ends[:7])) == 7  # one call per batch when few


def test_one_preemption_moves_the_mean_not_the_median() -> None:
    calls = np.full(2000, 0.7e-6)
    calls[1234] += 5e-3  # the agent lost the CPU once, for 5 ms
    loop = loop_latency(10.0, 10.0 + np.cumsum(calls))
    assert loop.median_s == pytest.approx(0.7e-6, rel=1e-6)
    assert loop.low_s <= loop.median_s <= loop.high_s < 1e-6
    assert loop.window_s > 3e-6  # the plain mean: what used to be stored
    assert loop.flags == ("latency_outlier",)


def test_a_steady_loop_is_not_flagged_and_a_noisy_one_is() -> None:
    rng = np.random.default_rng(0)
    steady = loop_latency(0.0, np.cumsum(rng.normal(1e-3, 1e-5, 500)))
    assert steady.flags == ()
    # Half the batches slowed down 3x: no robust statistic can say which half is real.
    calls = np.where(np.arange(400) < 200, 1e-3, 3e-3)
    rng.shuffle(calls[:])
    noisy = loop_latency(0.0, np.cumsum(np.repeat(calls[::20], 20)))
    assert "latency_unstable" in noisy.flags


def test_an_empty_loop_is_nan() -> None:
    loop = loop_latency(0.0, [])
    assert np.isnan(loop.median_s) and loop.batches == 0
