"""Jetson INA3221: hwmon (JetPack 5/6) and legacy IIO (JetPack 4) layouts, total rail choice."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from agent.meters import open_meter
from agent.meters.base import MeterError
from agent.meters.jetson_hwmon import JetsonHwmonMeter, discover
from agent.meters.jetson_iio import JetsonIioMeter
from agent.meters.jetson_iio import discover as discover_iio
from joulefarm.traces.rails import input_rail, total_rails


def _files(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(f"{text}\n")


def hwmon_chip(root: Path, device: str, n: int, rails: list[tuple[str, int, int]]) -> Path:
    """An INA3221 hwmon directory as JetPack 5/6 lays it out; rails are (label, mV, mA)."""
    d = root / "sys/bus/i2c/drivers/ina3221" / device / "hwmon" / f"hwmon{n}"
    files = {"name": "ina3221"}
    for k, (label, mv, ma) in enumerate(rails, start=1):
        files |= {f"in{k}_label": label, f"in{k}_input": str(mv), f"curr{k}_input": str(ma),
                  f"in{k}_enable": "1", f"in{k + 3}_input": "12"}  # in4-6: shunt voltages
    # The chip's sum-of-shunts channel: not a rail, must be skipped.
    files |= {"in7_label": "sum of shunt voltages", "in7_input": "40", "curr4_input": "999"}
    _files(d, files)
    (root / "sys/bus/i2c/drivers/ina3221/bind").parent.mkdir(parents=True, exist_ok=True)
    (root / "sys/bus/i2c/drivers/ina3221/bind").write_text("")  # driver files sit beside
    return d


@pytest.fixture
def orin_nano(tmp_path: Path) -> Path:
    hwmon_chip(tmp_path, "1-0040", 3, [("VDD_IN", 5048, 1160), ("VDD_CPU_GPU_CV", 5048, 248),
                                       ("VDD_SOC", 5048, 280)])
    return tmp_path


@pytest.fixture
def agx_orin(tmp_path: Path) -> Path:
    hwmon_chip(tmp_path, "1-0040", 2, [("VDD_GPU_SOC", 19952, 160), ("VDD_CPU_CV", 19952, 40),
                                       ("VIN_SYS_5V0", 5032, 824)])
    hwmon_chip(tmp_path, "1-0041", 4, [("NC", 0, 0), ("VDDQ_VDD2_1V8AO", 19952, 24),
                                       ("NC", 0, 0)])
    return tmp_path


def test_hwmon_number_is_discovered_and_nc_and_in7_skipped(agx_orin: Path) -> None:
    chips = discover(agx_orin)
    assert [(c.device, c.hwmon.name) for c in chips] == [("1-0040", "hwmon2"),
                                                          ("1-0041", "hwmon4")]
    assert [r.name for c in chips for r in c.rails] == [
        "VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"]


def test_power_is_millivolts_times_milliamps_and_total_is_the_input_rail(orin_nano: Path) -> None:
    assert discover(orin_nano)[0].hwmon.name == "hwmon3"
    meter = open_meter("ina3221", root=orin_nano, sample_rate_hz=200)
    assert isinstance(meter, JetsonHwmonMeter) and meter.total == ("VDD_IN",)
    assert "total = VDD_IN" in meter.description.description
    meter.start()
    time.sleep(0.03)
    trace = meter.stop()
    assert trace.clock == "agent" and trace.flags == ()
    np.testing.assert_allclose(trace.power_w, 5.048 * 1.160)
    np.testing.assert_allclose(trace.rails_w["VDD_SOC"], 5.048 * 0.280)
    assert set(trace.rails_w) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}


def test_boards_without_an_input_rail_report_the_sum(agx_orin: Path) -> None:
    meter = JetsonHwmonMeter(root=agx_orin, sample_rate_hz=200)
    # VIN_SYS_5V0 is a part of the module, not its input; it feeds VDDQ_VDD2_1V8AO, which
    # would otherwise count twice.
    assert meter.total == ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0")
    meter.start()
    time.sleep(0.02)
    trace = meter.stop()
    expected = 19.952 * 0.160 + 19.952 * 0.040 + 5.032 * 0.824
    np.testing.assert_allclose(trace.power_w, expected)


def test_total_rail_override(orin_nano: Path) -> None:
    assert JetsonHwmonMeter(root=orin_nano, total_rail="sum").total == (
        "VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")
    assert JetsonHwmonMeter(root=orin_nano, total_rail="VDD_SOC").total == ("VDD_SOC",)
    with pytest.raises(MeterError, match="not among the rails"):
        JetsonHwmonMeter(root=orin_nano, total_rail="VDD_GPU")


def test_input_rail_preference() -> None:
    assert input_rail(["VDD_CPU_GPU_CV", "VDD_IN", "VDD_SOC"]) == "VDD_IN"
    assert input_rail(["POM_5V_GPU", "POM_5V_IN", "POM_5V_CPU"]) == "POM_5V_IN"
    assert input_rail(["VIN_MODULE", "VDD_CPU"]) == "VIN_MODULE"
    assert input_rail(["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]) is None
    assert total_rails(["VDD_GPU_SOC", "VIN_SYS_5V0"]) == ("VDD_GPU_SOC", "VIN_SYS_5V0")
    # AGX Thor: VIN (the carrier's INA238) is the input of module and carrier.
    assert total_rails(["VDD_GPU", "VDD_CPU_SOC_MSS", "VIN_SYS_5V0", "VIN"]) == ("VIN",)
    assert total_rails(["NC", "VDDQ_VDD2_1V8AO", "NC"]) == ("VDDQ_VDD2_1V8AO",)


def test_a_rail_file_deleted_mid_run_flags_meter_vanished(orin_nano: Path) -> None:
    meter = JetsonHwmonMeter(root=orin_nano, sample_rate_hz=200)
    meter.start()
    time.sleep(0.03)
    (discover(orin_nano)[0].hwmon / "curr2_input").unlink()
    deleted = time.perf_counter()
    time.sleep(0.03)
    trace = meter.stop()
    assert "meter_vanished" in trace.flags and "curr2_input" in trace.error
    assert trace.t_s[-1] < deleted  # it stopped at the failure; nothing was filled in


def test_missing_sensor_at_start_raises(orin_nano: Path) -> None:
    meter = JetsonHwmonMeter(root=orin_nano)
    (discover(orin_nano)[0].hwmon / "in1_input").unlink()
    with pytest.raises(MeterError, match="cannot read the sensor"):
        meter.start()
    with pytest.raises(MeterError, match="no INA3221"):
        JetsonHwmonMeter(root=orin_nano / "elsewhere")


def iio_chip(root: Path, device: str, n: int, rails: list[tuple[str, int, int, int]]) -> Path:
    """An ina3221x IIO directory (JetPack 4); rails are (name, mV, mA, mW)."""
    d = root / "sys/bus/i2c/drivers/ina3221x" / device / f"iio:device{n}"
    files = {"name": "ina3221x"}
    for k, (name, mv, ma, mw) in enumerate(rails):
        files |= {f"rail_name_{k}": name, f"in_voltage{k}_input": str(mv),
                  f"in_current{k}_input": str(ma), f"in_power{k}_input": str(mw)}
    _files(d, files)
    return d


def test_legacy_iio_reads_milliwatts_and_prefers_pom_5v_in(tmp_path: Path) -> None:
    iio_chip(tmp_path, "6-0040", 0, [("POM_5V_IN", 5000, 904, 4520), ("POM_5V_GPU", 5000, 0, 0),
                                     ("POM_5V_CPU", 5000, 246, 1234)])
    chips = discover_iio(tmp_path)
    assert [r.name for r in chips[0].rails] == ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]
    meter = open_meter("ina3221-iio", root=tmp_path, sample_rate_hz=200)
    assert isinstance(meter, JetsonIioMeter) and meter.total == ("POM_5V_IN",)
    meter.start()
    time.sleep(0.02)
    trace = meter.stop()
    np.testing.assert_allclose(trace.power_w, 4.520)
    np.testing.assert_allclose(trace.rails_w["POM_5V_CPU"], 1.234)


def test_legacy_iio_two_chips_sum_and_skip_nc(tmp_path: Path) -> None:
    # Jetson TX2-like: two chips, one unconnected channel.
    iio_chip(tmp_path, "0-0040", 0, [("VDD_SYS_GPU", 19000, 50, 950),
                                     ("VDD_SYS_SOC", 19000, 40, 760), ("NC", 0, 0, 0)])
    iio_chip(tmp_path, "0-0041", 1, [("VDD_SYS_CPU", 19000, 20, 380),
                                     ("VDD_SYS_DDR", 19000, 30, 570),
                                     ("VDD_4V0_WIFI", 4000, 10, 40)])
    meter = JetsonIioMeter(root=tmp_path, sample_rate_hz=200)
    assert meter.total == meter.rails and len(meter.rails) == 5
    meter.start()
    time.sleep(0.02)
    trace = meter.stop()
    np.testing.assert_allclose(trace.power_w, (950 + 760 + 380 + 570 + 40) / 1000)
