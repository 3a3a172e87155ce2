"""Jetson on-board INA3221 through hwmon (JetPack 5/6: Orin, Xavier on r35).

Layout: ``/sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmon<N>/`` with ``in[1-3]_label``
(rail names), ``in[1-3]_input`` (bus voltage, mV) and ``curr[1-3]_input`` (mA); there is no
power file, so power = V * I, quantised to 8 mV x 8 mA steps. ``<N>`` changes across boots:
it is globbed, never assumed. Channels labelled ``NC`` (not connected) or disabled
(``in<k>_enable`` = 0) are skipped, and so is ``in7`` (the chip's sum of shunt voltages),
which is not a rail. AGX Orin has two chips (``-0040`` and ``-0041``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.meters.base import MeterDescription, MeterError
from agent.meters.polled import PolledRailMeter
from agent.meters.sysfs import read_int, read_optional_text, sort_numeric
from joulefarm.traces.rails import total_description, total_rails

KIND = "ina3221"
DRIVER_DIR = "sys/bus/i2c/drivers/ina3221"
DEFAULT_RATE_HZ = 200.0  # a Python loop reached ~440 Hz on Orin Nano (I2C-bound reads)
RAIL_CHANNELS = (1, 2, 3)  # in4-6 are shunt voltages, in7 their sum: not rails
NOT_CONNECTED = "NC"


@dataclass(frozen=True)
class RailChannel:
    """One rail: its name and the files giving its voltage (mV) and current (mA)."""

    name: str
    voltage_path: Path
    current_path: Path

    def read_w(self) -> float:
        return read_int(self.voltage_path) * read_int(self.current_path) / 1e6


@dataclass(frozen=True)
class Ina3221Hwmon:
    """One INA3221 chip: its I2C id (``1-0040``), hwmon directory and connected rails."""

    device: str
    hwmon: Path
    rails: tuple[RailChannel, ...]


def _rails(hwmon: Path) -> tuple[RailChannel, ...]:
    rails = []
    for k in RAIL_CHANNELS:
        label = read_optional_text(hwmon / f"in{k}_label")
        volts, amps = hwmon / f"in{k}_input", hwmon / f"curr{k}_input"
        if not label or label.upper() == NOT_CONNECTED or not (volts.exists() and amps.exists()):
            continue
        if read_optional_text(hwmon / f"in{k}_enable") == "0":
            continue
        rails.append(RailChannel(label, volts, amps))
    return tuple(rails)


def discover(root: Path = Path("/")) -> list[Ina3221Hwmon]:
    """Every INA3221 hwmon device with at least one connected rail."""
    found = []
    for device in sort_numeric(list((root / DRIVER_DIR).glob("*-*"))):
        for hwmon in sort_numeric(list(device.glob("hwmon/hwmon*"))):
            rails = _rails(hwmon)
            if rails:
                found.append(Ina3221Hwmon(device.name, hwmon, rails))
    return found


def unique_rails(chips: Sequence[tuple[str, Sequence[RailChannel]]]) -> list[RailChannel]:
    """All rails of all chips; a name seen twice gets its chip id appended."""
    names = [r.name for _, rails in chips for r in rails]
    out = []
    for device, rails in chips:
        for r in rails:
            if names.count(r.name) > 1:
                r = RailChannel(f"{r.name}@{device}", r.voltage_path, r.current_path)
            out.append(r)
    return out


class JetsonHwmonMeter(PolledRailMeter):
    """Power of every connected INA3221 rail; total = the module-input rail, else the sum."""

    def __init__(self, chips: Sequence[Ina3221Hwmon] | None = None, *, root: Path = Path("/"),
                 sample_rate_hz: float | None = None, total_rail: str | None = None) -> None:
        if chips is None:
            chips = discover(root)
        if not chips:
            raise MeterError(f"ina3221: no INA3221 hwmon device under {root / DRIVER_DIR}")
        rails = unique_rails([(c.device, c.rails) for c in chips])
        names = [r.name for r in rails]
        total = total_rails(names, total_rail)

        def read_rails_w() -> list[float]:
            return [r.read_w() for r in rails]

        where = ", ".join(str(c.hwmon) for c in chips)
        super().__init__(
            MeterDescription(kind=KIND, simulated=False,
                             sample_rate_hz=float(sample_rate_hz or DEFAULT_RATE_HZ),
                             description=f"Jetson INA3221 hwmon ({where}); "
                                         f"{total_description(names, total)}"),
            names, read_rails_w, total=total,
        )
