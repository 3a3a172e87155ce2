"""Jetson on-board INA3221 through NVIDIA's legacy IIO driver (JetPack <= 4: Nano, TX2,
Xavier on r32).

Layout: ``/sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:device<N>/`` with ``rail_name_<k>``,
``in_voltage<k>_input`` (mV), ``in_current<k>_input`` (mA) and ``in_power<k>_input`` (mW),
``k`` = 0..2. The driver computes power itself, so one read per rail suffices. Rails named
``NC`` are skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.meters.base import MeterDescription, MeterError
from agent.meters.polled import PolledRailMeter
from agent.meters.sysfs import read_int, read_optional_text, sort_numeric
from joulefarm.traces.rails import total_description, total_rails

KIND = "ina3221-iio"
DRIVER_DIR = "sys/bus/i2c/drivers/ina3221x"
DEFAULT_RATE_HZ = 200.0
RAIL_CHANNELS = (0, 1, 2)


@dataclass(frozen=True)
class IioRail:
    name: str
    power_path: Path  # mW

    def read_w(self) -> float:
        return read_int(self.power_path) / 1e3


@dataclass(frozen=True)
class Ina3221Iio:
    device: str
    iio: Path
    rails: tuple[IioRail, ...]


def _rails(iio: Path) -> tuple[IioRail, ...]:
    rails = []
    for k in RAIL_CHANNELS:
        name = read_optional_text(iio / f"rail_name_{k}")
        power = iio / f"in_power{k}_input"
        if name and name.upper() != "NC" and power.exists():
            rails.append(IioRail(name, power))
    return tuple(rails)


def discover(root: Path = Path("/")) -> list[Ina3221Iio]:
    """Every ina3221x IIO device with at least one named rail."""
    found = []
    for device in sort_numeric(list((root / DRIVER_DIR).glob("*-*"))):
        for iio in sort_numeric(list(device.glob("iio:device*"))):
            rails = _rails(iio)
            if rails:
                found.append(Ina3221Iio(device.name, iio, rails))
    return found


class JetsonIioMeter(PolledRailMeter):
    """Power of every named ina3221x rail; total = the module-input rail, else the sum."""

    def __init__(self, chips: Sequence[Ina3221Iio] | None = None, *, root: Path = Path("/"),
                 sample_rate_hz: float | None = None, total_rail: str | None = None) -> None:
        if chips is None:
            chips = discover(root)
        if not chips:
            raise MeterError(f"ina3221-iio: no ina3221x IIO device under {root / DRIVER_DIR}")
        names_all = [r.name for c in chips for r in c.rails]
        rails = [
            IioRail(f"{r.name}@{c.device}" if names_all.count(r.name) > 1 else r.name,
                    r.power_path)
            for c in chips for r in c.rails
        ]
        names = [r.name for r in rails]
        total = total_rails(names, total_rail)

        def read_rails_w() -> list[float]:
            return [r.read_w() for r in rails]

        where = ", ".join(str(c.iio) for c in chips)
        super().__init__(
            MeterDescription(kind=KIND, simulated=False,
                             sample_rate_hz=float(sample_rate_hz or DEFAULT_RATE_HZ),
                             description=f"Jetson INA3221 IIO ({where}); "
                                         f"{total_description(names, total)}"),
            names, read_rails_w, total=total,
        )
