"""The one owner of terminal output: tables, formats, errors, and live progress."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from enum import StrEnum

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

# Pipes and CI logs get wide lines rather than tables folded into 80 columns. What is printed
# is data and messages (SQL results, file names, fields such as [schedule]): never markup, unless
# a print asks for it (markup=True) and escapes what it interpolates.
console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 220)
err_console = Console(stderr=True, highlight=False, markup=False)


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return value


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value)
    return str(value)


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[object]], fmt: OutputFormat,
               title: str | None = None, *, compact: bool = False) -> None:
    """Print a result set as a rich table, CSV, or JSON (a list of objects). ``compact``: a
    table without vertical rules, numbers right-aligned and text never cut (80 columns)."""
    if fmt is OutputFormat.json:
        data = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    elif fmt is OutputFormat.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(v) for v in row])
        sys.stdout.write(buf.getvalue())
    elif compact:
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1),
                      collapse_padding=True)
        for k, c in enumerate(columns):
            numeric = all(isinstance(row[k], int | float) or row[k] is None for row in rows)
            table.add_column(c, justify="right" if numeric else "left",
                             overflow="fold", no_wrap=not numeric)
        for row in rows:
            table.add_row(*[_cell(v) for v in row])
        console.print(table)
    else:
        table = Table(title=title)
        for c in columns:
            table.add_column(c)
        for row in rows:
            table.add_row(*[_cell(v) for v in row])
        console.print(table)


def print_sections(sections: Sequence[tuple[str, Sequence[str], Sequence[Sequence[object]],
                                           str | None]], fmt: OutputFormat) -> None:
    """Several result sets (name, columns, rows, title): tables one after another, CSV blocks
    separated by a blank line, or one JSON object mapping each name to its list of objects."""
    if fmt is OutputFormat.json:
        data = {name: [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in rows]
                for name, columns, rows, _ in sections}
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    for k, (_, columns, rows, title) in enumerate(sections):
        if k and fmt is OutputFormat.csv:
            sys.stdout.write("\n")
        print_rows(columns, rows, fmt, title=title)


# Stages of a job on a device (the agent's stages, and the controller's around them): plain
# lines number the job. Others (starting, unhealthy, done) are about the device.
_JOB_STAGES = frozenset({"upload", "prepare", "waiting", "layers", "whole", "insitu",
                         "retrying", "unreachable"})
PLAIN_EVERY_S = 10.0
"""Plain output repeats a device's line at most this often while its state does not change
(a cron log of a night shows progress without a line per layer)."""


class DeviceProgress:
    """One row per device (state, current step, done/total), live on a terminal, plain
    lines otherwise (CI logs, pipes, cron): a line when a device's stage or job changes, and
    while one runs at most one every ``PLAIN_EVERY_S`` saying where it is."""

    def __init__(self, devices: Sequence[str], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rows = {d: ("waiting", 0, 0, "") for d in devices}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._clock = clock
        self._last_plain: dict[str, tuple[str, int, float]] = {}

    def _table(self) -> Table:
        table = Table(title="devices")
        for c in ("device", "state", "jobs", "eta", "current"):
            table.add_column(c)
        for name, (state, done, total, msg) in self._rows.items():
            table.add_row(name, state, f"{done}/{total}" if total else "",
                          self._eta(name, done, total), msg)
        return table

    def _eta(self, device: str, done: int, total: int) -> str:
        """Remaining time at this device's pace so far (jobs differ, so it is rough)."""
        started = self._started.get(device)
        if started is None or done == 0 or total <= done:
            return ""
        remaining = (self._clock() - started) / done * (total - done)
        return f"{remaining:.0f} s" if remaining < 120 else f"{remaining / 60:.0f} min"

    def __enter__(self) -> DeviceProgress:
        if console.is_terminal:
            self._live = Live(self._table(), console=console, refresh_per_second=8,
                              transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.__exit__(None, None, None)

    def update(self, device: str, stage: str, done: int, total: int, message: str) -> None:
        with self._lock:
            now = self._clock()
            self._started.setdefault(device, now)
            self._rows[device] = (stage, done, total, message)
            if self._live:
                self._live.update(self._table())
                return
            last = self._last_plain.get(device)
            if last is None or last[:2] != (stage, done) or now - last[2] >= PLAIN_EVERY_S:
                self._last_plain[device] = (stage, done, now)
                console.print(plain_line(device, stage, done, total, message), markup=False,
                              soft_wrap=True)


def plain_line(device: str, stage: str, done: int, total: int, message: str) -> str:
    """``[device] job 3/10 layers: nmp layers: layer 120 CONV_2D (120/222)``; a device-level
    state has no job counter (``[device] starting: local agent``)."""
    counter = f" job {min(done + 1, total)}/{total}" if stage in _JOB_STAGES and total else ""
    return f"[{device}]{counter} {stage}" + (f": {message}" if message else "")
