"""Raspberry Pi 5 PMIC rails through ``vcgencmd pmic_read_adc``.

The command prints one ADC channel per line, currents then voltages::

     VDD_CORE_A current(7)=6.22421000A
     VDD_CORE_V volt(15)=0.86173300V

Rails are paired by name (``VDD_CORE_A`` with ``VDD_CORE_V``) and power = sum of V * A over
the pairs. Channels without a partner (``EXT5V_V``, ``BATT_V``) are measured voltages with no
current and are left out. The PMIC sees only its own rails: USB, fan and HATs on the 5 V input
are not included, so this underestimates board power. One call is a subprocess (~10 Hz).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from agent.meters.base import MeterDescription, MeterError, MeterParseError
from agent.meters.polled import PolledRailMeter
from agent.meters.sysfs import read_optional_text

KIND = "rpi5-pmic"
COMMAND = ("vcgencmd", "pmic_read_adc")
DEFAULT_RATE_HZ = 10.0
COMMAND_TIMEOUT_S = 2.0
_LINE_RE = re.compile(
    r"^\s*(?P<name>\S+)_(?P<suffix>[AV])\s+(?P<kind>current|volt)\((?P<ch>\d+)\)"
    r"=(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)(?P<unit>[AV])\s*$"
)

Runner = Callable[[], str]


def parse_pmic_adc(text: str) -> dict[str, tuple[float, float]]:
    """Rails that have both a voltage and a current: ``{rail: (volts, amps)}`` in output order.

    Raises MeterParseError naming the first line that is not an ADC reading.
    """
    volts: dict[str, float] = {}
    amps: dict[str, float] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE_RE.match(line)
        if m is None:
            raise MeterParseError("vcgencmd pmic_read_adc", no, line,
                                  "expected 'NAME_A current(N)=X.XA' or 'NAME_V volt(N)=X.XV'")
        is_current = m["kind"] == "current"
        if (m["suffix"], m["unit"]) != (("A", "A") if is_current else ("V", "V")):
            raise MeterParseError("vcgencmd pmic_read_adc", no, line,
                                  "suffix, channel kind and unit disagree")
        (amps if is_current else volts)[m["name"]] = float(m["value"])
    return {name: (volts[name], amps[name]) for name in amps if name in volts}


def run_vcgencmd() -> str:
    """Run ``vcgencmd pmic_read_adc``; OSError if the command is missing."""
    done = subprocess.run(COMMAND, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                          check=False)
    if done.returncode != 0:
        raise MeterError(f"{' '.join(COMMAND)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def is_pi5(root: Path = Path("/")) -> bool:
    model = read_optional_text(root / "proc/device-tree/model") or ""
    return "Raspberry Pi 5" in model


class Rpi5PmicMeter(PolledRailMeter):
    """Per-rail PMIC power; total = sum of rails. ``runner`` returns the command's output."""

    def __init__(self, runner: Runner | None = None, *,
                 sample_rate_hz: float | None = None) -> None:
        run = runner or run_vcgencmd
        try:
            first = parse_pmic_adc(run())
        except OSError as e:
            raise MeterError(f"rpi5-pmic: cannot run {' '.join(COMMAND)}: {e}") from e
        if not first:
            raise MeterError("rpi5-pmic: pmic_read_adc printed no rail with both V and A")
        names = list(first)

        def read_rails_w() -> list[float]:
            rails = parse_pmic_adc(run())
            if list(rails) != names:
                raise MeterParseError("vcgencmd pmic_read_adc", 0, " ".join(rails),
                                      f"rails changed from {' '.join(names)}")
            return [v * a for v, a in rails.values()]

        super().__init__(
            MeterDescription(kind=KIND, simulated=False,
                             sample_rate_hz=float(sample_rate_hz or DEFAULT_RATE_HZ),
                             description=f"Raspberry Pi 5 PMIC ADC, sum of {len(names)} rails "
                                         "(excludes 5 V peripherals)"),
            names, read_rails_w, total=names,
        )
