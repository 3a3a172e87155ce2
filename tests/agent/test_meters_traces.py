"""Trace types: the hold model of polled points, counters to power, the shared protocol."""

from __future__ import annotations

import numpy as np
import pytest

import joulefarm
from agent.meters.polled import unwrap_counter
from joulefarm.traces.model import CounterTrace, TimestampedTrace, Trace


def test_every_trace_exposes_clock_flags_duration_and_timestamped_form() -> None:
    uniform = Trace(np.array([1.0, 2.0, 3.0], np.float32), t0_s=10.0, sample_rate_hz=2.0)
    points = TimestampedTrace(np.array([0.0, 0.5, 1.5]), np.array([1.0, 2.0, 2.0]))
    counter = CounterTrace(np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 8.0]),
                           flags=("gaps",))
    assert (uniform.clock, points.clock, counter.clock) == ("meter", "agent", "agent")
    assert uniform.duration_s == 1.5 and points.duration_s == 1.5 and counter.duration_s == 3.0
    assert counter.flags == ("gaps",)
    ts = uniform.to_timestamped()
    assert ts.clock == "meter"
    np.testing.assert_allclose(ts.t_s, [10.0, 10.5, 11.0, 11.5])
    np.testing.assert_allclose(ts.power_w, [1.0, 2.0, 3.0, 3.0])
    assert points.to_timestamped() is points


def test_counter_power_is_energy_difference_over_time_difference() -> None:
    counter = CounterTrace(np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 8.0]),
                           rails_j={"a": np.array([0.0, 1.0, 2.0])})
    ts = counter.to_timestamped()
    np.testing.assert_allclose(ts.power_w, [2.0, 3.0, 3.0])  # last point only closes the trace
    np.testing.assert_allclose(ts.rails_w["a"], [1.0, 0.5, 0.5])
    # A window's energy is the counter interpolated at its ends: exact at snapshots.
    cols, _ = joulefarm.integrate_timestamped(ts.t_s, ts.power_w, [0.0, 0.5], [3.0, 2.0])
    np.testing.assert_allclose(cols["energy_j"], [8.0, 1.0 + 3.0])


def test_unwrap_counter_undoes_one_wrap_per_interval() -> None:
    wrap = 262_143_328_850.0
    raw = np.array([wrap - 1000, wrap - 10, 490, 1490])
    np.testing.assert_allclose(unwrap_counter(raw, wrap), [0, 990, 1490, 2490])


def test_to_uniform_is_the_exact_mean_of_the_hold_signal() -> None:
    t = np.array([0.0, 0.25, 1.0, 1.5, 2.0])
    p = np.array([4.0, 8.0, 2.0, 6.0, 6.0])
    trace = TimestampedTrace(t, p)
    uniform = trace.to_uniform(1.0)
    assert uniform.t0_s == 0.0 and uniform.sample_rate_hz == 1.0
    np.testing.assert_allclose(uniform.power_w, [(4 * 0.25 + 8 * 0.75), (2 * 0.5 + 6 * 0.5)])
    # An interval longer than max_gap_s is missing, not averaged over.
    gappy = trace.to_uniform(4.0, max_gap_s=0.6)
    assert np.isnan(gappy.power_w[1:4]).all() and gappy.power_w[0] == 4.0


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="differ"):
        TimestampedTrace(np.zeros(3), np.zeros(2))
