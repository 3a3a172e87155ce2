"""Power meters: one interface (``base.Meter``), one module per source.

Only the simulator exists so far; real drivers (INA3221, INA2xx, RAPL, ...) plug in through
``open_meter`` without the agent changing.
"""

from agent.meters.base import Meter, MeterError, Trace, open_meter

__all__ = ["Meter", "MeterError", "Trace", "open_meter"]
