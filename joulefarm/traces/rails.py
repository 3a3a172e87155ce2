"""Which rails make a board's total power: one rule for the live meters and the log readers.

On-board monitors (Jetson INA3221 and INA238, tegrastats) report several rails:

- a module-input rail is the total where there is one: ``VDD_IN`` (Orin NX/Nano, Xavier NX),
  ``POM_5V_IN`` (Nano, JetPack 4), ``VIN`` (AGX Thor: its INA238 measures the module *and* the
  carrier board, NVIDIA forum thread 366461);
- AGX Orin has none: its rails are parts of the module, so the total is their sum. But
  ``VIN_SYS_5V0`` is the 5 V system domain, not the input, and it feeds ``VDDQ_VDD2_1V8AO``
  (energymon's ``jetson/JetsonPowerRails.md``, NVIDIA forum thread 223111): the sum leaves out
  rails fed by another listed rail, or they would count twice;
- ``NC`` channels are not connected and never count.

``total_rails(names, override)`` gives the rails to add up. ``override`` is a rail name, or
``"sum"`` for every connected rail (then the caller asked for double counting, if any).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from joulefarm.errors import MeterError

INPUT_RAIL_PATTERNS = ("VDD_IN", "POM_5V_IN", "VIN", "VIN_*")
"""Module-input rail names, in order of preference."""
NOT_INPUT_RAILS = frozenset({"VIN_SYS_5V0"})
"""Rails that match ``INPUT_RAIL_PATTERNS`` but feed one domain only (AGX Orin's 5 V system)."""
FED_BY: dict[str, str] = {"VDDQ_VDD2_1V8AO": "VIN_SYS_5V0"}
"""Rail -> the listed rail that supplies it: counted once, in the supplying rail."""
UNCONNECTED = frozenset({"NC"})
SUM = "sum"


def connected(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` without the unconnected channels, in order."""
    return tuple(n for n in names if n.upper() not in UNCONNECTED)


def input_rail(names: Sequence[str]) -> str | None:
    """The module-input rail among ``names``, or None."""
    for pattern in INPUT_RAIL_PATTERNS:
        for name in names:
            if name not in NOT_INPUT_RAILS and fnmatch.fnmatchcase(name.upper(), pattern):
                return name
    return None


def total_rails(names: Sequence[str], override: str | None = None) -> tuple[str, ...]:
    """The rails whose sum is the board's total power (see the module docstring)."""
    rails = connected(names)
    if override == SUM:
        return rails
    if override is not None:
        if override not in rails:
            raise MeterError(f"total_rail {override!r} is not among the rails: "
                             f"{', '.join(rails)}")
        return (override,)
    chosen = input_rail(rails)
    if chosen is not None:
        return (chosen,)
    return tuple(n for n in rails if FED_BY.get(n) not in rails)


def total_description(names: Sequence[str], total: Sequence[str]) -> str:
    """``"total = VDD_IN"`` or ``"total = sum of A + B"``, naming rails left out as fed by
    another."""
    if len(total) == 1:
        return f"total = {total[0]}"
    fed = [n for n in connected(names) if n not in total and n in FED_BY]
    text = f"total = sum of {' + '.join(total)}"
    return text + (f" ({', '.join(fed)} left out: fed by a listed rail)" if fed else "")
