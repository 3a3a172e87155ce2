"""The statistics of change points: steps of known size and position in noisy nights are found,
where they are and as large as they are; nights without a step give a change point no more
often than the stated false-alarm rate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from controller.changes import Compared, compare_series
from controller.shifts import ALPHA, REPETITIONS, STATED, holm, shift
from tests.helpers.nights import MODEL, frames, night

BIGGEST = 2  # MODEL's largest layer (a CONV_2D): most of the energy


def _compare(before: list, after: list, *, threshold: float = 0.05) -> list[Compared]:
    """The change points between two synthetic nights of one series."""
    b_runs, b_layers = frames(before, sweep="before")
    a_runs, a_layers = frames(after, sweep="after")
    tests, _ = compare_series("series", "before", "after", before_runs=b_runs,
                              after_runs=a_runs, before_layers=b_layers, after_layers=a_layers)
    return [t for t in tests if t.p_adjusted <= ALPHA
            and (t.shift.ratio >= 1 + threshold or t.shift.ratio <= 1 - threshold)]


def test_holm_is_the_step_down_rule() -> None:
    adjusted = holm([0.01, 0.04, 0.03, 0.5])
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]).size == 0


def test_too_few_repetitions_fall_back_to_the_stated_uncertainty_or_are_not_tested() -> None:
    assert shift([1.0, 1.1], [1.2, 1.3]) is None  # no spread, nothing stated: no guess
    stated = shift([1.0], [1.3], before_err=[0.02], after_err=[0.02])
    assert stated is not None and stated.evidence == STATED and stated.p_value < 1e-6
    assert stated.low < 1.3 < stated.high
    assert shift([1.0], [1.3], before_err=[float("nan")], after_err=[0.02]) is None
    reps = shift([1.0, 1.01, 0.99], [1.3, 1.31, 1.29])
    assert reps is not None and reps.evidence == REPETITIONS and reps.n_before == 3
    # NULL (not measured) is no value, never a zero.
    assert shift([float("nan"), 0.0], [1.0, 1.0, 1.0]) is None


@pytest.mark.parametrize(("n", "m"), [(3, 3), (4, 7), (10, 6)])
def test_the_test_is_welchs_on_the_logarithms(n: int, m: int) -> None:
    rng = np.random.default_rng(n * m)
    before, after = np.exp(rng.normal(0, 0.05, n)), np.exp(rng.normal(0.03, 0.05, m))
    ours = shift(before, after)
    theirs = stats.ttest_ind(np.log(after), np.log(before), equal_var=False)
    assert ours is not None and ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9)
    low, high = theirs.confidence_interval(0.95)
    assert (ours.low, ours.high) == pytest.approx((np.exp(low), np.exp(high)), rel=1e-9)


def test_a_disturbed_repetition_is_left_out_of_energy_and_power_not_latency() -> None:
    """A window something else ran in (flag latency_outlier) reads low power: left in, it
    hides a 20% step in five repetitions; left out, the step is found."""
    rng = np.random.default_rng(11)
    before, after = night(rng, 5), night(rng, 5, power_scale={BIGGEST: 1.2})
    x = before[0][BIGGEST]
    before[0][BIGGEST] = replace(x, energy_j=x.energy_j * 0.8, mean_power_w=x.mean_power_w * 0.8,
                                 flags=("latency_outlier",))
    found = {(t.metric, t.layer_index) for t in _compare(before, after)}
    assert {("energy_j", BIGGEST), ("power_w", BIGGEST)} <= found
    b_runs, b_layers = frames(before, sweep="before")
    a_runs, a_layers = frames(after, sweep="after")
    tests, _ = compare_series("series", "before", "after", before_runs=b_runs,
                              after_runs=a_runs, before_layers=b_layers, after_layers=a_layers)
    n = {t.metric: t.shift.n_before for t in tests if t.layer_index == BIGGEST}
    assert n == {"energy_j": 4, "power_w": 4, "latency_s": 5}


@pytest.mark.parametrize(("reps", "position", "layer", "power", "latency", "metrics"), [
    # A layer draws 20% more power from night 4 on: it costs 20% more energy per inference.
    (5, 4, BIGGEST, 1.20, 1.0, {"energy_j", "power_w"}),
    # A layer runs 15% faster from night 2 on, at the same power.
    (5, 2, 0, 1.0, 0.85, {"energy_j", "latency_s"}),
    # A 10% step, late: power (half the noise) shows it; energy (the latency's noise too) is
    # beyond what 5 repetitions resolve at this rate.
    (5, 6, BIGGEST, 1.10, 1.0, {"power_w"}),
    # The fewest repetitions that have a spread: power (1% noise) shows a 20% step; energy
    # (2.2%) needs more repetitions for a test at 5% over a series' 21 tests.
    (3, 3, BIGGEST, 1.20, 1.0, {"power_w"}),
    # One repetition a night: the stated uncertainty (none is stated for power).
    (1, 5, BIGGEST, 1.25, 1.0, {"energy_j"}),
])
def test_an_injected_step_is_found_where_it_is_and_as_large_as_it_is(
        reps: int, position: int, layer: int, power: float, latency: float,
        metrics: set[str]) -> None:
    rng = np.random.default_rng(position * 100 + layer)
    nights = [night(rng, reps, power_scale={layer: power} if k >= position else {},
                    latency_scale={layer: latency} if k >= position else {})
              for k in range(7)]
    for k in range(1, len(nights)):
        points = _compare(nights[k - 1], nights[k])
        if k != position:
            assert points == [], (k, points)
            continue
        energy = power * latency
        found = {(t.metric, t.layer_index) for t in points if t.layer_index is not None}
        assert found == {(m, layer) for m in metrics}
        for t in points:
            if t.layer_index == layer and t.metric == "energy_j":
                assert t.shift.low <= energy <= t.shift.high
                assert t.direction == ("regression" if energy > 1 else "improvement")
        # A whole-model step is owed to the layer that moved, where that layer's own step is
        # significant in the same metric.
        for t in points:
            if t.layer_index is None and t.metric in metrics:
                assert t.layers[0].layer_index == layer and t.layers[0].op == MODEL[layer].op
                assert t.layers[0].share == pytest.approx(1.0, abs=0.15)


def test_a_tiny_step_is_significant_but_no_change_point_below_the_threshold() -> None:
    rng = np.random.default_rng(7)
    before = night(rng, 5, noise=0.001)
    after = night(rng, 5, noise=0.001, power_scale={BIGGEST: 1.02})
    assert _compare(before, after) == []
    assert {(t.metric, t.layer_index) for t in _compare(before, after, threshold=0.01)} >= {
        ("energy_j", BIGGEST), ("power_w", BIGGEST)}


@pytest.mark.slow
@pytest.mark.parametrize("reps", [1, 3, 5])
def test_nights_without_a_step_give_change_points_at_most_at_the_false_alarm_rate(
        reps: int) -> None:
    """1000 pairs of step-free nights, no threshold (only significance decides): the share of
    series with any change point, over all metrics and layers, stays within alpha (the
    binomial standard deviation at 5% over 1000 seeds is 0.7 points)."""
    seeds = 1000
    alarms = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        alarms += bool(_compare(night(rng, reps), night(rng, reps), threshold=0.0))
    assert alarms / seeds <= ALPHA + 0.015, alarms / seeds
