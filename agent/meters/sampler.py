"""Background samplers: poll a read callable at a target rate, or stamp lines as they arrive.

Both stamp with the agent clock (``time.perf_counter()``), store into preallocated numpy rows
that double when full, and stop at the first failing read with a flag and the error text in
the result: a sensor that disappears mid-run ends the trace visibly, it is never averaged
over. Between reads the poller sleeps until the next slot of an absolute schedule (no drift,
no spinning); slots missed because a read or the scheduler was late are skipped, not made up.

Python threads share the GIL: while the main thread runs pure-Python code the poller gets a
turn only every ``sys.getswitchinterval()`` (5 ms by default), which shows up as gaps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.meters.base import MeterError
from joulefarm.traces.model import FLAG_GAPS, FLAG_METER_ERROR, FLAG_METER_VANISHED

# An interval between two stamps longer than this many periods counts as a gap.
DEFAULT_GAP_FACTOR = 3.0
# Initial rows per buffer; they double when full.
INITIAL_CAPACITY = 4096
# How long stop() waits for the sampling thread (a read may be a slow subprocess).
JOIN_TIMEOUT_S = 15.0

ReadFn = Callable[[], "Sequence[float] | np.ndarray | float"]


class SampleBuffer:
    """Rows of ``(t_s, read_s, values[width])`` in float64 arrays that grow by doubling."""

    def __init__(self, width: int, capacity: int = INITIAL_CAPACITY) -> None:
        self.width = width
        self.n = 0
        self._t = np.empty(capacity, np.float64)
        self._d = np.empty(capacity, np.float64)
        self._v = np.empty((capacity, width), np.float64)

    def append(self, t_s: float, read_s: float, values: Sequence[float] | np.ndarray | float
               ) -> None:
        if self.n == len(self._t):
            self._grow()
        i = self.n
        self._t[i] = t_s
        self._d[i] = read_s
        self._v[i] = values
        self.n = i + 1

    def _grow(self) -> None:
        cap = 2 * len(self._t)
        for name in ("_t", "_d", "_v"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), np.float64)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of the filled part: stamps, read durations, values (n x width)."""
        n = self.n
        return self._t[:n].copy(), self._d[:n].copy(), self._v[:n].copy()


@dataclass(frozen=True)
class Samples:
    """What a sampler recorded. ``values`` has one column per channel of the read."""

    t_s: np.ndarray
    read_s: np.ndarray
    values: np.ndarray
    flags: tuple[str, ...]
    gaps: int
    max_interval_s: float
    target_rate_hz: float
    error: str | None


def _count_gaps(t_s: np.ndarray, threshold_s: float) -> tuple[int, float]:
    if len(t_s) < 2:
        return 0, 0.0
    dt = np.diff(t_s)
    return int(np.count_nonzero(dt > threshold_s)), float(dt.max())


class _Recorder:
    """State shared by both samplers: the buffer, the failure and the thread."""

    def __init__(self, name: str, width: int, rate_hz: float, gap_factor: float) -> None:
        if not rate_hz > 0:
            raise MeterError(f"{name}: sample rate must be > 0, got {rate_hz}")
        self.name = name
        self.rate_hz = float(rate_hz)
        self.period_s = 1.0 / self.rate_hz
        self.gap_threshold_s = gap_factor * self.period_s
        self.buffer = SampleBuffer(width)
        self.flags: list[str] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def fail(self, exc: BaseException) -> None:
        vanished = isinstance(exc, OSError)
        self.flags.append(FLAG_METER_VANISHED if vanished else FLAG_METER_ERROR)
        what = "sensor vanished" if vanished else "bad reading"
        self.error = f"{self.name}: {what} after {self.buffer.n} samples: {exc}"

    def launch(self, target: Callable[[], None]) -> None:
        if self._thread is not None:
            raise MeterError(f"{self.name}: sampler already started")
        self._thread = threading.Thread(target=target, name=f"meter-{self.name}", daemon=True)
        self._thread.start()

    def finish(self, before_join: Callable[[], None] | None = None) -> Samples:
        if self._thread is None or self._stopped:
            raise MeterError(f"{self.name}: stop() without a matching start()")
        self._stopped = True
        self._stop.set()
        if before_join:
            before_join()
        self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            raise MeterError(f"{self.name}: sampling thread did not stop within "
                             f"{JOIN_TIMEOUT_S} s (a read is hanging)")
        t, d, v = self.buffer.arrays()
        gaps, max_interval = _count_gaps(t, self.gap_threshold_s)
        flags = list(self.flags)
        if gaps:
            flags.append(FLAG_GAPS)
        return Samples(t, d, v, tuple(flags), gaps, max_interval, self.rate_hz, self.error)


