"""The one exception root of joulefarm, and what each error means to a caller.

Every error joulefarm raises on purpose derives from ``JoulefarmError``, in the library, the
agent and the controller alike. Each class says, once, how it reaches the two kinds of caller:

- ``exit_code``: what the ``joulefarm`` command exits with (1: the work ran but something
  failed; 2: bad input, nothing ran), printed as one line with no traceback;
- ``grpc_status``: the gRPC status code name an agent answers with when the error ends a call.

So no command re-wraps an error to change its exit code, and the agent's server maps errors to
status codes by reading the class, not by a list of its own.

The Rust core raises ``joulefarm.TraceError`` (a ``ValueError``) for bad arguments; readers and
commands that take traces from users turn it into ``TraceInputError``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "InputError",
    "JoulefarmError",
    "MeterError",
    "MeterParseError",
    "ModelError",
    "TraceFormatError",
    "TraceInputError",
    "at",
]


class JoulefarmError(Exception):
    """Base class of all errors joulefarm raises deliberately."""

    exit_code: int = 1
    grpc_status: str = "INTERNAL"


class InputError(JoulefarmError):
    """Input that joulefarm cannot use (a file, a field, an option): nothing ran."""

    exit_code = 2
    grpc_status = "INVALID_ARGUMENT"


class ModelError(InputError, ValueError):
    """A model the toolkit cannot read, split or run.

    Raised for corrupt or truncated bytes, files that are not TFLite models, graphs it cannot
    handle (the message names the node index and the op), and runtime failures to load or
    allocate a model.
    """


class MeterError(JoulefarmError, RuntimeError):
    """A meter could not be opened, vanished, or was used out of order."""

    exit_code = 2
    grpc_status = "FAILED_PRECONDITION"


class MeterParseError(MeterError):
    """A sensor file, command output or log line did not have the expected format.

    ``str(err)`` names the source, the line number (1-based, 0 when not line-oriented) and the
    offending text.
    """

    def __init__(self, source: str, line_no: int, line: str, problem: str) -> None:
        self.source, self.line_no, self.line, self.problem = source, line_no, line, problem
        where = f"{source}: line {line_no}" if line_no else source
        super().__init__(f"{where}: {problem}: {line!r}")

    def __reduce__(self) -> tuple[object, ...]:
        # The default reduce would call __init__ with the formatted text only.
        return (type(self), (self.source, self.line_no, self.line, self.problem))


class TraceInputError(InputError, ValueError):
    """A trace, windows file or option that joulefarm cannot use."""


class TraceFormatError(TraceInputError):
    """A file whose content does not match the format being read."""


def at(path: Path | str, line: int | None = None) -> str:
    """``file:line`` prefix for error messages (just ``file`` when the line is unknown)."""
    return f"{path}:{line}" if line is not None else str(path)
