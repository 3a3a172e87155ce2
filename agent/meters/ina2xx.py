"""INA219/INA226 (and kin) through the kernel ``ina2xx`` hwmon driver, e.g. on a Raspberry Pi.

Layout: ``/sys/class/hwmon/hwmon<N>/`` whose ``name`` is ``ina219``, ``ina226``, ...; with
``in1_input`` (bus voltage, mV), ``curr1_input`` (mA) and ``power1_input`` (uW; ``in0`` is
the shunt voltage). Old kernels keep the attributes under ``hwmon<N>/device/``. The chip's
own power register is read (one file per sample); ``mode="vi"`` multiplies ``in1`` by
``curr1`` instead. A sensor is identified by its I2C device (``1-0040``), which is stable,
unlike ``<N>``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.meters.base import MeterDescription, MeterError
from agent.meters.polled import PolledRailMeter
from agent.meters.sysfs import read_int, read_optional_text, sort_numeric

KIND = "ina2xx"
HWMON_DIR = "sys/class/hwmon"
# Chip names the kernel's ina2xx driver registers.
INA2XX_NAMES = frozenset({"ina219", "ina220", "ina226", "ina230", "ina231", "ina260", "sy24655"})
DEFAULT_RATE_HZ = 500.0


@dataclass(frozen=True)
class Ina2xxSensor:
    """One INA2xx: its stable I2C id, chip name and attribute directory."""

    device: str
    chip: str
    attrs: Path

    def read_power_w(self) -> float:
        return read_int(self.attrs / "power1_input") / 1e6

    def read_vi_w(self) -> float:
        return read_int(self.attrs / "in1_input") * read_int(self.attrs / "curr1_input") / 1e6


def _device_id(hwmon: Path) -> str:
    device = hwmon / "device"
    if device.exists():
        return Path(os.path.realpath(device)).name
    return hwmon.name


def discover(root: Path = Path("/")) -> list[Ina2xxSensor]:
    """Every hwmon device of the ina2xx driver exposing power1_input."""
    found = []
    for hwmon in sort_numeric(list((root / HWMON_DIR).glob("hwmon*"))):
        chip = read_optional_text(hwmon / "name")
        if chip not in INA2XX_NAMES:
            continue
        for attrs in (hwmon, hwmon / "device"):
            if (attrs / "power1_input").exists():
                found.append(Ina2xxSensor(_device_id(hwmon), chip, attrs))
                break
    return found


class Ina2xxMeter(PolledRailMeter):
    """One INA2xx sensor's power. With several present, ``sensor`` (I2C id) must pick one."""

    def __init__(self, sensors: Sequence[Ina2xxSensor] | None = None, *, root: Path = Path("/"),
                 sample_rate_hz: float | None = None, sensor: str | None = None,
                 mode: str = "power") -> None:
        if sensors is None:
            sensors = discover(root)
        if sensor is not None:
            sensors = [s for s in sensors if s.device == sensor]
        if not sensors:
            which = f" {sensor!r}" if sensor else ""
            raise MeterError(f"ina2xx: no INA2xx hwmon sensor{which} under {root / HWMON_DIR}")
        if len(sensors) > 1:
            ids = ", ".join(s.device for s in sensors)
            raise MeterError(f"ina2xx: several sensors ({ids}); choose one with options.sensor")
        if mode not in ("power", "vi"):
            raise MeterError(f"ina2xx: mode must be 'power' or 'vi', got {mode!r}")
        chosen = sensors[0]
        read = chosen.read_power_w if mode == "power" else chosen.read_vi_w
        super().__init__(
            MeterDescription(kind=KIND, simulated=False,
                             sample_rate_hz=float(sample_rate_hz or DEFAULT_RATE_HZ),
                             description=f"{chosen.chip} {chosen.device} via hwmon "
                                         f"({chosen.attrs}), {mode}"),
            [chosen.device], lambda: (read(),), total=[chosen.device],
        )
