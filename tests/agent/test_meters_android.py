"""Android: battery fuel gauge (units, sign, charging) and ODPM energy counters."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent.meters import open_meter
from agent.meters.android_battery import AndroidBatteryMeter, guess_current_unit
from agent.meters.android_odpm import (
    OdpmDumpsysMeter,
    OdpmSysfsMeter,
    cumulative_joules,
    fresh_rows,
    parse_dumpsys_energy,
    parse_energy_value,
    refresh_times,
)
from agent.meters.base import MeterError, MeterParseError
from tests.helpers import FIXTURES as HELPERS_FIXTURES

FIXTURES = HELPERS_FIXTURES / "meters"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic: a concurrent reader never sees a half-written file


def phone(root: Path, *, current: int, voltage: int, status: str = "Discharging",
          usb_online: int = 0) -> Path:
    supply = root / "sys/class/power_supply"
    battery = supply / "battery"
    for name, value in {"current_now": current, "voltage_now": voltage, "status": status,
                        "capacity": 81, "type": "Battery"}.items():
        _write(battery / name, f"{value}\n")
    for name, online in {"usb": usb_online, "ac": 0, "wireless": 0}.items():
        _write(supply / name / "online", f"{online}\n")
    _write(supply / "dc" / "type", "Mains\n")  # a supply without an online file
    return battery


def _run(meter, seconds: float = 0.03):
    meter.start()
    time.sleep(seconds)
    return meter.stop()


# -- battery ----------------------------------------------------------------------------------

def test_microamps_microvolts_by_convention(tmp_path: Path) -> None:
    phone(tmp_path, current=-1_234_567, voltage=3_876_000)
    meter = open_meter("android-battery", root=tmp_path, sample_rate_hz=200)
    assert isinstance(meter, AndroidBatteryMeter)
    assert (meter.current_unit, meter.voltage_unit) == ("uA", "uV")
    trace = _run(meter)
    np.testing.assert_allclose(trace.power_w, 1.234567 * 3.876)
    assert trace.flags == ()


def test_milliamp_millivolt_drivers_are_recognised(tmp_path: Path) -> None:
    phone(tmp_path, current=850, voltage=3876)
    meter = AndroidBatteryMeter(root=tmp_path, sample_rate_hz=200)
    assert (meter.current_unit, meter.voltage_unit) == ("mA", "mV")
    np.testing.assert_allclose(_run(meter).power_w, 0.850 * 3.876)


def test_current_unit_guess_and_ambiguity() -> None:
    assert guess_current_unit(450_000, 3.9) == ("uA", False)
    assert guess_current_unit(450, 3.9) == ("mA", False)
    assert guess_current_unit(0, 3.9) == ("uA", True)


def test_explicit_units_and_sign_override_the_guess(tmp_path: Path) -> None:
    phone(tmp_path, current=-900, voltage=3_900_000)
    meter = open_meter("android-battery", root=tmp_path, sample_rate_hz=200,
                       options={"current_unit": "mA", "discharge_sign": -1})
    np.testing.assert_allclose(_run(meter).power_w, 0.9 * 3.9)
    with pytest.raises(MeterError, match="current_unit"):
        AndroidBatteryMeter(root=tmp_path, current_unit="A")
    with pytest.raises(MeterError, match="unknown|does not take"):
        open_meter("android-battery", root=tmp_path, options={"scale": 2})


def test_usb_power_or_charging_status_flags_the_trace(tmp_path: Path) -> None:
    phone(tmp_path, current=-500_000, voltage=3_900_000, status="Not charging", usb_online=1)
    assert "charging" in _run(AndroidBatteryMeter(root=tmp_path, sample_rate_hz=200)).flags
    phone(tmp_path, current=500_000, voltage=3_900_000, status="Charging")
    assert "charging" in _run(AndroidBatteryMeter(root=tmp_path, sample_rate_hz=200)).flags


def test_charger_plugged_in_mid_run_is_caught_at_stop(tmp_path: Path) -> None:
    phone(tmp_path, current=-500_000, voltage=3_900_000)
    meter = AndroidBatteryMeter(root=tmp_path, sample_rate_hz=200)
    meter.start()
    time.sleep(0.02)
    _write(tmp_path / "sys/class/power_supply/usb/online", "1\n")
    time.sleep(0.02)
    assert "charging" in meter.stop().flags


def test_a_current_sign_flip_is_flagged(tmp_path: Path) -> None:
    battery = phone(tmp_path, current=-500_000, voltage=3_900_000)
    meter = AndroidBatteryMeter(root=tmp_path, sample_rate_hz=200)
    meter.start()
    time.sleep(0.02)
    _write(battery / "current_now", "300000\n")
    time.sleep(0.02)
    trace = meter.stop()
    assert "current_sign_flipped" in trace.flags
    assert set(np.round(trace.power_w, 6)) == {1.95, 1.17}


def test_battery_missing_or_vanishing(tmp_path: Path) -> None:
    with pytest.raises(MeterError, match="no current_now"):
        AndroidBatteryMeter(root=tmp_path)
    battery = phone(tmp_path, current=-500_000, voltage=3_900_000)
    meter = AndroidBatteryMeter(root=tmp_path, sample_rate_hz=200)
    meter.start()
    time.sleep(0.02)
    (battery / "voltage_now").unlink()
    time.sleep(0.02)
    trace = meter.stop()
    assert "meter_vanished" in trace.flags and "voltage_now" in trace.error


# -- ODPM -------------------------------------------------------------------------------------

def test_energy_value_format_is_parsed_in_microwatt_seconds() -> None:
    ev = parse_energy_value((FIXTURES / "odpm_energy_value_main.txt").read_text())
    assert ev.t_ms == 4563220 and len(ev.rails) == 8
    assert ev.rails["S2M_VDD_CPUCL2"] == (4563218, 21035812990)
    with pytest.raises(MeterParseError, match=r"line 2: expected 'CH<n>.*'CH0 S2M, 12'"):
        parse_energy_value("t=1\nCH0 S2M, 12\n")


def test_dumpsys_rows_are_cumulative_mws_and_other_sections_ignored() -> None:
    for name in ("dumpsys_powerstats.txt", "dumpsys_powerstats_delta.txt"):
        rails = parse_dumpsys_energy((FIXTURES / name).read_text())
        assert list(rails)[:2] == ["S2M_VDD_CPUCL2", "S3M_VDD_CPUCL1"] and len(rails) == 8
        assert rails["VSYS_PWR_MODEM"] == 1543209.88  # cumulative, not the (delta) column
        assert "CPU_CLUSTER" not in rails
    with pytest.raises(MeterParseError, match="no energy meter row"):
        parse_dumpsys_energy("Can't find service: android.hardware.power.stats\n")


def test_dumpsys_snapshots_difference_into_window_energy() -> None:
    base = (FIXTURES / "dumpsys_powerstats.txt").read_text()
    step = {"count": 0}

    def runner() -> str:
        # Each call the modem rail has used 10 mWs more; the others stand still.
        step["count"] += 1
        return base.replace("1543209.88 mWs", f"{1543209.88 + 10 * step['count']:.2f} mWs")

    meter = OdpmDumpsysMeter(runner, sample_rate_hz=100)
    assert meter.description.kind == "android-odpm"
    trace = _run(meter, 0.05)
    n = len(trace.t_s)
    assert trace.total_energy_j == pytest.approx(10e-3 * (n - 1))
    assert trace.rails_j["VSYS_PWR_MODEM"][-1] == pytest.approx(10e-3 * (n - 1))
    assert trace.rails_j["S2M_VDD_CPUCL2"][-1] == 0.0


def test_stale_snapshots_are_dropped_and_refresh_stamps_mapped() -> None:
    # Three PMIC refreshes 50 ms apart, polled every 20 ms: repeated snapshots carry no news.
    refresh = np.array([[1000.0], [1000.0], [1050.0], [1050.0], [1050.0], [1100.0]])
    np.testing.assert_array_equal(fresh_rows(refresh), [0, 2, 5])
    reads = np.array([5.001, 5.021, 5.052, 5.071, 5.091, 5.103])
    rows, t = refresh_times(refresh, reads, boot_to_agent_s=4.0)
    np.testing.assert_array_equal(rows, [1, 4, 5])  # the last snapshot of each refresh
    np.testing.assert_allclose(t, [5.0, 5.05, 5.1])
    # A boot clock that does not match (e.g. a different clock): fall back to read times.
    assert refresh_times(refresh, reads, boot_to_agent_s=-100.0) is None
    # Two PMICs refreshing at different moments: dated by the newer, the later copy kept.
    two = np.array([[1000.0, 990.0], [1050.0, 990.0], [1050.0, 1040.0], [1100.0, 1090.0]])
    rows, t = refresh_times(two, np.array([5.01, 5.06, 5.07, 5.11]), boot_to_agent_s=4.0)
    np.testing.assert_array_equal(rows, [0, 2, 3])
    joules, reset = cumulative_joules(np.array([[5e6], [4e6], [6e6]]), 1e-6)
    assert reset and list(joules[:, 0]) == [0.0, 0.0, 2.0]


def test_sysfs_meter_with_a_live_counter(tmp_path: Path) -> None:
    iio = tmp_path / "sys/bus/iio/devices"
    main = (FIXTURES / "odpm_energy_value_main.txt").read_text()
    sub = (FIXTURES / "odpm_energy_value_sub.txt").read_text()
    _write(iio / "iio:device2/name", "lsm6dsr\n")  # another IIO device, no energy_value
    boot_offset = 1000.0  # fake CLOCK_BOOTTIME = perf_counter + 1000 s

    def boot_clock() -> float:
        return time.perf_counter() + boot_offset

    stop = threading.Event()

    def snapshot(recorded: str, now_ms: int, gpu_uws: int) -> str:
        lines = [f"t={now_ms}"]
        for k, line in enumerate(recorded.splitlines()[1:]):
            name = line.split("[")[1].split("]")[0]
            value = gpu_uws if name == "S2S_VDD_G3D" else int(line.rsplit(" ", 1)[1])
            lines.append(f"CH{k}(T={now_ms})[{name}], {value}")
        return "\n".join(lines) + "\n"

    def pmic() -> None:
        # Both PMICs refresh every 25 ms; the GPU rail gains 2 W * 25 ms = 50000 uWs each time.
        gpu = 11098765432
        while not stop.wait(0.025):
            gpu += 50000
            now_ms = int(boot_clock() * 1000)
            _write(iio / "iio:device0/energy_value", snapshot(main, now_ms, 0))
            _write(iio / "iio:device1/energy_value", snapshot(sub, now_ms, gpu))

    start_ms = int(boot_clock() * 1000)
    _write(iio / "iio:device0/energy_value", snapshot(main, start_ms, 0))
    _write(iio / "iio:device1/energy_value", snapshot(sub, start_ms, 11098765432))
    meter = OdpmSysfsMeter(root=tmp_path, sample_rate_hz=200, boot_clock=boot_clock)
    assert len(meter.rails) == 16
    writer = threading.Thread(target=pmic)
    writer.start()
    try:
        meter.start()
        time.sleep(0.2)
        trace = meter.stop()
    finally:
        stop.set()
        writer.join()
    assert trace.flags == ()  # refresh stamps mapped, no reset, no vanish
    gpu = trace.rails_j["S2S_VDD_G3D"]
    refreshes = round(gpu[-1] / 0.05)
    assert refreshes >= 3 and gpu[-1] == pytest.approx(0.05 * refreshes)
    assert len(trace.t_s) <= refreshes + 1  # 200 Hz reads, only fresh snapshots kept
    assert np.all(np.diff(trace.t_s) > 0.015)
    assert trace.total_energy_j == pytest.approx(gpu[-1])


def test_odpm_discovery_prefers_sysfs_and_rejects_unknown_rails(tmp_path: Path) -> None:
    iio = tmp_path / "sys/bus/iio/devices"
    _write(iio / "iio:device0/energy_value",
           (FIXTURES / "odpm_energy_value_main.txt").read_text())
    meter = open_meter("android-odpm", root=tmp_path, options={"rails": ["S5M_VDD_INT"]})
    assert isinstance(meter, OdpmSysfsMeter) and meter.rails == ("S5M_VDD_INT",)
    with pytest.raises(MeterError, match="unknown rails"):
        OdpmSysfsMeter(root=tmp_path, rails=["VDD_NOPE"])
