"""Raspberry Pi: INA2xx through hwmon, and the Pi 5 PMIC through vcgencmd."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from agent.meters import open_meter
from agent.meters.base import MeterError, MeterParseError
from agent.meters.ina2xx import Ina2xxMeter, discover
from agent.meters.rpi5_pmic import Rpi5PmicMeter, parse_pmic_adc
from tests.helpers import FIXTURES as ALL_FIXTURES
from tests.helpers.sysfs import ina_hwmon

FIXTURES = ALL_FIXTURES / "meters"


def test_ina2xx_is_found_by_driver_name_not_hwmon_number(tmp_path: Path) -> None:
    (tmp_path / "sys/class/hwmon/hwmon0").mkdir(parents=True)
    (tmp_path / "sys/class/hwmon/hwmon0/name").write_text("cpu_thermal\n")
    ina_hwmon(tmp_path, 2, "ina219", "1-0040", mv=5104, ma=712, uw=3634000)
    sensors = discover(tmp_path)
    assert [(s.device, s.chip) for s in sensors] == [("1-0040", "ina219")]


def test_ina2xx_power_register_is_microwatts_and_vi_mode_multiplies(tmp_path: Path) -> None:
    ina_hwmon(tmp_path, 2, "ina226", "1-0045", mv=5104, ma=712, uw=3634000)
    meter = open_meter("ina2xx", root=tmp_path, sample_rate_hz=200)
    meter.start()
    time.sleep(0.02)
    trace = meter.stop()
    np.testing.assert_allclose(trace.power_w, 3.634)
    vi = Ina2xxMeter(root=tmp_path, sample_rate_hz=200, mode="vi")
    vi.start()
    time.sleep(0.02)
    np.testing.assert_allclose(vi.stop().power_w, 5.104 * 0.712)


def test_ina2xx_old_layout_and_choosing_among_several(tmp_path: Path) -> None:
    ina_hwmon(tmp_path, 1, "ina219", "1-0040", mv=5000, ma=500, uw=2500000, old_layout=True)
    ina_hwmon(tmp_path, 3, "ina219", "1-0041", mv=3300, ma=100, uw=330000)
    with pytest.raises(MeterError, match="several sensors.*1-0040, 1-0041"):
        Ina2xxMeter(root=tmp_path)
    meter = open_meter("ina2xx", root=tmp_path, options={"sensor": "1-0040"})
    meter.start()
    time.sleep(0.01)
    np.testing.assert_allclose(meter.stop().power_w, 2.5)


def test_pmic_rails_pair_by_name_and_unpaired_voltages_are_left_out() -> None:
    rails = parse_pmic_adc((FIXTURES / "pmic_read_adc_pi5.txt").read_text())
    assert len(rails) == 12 and "EXT5V" not in rails and "BATT" not in rails
    assert rails["VDD_CORE"] == (0.86173300, 6.22421000)


def test_pmic_power_is_the_sum_of_v_times_a() -> None:
    text = (FIXTURES / "pmic_read_adc_pi5.txt").read_text()
    calls = 0

    def runner() -> str:
        nonlocal calls
        calls += 1
        return text

    meter = Rpi5PmicMeter(runner, sample_rate_hz=100)
    meter.start()
    time.sleep(0.05)
    trace = meter.stop()
    expected = sum(v * a for v, a in parse_pmic_adc(text).values())
    assert 0.86173300 * 6.22421000 < expected < 8.0
    np.testing.assert_allclose(trace.power_w, expected)
    np.testing.assert_allclose(trace.rails_w["VDD_CORE"], 0.86173300 * 6.22421000)
    assert calls == len(trace.t_s) + 1  # one probe call in the constructor


def test_pmic_parse_error_names_the_line() -> None:
    text = " VDD_CORE_A current(7)=6.22421000A\nvcgencmd: unknown command\n"
    with pytest.raises(MeterParseError, match=r"line 2: .*'vcgencmd: unknown command'"):
        parse_pmic_adc(text)


def test_pmic_command_failing_mid_run_is_flagged() -> None:
    text = (FIXTURES / "pmic_read_adc_pi5.txt").read_text()
    replies = [text, text, text]

    def runner() -> str:
        if not replies:
            raise FileNotFoundError("vcgencmd")
        return replies.pop()

    meter = Rpi5PmicMeter(runner, sample_rate_hz=200)
    meter.start()
    time.sleep(0.05)
    trace = meter.stop()
    assert len(trace.t_s) == 2 and "meter_vanished" in trace.flags
