"""Jetson power from ``tegrastats --interval <ms>`` lines.

Lines are read by ``joulefarm.traces.tegrastats.parse_line`` (JetPack 4, 5/6 and 7 forms), the
parser the log importer uses, and the total is ``joulefarm.traces.rails.total_rails``: a live
run and its log report the same power. Only the first (instantaneous) number of a rail is used.
Each line is stamped with the agent clock when it arrives
(the line's own date has 1 s resolution) and held until the next one.

tegrastats runs under a pseudo-terminal so that its C stdio flushes every line: through a
pipe lines would arrive in 4 KiB bursts and their arrival stamps would be meaningless. Lines
that still arrive much faster than the interval are flagged ``lines_buffered``.
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np

from agent.meters.base import MeterDescription, MeterError, MeterParseError
from agent.meters.polled import SampledMeter, split_rails
from agent.meters.sampler import LineSampler
from joulefarm.traces.model import FLAG_LINES_BUFFERED, TimestampedTrace
from joulefarm.traces.rails import total_description, total_rails
from joulefarm.traces.tegrastats import parse_line

KIND = "tegrastats"
COMMAND = "tegrastats"
DEFAULT_INTERVAL_MS = 100
# Lines arriving this much faster than the interval (median) mean the output was buffered.
BUFFERED_FRACTION = 0.25
# tegrastats silent this long (at any interval we use) means it hung.
SILENCE_TIMEOUT_S = 10.0


class TegrastatsProcess:
    """Runs tegrastats under a pseudo-terminal and yields its lines."""

    def __init__(self, interval_ms: int, command: Sequence[str] = (COMMAND,)) -> None:
        self.argv = [*command, "--interval", str(int(interval_ms))]
        self._proc: subprocess.Popen[bytes] | None = None

    def lines(self) -> Iterator[str]:
        master, slave = pty.openpty()
        try:
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=slave,
                                          stderr=subprocess.STDOUT, close_fds=True)
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)
        return self._read(master)

    def _read(self, master: int) -> Iterator[str]:
        pending = b""
        try:
            while True:
                ready, _, _ = select.select([master], [], [], SILENCE_TIMEOUT_S)
                if not ready:
                    raise OSError(f"tegrastats printed nothing for {SILENCE_TIMEOUT_S} s")
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal (it exited)
                    chunk = b""
                if not chunk:
                    return
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    yield raw.decode("ascii", errors="replace").rstrip("\r")
        finally:
            os.close(master)

    def close(self) -> None:
        """Terminate tegrastats; the reader then sees the terminal close and ends."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


class LineSource(Protocol):
    """Where tegrastats lines come from: ``lines()`` starts the stream, ``close()`` ends it
    (the iterator returned by ``lines()`` must then stop)."""

    def lines(self) -> Iterator[str]: ...
    def close(self) -> None: ...


class _IterableSource:
    """Lines from any iterable (a recorded log). Ending before stop() flags meter_vanished."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = lines

    def lines(self) -> Iterator[str]:
        return iter(self._lines)

    def close(self) -> None:
        pass


class TegrastatsMeter(SampledMeter):
    """Instantaneous rail power from tegrastats lines, returned as a ``TimestampedTrace``.

    ``source`` replaces the tegrastats process (tests, replays); ``lines`` is a shortcut for a
    source over an iterable.
    """

    def __init__(self, lines: Iterable[str] | None = None, *,
                 source: LineSource | None = None,
                 interval_ms: int = DEFAULT_INTERVAL_MS, total_rail: str | None = None,
                 command: Sequence[str] = (COMMAND,)) -> None:
        if interval_ms <= 0:
            raise MeterError(f"tegrastats: interval_ms must be > 0, got {interval_ms}")
        self.interval_ms = int(interval_ms)
        if source is None and lines is None and shutil.which(command[0]) is None:
            raise MeterError(f"tegrastats: {command[0]!r} not found on PATH")
        if source is None:
            source = (_IterableSource(lines) if lines is not None
                      else TegrastatsProcess(interval_ms, command))
        self._source = source
        self._total_override = total_rail
        self.rails: tuple[str, ...] = ()
        self.total: tuple[str, ...] = ()
        self._sampler: LineSampler | None = None
        super().__init__(MeterDescription(kind=KIND, simulated=False,
                                          sample_rate_hz=1000.0 / self.interval_ms,
                                          description="tegrastats (rails known at start)"))

    def start(self) -> None:
        if self._sampler is not None:
            raise MeterError("tegrastats: meter already started")
        try:
            it = self._source.lines()
            first = next((ln for ln in it if ln.strip()), None)
        except OSError as e:
            self._source.close()
            raise MeterError(f"tegrastats: cannot run it: {e}") from e
        if first is None:
            self._source.close()
            raise MeterError("tegrastats: no output")
        rails = parse_line(first, 1).rails_w
        self.rails = tuple(rails)
        self.total = total_rails(self.rails, self._total_override)
        self.description = MeterDescription(
            kind=KIND, simulated=False, sample_rate_hz=1000.0 / self.interval_ms,
            description=f"tegrastats every {self.interval_ms} ms; "
                        f"{total_description(self.rails, self.total)}")

        def parse(line: str, line_no: int) -> list[float]:
            got = parse_line(line, line_no).rails_w
            if tuple(got) != self.rails:
                raise MeterParseError("tegrastats", line_no, line.rstrip(),
                                      f"rails changed from {' '.join(self.rails)}")
            return list(got.values())

        def chained() -> Iterator[str]:
            yield first
            yield from it

        self._sampler = LineSampler(chained(), parse, width=len(self.rails),
                                    rate_hz=self.description.sample_rate_hz, name=KIND,
                                    close=self._source.close)
        self._sampler.start()

    def stop(self) -> TimestampedTrace:
        if self._sampler is None:
            raise MeterError("tegrastats: stop() without a matching start()")
        samples = self._sampler.stop()
        self._source.close()
        total, rails = split_rails(samples.values, self.rails, self.total)
        extra = []
        if len(samples.t_s) >= 4:
            median_dt = float(np.median(np.diff(samples.t_s)))
            if median_dt < BUFFERED_FRACTION * self.interval_ms * 1e-3:
                extra.append(FLAG_LINES_BUFFERED)
        return TimestampedTrace(
            t_s=samples.t_s, power_w=total, read_s=None, rails_w=rails,
            flags=self._flags(samples, extra), gaps=samples.gaps,
            target_rate_hz=samples.target_rate_hz, error=samples.error,
        )
