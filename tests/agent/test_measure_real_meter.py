"""The agent's measuring pipeline with a real (polled) driver over a sysfs fixture.

The INA2xx hwmon files hold a constant power, so every window's energy must equal that power
times its duration: this checks the agent-clock path (no alignment, point-by-point
integration) end to end, with real TFLite inference.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from agent.local import build_recipe
from agent.measure import measure
from agent.meters import open_meter
from agent.runtimes.backend import runtime_info
from joulefarm.results import MIN_USABLE_COVERAGE, MeasureSettings
from tests.helpers.sysfs import ina_hwmon

POWER_W = 3.634


def test_layers_and_whole_on_a_polled_ina219(tmp_path: Path) -> None:
    ina_hwmon(tmp_path, 2, "ina219", "1-0040", mv=5104, ma=712, uw=int(POWER_W * 1e6))
    model = build_recipe("tiny_cnn", 0)
    sha = hashlib.sha256(model).hexdigest()
    settings = MeasureSettings(min_layer_duration_s=0.03, idle_duration_s=0.1)
    meter = open_meter("ina2xx", sample_rate_hz=500, root=tmp_path)
    assert not meter.description.simulated
    result = measure(model, sha, meter, settings, runtime_info(), sysfs_root=tmp_path)
    assert result.idle_power_w == pytest.approx(POWER_W)
    assert result.true_clock_offset_s is None and result.clock_offset_s == 0.0
    for layer in result.layers:
        assert layer.true_energy_j is None  # a real meter knows no ground truth
        assert "no_samples" not in layer.flags
        assert layer.mean_power_w == pytest.approx(POWER_W)
        # On a busy machine a late read leaves part of the window uncovered (a gap, flagged,
        # never bridged). Energy fills it at the covered part's mean power, so at constant
        # power it is exact whatever the coverage, and the uncertainty says how much was filled.
        assert layer.energy_j == pytest.approx(POWER_W * layer.latency_s, rel=1e-6)
        assert layer.energy_err_j >= (1 - layer.coverage) * layer.energy_j * (1 - 1e-9)
        assert layer.coverage == 1.0 or "gap" in layer.flags, layer
        assert (layer.coverage < MIN_USABLE_COVERAGE) == ("low_coverage" in layer.flags)
        assert layer.latency_low_s <= layer.latency_s <= layer.latency_high_s

    whole = measure(model, sha, open_meter("ina2xx", sample_rate_hz=500, root=tmp_path),
                    MeasureSettings(mode="whole", min_duration_s=0.1, idle_duration_s=0.1),
                    runtime_info(), sysfs_root=tmp_path)
    assert whole.whole is not None
    assert whole.whole.energy_j == pytest.approx(POWER_W * whole.whole.latency_mean_s, rel=1e-6)
    assert (whole.whole.coverage < MIN_USABLE_COVERAGE) == ("low_coverage" in whole.whole.flags)


def test_a_sensor_that_vanishes_is_flagged_not_averaged(tmp_path: Path) -> None:
    hwmon = ina_hwmon(tmp_path, 2, "ina219", "1-0040", mv=5104, ma=712, uw=3_000_000)
    model = build_recipe("mlp", 0)
    meter = open_meter("ina2xx", sample_rate_hz=500, root=tmp_path)
    settings = MeasureSettings(min_layer_duration_s=0.05, idle_duration_s=0.1)

    def unplug(progress: object) -> None:
        # Remove the sensor once the layers start: the rest of the run has no samples.
        if getattr(progress, "stage", "") == "layers" and hwmon.exists():
            shutil.rmtree(hwmon)

    result = measure(model, hashlib.sha256(model).hexdigest(), meter, settings, runtime_info(),
                     progress=unplug, sysfs_root=tmp_path)
    assert "meter_vanished" in result.flags
    assert any("no_samples" in layer.flags for layer in result.layers)
