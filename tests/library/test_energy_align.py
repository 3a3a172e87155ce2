"""joulefarm._core.align_offset recovers injected clock offsets."""

import re

import numpy as np
import pytest

import joulefarm as jf
from tests.helpers.signals import ALIGN_FS as FS
from tests.helpers.signals import busy_pattern, meter_trace


@pytest.mark.parametrize("offset_s", [0.0037, -0.0123456, 0.0, 0.049])
def test_recovers_injected_offset(offset_s):
    starts, ends = busy_pattern(1)
    x = meter_trace(starts, ends, offset_s)
    found = jf.align_offset(x, FS, starts, ends)
    assert set(found) == {"offset_s", "correlation", "residual_w"}
    assert found["offset_s"] == pytest.approx(offset_s, abs=0.05e-3)
    assert found["correlation"] > 0.9999
    assert found["residual_w"] < 1e-3


def test_recovers_offset_with_noise_float32_and_t0():
    starts, ends = busy_pattern(2)
    t0 = -0.05
    x = meter_trace(starts, ends, 0.0037, n=22_000, t0=t0, noise_w=0.2).astype(np.float32)
    found = jf.align_offset(x, FS, starts, ends, t0=t0, max_offset_s=0.02)
    assert found["offset_s"] == pytest.approx(0.0037, abs=0.05e-3)
    assert found["residual_w"] == pytest.approx(0.2, rel=0.05)


def test_nan_samples_are_ignored():
    starts, ends = busy_pattern(3)
    x = meter_trace(starts, ends, 0.0042)
    x[5000:5050] = np.nan
    found = jf.align_offset(x, FS, starts, ends)
    assert found["offset_s"] == pytest.approx(0.0042, abs=0.05e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_offset_s": -1.0}, "max_offset_s (-1.0) must be >= 0"),
        ({"sample_rate_hz": 0.0}, "sample rate must be finite and > 0, got 0.0"),
        ({"busy_starts": [0.3], "busy_ends": [0.2]}, "window 0: end (0.2) is before start (0.3)"),
        ({"busy_starts": [], "busy_ends": []}, "no busy interval with a positive duration"),
        ({"busy_starts": [50.0], "busy_ends": [51.0]}, "does not overlap the trace"),
        ({"power": np.ones(20_000)}, "no contrast"),
    ],
)
def test_invalid_arguments(kwargs, message):
    starts, ends = busy_pattern(4)
    args = {
        "power": meter_trace(starts, ends, 0.0),
        "sample_rate_hz": FS,
        "busy_starts": starts,
        "busy_ends": ends,
    } | kwargs
    with pytest.raises(jf.TraceError, match=re.escape(message)):
        jf.align_offset(**args)
