"""Which rail is a board's total: the module-input rail when there is one, else the sum.

On-board monitors (Jetson INA3221, tegrastats) report several rails. Orin NX/Nano and Xavier
NX have a module-input rail (``VDD_IN``); Nano (JetPack 4) has ``POM_5V_IN``; some boards
name it ``VIN...``. AGX boards have none: their rails are parts of the module and the best
total is their sum. No on-board rail includes the carrier board.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from joulefarm.errors import MeterError

# In order of preference.
INPUT_RAIL_PATTERNS = ("VDD_IN", "POM_5V_IN", "VIN", "VIN_*")
# AGX Orin's VIN_SYS_5V0 feeds the module's 5 V system domain only: a part, not the input.
NOT_INPUT_RAILS = frozenset({"VIN_SYS_5V0"})
SUM = "sum"


def input_rail(names: Sequence[str]) -> str | None:
    """The module-input rail among ``names``, or None."""
    for pattern in INPUT_RAIL_PATTERNS:
        for name in names:
            if name not in NOT_INPUT_RAILS and fnmatch.fnmatchcase(name.upper(), pattern):
                return name
    return None


def choose_total_rail(names: Sequence[str], override: str | None = None) -> str | None:
    """The rail to report as total power, or None meaning "sum of all rails".

    ``override`` is a rail name, or ``"sum"`` to force the sum.
    """
    if override is None:
        return input_rail(names)
    if override == SUM:
        return None
    if override not in names:
        raise MeterError(f"total_rail {override!r} is not among the rails: {', '.join(names)}")
    return override


def total_description(names: Sequence[str], total: str | None) -> str:
    return f"total = {total}" if total else f"total = sum of {' + '.join(names)}"
