"""What the lab-instrument drivers share (Joulescope, Monsoon, Otii, replay).

A lab meter samples at a fixed rate on its own crystal and streams the samples to the host, so
its trace is a uniform ``Trace`` on the meter clock, with the instrument's digital inputs
(``gpi``), the samples it lost (``missing``) and what ended a capture early (``error``).

``t0_s`` is put on the agent's clock (``time.perf_counter()``) from when samples arrived: every
sample of a batch had ended before the batch reached the host, so ``arrival - samples/rate`` is
an upper bound of the first sample's start, and the smallest bound over a run is off only by the
least transport latency (about a millisecond over USB). ``ArrivalAnchor`` keeps that bound. The
agent's sync pattern then measures the remaining offset exactly as for the simulator
(``Meter clock = agent clock * (1 + drift) + offset``, with a small offset).
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from types import ModuleType

import numpy as np

from agent.meters.base import MeterError

__all__ = ["ArrivalAnchor", "SampleChunks", "import_vendor", "wait_until"]


class ArrivalAnchor:
    """Agent-clock time at which a stream's first sample began, from arrival times.

    ``observe(t, n)``: at agent time ``t`` the host holds the first ``n`` samples, so sample 0
    began no later than ``t - n / rate``. The minimum over all observations is kept.
    """

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = float(rate_hz)
        self.t0_s = float("inf")

    def observe(self, arrival_s: float, samples: int) -> None:
        if samples > 0:
            self.t0_s = min(self.t0_s, arrival_s - samples / self.rate_hz)

    @property
    def known(self) -> bool:
        return np.isfinite(self.t0_s)


class SampleChunks:
    """Power (float32) and optional GPI bits (uint8) appended in chunks from one thread and
    read by another. Lost samples are appended as NaN power and counted in ``missing``."""

    def __init__(self, with_gpi: bool) -> None:
        self.with_gpi = with_gpi
        self._power: list[np.ndarray] = []
        self._gpi: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.n = 0
        self.missing = 0

    def append(self, power_w: np.ndarray, gpi: np.ndarray | None = None) -> None:
        power = np.array(power_w, dtype=np.float32)  # a copy: sources reuse their buffers
        if self.with_gpi:
            bits = np.zeros(len(power), np.uint8) if gpi is None else np.array(gpi, np.uint8)
            if len(bits) != len(power):
                raise ValueError(f"{len(bits)} GPI samples for {len(power)} power samples")
        with self._lock:
            self._power.append(power)
            if self.with_gpi:
                self._gpi.append(bits)
            self.n += len(power)

    def append_missing(self, count: int) -> None:
        if count <= 0:
            return
        self.append(np.full(count, np.nan, np.float32))
        with self._lock:
            self.missing += count

    def arrays(self) -> tuple[np.ndarray, np.ndarray | None]:
        with self._lock:
            power = (np.concatenate(self._power) if self._power
                     else np.empty(0, np.float32))
            gpi = None
            if self.with_gpi:
                gpi = np.concatenate(self._gpi) if self._gpi else np.empty(0, np.uint8)
        return power, gpi


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.002
               ) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if condition():
            return True
        if time.perf_counter() >= deadline:
            return False
        time.sleep(interval_s)


def import_vendor(module: str, *, kind: str, package: str) -> ModuleType:
    """Import a vendor library, or say which optional extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MeterError(f"meter kind {kind!r} needs the Python package {package!r}, which "
                         f"cannot be imported here ({e}): pip install 'joulefarm[{kind}]'"
                         ) from None
