"""Per-layer latency that one interruption cannot move, and its stated spread (agent side)."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from agent.cancel import Cancel
from agent.local import build_recipe
from agent.measure import _loop_window, measure
from agent.meters.sim import SimMeter
from agent.runtimes.backend import runtime_info
from agent.runtimes.chain import LayerChain
from joulefarm.latency import MAX_BATCHES
from joulefarm.results import MeasureSettings


def test_a_stall_inside_a_window_moves_the_mean_not_the_stored_latency() -> None:
    chain = LayerChain(build_recipe("tiny_cnn", 0))
    chain.tensor_values(chain.random_inputs(0))
    invoke = chain.invokers[0]
    calls = 0

    def stalled_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 40:  # the agent loses the CPU for 30 ms, once
            time.sleep(0.03)
        invoke()

    meter = SimMeter("host", seed=1)
    meter.start()
    settings = MeasureSettings(min_layer_duration_s=0.05, warmup_iterations=3)
    start, end, count, latency = _loop_window(stalled_once, 1, 1, meter, settings, Cancel())
    meter.stop()
    assert latency.batches == MAX_BATCHES and count >= MAX_BATCHES
    assert latency.window_s == pytest.approx((end - start) / count)
    # The stall is 30 of the window's >= 50 ms: the mean is at least 2.5x a typical call.
    # It lands in one batch of 20; the median and its interval ignore that batch, whatever
    # else the machine is doing (it would take 6 batches slowed 2.5x to reach the mean).
    assert latency.high_s < latency.window_s
    assert latency.low_s <= latency.median_s <= latency.high_s
    assert "latency_outlier" in latency.flags


def test_every_layer_carries_its_interval_and_an_energy_consistent_with_it() -> None:
    model = build_recipe("tiny_cnn", 0)
    settings = MeasureSettings(min_layer_duration_s=0.02, idle_duration_s=0.05)
    result = measure(model, hashlib.sha256(model).hexdigest(), SimMeter("rpi4", seed=3),
                     settings, runtime_info())
    for layer in result.layers:
        assert 1 <= layer.batches <= MAX_BATCHES
        assert layer.latency_low_s <= layer.latency_s <= layer.latency_high_s, layer
        assert layer.latency_window_s == pytest.approx(
            (layer.window_end_s - layer.window_start_s) / layer.iterations)
        assert layer.energy_j == pytest.approx(layer.mean_power_w * layer.latency_s)
        assert layer.energy_err_j >= layer.mean_power_w * (
            layer.latency_high_s - layer.latency_low_s) / 2 * (1 - 1e-9)
        # The simulator's truth at the same latency: energy is off only as far as the meter's
        # noise and alignment allow, never by a latency statistic the two do not share.
        assert layer.true_energy_j is not None
        assert layer.energy_j == pytest.approx(layer.true_energy_j, rel=0.1), layer
    assert np.isfinite([x.energy_err_j for x in result.layers]).all()
