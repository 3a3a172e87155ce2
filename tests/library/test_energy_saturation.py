"""saturation_w: samples at or above it are excluded like NaN and flag FLAG_SATURATED."""

import math

import numpy as np
import pytest

import joulefarm as jf

SAT = 4.9


def clipped_trace(seed: int, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """A trace with ~2% of samples at the meter's over-range value, and the NaN-masked copy."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, SAT, n)
    x[rng.random(n) < 0.02] = SAT
    x = x.astype(np.float32).astype(np.float64)  # the same values as float32 or float64
    return x, np.where(x >= SAT, np.nan, x)


def windows(seed: int, n: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    starts = rng.uniform(-0.1 * n, n, 60) / fs
    ends = starts + rng.uniform(0.0, 0.6 * n, 60) / fs * np.resize([1e-4, 1e-2, 1.0], 60)
    return starts, ends


def renamed(flags: np.ndarray) -> np.ndarray:
    """NaN flags as saturation flags."""
    nan = (flags & jf.FLAG_NAN_SAMPLES) != 0
    return np.where(nan, (flags ^ jf.FLAG_NAN_SAMPLES) | jf.FLAG_SATURATED, flags)


def assert_like_nan(sat: dict, nan: dict) -> None:
    np.testing.assert_array_equal(sat["flags"], renamed(nan["flags"]))
    np.testing.assert_array_equal(sat["samples"], nan["samples"])
    # Streaming sums in another order: equal to rounding, not bit for bit.
    np.testing.assert_allclose(sat["energy_j"], nan["energy_j"], rtol=1e-9, atol=1e-12,
                               equal_nan=True)
    np.testing.assert_allclose(sat["coverage"], nan["coverage"], rtol=1e-12)
    assert (sat["flags"] & jf.FLAG_SATURATED).sum() > 10


@pytest.mark.parametrize("model", ["hold", "linear"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_uniform_and_streaming_exclude_saturated_samples(model, dtype):
    x, masked = clipped_trace(1)
    x = x.astype(dtype)
    fs = 100.0
    starts, ends = windows(2, len(x), fs)
    nan = jf.integrate_windows(masked, fs, starts, ends, model=model)
    sat = jf.integrate_windows(x, fs, starts, ends, model=model, saturation_w=SAT)
    assert_like_nan(sat, nan)
    energy = jf.integrate(x, fs, starts, ends, model=model, saturation_w=SAT)
    np.testing.assert_array_equal(energy, sat["energy_j"])
    stream = jf.StreamingIntegrator(fs, starts, ends, model=model, saturation_w=SAT)
    for i in range(0, len(x), 999):
        stream.feed(x[i : i + 999])
    assert_like_nan(stream.finish(), nan)
    idle = jf.idle_power(x, fs, starts, ends, model=model, saturation_w=SAT)
    assert idle == pytest.approx(jf.idle_power(masked, fs, starts, ends, model=model), rel=1e-12)


def test_without_a_level_everything_is_integrated():
    x, _ = clipped_trace(3)
    w = jf.integrate_windows(x, 1.0, [0.0], [len(x)])
    assert w["flags"][0] == 0
    assert w["energy_j"][0] == pytest.approx(x.sum())


def test_saturated_window_is_flagged_never_integrated():
    w = jf.integrate_windows([1.0, 5.0, 5.0], 1.0, [0.0, 1.0], [3.0, 3.0], saturation_w=5.0)
    assert list(w["energy_j"][:1]) == [1.0] and math.isnan(w["energy_j"][1])
    assert jf.flag_names(w["flags"][0]) == ["partial_coverage", "saturated"]
    assert jf.flag_names(w["flags"][1]) == ["no_samples", "partial_coverage", "saturated"]


@pytest.mark.parametrize("model", ["hold", "linear"])
def test_timestamped_excludes_saturated_samples(model):
    x, masked = clipped_trace(4)
    t = np.arange(len(x)) / 100.0
    starts, ends = windows(5, len(x), 100.0)
    nan, q_nan = jf.integrate_timestamped(t, masked, starts, ends, model=model)
    sat, q_sat = jf.integrate_timestamped(t, x, starts, ends, model=model, saturation_w=SAT)
    assert_like_nan(sat, nan)
    assert q_sat["saturated_samples"] == q_nan["nan_samples"] > 0
    assert q_sat["nan_samples"] == 0


def test_fold_layers_skips_saturated_samples():
    from tests.helpers.signals import simulate_folding as simulate

    trace, starts, ends, ids, powers = simulate(np.random.default_rng(6), n_layers=5, reps=200)
    level = float(np.quantile(trace, 0.97))
    r = jf.fold_layers(trace, 1000.0, starts, ends, ids, saturation_w=level)
    assert r["saturated_samples"] == r["excluded_samples"] > 0
    assert (r["flags"] & jf.FLAG_SATURATED).any()
    np.testing.assert_allclose(r["power_w"], powers, rtol=1e-9)


@pytest.mark.parametrize("func", [jf.integrate, jf.integrate_windows, jf.idle_power])
def test_level_must_be_finite(func):
    with pytest.raises(jf.TraceError, match=r"saturation_w \(NaN\) must be finite"):
        func([1.0], 1.0, [0.0], [1.0], saturation_w=math.nan)
