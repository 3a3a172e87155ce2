"""Timestamped traces, two-anchor clock fits, streaming integration and decimation."""

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import joulefarm as jf
from tests.helpers.signals import ALIGN_FS as FS
from tests.helpers.signals import busy_pattern, meter_trace

# --- timestamped traces -------------------------------------------------------------------------


def timestamped_reference(t, x, start, end, model):
    """Energy by brute force: fine midpoint grid over the point-to-point definition."""
    grid = np.linspace(start, end, 200_001)
    mids = 0.5 * (grid[1:] + grid[:-1])
    inside = (mids >= t[0]) & (mids <= t[-1])
    if model == "hold":
        idx = np.clip(np.searchsorted(t, mids, side="right") - 1, 0, len(t) - 1)
        p = x[idx]
    else:
        p = np.interp(mids, t, x)
    return float(np.sum(p[inside]) * (grid[1] - grid[0]))


@pytest.mark.parametrize("model", ["hold", "linear"])
def test_timestamped_matches_brute_force(model):
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.uniform(0.5, 1.5, 50))
    x = rng.uniform(0.0, 5.0, 50)
    starts, ends = np.array([t[3] + 0.2, t[0] - 1.0]), np.array([t[40] - 0.1, t[10]])
    cols, quality = jf.integrate_timestamped(t, x, starts, ends, model=model)
    for k in range(2):
        lo, hi = max(starts[k], t[0]), min(ends[k], t[-1])
        ref = timestamped_reference(t, x, lo, hi, model)
        assert cols["energy_j"][k] == pytest.approx(ref, rel=1e-4)
    assert cols["flags"].tolist() == [0, jf.FLAG_PARTIAL_COVERAGE]
    assert quality["samples"] == 50 and quality["gaps"] == 0 and quality["non_monotonic"] == 0
    assert quality["start_s"] == t[0] and quality["end_s"] == t[-1]


def test_timestamped_gap_and_non_monotonic_flags():
    t = np.array([0.0, 1.0, 2.0, 1.5, 3.0, 10.0, 11.0])
    x = np.ones(7, dtype=np.float32)
    cols, quality = jf.integrate_timestamped(
        t, x, [0.0, 4.0, 10.0], [2.5, 10.5, 11.0], max_gap_s=2.0
    )
    assert jf.flag_names(cols["flags"][0]) == ["non_monotonic"]
    assert jf.flag_names(cols["flags"][1]) == ["partial_coverage", "gap"]
    assert cols["flags"][2] == 0
    assert cols["energy_j"][0] == pytest.approx(2.5)
    assert cols["energy_j"][1] == pytest.approx(0.5)
    assert quality["non_monotonic"] == 1
    assert quality["gaps"] == 1 and quality["gap_s"] == pytest.approx(7.0)
    assert quality["max_interval_s"] == pytest.approx(7.0)


def test_timestamped_applies_the_clock_map():
    t = np.arange(0.0, 100.0, 0.5) + 1000.0
    x = np.where(t < 1050.0, 1.0, 3.0)
    cols, _ = jf.integrate_timestamped(t, x, [49.0], [51.0], offset_s=1000.0)
    assert cols["energy_j"][0] == pytest.approx(1.0 + 3.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"t": [0.0, 1.0, 2.0]}, "got 3 timestamps and 2 samples"),
        ({"max_gap_s": 0.0}, "max_gap_s (0.0) must be finite and > 0"),
        ({"model": "spline"}, 'unknown signal model "spline"'),
        ({"starts": [2.0], "ends": [1.0]}, "window 0: end (1.0) is before start (2.0)"),
        ({"drift_ppm": math.nan}, "drift_ppm (NaN) must be finite"),
    ],
)
def test_timestamped_errors(kwargs, message):
    args = {"t": [0.0, 1.0], "power": [1.0, 1.0], "starts": [0.0], "ends": [1.0]} | kwargs
    with pytest.raises(jf.TraceError, match=re.escape(message)):
        jf.integrate_timestamped(**args)


