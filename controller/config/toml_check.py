"""Checking a TOML configuration file with errors that name the file, line and field.

The registry (``devices.toml``) and benchmark suites are read the same way: the whole document
is checked, every problem is collected with the line it is on (``LineIndex``: ``tomllib``
reports no positions for values), and ``Checker.raise_first`` raises the problem that comes
FIRST IN THE FILE, so the report does not depend on the order the checks run in; the error
carries every problem found (``ConfigError.problems``) for commands that list them all.
Unknown keys and choices get a "did you mean".
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from joulefarm.errors import InputError
from joulefarm.files import FileRefused, read_regular_file
from joulefarm.limits import MAX_CONFIG_FILE_BYTES, MAX_TOML_NESTING, bound_problem

KeyPath = tuple[str | int, ...]
MISSING = object()
"""What a getter returns for a key that is not in its table."""
INVALID = object()
"""What a getter returns for a value that failed its check (already reported)."""

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
# tomllib ends its messages with "(at line L, column C)" or "(at end of document)".
_TOML_POSITION_RE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")
_NESTED = (f"nested more than {MAX_TOML_NESTING} levels deep (tables, arrays and dotted keys "
           f"each count)")


class ConfigError(InputError):
    """A problem in a configuration file, with the place it was found.

    `str(err)` is ``"{path}:{line}: {field}: {message}"``, for example
    ``devices.toml:14: device[1].address: '300.1.1.1' is not a valid IP address or host name``.
    `line` is 1-based; 0 means the file as a whole (it could not be read). `field` is the key
    path with 0-based device indices; it is empty for errors about the whole file (unreadable
    file, TOML syntax), and then the ``"{field}: "`` part is left out of `str(err)`.
    """

    def __init__(self, path: str | Path, line: int, field: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        self.problems: list[ConfigError] = [self]
        """Every problem found in the file, in line order (this one first)."""
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: "
        return where + (f"{self.field}: {self.message}" if self.field else self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce would call __init__ with the formatted text only.
        return (type(self), (self.path, self.line, self.field, self.message))


def read_config_text(path: str | Path, error: type[ConfigError], what: str) -> str:
    """The UTF-8 text of a configuration file; ``error`` (line 0: the whole file) when it
    cannot be read."""
    try:
        # A regular file of bounded size: a FIFO would block the read for ever.
        data = read_regular_file(path, MAX_CONFIG_FILE_BYTES, what)
    except FileNotFoundError:
        raise error(path, 0, "", "file not found") from None
    except IsADirectoryError:
        raise error(path, 0, "", f"is a directory, not a {what}") from None
    except OSError as exc:
        raise error(path, 0, "", f"cannot read file: {exc.strerror or exc}") from None
    except FileRefused as exc:
        raise error(path, 0, "", str(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(path, line, "", "file is not valid UTF-8") from None


def parse_toml(text: str, path: str | Path, error: type[ConfigError]) -> dict[str, Any]:
    """The TOML document; a syntax error becomes ``error`` at its line and column, and so does
    a value nested more than ``MAX_TOML_NESTING`` levels deep (``nesting_problem``)."""
    nested = nesting_problem(text)
    if nested is not None:
        raise error(path, nested, "", _NESTED)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise syntax_error(exc, text, path, error) from None
    except RecursionError:  # nesting_problem should have stopped it: a message all the same
        raise error(path, 1, "", _NESTED) from None
    # Dotted keys under headers, and inline tables in arrays, nest without deep brackets;
    # the checks after this one (and repr, json) recurse, so the document is bounded too.
    deep = too_deep(document)
    if deep is not None:
        raise error(path, LineIndex(text).line_of(deep), field_name(deep), _NESTED)
    return document


def syntax_error(exc: tomllib.TOMLDecodeError, text: str, path: str | Path,
                 error: type[ConfigError]) -> ConfigError:
    message = str(exc)
    match = _TOML_POSITION_RE.search(message)
    if match is None:
        return error(path, 1, "", f"invalid TOML: {message}")
    reason = message[: match.start()]
    if match.group(1) is None:  # "at end of document"
        return error(path, last_line(text), "", f"invalid TOML: {reason} at end of file")
    line, column = int(match.group(1)), int(match.group(2))
    return error(path, line, "", f"invalid TOML: {reason} (column {column})")


# Characters the nesting scan acts on; runs of any others are skipped in one step.
_PLAIN_RUN_RE = re.compile(r"[^\"'#\[\]{}\n.=,]+")
_STRING_RES = {
    '"""': re.compile(r'"""(?:[^"\\]|\\[\s\S]|""?(?!"))*"{3,5}'),
    "'''": re.compile(r"'''(?:[^']|''?(?!'))*'{3,5}"),
    '"': re.compile(r'"(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"'[^'\n]*'"),
}


def nesting_problem(text: str) -> int | None:
    """The line where arrays and inline tables nest, or a key or table header has dotted
    parts, more than ``MAX_TOML_NESTING`` deep; None if nowhere.

    Runs before ``tomllib``, which recurses once per array or inline table (100,000 ``[``
    raised RecursionError) and takes time quadratic in a dotted key's parts. It is one linear
    pass without recursion that follows strings, comments and headers just enough not to
    count what they hold: what it misreads in invalid TOML, tomllib then reports.
    """
    open_brackets: list[str] = []  # "[" or "{" of each array or inline table open here
    line, pos, end = 1, 0, len(text)
    line_start = True  # at the start of a line, outside arrays and inline tables
    in_key = True  # in a key or header, where "." separates parts
    parts = 1
    while pos < end:
        c = text[pos]
        if c == "\n":
            line += 1
            if not open_brackets:
                line_start, in_key, parts = True, True, 1
        elif c == "#":
            newline = text.find("\n", pos)
            pos = end if newline < 0 else newline
            continue
        elif c in "\"'":
            string = _STRING_RES[c * 3 if text.startswith(c * 3, pos) else c].match(text, pos)
            if string is None:  # unterminated: tomllib says where
                return None
            line += text.count("\n", pos, string.end())
            pos, line_start = string.end(), False
            continue
        elif c == "[" and line_start:  # a table header, [a.b] or [[a.b]]
            line_start, in_key, parts = False, True, 1
            pos += 2 if text.startswith("[[", pos) else 1
            continue
        elif c in "[{":
            open_brackets.append(c)
            if len(open_brackets) > MAX_TOML_NESTING:
                return line
            line_start, in_key, parts = False, c == "{", 1
        elif c in "]}":
            if open_brackets:
                open_brackets.pop()
            in_key = False  # the end of a header, or of a value
        elif c == "," and open_brackets[-1:] == ["{"]:
            in_key, parts = True, 1
        elif c == "=":
            in_key = False
        elif c == "." and in_key:
            parts += 1
            if parts > MAX_TOML_NESTING:
                return line
        elif c not in " \t\r.,":
            line_start = False
            run = _PLAIN_RUN_RE.match(text, pos)
            pos = run.end() if run else pos + 1
            continue
        pos += 1
    return None


def too_deep(document: dict[str, Any]) -> KeyPath | None:
    """The key path, cut at ``MAX_TOML_NESTING`` + 1 parts, of the first value (in document
    order) more than ``MAX_TOML_NESTING`` levels down; None if there is none. No recursion."""
    stack: list[tuple[KeyPath, Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_TOML_NESTING:
            return path
        if isinstance(value, dict):
            stack.extend(reversed([(path + (key,), item) for key, item in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(path + (i,), item) for i, item in enumerate(value)]))
    return None


class Checker:
    """Collects the problems of one document, each at its line (see the module docstring).

    Subclasses check their schema with ``get`` (typed, reporting), ``check_keys`` and
    ``error``, then call ``raise_first``.
    """

    error_class: type[ConfigError] = ConfigError

    def __init__(self, path: str | Path, text: str) -> None:
        self.path = path
        self.lines = LineIndex(text)
        self.errors: list[ConfigError] = []
        # Unknown keys that look like a valid one: table -> {valid key: key as written}.
        self.misspelt: dict[KeyPath, dict[str, str]] = {}

    def error(self, key_path: KeyPath, message: str) -> None:
        self.errors.append(self.error_class(self.path, self.lines.line_of(key_path),
                                            field_name(key_path), message))

    def check_keys(self, table: Mapping[str, Any], at: KeyPath, allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                self.error(at + (key,), unknown_key_message(key, allowed))
                meant = closest(key, allowed)
                if meant is not None:
                    self.misspelt.setdefault(at, {}).setdefault(meant, key)

    def misspelling(self, at: KeyPath, key: str) -> str | None:
        """The unknown key of table ``at`` (already reported) that looks like ``key``, if
        any: a check whose problem it explains (``locale = true`` leaves ``local`` unset)
        stays quiet rather than report a consequence of the typo."""
        return self.misspelt.get(at, {}).get(key)

    def get(
        self, table: Mapping[str, Any], at: KeyPath, key: str, expected: str, required: bool
    ) -> Any:
        """``table[key]`` when it has the ``expected`` TOML type; else ``MISSING`` (reported
        when ``required``) or ``INVALID`` (reported)."""
        if key not in table:
            if required:
                what = "table" if expected == "table" else "key"
                self.error(at + (key,), f"missing required {what}")
            return MISSING
        value = table[key]
        if not has_type(value, expected):
            self.error(at + (key,), f"expected {ARTICLE[expected]}, got {describe(value)}")
            return INVALID
        return value

    def within(self, at: KeyPath, value: float, low: float, high: float, *,
               above_low: bool = False) -> bool:
        """Whether ``value`` is a finite number in ``low..high`` (``joulefarm.limits``); else
        reported at ``at``."""
        problem = bound_problem(value, low, high, above_low=above_low)
        if problem is not None:
            self.error(at, problem)
        return problem is None

    def raise_first(self) -> None:
        """Raise the first problem in the file (carrying every one found), if any."""
        if not self.errors:
            return
        # sorted() is stable: errors on one line stay in the checks' order.
        ordered = sorted(self.errors, key=lambda e: e.line)
        first = ordered[0]
        first.problems = ordered
        raise first


ARTICLE = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean (true or false)",
    "number": "a number",
    "array": "an array",
    "table": "a table",
}


def has_type(value: Any, expected: str) -> bool:
    # bool is a subclass of int in Python, but `port = true` is not a port.
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    python_type = {"string": str, "boolean": bool, "array": list, "table": dict}[expected]
    return isinstance(value, python_type)


def describe(value: Any) -> str:
    """TOML type name and a short rendering of a value, for 'expected X, got Y'."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dt.date | dt.time):
        return f"{type(value).__name__} {value.isoformat()}"
    toml_type = {str: "string", int: "integer", float: "float", list: "array", dict: "table"}
    name = toml_type.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{name} {shown}"


def closest(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = closest(word, choices)
    return f" (did you mean {close!r}?)" if close else ""


def unknown_key_message(key: str, allowed: Sequence[str]) -> str:
    hint = did_you_mean(key, allowed)
    if hint:
        return f"unknown key {key!r}{hint}"
    return f"unknown key {key!r}; valid keys: {', '.join(allowed)}"


def unknown_choice(what: str, value: str, choices: Sequence[str]) -> str:
    return (
        f"unknown {what} {value!r}{did_you_mean(value, choices)}; "
        f"expected one of: {', '.join(choices)}"
    )


def field_name(key_path: KeyPath) -> str:
    """("device", 1, "meter", "kind") -> "device[1].meter.kind"."""
    out = ""
    for part in key_path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY_RE.fullmatch(part) else json.dumps(part)
            out += f".{name}" if out else name
    return out


def last_line(text: str) -> int:
    """Number of the last line of `text` (a final newline does not start another)."""
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


# --------------------------------------------------------------------------------------------
# Line index
# --------------------------------------------------------------------------------------------


class LineIndex:
    """Where each key of a TOML document is written: key path -> 1-based line.

    Key paths are what the parsed document would be indexed with; entries of arrays of tables
    and of plain arrays get their 0-based position: `[[device]]` (the second one) followed by
    `[device.meter]` and `kind = "sim"` yields ("device", 1, "meter", "kind"). Tables are found
    at their header (`[device.meter]`), at the key of an inline table (`meter = { ... }`) or at
    the first dotted key that creates them (`meter.kind = ...`).

    The text has already passed `tomllib`, so this scanner can trust it is valid TOML and only
    needs to know enough syntax not to be fooled: strings (a multi-line string may contain
    lines that look like headers or keys), arrays and inline tables (which can nest and, for
    arrays, span lines) and comments.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line = 1
        self._lines: dict[KeyPath, int] = {}
        # Number of `[[x]]` headers seen per array path, to number their entries.
        self._array_tables: dict[KeyPath, int] = {}
        self.last_line = last_line(text)
        self._scan_document()

    def line_of(self, key_path: KeyPath) -> int:
        """Line of `key_path`, else of the nearest enclosing table that is written down, else 1.

        So a missing key is reported at the header of the table that lacks it.
        """
        while key_path:
            if key_path in self._lines:
                return self._lines[key_path]
            key_path = key_path[:-1]
        return 1

    # -- character primitives ----------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> str:
        i = self._pos + ahead
        return self._text[i] if i < len(self._text) else ""

    def _startswith(self, token: str) -> bool:
        return self._text.startswith(token, self._pos)

    def _advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self._pos < len(self._text):
                if self._text[self._pos] == "\n":
                    self._line += 1
                self._pos += 1

    def _skip_blanks(self) -> None:
        """Spaces and tabs (inside one line)."""
        while self._peek() in (" ", "\t"):
            self._advance()

    def _skip_blanks_newlines_comments(self) -> None:
        while True:
            c = self._peek()
            if c in (" ", "\t", "\r", "\n"):
                self._advance()
            elif c == "#":
                while self._peek() not in ("\n", ""):
                    self._advance()
            else:
                return

    def _record(self, key_path: KeyPath, line: int) -> None:
        # First mention wins: later dotted keys and sub-tables only re-open a table.
        self._lines.setdefault(key_path, line)

    # -- grammar -----------------------------------------------------------------------------

    def _scan_document(self) -> None:
        table: KeyPath = ()  # the table that key/value lines currently belong to
        while True:
            self._skip_blanks_newlines_comments()
            if not self._peek():
                return
            line = self._line
            if self._startswith("[["):
                self._advance(2)
                table = self._resolve_header(self._scan_key(), line, array_entry=True)
                self._skip_blanks()
                self._advance(2)  # "]]"
            elif self._peek() == "[":
                self._advance()
                table = self._resolve_header(self._scan_key(), line, array_entry=False)
                self._skip_blanks()
                self._advance()  # "]"
            else:
                self._scan_key_value(table)

    def _resolve_header(self, key: list[str], line: int, *, array_entry: bool) -> KeyPath:
        """Key path of the table a header opens; `[[x]]` starts a new entry of array x."""
        path: KeyPath = ()
        for i, part in enumerate(key):
            path += (part,)
            if array_entry and i == len(key) - 1:
                count = self._array_tables.get(path, 0)
                self._array_tables[path] = count + 1
                self._record(path, line)  # the array itself: its first header
                path += (count,)
            elif path in self._array_tables:
                # `[device.meter]` belongs to the latest `[[device]]` entry.
                path += (self._array_tables[path] - 1,)
            self._record(path, line)
        return path

    def _scan_key_value(self, table: KeyPath) -> None:
        line = self._line
        key = self._scan_key()
        path = table
        for part in key:
            path += (part,)
            self._record(path, line)  # also the tables a dotted key creates
        self._skip_blanks()
        self._advance()  # "="
        self._skip_blanks()
        self._scan_value(path)

    def _scan_key(self) -> list[str]:
        """A dotted key (`a."b c".d`), as its parts."""
        parts: list[str] = []
        while True:
            self._skip_blanks()
            c = self._peek()
            if c in ('"', "'"):
                start = self._pos
                self._scan_string()
                # Let tomllib decode escapes in quoted keys rather than repeat its rules.
                parts.append(tomllib.loads("k = " + self._text[start : self._pos])["k"])
            else:
                start = self._pos
                while self._peek() and _BARE_KEY_RE.fullmatch(self._peek()):
                    self._advance()
                parts.append(self._text[start : self._pos])
            self._skip_blanks()
            if self._peek() != ".":
                return parts
            self._advance()

    def _scan_value(self, path: KeyPath) -> None:
        c = self._peek()
        if c in ('"', "'"):
            self._scan_string()
        elif c == "[":
            self._advance()
            index = 0
            while True:
                self._skip_blanks_newlines_comments()
                if self._peek() in ("]", ""):
                    self._advance()
                    return
                self._record(path + (index,), self._line)
                self._scan_value(path + (index,))
                index += 1
                self._skip_blanks_newlines_comments()
                if self._peek() == ",":
                    self._advance()
        elif c == "{":
            self._advance()
            while True:
                self._skip_blanks_newlines_comments()
                if self._peek() in ("}", ""):
                    self._advance()
                    return
                self._scan_key_value(path)
                self._skip_blanks_newlines_comments()
                if self._peek() == ",":
                    self._advance()
        else:
            # Number, boolean or date-time; a date-time may hold a space, so stop only at
            # what can follow a value.
            while self._peek() not in (",", "]", "}", "#", "\r", "\n", ""):
                self._advance()

    def _scan_string(self) -> None:
        quote = self._peek()
        escapes = quote == '"'  # literal strings ('...') have no escapes
        if self._startswith(quote * 3):
            self._advance(3)
            while self._peek():
                if escapes and self._peek() == "\\":
                    self._advance(2)
                elif self._startswith(quote * 3):
                    self._advance(3)
                    # A closing run may be up to 5 quotes: the first 1-2 belong to the text.
                    for _ in range(2):
                        if self._peek() == quote:
                            self._advance()
                    return
                else:
                    self._advance()
        else:
            self._advance()
            while self._peek():
                c = self._peek()
                if escapes and c == "\\":
                    self._advance(2)
                else:
                    self._advance()
                    if c == quote:
                        return
