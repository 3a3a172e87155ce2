"""tegrastats lines: JetPack 4 and 5/6 formats, the first number, the total rail, the stream."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.meters.base import MeterError, MeterParseError
from agent.meters.tegrastats import TegrastatsMeter
from joulefarm.traces.tegrastats import parse_line
from tests.helpers import FIXTURES as HELPERS_FIXTURES

FIXTURES = HELPERS_FIXTURES / "meters"


def _lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


class FakeTegrastats:
    """Plays recorded lines at an interval, then stays silent until closed (like the tool)."""

    def __init__(self, lines: list[str], period_s: float) -> None:
        self._lines, self._period = lines, period_s
        self._closed = threading.Event()

    def lines(self) -> Iterator[str]:
        for line in self._lines:
            yield line
            if self._closed.wait(self._period):
                return
        self._closed.wait(5)

    def close(self) -> None:
        self._closed.set()


def test_jetpack6_line_uses_the_instantaneous_number_in_watts() -> None:
    rails = parse_line(_lines("tegrastats_orin_nano_jp6.log")[1]).rails_w
    assert rails == {"VDD_IN": 8.016, "VDD_CPU_GPU_CV": 3.310, "VDD_SOC": 1.528}


def test_jetpack4_bare_milliwatts_and_ram_swap_iram_are_not_rails() -> None:
    rails = parse_line(_lines("tegrastats_nano_jp4.log")[0]).rails_w
    assert rails == {"POM_5V_IN": 4.520, "POM_5V_GPU": 0.0, "POM_5V_CPU": 1.234}
    xavier = parse_line(_lines("tegrastats_agx_xavier_jp4.log")[0]).rails_w
    assert list(xavier) == ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]
    assert xavier["SYS5V"] == 1.7


def test_a_line_without_rails_is_an_error_naming_it() -> None:
    with pytest.raises(MeterParseError, match=r"tegrastats: line 7: no power rail.*RAM 1/2MB"):
        parse_line("RAM 1/2MB SWAP 0/0MB CPU [1%@100]", 7)
    with pytest.raises(MeterParseError, match="mixes mW"):
        parse_line("VDD_IN 5832mW/5852")


def test_meter_stamps_lines_on_arrival_and_reports_the_input_rail() -> None:
    lines = _lines("tegrastats_orin_nano_jp6.log")
    meter = TegrastatsMeter(source=FakeTegrastats(lines, 0.02), interval_ms=20)
    before = time.perf_counter()
    meter.start()
    time.sleep(0.12)
    trace = meter.stop()
    assert meter.total == ("VDD_IN",) and "total = VDD_IN" in meter.description.description
    assert trace.clock == "agent" and trace.flags == ()
    np.testing.assert_allclose(trace.power_w, [5.832, 8.016, 8.104, 5.880])
    np.testing.assert_allclose(trace.rails_w["VDD_SOC"], [1.400, 1.528, 1.536, 1.404])
    assert trace.t_s[0] >= before and np.all(np.diff(trace.t_s) > 0.01)


def test_agx_orin_sums_its_rails_counting_each_once() -> None:
    # VIN_SYS_5V0 feeds VDDQ_VDD2_1V8AO: adding both would count that power twice.
    line = _lines("tegrastats_agx_orin_jp5.log")[0]
    meter = TegrastatsMeter(source=FakeTegrastats([line, line], 0.01), interval_ms=10)
    meter.start()
    time.sleep(0.05)
    trace = meter.stop()
    assert meter.total == ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")
    assert "VDDQ_VDD2_1V8AO left out" in meter.description.description
    np.testing.assert_allclose(trace.power_w, 3.196 + 0.799 + 4.168)


def test_burst_arrival_is_flagged_buffered() -> None:
    lines = _lines("tegrastats_orin_nano_jp6.log")
    meter = TegrastatsMeter(source=FakeTegrastats(lines, 0.0), interval_ms=100)
    meter.start()
    time.sleep(0.05)
    assert "lines_buffered" in meter.stop().flags


def test_a_log_that_ends_before_stop_is_flagged_and_bad_lines_named() -> None:
    meter = TegrastatsMeter(_lines("tegrastats_nano_jp4.log"), interval_ms=10)
    meter.start()
    time.sleep(0.05)
    trace = meter.stop()
    assert "meter_vanished" in trace.flags and len(trace.t_s) == 2
    np.testing.assert_allclose(trace.power_w, [4.520, 6.312])

    good = _lines("tegrastats_nano_jp4.log")[0]
    bad = TegrastatsMeter(source=FakeTegrastats([good, "garbage"], 0.005), interval_ms=10)
    bad.start()
    time.sleep(0.05)
    trace = bad.stop()
    assert "meter_error" in trace.flags and "line 2" in trace.error and "garbage" in trace.error


def test_missing_tegrastats_binary_is_a_meter_error() -> None:
    with pytest.raises(MeterError, match="not found"):
        TegrastatsMeter(command=("no-such-tegrastats-binary",))


def test_real_process_path_runs_under_a_pty(tmp_path: Path) -> None:
    # A stand-in script with tegrastats' command line, printing recorded lines.
    line = _lines("tegrastats_orin_nano_jp6.log")[0]
    script = tmp_path / "tegrastats"
    script.write_text("#!/bin/sh\nwhile true; do echo '" + line + "'; sleep 0.02; done\n")
    script.chmod(0o755)
    meter = TegrastatsMeter(interval_ms=20, command=(str(script),))
    meter.start()
    time.sleep(0.15)
    trace = meter.stop()
    assert len(trace.t_s) >= 3 and "meter_vanished" not in trace.flags
    np.testing.assert_allclose(trace.power_w, 5.832)
