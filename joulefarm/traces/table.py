"""Numeric columns of a delimited text file with a header line.

Meter CSVs run to millions of rows (Monsoon: 5 kHz), so pyarrow parses them first. When it
fails for any reason, a plain line-by-line reader runs instead; it either succeeds (comment
lines in the middle, short rows) or raises an error naming the file, line and column.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from joulefarm.errors import TraceFormatError, at

Converter = Callable[[str], float]


@dataclass(frozen=True)
class CsvHeader:
    """The header of a delimited file: its 1-based line number, cell names and delimiter."""

    line: int
    names: list[str]
    delimiter: str


def _is_skippable(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def read_header(path: Path) -> CsvHeader:
    """The first line that is neither blank nor a ``#`` comment, split on the likeliest
    delimiter (comma, semicolon or tab)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        for lineno, line in enumerate(f, 1):
            if _is_skippable(line):
                continue
            delimiter = max([",", ";", "\t"], key=line.count)
            if line.count(delimiter) == 0:
                delimiter = ","
            names = next(csv.reader([line], delimiter=delimiter))
            return CsvHeader(lineno, [n.strip() for n in names], delimiter)
    raise TraceFormatError(f"{path}: no header line (the file is empty or all comments)")


def _parse_float(text: str) -> float:
    return float(text.strip())


def read_columns(path: Path, header: CsvHeader, wanted: dict[str, int],
                 converters: Mapping[str, tuple[Converter, str]] | None = None,
                 ) -> dict[str, np.ndarray]:
    """Columns ``{name: field index}`` as float64 arrays. ``converters`` map a column to
    ``(cell -> float, what it expects)`` for cells that are not plain numbers (dates)."""
    converters = converters or {}
    if not converters:
        try:
            return _read_fast(path, header, wanted)
        except (ImportError, ValueError):  # no pyarrow (a device), or pyarrow's ArrowInvalid
            pass  # the slow reader reads it, or finds and names the bad line
    return _read_slow(path, header, wanted, converters)


def _read_fast(path: Path, header: CsvHeader, wanted: dict[str, int]) -> dict[str, np.ndarray]:
    import pyarrow as pa  # optional: agents on devices have no pyarrow
    import pyarrow.csv as pa_csv

    names = [f"c{i}" for i in range(len(header.names))]
    table = pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(column_names=names, skip_rows=header.line),
        parse_options=pa_csv.ParseOptions(delimiter=header.delimiter),
        convert_options=pa_csv.ConvertOptions(
            include_columns=[names[i] for i in wanted.values()],
            column_types={names[i]: pa.float64() for i in wanted.values()},
            null_values=[], strings_can_be_null=False),
    )
    out = {}
    for key, index in wanted.items():
        column = table.column(names[index])
        if column.null_count:
            raise ValueError("null cells")
        out[key] = column.to_numpy()
    return out


def _read_slow(path: Path, header: CsvHeader, wanted: dict[str, int],
               converters: Mapping[str, tuple[Converter, str]]) -> dict[str, np.ndarray]:
    values: dict[str, list[float]] = {key: [] for key in wanted}
    needed = max(wanted.values()) + 1
    parse = {key: converters.get(key, (_parse_float, "a number")) for key in wanted}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=header.delimiter)
        lineno = reader.line_num
        for row in reader:
            first_line, lineno = lineno + 1, reader.line_num
            if first_line <= header.line or not row or _is_skippable(header.delimiter.join(row)):
                continue
            if len(row) < needed:
                raise TraceFormatError(
                    f"{at(path, first_line)}: {len(row)} fields, but the header "
                    f"(line {header.line}) puts column '{header.names[needed - 1]}' in field "
                    f"{needed}")
            for key, index in wanted.items():
                cell = row[index]
                convert, expected = parse[key]
                try:
                    values[key].append(convert(cell))
                except ValueError:
                    raise TraceFormatError(
                        f"{at(path, first_line)}: column '{header.names[index]}': cannot read "
                        f"{cell!r} as {expected}") from None
    return {key: np.asarray(v, dtype=np.float64) for key, v in values.items()}