class PollingSampler:
    """Calls ``read()`` about ``rate_hz`` times a second on a background thread.

    Each row is stamped with the midpoint of the read call and keeps its duration. ``read``
    returns one float or ``width`` floats. ``start()`` makes the first read itself, so a
    sensor that cannot be read fails there with ``MeterError``; later, an ``OSError`` ends
    sampling with ``meter_vanished`` and any other exception with ``meter_error``.
    """

    def __init__(self, read: ReadFn, *, rate_hz: float, width: int = 1, name: str = "sensor",
                 gap_factor: float = DEFAULT_GAP_FACTOR) -> None:
        self._read = read
        self._rec = _Recorder(name, width, rate_hz, gap_factor)

    @property
    def rate_hz(self) -> float:
        return self._rec.rate_hz

    def _sample(self) -> None:
        t_a = time.perf_counter()
        values = self._read()
        t_b = time.perf_counter()
        self._rec.buffer.append(0.5 * (t_a + t_b), t_b - t_a, values)

    def start(self) -> None:
        if self._rec._thread is not None:
            raise MeterError(f"{self._rec.name}: sampler already started")
        try:
            self._sample()
        except (OSError, ValueError) as e:
            raise MeterError(f"{self._rec.name}: cannot read the sensor: {e}") from e
        self._rec.launch(self._loop)

    def _loop(self) -> None:
        rec = self._rec
        period = rec.period_s
        origin = time.perf_counter()
        slot = 0
        while True:
            slot += 1
            now = time.perf_counter()
            late_slot = int((now - origin) / period)
            slot = max(slot, late_slot + 1)  # skip slots already missed
            if rec._stop.wait(origin + slot * period - now):
                return
            try:
                self._sample()
            except Exception as e:  # noqa: BLE001 - any failure ends the trace, flagged
                rec.fail(e)
                return

    def stop(self) -> Samples:
        """Stop sampling and return every row recorded since ``start()``."""
        return self._rec.finish()


class LineSampler:
    """Stamps each line of a text stream on arrival and stores ``parse(line)``.

    For tools that print one reading per line (tegrastats). ``lines`` is iterated on a
    background thread; ``close`` (called by ``stop()``) must make that iteration end, e.g. by
    terminating the producing process. The stream ending before ``stop()`` flags
    ``meter_vanished``; a line ``parse`` rejects ends sampling with ``meter_error``.
    """

    def __init__(self, lines: Iterable[str], parse: Callable[[str, int], Sequence[float]], *,
                 width: int, rate_hz: float, name: str = "log",
                 close: Callable[[], None] | None = None,
                 gap_factor: float = DEFAULT_GAP_FACTOR) -> None:
        self._lines = lines
        self._parse = parse
        self._close = close
        self._rec = _Recorder(name, width, rate_hz, gap_factor)

    def start(self) -> None:
        self._rec.launch(self._loop)

    def _loop(self) -> None:
        rec = self._rec
        line_no = 0
        try:
            for line in self._lines:
                t = time.perf_counter()
                line_no += 1
                if not line.strip():
                    continue
                if rec._stop.is_set():
                    return
                rec.buffer.append(t, 0.0, self._parse(line, line_no))
        except Exception as e:  # noqa: BLE001 - any failure ends the trace, flagged
            if not rec._stop.is_set():
                rec.fail(e)
            return
        if not rec._stop.is_set():
            rec.fail(OSError(f"stream ended after {line_no} lines"))

    def stop(self) -> Samples:
        return self._rec.finish(before_join=self._close)
