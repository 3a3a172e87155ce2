"""Power meters: one interface (``base.Meter``), one module per source, one factory.

``open_meter(kind, ...)`` opens the driver for a device's ``meter.kind``; ``discover_meters()``
lists the real meters present on this machine. A meter's ``stop()`` returns one of the trace
types in ``traces`` (uniform on the meter clock, timestamped or counter on the agent clock).
"""

from agent.meters.base import Meter, MeterDescription, MeterError, MeterParseError
from agent.meters.factory import discover_meters, open_meter
from joulefarm.traces.model import AnyTrace, CounterTrace, TimestampedTrace, Trace

__all__ = [
    "AnyTrace",
    "CounterTrace",
    "Meter",
    "MeterDescription",
    "MeterError",
    "MeterParseError",
    "TimestampedTrace",
    "Trace",
    "discover_meters",
    "open_meter",
]
