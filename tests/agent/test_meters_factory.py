"""open_meter dispatches every implemented kind; discover_meters finds what exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.meters import MeterError, discover_meters, open_meter
from agent.meters.sim import SimMeter
from joulefarm.enums import MeterKind
from tests.helpers import FIXTURES as HELPERS_FIXTURES

FIXTURES = HELPERS_FIXTURES / "meters"


def _file(root: Path, rel: str, text: str, mode: int | None = None) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)


def test_every_kind_reaches_its_own_driver(tmp_path: Path) -> None:
    # Each kind either opens or fails naming itself or what it lacks: none falls through to
    # another kind's driver.
    for kind in MeterKind:
        try:
            meter = open_meter(kind.value, root=tmp_path)
        except MeterError as e:
            assert kind.value in str(e) or "needs" in str(e) or "not found" in str(e), (kind, e)
        else:
            assert meter.description.kind == kind.value
    with pytest.raises(MeterError, match="needs option 'path'"):
        open_meter("replay")
    with pytest.raises(MeterError, match="no driver"):
        open_meter("ina999")


def test_sim_still_opens_and_unknown_options_are_refused(tmp_path: Path) -> None:
    assert isinstance(open_meter("sim", profile="rpi4"), SimMeter)
    with pytest.raises(MeterError, match="does not take option"):
        open_meter("rapl", root=tmp_path, options={"domain": ["package-0"]})


def test_nothing_present_means_not_found_not_a_crash(tmp_path: Path) -> None:
    assert discover_meters(tmp_path) == []
    for kind in ("rapl", "ina3221", "ina3221-iio", "ina2xx", "android-battery"):
        with pytest.raises(MeterError):
            open_meter(kind, root=tmp_path)


def test_this_machine_degrades_gracefully() -> None:
    found = discover_meters()  # RAPL may or may not be readable here
    assert all(not m.simulated for m in found)


def test_discovery_over_a_fake_device_tree(tmp_path: Path) -> None:
    rapl = "sys/class/powercap/intel-rapl:0"
    _file(tmp_path, f"{rapl}/name", "package-0\n")
    _file(tmp_path, f"{rapl}/energy_uj", "123\n")
    _file(tmp_path, f"{rapl}/max_energy_range_uj", "262143328850\n")
    hw = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon5"
    for k, label in enumerate(["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"], start=1):
        _file(tmp_path, f"{hw}/in{k}_label", f"{label}\n")
        _file(tmp_path, f"{hw}/in{k}_input", "5000\n")
        _file(tmp_path, f"{hw}/curr{k}_input", "100\n")
    _file(tmp_path, "usr/bin/tegrastats", "#!/bin/sh\n", mode=0o755)
    _file(tmp_path, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\x00")
    _file(tmp_path, "usr/bin/vcgencmd", "#!/bin/sh\n", mode=0o755)
    _file(tmp_path, "sys/class/power_supply/battery/current_now", "-400000\n")
    _file(tmp_path, "sys/class/power_supply/battery/voltage_now", "3900000\n")
    _file(tmp_path, "sys/bus/iio/devices/iio:device0/energy_value",
          (FIXTURES / "odpm_energy_value_main.txt").read_text())
    kinds = [m.kind for m in discover_meters(tmp_path)]
    assert kinds == ["rapl", "ina3221", "rpi5-pmic", "tegrastats", "android-battery",
                     "android-odpm"]
    descriptions = {m.kind: m.description for m in discover_meters(tmp_path)}
    assert "VDD_IN" in descriptions["ina3221"]
    assert "intel-rapl:0:package-0" in descriptions["rapl"]