# --- two-anchor clock fit ------------------------------------------------------------------------


def test_align_clock_recovers_offset_and_drift():
    s1, e1 = busy_pattern(10)
    s2, e2 = busy_pattern(11)
    starts, ends = np.concatenate([s1, s2 + 20.0]), np.concatenate([e1, e2 + 20.0])
    drift, offset = 60e-6, -0.0042
    # The meter sees the pattern through the clock map.
    x = meter_trace(starts * (1 + drift) + offset, ends * (1 + drift) + offset, 0.0, n=220_000)
    fit = jf.align_clock(x, FS, starts, ends, max_offset_s=0.01)
    assert fit["drift_ppm"] == pytest.approx(60.0, abs=1.0)
    assert fit["offset_s"] == pytest.approx(offset, abs=0.02e-3)
    assert len(fit["anchor_times_s"]) == 2 and min(fit["correlation"]) > 0.999


def test_align_clock_needs_two_patterns():
    s, e = busy_pattern(12)
    with pytest.raises(jf.TraceError, match=re.escape("no busy interval starts at or after")):
        jf.align_clock(meter_trace(s, e, 0.0), FS, s, e, split_at=100.0)


# --- streaming -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3000),
    chunk=st.integers(1, 500),
    model=st.sampled_from(["hold", "linear"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_streaming_equals_one_shot(n, chunk, model, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 5.0, n).astype(dtype)
    x[rng.random(n) < 0.01] = np.nan
    fs, t0 = 100.0, 0.3
    span = n / fs
    starts = rng.uniform(t0 - 0.3 * span, t0 + 1.2 * span, 20)
    ends = starts + rng.uniform(0.0, 0.5 * span, 20)
    kw = {"t0": t0, "offset_s": 0.01, "drift_ppm": 30.0, "model": model}
    want = jf.integrate_windows(x, fs, starts, ends, **kw)
    stream = jf.StreamingIntegrator(fs, starts, ends, **kw)
    for i in range(0, n, chunk):
        stream.feed(x[i : i + chunk])
    assert stream.samples_seen == n
    got = stream.finish()
    np.testing.assert_array_equal(got["flags"], want["flags"])
    np.testing.assert_array_equal(got["samples"], want["samples"])
    np.testing.assert_allclose(got["energy_j"], want["energy_j"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["coverage"], want["coverage"], rtol=1e-10, atol=1e-12)


def test_streaming_lifecycle_errors():
    with pytest.raises(jf.TraceError, match=re.escape("window 0: end (0.0) is before start (1.0)")):
        jf.StreamingIntegrator(1.0, [1.0], [0.0])
    stream = jf.StreamingIntegrator(1.0, [0.0], [2.0])
    stream.feed(np.array([1.0, 2.0]))
    assert stream.finish()["energy_j"][0] == pytest.approx(3.0)
    with pytest.raises(jf.TraceError, match=re.escape("feed() called after finish()")):
        stream.feed(np.array([1.0]))
    with pytest.raises(jf.TraceError, match="finish\\(\\) called twice"):
        stream.finish()


# --- decimation ----------------------------------------------------------------------------------


def test_decimate_minmax():
    x = np.array([1.0, 5.0, np.nan, 2.0, np.nan, np.nan, 7.0], dtype=np.float32)
    d = jf.decimate_minmax(x, 2)
    np.testing.assert_array_equal(d["min"], [1.0, 2.0, np.nan, 7.0])
    np.testing.assert_array_equal(d["max"], [5.0, 2.0, np.nan, 7.0])
    np.testing.assert_array_equal(d["mean"], [3.0, 2.0, np.nan, 7.0])
    with pytest.raises(jf.TraceError, match="factor must be >= 1, got 0"):
        jf.decimate_minmax(x, 0)
