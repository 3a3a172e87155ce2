"""Bounds on what a suite, a devices file or a model file may ask of the farm.

The controller refuses a value outside them where it reads the file (``controller.config``,
the commands that read models), with the file, line and field; they are here, not in the
controller, for the agent to check the same bounds again on the requests it is sent, so that a
request that skipped the controller cannot wedge a device either. Every bound is far beyond
real use: it stops only values that would keep a device busy for hours, fill its memory or
crash its runtime. docs/suites.md and docs/devices.md list them.

This module imports only the standard library, so the agent (Python 3.10, on the device) and
the controller share it.
"""

from __future__ import annotations

import math

__all__ = [
    "MAX_CONFIG_FILE_BYTES",
    "MAX_IDLE_DURATION_S",
    "MAX_INPUT_ELEMENTS",
    "MAX_METER_INTERVAL_MS",
    "MAX_MIN_DURATION_S",
    "MAX_MIN_ITERATIONS",
    "MAX_MIN_LAYER_DURATION_S",
    "MAX_MODEL_FILE_BYTES",
    "MAX_MONSOON_VOUT_V",
    "MAX_NUM_THREADS",
    "MAX_REPETITIONS",
    "MAX_REPLAY_OFFSET_S",
    "MAX_SAMPLE_RATE_HZ",
    "MAX_SEED",
    "MAX_SUITE_JOBS",
    "MAX_SWEEP_COUNT",
    "MAX_SWEEP_MACS",
    "MAX_TIMEOUT_S",
    "MAX_TOML_NESTING",
    "MAX_WARMUP_ITERATIONS",
    "MEASURE_BOUNDS",
    "MIN_NUM_THREADS",
    "MIN_SAMPLE_RATE_HZ",
    "bound_problem",
    "format_number",
]

# -- how each model is measured (a suite's [measure] and [matrix], `joulefarm bench`) ----------

MIN_NUM_THREADS = 1
"""Fewest interpreter threads (``num_threads``): the runtimes refuse 0."""
MAX_NUM_THREADS = 256
"""Most interpreter threads (``num_threads``): more than any board's cores (100,000 crashed)."""
MAX_WARMUP_ITERATIONS = 10_000
"""Most warm-up calls of each layer or model before its timed loop (``warmup_iterations``)."""
MAX_MIN_ITERATIONS = 1_000_000
"""Most calls a timed loop may be asked for at least (``min_iterations``)."""
MAX_MIN_LAYER_DURATION_S = 60.0
"""Longest each layer's timed loop may be asked to last (``min_layer_duration_s``), seconds."""
MAX_MIN_DURATION_S = 3600.0
"""Longest a whole-model timed loop may be asked to last (``min_duration_s``), seconds."""
MAX_IDLE_DURATION_S = 3600.0
"""Longest idle baseline before a run (``idle_duration_s``), seconds."""
MAX_SEED = 2**32 - 1
"""Largest seed of random inputs or weights (``seed``); repetition k adds k, within uint64."""

MEASURE_BOUNDS: dict[str, tuple[float, float]] = {
    "num_threads": (MIN_NUM_THREADS, MAX_NUM_THREADS),
    "warmup_iterations": (0, MAX_WARMUP_ITERATIONS),
    "min_layer_duration_s": (0.0, MAX_MIN_LAYER_DURATION_S),
    "min_iterations": (0, MAX_MIN_ITERATIONS),
    "idle_duration_s": (0.0, MAX_IDLE_DURATION_S),
    "seed": (0, MAX_SEED),
    "min_duration_s": (0.0, MAX_MIN_DURATION_S),
}
"""(lowest, highest) of each numeric ``joulefarm.results.MeasureSettings`` field, inclusive."""

# -- what a suite plans ------------------------------------------------------------------------

MAX_TIMEOUT_S = 6 * 3600.0
"""Longest a job may run before it is cancelled (``[measure] timeout_s``), seconds."""
MAX_REPETITIONS = 1000
"""Most repetitions of each (device, model, configuration) (``[measure] repetitions``)."""
MAX_SUITE_JOBS = 10_000
"""Most jobs a suite may plan on each device: models x matrix combinations x repetitions."""
MAX_SWEEP_COUNT = 1000
"""Most models one generated layer sweep may draw (``sweep.count``): drawing stays in seconds."""
MAX_SWEEP_MACS = 10**12
"""Largest per-layer MAC cap a sweep may set (``sweep.max_macs``); its default is 10**8."""
MAX_INPUT_ELEMENTS = 2**28
"""Most elements one model input may be run at (``input_shapes``): 1 GiB of float32."""

# -- meters (devices.toml [device.meter]) ------------------------------------------------------

MIN_SAMPLE_RATE_HZ = 0.1
"""Slowest meter sample rate (``sample_rate_hz``): one reading per 10 s."""
MAX_SAMPLE_RATE_HZ = 10_000_000.0
"""Fastest meter sample rate (``sample_rate_hz``): lab meters (Joulescope) reach 1-2 MHz."""
MAX_METER_INTERVAL_MS = 10_000
"""Longest reading interval of a polling meter (tegrastats ``interval_ms``): 1 / the slowest
rate."""
MAX_REPLAY_OFFSET_S = 7 * 86400.0
"""Latest start into a replayed recording (replay ``offset_s``), seconds: a week."""
MAX_MONSOON_VOUT_V = 13.5
"""Highest output voltage a Monsoon power monitor may be set to (monsoon ``vout``), volts."""

# -- files -------------------------------------------------------------------------------------

MAX_MODEL_FILE_BYTES = 512 * 1024 * 1024
"""Largest model file read (a suite's ``file``, ``joulefarm bench``/``model``/``predict``)."""
MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024
"""Largest suite or devices file read: thousands of devices or models fit in far less."""
MAX_TOML_NESTING = 32
"""Deepest a value of a suite or devices file may sit: tables, arrays and dotted keys count."""


def bound_problem(value: float, low: float, high: float, *, above_low: bool = False
                  ) -> str | None:
    """Why ``value`` is not a finite number within ``low..high`` (inclusive; ``above_low``:
    strictly above ``low``), or None; e.g. ``"must be <= 256, got 100000"``."""
    if not math.isfinite(value):
        return f"must be a finite number, got {format_number(value)}"
    if above_low and not value > low:
        return f"must be > {format_number(low)}, got {format_number(value)}"
    if value < low:
        return f"must be >= {format_number(low)}, got {format_number(value)}"
    if value > high:
        return f"must be <= {format_number(high)}, got {format_number(value)}"
    return None


def format_number(value: float) -> str:
    """A number as a user would write it: ``3600``, ``0.1``, ``1e+300``, ``nan``."""
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    short = f"{value:g}"
    return short if float(short) == value or not math.isfinite(value) else repr(value)
