"""The polling sampler: rate, stamps, buffers, and sensors that fail mid-run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from agent.meters.base import MeterError
from agent.meters.sampler import LineSampler, PollingSampler, SampleBuffer


def test_polls_near_the_target_rate_with_increasing_stamps() -> None:
    def read() -> float:
        return 1.5

    sampler = PollingSampler(read, rate_hz=200.0, name="const")
    before = time.perf_counter()
    sampler.start()
    time.sleep(0.3)
    samples = sampler.stop()
    n = len(samples.t_s)
    assert 30 <= n <= 70  # 60 expected; the machine is shared, so be generous
    assert samples.t_s[0] >= before
    assert np.all(np.diff(samples.t_s) > 0)
    assert np.all(samples.read_s >= 0)
    assert samples.values.shape == (n, 1) and np.all(samples.values == 1.5)
    assert 0.003 < float(np.median(np.diff(samples.t_s))) < 0.010
    assert samples.error is None and "meter_vanished" not in samples.flags


def test_each_stamp_is_the_midpoint_of_its_read() -> None:
    spans = []

    def read() -> float:
        entered = time.perf_counter()
        time.sleep(0.004)
        spans.append((entered, time.perf_counter()))
        return 0.0

    sampler = PollingSampler(read, rate_hz=50.0)
    sampler.start()
    time.sleep(0.1)
    samples = sampler.stop()
    mids = np.array([(a + b) / 2 for a, b in spans[: len(samples.t_s)]])
    durations = np.array([b - a for a, b in spans[: len(samples.t_s)]])
    np.testing.assert_allclose(samples.t_s, mids, atol=2e-4)
    assert np.all(samples.read_s >= durations)


def test_buffers_grow_without_losing_rows() -> None:
    buf = SampleBuffer(width=2, capacity=4)
    for i in range(11):
        buf.append(float(i), 0.0, (i, -i))
    t, d, v = buf.arrays()
    np.testing.assert_array_equal(t, np.arange(11.0))
    np.testing.assert_array_equal(v[:, 1], -np.arange(11.0))


def test_an_oserror_mid_run_stops_sampling_and_flags_meter_vanished() -> None:
    count = 0

    def read() -> tuple[float, float]:
        nonlocal count
        count += 1
        if count > 5:
            raise FileNotFoundError("[Errno 2] No such file: in1_input")
        return (1.0, 2.0)

    sampler = PollingSampler(read, rate_hz=500.0, width=2, name="ina3221")
    sampler.start()
    time.sleep(0.1)
    samples = sampler.stop()
    assert len(samples.t_s) == 5
    assert "meter_vanished" in samples.flags
    assert "ina3221: sensor vanished after 5 samples" in samples.error
    assert "in1_input" in samples.error


def test_a_bad_reading_flags_meter_error() -> None:
    values = iter([1.0, 2.0])

    def read() -> float:
        return next(values)  # StopIteration on the third call: not an OSError

    sampler = PollingSampler(read, rate_hz=500.0)
    sampler.start()
    time.sleep(0.05)
    samples = sampler.stop()
    assert samples.flags == ("meter_error",) and len(samples.t_s) == 2


def test_a_sensor_unreadable_at_start_raises() -> None:
    def read() -> float:
        raise PermissionError("energy_uj")

    with pytest.raises(MeterError, match="cannot read the sensor"):
        PollingSampler(read, rate_hz=10.0).start()


def test_slow_reads_are_counted_as_gaps() -> None:
    count = 0

    def read() -> float:
        nonlocal count
        count += 1
        if count == 4:
            time.sleep(0.06)  # 12 periods
        return 0.0

    sampler = PollingSampler(read, rate_hz=200.0)
    sampler.start()
    time.sleep(0.15)
    samples = sampler.stop()
    assert samples.gaps >= 1 and "gaps" in samples.flags
    # The stamp is the read's midpoint: a 60 ms read splits into two ~35 ms intervals.
    assert samples.max_interval_s >= 0.03


def test_stop_twice_or_without_start_raises() -> None:
    sampler = PollingSampler(lambda: 0.0, rate_hz=100.0)
    with pytest.raises(MeterError, match="without a matching start"):
        sampler.stop()
    sampler.start()
    sampler.stop()
    with pytest.raises(MeterError):
        sampler.stop()


def test_line_sampler_flags_a_stream_that_ends_early_and_names_bad_lines() -> None:
    ended = LineSampler(iter(["1", "2"]), lambda line, no: (float(line),), width=1,
                        rate_hz=10.0, name="log")
    ended.start()
    time.sleep(0.05)
    samples = ended.stop()
    assert samples.flags == ("meter_vanished",) and len(samples.t_s) == 2

    closed = threading.Event()

    def lines():
        yield "1"
        yield "oops"
        closed.wait(2)

    def parse(line: str, no: int) -> tuple[float]:
        if not line.isdigit():
            raise ValueError(f"line {no}: {line!r}")
        return (float(line),)

    bad = LineSampler(lines(), parse, width=1, rate_hz=10.0, close=closed.set)
    bad.start()
    time.sleep(0.05)
    samples = bad.stop()
    assert samples.flags == ("meter_error",) and "line 2: 'oops'" in samples.error
