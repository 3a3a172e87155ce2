"""Windows CSV: the spans to integrate, in, and their energies, out.

Input: a header with ``start_s`` and ``end_s`` (seconds on the trace's time base) and any other
columns (``name``, ``layer``...), passed through unchanged. Output: the input columns followed
by ``energy_j``, ``mean_power_w``, ``samples``, ``coverage`` and ``flags`` (flag names joined by
``;``, empty for a clean window). Energy is ``nan`` when a window has no valid sample: invalid,
not zero.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

import joulefarm
from joulefarm.errors import TraceInputError, at

REQUIRED = ("start_s", "end_s")
RESULT_COLUMNS = ("energy_j", "mean_power_w", "samples", "coverage", "flags")


@dataclass
class Windows:
    """Parsed windows with their original cells, for pass-through."""

    header: list[str]
    rows: list[list[str]]
    start_s: np.ndarray
    end_s: np.ndarray


def _number(path: Path, lineno: int, column: str, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise TraceInputError(f"{at(path, lineno)}: column '{column}': {cell!r} is not a "
                              "number") from None
    if not math.isfinite(value):
        raise TraceInputError(f"{at(path, lineno)}: column '{column}': {cell!r} is not finite")
    return value


def read_windows(path: Path) -> Windows:
    """Read and check a windows CSV; errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise TraceInputError(f"{path}: cannot read windows: {e.strerror}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[list[str]] = []
    starts: list[float] = []
    ends: list[float] = []
    lineno = 0
    for row in reader:
        first_line, lineno = lineno + 1, reader.line_num
        if not row or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise TraceInputError(f"{at(path, first_line)}: windows header lacks "
                                      f"{', '.join(missing)} (header: {','.join(header)})")
            clash = [c for c in RESULT_COLUMNS if c in header]
            if clash:
                raise TraceInputError(f"{at(path, first_line)}: windows header already has "
                                      f"result column(s) {', '.join(clash)}")
            i_start, i_end = header.index("start_s"), header.index("end_s")
            continue
        if len(row) != len(header):
            raise TraceInputError(f"{at(path, first_line)}: {len(row)} fields, the header "
                                  f"has {len(header)}")
        start = _number(path, first_line, "start_s", row[i_start])
        end = _number(path, first_line, "end_s", row[i_end])
        if end < start:
            raise TraceInputError(f"{at(path, first_line)}: end_s {row[i_end]} is before "
                                  f"start_s {row[i_start]}")
        rows.append(row)
        starts.append(start)
        ends.append(end)
    if header is None:
        raise TraceInputError(f"{path}: empty windows file (expected a header with "
                              "start_s,end_s)")
    return Windows(header, rows, np.asarray(starts, dtype=np.float64),
                   np.asarray(ends, dtype=np.float64))


def _cell(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else "nan"


def write_windows_energy(windows: Windows, result: dict[str, np.ndarray], out: TextIO) -> None:
    """The windows with their result columns appended, as CSV."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*windows.header, *RESULT_COLUMNS])
    for k, row in enumerate(windows.rows):
        writer.writerow([
            *row,
            _cell(result["energy_j"][k]),
            _cell(result["mean_power_w"][k]),
            int(result["samples"][k]),
            _cell(result["coverage"][k]),
            ";".join(joulefarm.flag_names(int(result["flags"][k]))),
        ])
