"""Android battery fuel gauge: ``/sys/class/power_supply/battery/{current_now,voltage_now}``.

Units are uA and uV by convention, but some drivers report mA/mV; the sign convention differs
per driver (Android documents positive = charging, many gauges report positive discharge).
Without configuration, units are inferred from the first reading (voltage: 1-20 V; current:
the unit giving a plausible phone power of 0.03-30 W) and power is ``|I| * V``; a current whose
sign flips during the run is flagged. ``current_unit``/``voltage_unit`` (``"uA"``/``"mA"``,
``"uV"``/``"mV"``) and ``discharge_sign`` (``+1``: positive means discharging, ``-1``: negative
means discharging) override the guesses.

While charging (``status`` is ``Charging``) or while any external supply (USB, AC, wireless)
is online, the battery current is not the device's draw: the trace is flagged ``charging``.
The gauge refreshes every 10 ms to 30 s depending on the chip, so consecutive reads often
repeat; each value is held until the next read like any polled sensor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent.meters.base import MeterDescription, MeterError
from agent.meters.polled import PolledRailMeter
from agent.meters.sysfs import read_int, read_optional_text, sort_numeric
from joulefarm.traces.model import FLAG_CHARGING, TimestampedTrace

KIND = "android-battery"
SUPPLY_DIR = "sys/class/power_supply"
BATTERY = "battery"
DEFAULT_RATE_HZ = 50.0
CURRENT_UNITS = {"uA": 1e-6, "mA": 1e-3}
VOLTAGE_UNITS = {"uV": 1e-6, "mV": 1e-3}
PLAUSIBLE_POWER_W = (0.03, 30.0)
PLAUSIBLE_VOLTAGE_V = (1.0, 20.0)
FLAG_SIGN_FLIPPED = "current_sign_flipped"
FLAG_UNITS_GUESSED = "units_ambiguous"


def discover(root: Path = Path("/")) -> list[Path]:
    """The battery supply directory, if it has current_now and voltage_now."""
    battery = root / SUPPLY_DIR / BATTERY
    if (battery / "current_now").exists() and (battery / "voltage_now").exists():
        return [battery]
    return []


def guess_voltage_unit(raw: int) -> str:
    for unit, scale in VOLTAGE_UNITS.items():
        if PLAUSIBLE_VOLTAGE_V[0] <= raw * scale <= PLAUSIBLE_VOLTAGE_V[1]:
            return unit
    raise MeterError(f"android-battery: voltage_now={raw} is neither uV nor mV of a 1-20 V "
                     "battery; set options.voltage_unit")


def guess_current_unit(raw: int, volts: float) -> tuple[str, bool]:
    """The current unit giving a plausible power, and whether the guess was ambiguous."""
    plausible = [unit for unit, scale in CURRENT_UNITS.items()
                 if PLAUSIBLE_POWER_W[0] <= abs(raw) * scale * volts <= PLAUSIBLE_POWER_W[1]]
    if len(plausible) == 1:
        return plausible[0], False
    return "uA", True  # the kernel convention, when the reading cannot tell


def external_power_online(root: Path) -> list[str]:
    """Names of supplies (usb, ac, wireless, ...) whose ``online`` reads 1."""
    online = []
    for supply in sort_numeric(list((root / SUPPLY_DIR).glob("*"))):
        if supply.name != BATTERY and read_optional_text(supply / "online") == "1":
            online.append(supply.name)
    return online


class AndroidBatteryMeter(PolledRailMeter):
    """Battery power ``|I| * V`` (or signed, with ``discharge_sign``), as a TimestampedTrace."""

    def __init__(self, *, root: Path = Path("/"), sample_rate_hz: float | None = None,
                 current_unit: str | None = None, voltage_unit: str | None = None,
                 discharge_sign: int | None = None) -> None:
        found = discover(root)
        if not found:
            raise MeterError(f"android-battery: no current_now/voltage_now under "
                             f"{root / SUPPLY_DIR / BATTERY}")
        self.root = root
        battery = found[0]
        self._status = battery / "status"
        current, voltage = battery / "current_now", battery / "voltage_now"
        if current_unit is not None and current_unit not in CURRENT_UNITS:
            raise MeterError(f"android-battery: current_unit must be one of "
                             f"{sorted(CURRENT_UNITS)}, got {current_unit!r}")
        if voltage_unit is not None and voltage_unit not in VOLTAGE_UNITS:
            raise MeterError(f"android-battery: voltage_unit must be one of "
                             f"{sorted(VOLTAGE_UNITS)}, got {voltage_unit!r}")
        if discharge_sign not in (None, 1, -1):
            raise MeterError(f"android-battery: discharge_sign must be 1 or -1, "
                             f"got {discharge_sign!r}")
        try:
            raw_i, raw_v = read_int(current), read_int(voltage)
        except OSError as e:
            raise MeterError(f"android-battery: cannot read {battery}: {e}") from e
        current_unit_given = current_unit is not None
        self.voltage_unit = voltage_unit or guess_voltage_unit(raw_v)
        v_scale = VOLTAGE_UNITS[self.voltage_unit]
        self.units_ambiguous = False
        if current_unit is None:
            current_unit, self.units_ambiguous = guess_current_unit(raw_i, raw_v * v_scale)
        self.current_unit = current_unit
        i_scale = CURRENT_UNITS[current_unit]
        self.discharge_sign = discharge_sign

        def read_rails_w() -> tuple[float, float]:
            # Column 0: power as reported; column 1: the signed current (A) for sign checks.
            amps = read_int(current) * i_scale
            volts = read_int(voltage) * v_scale
            power = abs(amps) * volts if discharge_sign is None else discharge_sign * amps * volts
            return power, amps

        guessed = "" if current_unit_given and voltage_unit else " (units inferred)"
        sign = ("|I| * V" if discharge_sign is None
                else f"{'+' if discharge_sign > 0 else '-'}I * V = discharge")
        super().__init__(
            MeterDescription(kind=KIND, simulated=False,
                             sample_rate_hz=float(sample_rate_hz or DEFAULT_RATE_HZ),
                             description=f"Android battery gauge ({battery}), {current_unit} "
                                         f"{self.voltage_unit}{guessed}, power = {sign}"),
            ["battery", "current_a"], read_rails_w, total=["battery"],
        )

    def conditions(self) -> list[str]:
        status = read_optional_text(self._status)
        if status == "Charging" or external_power_online(self.root):
            return [FLAG_CHARGING]
        return []

    def stop(self) -> TimestampedTrace:
        trace = super().stop()
        amps = np.asarray(trace.rails_w["current_a"])
        extra = []
        nonzero = amps[amps != 0]
        if self.discharge_sign is None and len(nonzero) and (
                np.any(nonzero > 0) and np.any(nonzero < 0)):
            extra.append(FLAG_SIGN_FLIPPED)
        if self.units_ambiguous:
            extra.append(FLAG_UNITS_GUESSED)
        rails = {"battery": trace.rails_w["battery"]}
        return TimestampedTrace(
            t_s=trace.t_s, power_w=trace.power_w, read_s=trace.read_s, rails_w=rails,
            flags=tuple(dict.fromkeys([*trace.flags, *extra])), gaps=trace.gaps,
            target_rate_hz=trace.target_rate_hz, error=trace.error,
        )
