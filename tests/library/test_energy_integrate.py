"""joulefarm._core integration against known answers and a slow pure-Python reference."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import joulefarm as jf
from tests.helpers.energy_reference import reference_window

STEPS = np.array([1.0, 2.0, 3.0, 4.0])


def one(x, fs, start, end, **kw) -> dict:
    cols = jf.integrate_windows(x, fs, np.array([start]), np.array([end]), **kw)
    return {k: v[0] for k, v in cols.items()}


# --- known answers ---------------------------------------------------------------------------


def test_hold_partial_edge_samples():
    w = one(STEPS, 1.0, 0.5, 2.25)
    assert w["energy_j"] == pytest.approx(0.5 + 2.0 + 0.75)
    assert w["mean_power_w"] == pytest.approx(3.25 / 1.75)
    assert w["samples"] == 3
    assert w["coverage"] == 1.0
    assert w["flags"] == 0


def test_hold_window_inside_one_sample():
    w = one(STEPS, 1.0, 1.2, 1.7)
    assert w["energy_j"] == pytest.approx(1.0)
    assert w["samples"] == 1


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0.0, 4.0, 10.0),
        (0.2, 1.3, 0.3 + (1.8**2 - 1.0) / 2),
        (1.1, 1.4, (1.9**2 - 1.6**2) / 2),
        (2.6, 3.9, (16 - 3.1**2) / 2 + 1.6),
    ],
)
def test_linear_known_answers(start, end, expected):
    # Midpoints 0.5..3.5 carry 1..4: power = u + 0.5 between them, flat outside.
    assert one(STEPS, 1.0, start, end, model="linear")["energy_j"] == pytest.approx(expected)


def test_sample_rate_t0_offset_and_drift():
    x = np.where(np.arange(2000) < 1000, 1.0, 3.0)  # 1 W before meter t = 101 s, 3 W after
    e = jf.integrate(x, 1000.0, [0.4], [0.6], t0=100.0, offset_s=100.5)
    assert e[0] == pytest.approx(0.1 * 1 + 0.1 * 3)
    flat = np.full(10_000, 2.0)
    e = jf.integrate(flat, 1000.0, [1.0], [2.0], drift_ppm=1000.0)
    assert e[0] == pytest.approx(2.0 * 1.001)


def test_float32_and_float64_agree_and_lists_work():
    rng = np.random.default_rng(0)
    x32 = rng.uniform(0, 3, 5000).astype(np.float32)
    starts, ends = np.array([0.01, 1.234, -0.5]), np.array([0.02, 3.5, 0.7])
    for model in ("hold", "linear"):
        a = jf.integrate(x32, 1000.0, starts, ends, model=model)
        b = jf.integrate(x32.astype(np.float64), 1000.0, starts, ends, model=model)
        c = jf.integrate(x32.tolist(), 1000.0, starts.tolist(), ends.tolist(), model=model)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)


def test_non_contiguous_arrays():
    rng = np.random.default_rng(1)
    big = rng.uniform(0, 3, (400, 2))
    x = big[:, 1]  # strided view
    windows = rng.uniform(0, 400, (2, 30))
    starts, ends = windows.min(axis=0), windows.max(axis=0)
    for dtype in (np.float32, np.float64):
        xs = big.astype(dtype)[:, 1]
        got = jf.integrate(xs, 1.0, starts[::-1], ends[::-1], model="linear")
        want = jf.integrate(
            np.ascontiguousarray(xs), 1.0, starts[::-1].copy(), ends[::-1].copy(), model="linear"
        )
        np.testing.assert_array_equal(got, want)
    assert not x.flags.c_contiguous


def test_output_dtypes():
    cols = jf.integrate_windows(STEPS, 1.0, [0.0, 1.0], [1.0, 2.0])
    assert set(cols) == {"energy_j", "mean_power_w", "samples", "coverage", "flags"}
    assert cols["energy_j"].dtype == np.float64
    assert cols["mean_power_w"].dtype == np.float64
    assert cols["samples"].dtype == np.int64
    assert cols["coverage"].dtype == np.float64
    assert cols["flags"].dtype == np.uint32
    assert jf.integrate(STEPS, 1.0, [], []).shape == (0,)


def test_idle_power():
    x = np.where(np.arange(100) < 50, 1.0, 3.0)
    assert jf.idle_power(x, 1.0, [0.0, 50.0], [10.0, 80.0]) == pytest.approx(2.5)
    assert jf.idle_power(x, 1.0, [0.0, 500.0], [10.0, 600.0]) == pytest.approx(1.0)
    # No valid sample in any idle window: NaN (no baseline), for the caller to flag.
    assert math.isnan(jf.idle_power(x, 1.0, [500.0], [600.0]))
    assert math.isnan(jf.idle_power(x, 1.0, [], []))


# --- flags -------------------------------------------------------------------------------------


def test_flag_window_outside_trace():
    w = one(STEPS, 1.0, -2.0, -1.0)
    assert w["flags"] == jf.FLAG_NO_SAMPLES | jf.FLAG_PARTIAL_COVERAGE
    assert math.isnan(w["energy_j"]) and math.isnan(w["mean_power_w"])
    assert w["samples"] == 0 and w["coverage"] == 0.0
    assert jf.flag_names(w["flags"]) == ["no_samples", "partial_coverage"]


def test_flag_window_straddles_trace_end():
    w = one(STEPS, 1.0, 3.5, 10.0, model="linear")
    assert w["flags"] == jf.FLAG_PARTIAL_COVERAGE
    assert w["energy_j"] == pytest.approx(2.0)
    assert w["mean_power_w"] == pytest.approx(4.0)
    assert w["coverage"] == pytest.approx(0.5 / 6.5)


def test_flag_nan_samples_excluded():
    x = np.array([1.0, np.nan, 3.0, np.inf])
    w = one(x, 1.0, 0.0, 4.0)
    assert w["flags"] == jf.FLAG_NAN_SAMPLES | jf.FLAG_PARTIAL_COVERAGE
    assert w["energy_j"] == pytest.approx(4.0)
    assert w["coverage"] == pytest.approx(0.5)
    assert w["samples"] == 2
    assert jf.flag_names(w["flags"]) == ["partial_coverage", "nan_samples"]


def test_flag_all_nan_and_zero_length():
    x = np.array([1.0, np.nan, 3.0])
    w = one(x, 1.0, 1.1, 1.9)
    assert w["flags"] == jf.FLAG_NO_SAMPLES | jf.FLAG_NAN_SAMPLES | jf.FLAG_PARTIAL_COVERAGE
    z = one(x, 1.0, 0.5, 0.5)
    assert z["flags"] == jf.FLAG_NO_SAMPLES
    assert math.isnan(z["energy_j"])


def test_flag_constants_and_names():
    assert (jf.FLAG_NO_SAMPLES, jf.FLAG_PARTIAL_COVERAGE, jf.FLAG_NAN_SAMPLES) == (1, 2, 4)
    assert (jf.FLAG_GAP, jf.FLAG_NON_MONOTONIC, jf.FLAG_SATURATED) == (8, 16, 32)
    assert jf.flag_names(0) == []
    assert jf.flag_names(63) == [
        "no_samples",
        "partial_coverage",
        "nan_samples",
        "gap",
        "non_monotonic",
        "saturated",
    ]
    assert jf.flag_names(64) == ["unidentifiable"]
    assert jf.flag_names(128 | 1) == ["no_samples", "unknown_0x80"]
    with pytest.raises(ValueError, match="must be >= 0"):
        jf.flag_names(-1)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate_hz": 0.0}, "sample rate must be finite and > 0, got 0.0"),
        ({"sample_rate_hz": -3.0}, "sample rate must be finite and > 0, got -3.0"),
        ({"sample_rate_hz": math.nan}, "sample rate must be finite and > 0, got NaN"),
        ({"sample_rate_hz": math.inf}, "sample rate must be finite and > 0, got inf"),
        ({"t0": math.nan}, "t0 (NaN) must be finite"),
        ({"offset_s": math.inf}, "offset_s (inf) must be finite"),
        ({"drift_ppm": -2e6}, "drift_ppm (-2000000.0) must be > -1e6"),
        ({"starts": [0.0, 1.0]}, "got 2 starts and 1 ends"),
        ({"starts": [1.5], "ends": [1.2]}, "window 0: end (1.2) is before start (1.5)"),
        ({"starts": [math.nan]}, "window 0: start (NaN) is not finite"),
        ({"ends": [math.inf]}, "window 0: end (inf) is not finite"),
        ({"model": "cubic"}, 'unknown signal model "cubic"'),
        ({"power": np.ones((2, 2))}, "power must be 1-dimensional, got 2 dimensions"),
        ({"starts": np.zeros((1, 1))}, "starts must be 1-dimensional"),
        ({"ends": ["x"]}, "ends cannot be converted to a float64 array"),
    ],
)
@pytest.mark.parametrize("func", [jf.integrate, jf.integrate_windows, jf.idle_power])
def test_invalid_arguments(func, kwargs, message):
    args = {"power": STEPS, "sample_rate_hz": 1.0, "starts": [0.0], "ends": [1.0]} | kwargs
    with pytest.raises(jf.TraceError, match=re.escape(message)):
        func(**args)


def test_error_names_the_window_index():
    starts = np.arange(20) * 0.1
    ends = starts + 0.05
    starts[17], ends[17] = 1.5, 1.2
    with pytest.raises(jf.TraceError, match=r"^window 17: end \(1\.2\) is before start \(1\.5\)$"):
        jf.integrate(STEPS, 1.0, starts, ends)


def test_trace_error_is_value_error():
    assert issubclass(jf.TraceError, ValueError)


# --- properties against the reference ----------------------------------------------------------

_values = st.one_of(
    st.floats(-5.0, 50.0, allow_nan=False, allow_infinity=False),
    st.sampled_from([math.nan, math.inf]),
)


@st.composite
def traces_and_windows(draw):
    n = draw(st.integers(0, 40))
    weights = draw(st.lists(_values, min_size=n, max_size=n))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    fs = draw(st.floats(0.25, 5000.0))
    t0 = draw(st.floats(-100.0, 100.0))
    offset_s = draw(st.floats(-1.0, 1.0))
    drift_ppm = draw(st.sampled_from([0.0, 50.0, -300.0]))
    k = draw(st.integers(1, 8))
    su = draw(st.lists(st.floats(-0.4 * n - 2, 1.4 * n + 2), min_size=k, max_size=k))
    lu = draw(st.lists(st.floats(0.0, 0.8 * n + 2), min_size=k, max_size=k))
    rate = 1.0 + drift_ppm * 1e-6
    # Draw in sample coordinates, then map back to the agent clock.
    starts = [((s / fs + t0) - offset_s) / rate for s in su]
    ends = [
        max(s, ((s0 + length) / fs + t0 - offset_s) / rate)
        for s, s0, length in zip(starts, su, lu, strict=True)
    ]
    model = draw(st.sampled_from(["hold", "linear"]))
    x = np.array(weights, dtype=dtype)
    return x, fs, np.array(starts), np.array(ends), t0, offset_s, drift_ppm, model


@settings(max_examples=400, deadline=None)
@given(traces_and_windows())
def test_matches_reference(case):
    x, fs, starts, ends, t0, offset_s, drift_ppm, model = case
    got = jf.integrate_windows(
        x, fs, starts, ends, t0=t0, offset_s=offset_s, drift_ppm=drift_ppm, model=model
    )
    xs = [float(v) for v in x]
    for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
        ref = reference_window(xs, fs, s, e, t0, offset_s, drift_ppm, model)
        assert got["flags"][k] == ref.flags, (k, ref)
        assert got["samples"][k] == ref.samples, (k, ref)
        if ref.flags & jf.FLAG_NO_SAMPLES:
            assert math.isnan(got["energy_j"][k]) and math.isnan(got["mean_power_w"][k])
            continue
        scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(x), x, 0)))))
        assert got["energy_j"][k] == pytest.approx(ref.energy_j, rel=1e-9, abs=1e-9 * scale / fs)
        assert got["mean_power_w"][k] == pytest.approx(ref.mean_power_w, rel=1e-7, abs=1e-7 * scale)
        assert got["coverage"][k] == pytest.approx(ref.coverage, rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=1, max_size=200), st.floats(1.0, 1e4))
def test_linear_conserves_energy_over_the_whole_trace(values, fs):
    x = np.array(values)
    n = len(values)
    hold, linear = (jf.integrate(x, fs, [0.0], [n / fs], model=m)[0] for m in ("hold", "linear"))
    assert linear == pytest.approx(hold, rel=1e-9, abs=1e-12)
    assert hold == pytest.approx(x.sum() / fs, rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(traces_and_windows(), st.floats(0.01, 0.99))
def test_energy_is_additive_over_split_windows(case, frac):
    x, fs, starts, ends, t0, offset_s, drift_ppm, model = case
    mids = starts + frac * (ends - starts)
    kw = {"t0": t0, "offset_s": offset_s, "drift_ppm": drift_ppm, "model": model}
    whole = jf.integrate(x, fs, starts, ends, **kw)
    left = jf.integrate(x, fs, starts, mids, **kw)
    right = jf.integrate(x, fs, mids, ends, **kw)
    parts = np.nansum(np.stack([left, right]), axis=0)
    ok = np.isfinite(whole)
    np.testing.assert_allclose(parts[ok], whole[ok], rtol=1e-9, atol=1e-9)


def test_long_float32_windows_are_accurate_to_float64():
    # Blocked sums with 16 f64 accumulators: long windows must match an exact float64 sum.
    rng = np.random.default_rng(7)
    n = 2_000_000
    x = rng.uniform(1.0, 5.0, n).astype(np.float32)
    x64 = x.astype(np.float64)
    u = np.sort(rng.uniform(0, n, (2, 12)), axis=0)
    u[:, :4] = [[0.5, 10.25, 7.0, 0.0], [n - 0.5, 1_500_000.75, 8.0, n]]
    got = jf.integrate(x, 1.0, u[0], u[1])
    for k, (a, b) in enumerate(u.T):
        i, j = math.ceil(a), math.floor(b)
        want = math.fsum(x64[i:j])  # whole samples, exactly rounded
        if i > a:
            want += (i - a) * x64[i - 1]
        if b > j:
            want += (b - j) * x64[j]
        assert got[k] == pytest.approx(want, rel=1e-13), k
