"""The simulated meter: an integrating sensor over the true power step function."""

from __future__ import annotations

import time

import numpy as np
import pytest

from agent.meters import MeterError, open_meter
from agent.meters.sim import SimMeter
from joulefarm.sim_profiles import PROFILES, get_profile


def _run(meter: SimMeter, activities: list[tuple[str, float, dict]]) -> None:
    meter.start()
    for kind, seconds, work in activities:
        t0 = time.perf_counter()
        time.sleep(seconds)
        meter.note_activity(kind, t0, time.perf_counter(), **work)


def test_trace_energy_matches_ground_truth_and_is_labelled_simulated() -> None:
    meter = SimMeter("rpi4", sample_rate_hz=10_000, seed=3)
    _run(meter, [("idle", 0.05, {}), ("layer", 0.05, {"macs": 10**8, "bytes_moved": 10**6}),
                 ("busy", 0.02, {})])
    trace = meter.stop()
    assert meter.description.simulated and meter.description.kind == "sim"
    assert trace.power_w.dtype == np.float32
    assert len(trace.power_w) == pytest.approx(trace.duration_s * 10_000, abs=1)
    # Sample i covers [t0 + i/fs, t0 + (i+1)/fs) on the meter clock; map back to the agent clock.
    start_agent = trace.t0_s - meter.clock_offset_s
    total_true = meter.true_energy_j(start_agent, start_agent + trace.duration_s)
    total_trace = float(np.sum(trace.power_w, dtype=np.float64)) / trace.sample_rate_hz
    assert total_trace == pytest.approx(total_true, rel=0.01)


def test_power_levels_follow_the_profile_and_are_quantised() -> None:
    profile = get_profile("jetson-orin-nano")
    meter = SimMeter(profile, seed=1, clock_offset_s=0.0)
    _run(meter, [("idle", 0.05, {})])
    trace = meter.stop()
    inner = trace.power_w[10:-10].astype(np.float64)
    assert inner.mean() == pytest.approx(profile.idle_w, abs=0.02)
    steps = inner / profile.lsb_w
    assert np.allclose(steps, np.round(steps), atol=1e-3)


def test_layer_power_grows_with_compute_intensity_and_saturates() -> None:
    meter = SimMeter("host")
    low = meter.layer_power_w(1.0, macs=10**6, bytes_moved=0)
    high = meter.layer_power_w(1.0, macs=10**10, bytes_moved=0)
    capped = meter.layer_power_w(1.0, macs=10**14, bytes_moved=0)
    p = meter.profile
    assert p.idle_w + p.busy_w < low < high < capped
    assert capped == pytest.approx(p.idle_w + p.busy_w + p.peak_dynamic_w)


def test_clock_offset_shifts_the_trace_start() -> None:
    meter = SimMeter("host", clock_offset_s=0.0125)
    meter.start()
    trace = meter.stop()
    assert trace.t0_s - meter._start_s == pytest.approx(0.0125)


def test_misuse_is_reported() -> None:
    meter = SimMeter("host")
    with pytest.raises(MeterError, match="outside start"):
        meter.note_activity("idle", 0.0, 1.0)
    meter.start()
    with pytest.raises(MeterError, match="unknown activity kind 'nap'"):
        meter.note_activity("nap", 0.0, 1.0)
    with pytest.raises(ValueError, match="unknown simulated device profile 'pi9'"):
        SimMeter("pi9")
    with pytest.raises(MeterError, match=r"pip install 'joulefarm\[monsoon\]'"):
        open_meter("monsoon")


def test_every_profile_is_plausible() -> None:
    for p in PROFILES.values():
        assert 0 < p.idle_w < 50 and p.noise_w >= 0 and p.lsb_w > 0
        assert p.default_sample_rate_hz >= 10_000


def test_ground_truth_counts_gaps_as_busy_and_clamps_jitter_and_empty_windows() -> None:
    """Reported windows as an in-situ run gives them: out of order, touching with float
    jitter (an op starting a hair before the previous one ended), zero-length ones (below the
    timer's resolution) inside a gap. Every stretch of the run is counted exactly once."""
    profile = get_profile("rpi4")
    busy, idle = profile.idle_w + profile.busy_w, profile.idle_w
    meter = SimMeter(profile, sample_rate_hz=1_000, seed=0, clock_offset_s=0.0)
    meter.start()
    time.sleep(0.05)
    begin = meter._start_s
    assert begin is not None
    meter.note_activity("idle", begin + 0.020, begin + 0.030)
    meter.note_activity("idle", begin + 0.010, begin + 0.020)  # reported out of order
    meter.note_activity("busy", begin + 0.0299999, begin + 0.035)  # jitter: overlaps by 1e-7
    meter.note_activity("idle", begin + 0.040, begin + 0.040)  # zero length, inside a gap
    meter.note_activity("idle", begin + 0.042, begin + 0.045)
    meter.stop()
    expected = (busy * 0.010 + idle * 0.020 + busy * (0.035 - 0.030) + busy * (0.042 - 0.035)
                + idle * 0.003)
    assert meter.true_energy_j(begin, begin + 0.045) == pytest.approx(expected, rel=1e-6)
    # Many windows at once give the same as one at a time.
    starts = begin + np.array([0.0, 0.012, 0.031, 0.040])
    ends = starts + 0.004
    many = meter.true_energies_j(starts, ends)
    one_by_one = [meter.true_energy_j(s, e) for s, e in zip(starts, ends, strict=True)]
    assert many.tolist() == pytest.approx(one_by_one, rel=1e-12)
    assert many[1] == pytest.approx(idle * 0.004, rel=1e-6)


def test_op_energy_scale_makes_one_op_dearer_and_nothing_else() -> None:
    plain = open_meter("sim", profile="rpi4", seed=3)
    dear = open_meter("sim", profile="rpi4", seed=3,
                      options={"op_energy_scale": {"CONV_2D": 1.2}})
    energies = {}
    for name, meter in (("plain", plain), ("dear", dear)):
        meter.start()
        t = time.perf_counter()
        meter.note_activity("layer", t, t + 0.01, macs=10**6, bytes_moved=10**5, op="CONV_2D")
        meter.note_activity("layer", t + 0.01, t + 0.02, macs=10**6, bytes_moved=10**5, op="ADD")
        meter.note_activity("layer", t + 0.02, t + 0.03, macs=10**6, bytes_moved=10**5,
                            op="CONV_2D+ADD")
        time.sleep(0.035)  # the run must span what was noted
        meter.stop()
        assert isinstance(meter, SimMeter)
        energies[name] = [meter.true_energy_j(t + k * 0.01, t + (k + 1) * 0.01)
                          for k in range(3)]
    ratios = np.asarray(energies["dear"]) / np.asarray(energies["plain"])
    assert ratios == pytest.approx([1.2, 1.0, 1.1])
    for bad in ({"CONV_2D": 0}, {"CONV_2D": "x"}, {"CONV_2D": 1e9}, [1.2]):
        with pytest.raises(MeterError, match="op_energy_scale"):
            open_meter("sim", profile="rpi4", options={"op_energy_scale": bad})
