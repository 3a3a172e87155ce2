"""integrate_windows_iv: power = current x voltage, multiplied per sample on the fly."""

import re

import numpy as np
import pytest

import joulefarm as jf


def channels(seed: int, n: int = 30_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    current = rng.uniform(0.1, 1.5, n)
    voltage = 5.0 + rng.normal(0.0, 0.05, n)
    current[rng.random(n) < 0.001] = np.nan
    voltage[rng.random(n) < 0.001] = np.nan
    return current, voltage


def windows(seed: int, n: int, fs: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    starts = rng.uniform(-0.05 * n, n, 80) / fs
    ends = starts + rng.uniform(0.0, 0.5 * n, 80) / fs * np.resize([1e-3, 0.02, 1.0], 80)
    return starts, ends


@pytest.mark.parametrize("model", ["hold", "linear"])
@pytest.mark.parametrize("i_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("v_dtype", [np.float32, np.float64])
def test_matches_integrating_the_product(model, i_dtype, v_dtype):
    current, voltage = channels(1)
    current, voltage = current.astype(i_dtype), voltage.astype(v_dtype)
    fs = 1000.0
    starts, ends = windows(2, len(current), fs)
    # The product is formed in float64 (exact for float32 channels).
    power = current.astype(np.float64) * voltage.astype(np.float64)
    want = jf.integrate_windows(power, fs, starts, ends, t0=0.1, offset_s=0.2, model=model)
    got = jf.integrate_windows_iv(current, voltage, fs, starts, ends, t0=0.1, offset_s=0.2,
                                  model=model)
    np.testing.assert_array_equal(got["flags"], want["flags"])
    np.testing.assert_array_equal(got["samples"], want["samples"])
    np.testing.assert_allclose(got["energy_j"], want["energy_j"], rtol=1e-13, equal_nan=True)
    np.testing.assert_allclose(got["coverage"], want["coverage"], rtol=1e-13)
    assert (got["flags"] & jf.FLAG_NAN_SAMPLES).any()


def test_saturation_applies_to_the_product_and_strided_inputs_work():
    current, voltage = channels(3)
    power = current * voltage
    starts, ends = windows(4, len(current), 100.0)
    level = float(np.nanquantile(power, 0.99))
    want = jf.integrate_windows(power, 100.0, starts, ends, saturation_w=level)
    both = np.stack([current, voltage], axis=1)  # non-contiguous columns
    got = jf.integrate_windows_iv(both[:, 0], both[:, 1], 100.0, starts, ends,
                                  saturation_w=level)
    np.testing.assert_array_equal(got["flags"], want["flags"])
    np.testing.assert_allclose(got["energy_j"], want["energy_j"], rtol=1e-13, equal_nan=True)
    assert (got["flags"] & jf.FLAG_SATURATED).any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"voltage_v": [5.0]}, "got 3 current and 1 voltage samples"),
        ({"current_a": np.ones((3, 1))}, "current_a must be 1-dimensional"),
        ({"voltage_v": ["x", "y", "z"]}, "voltage_v cannot be converted to a float64 array"),
        ({"model": "cubic"}, 'unknown signal model "cubic"'),
        ({"sample_rate_hz": -1.0}, "sample rate must be finite and > 0"),
    ],
)
def test_invalid_arguments(kwargs, message):
    args = {"current_a": [1.0, 1.0, 1.0], "voltage_v": [5.0, 5.0, 5.0], "sample_rate_hz": 1.0,
            "starts": [0.0], "ends": [3.0]} | kwargs
    with pytest.raises(jf.TraceError, match=re.escape(message)):
        jf.integrate_windows_iv(**args)


def test_known_answer():
    w = jf.integrate_windows_iv([1.0, 2.0], [5.0, 4.0], 2.0, [0.25], [0.75])
    # Samples cover [0, 0.5) at 5 W and [0.5, 1.0) at 8 W.
    assert w["energy_j"][0] == pytest.approx(0.25 * 5 + 0.25 * 8)
    assert w["mean_power_w"][0] == pytest.approx(6.5)
