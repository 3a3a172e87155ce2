"""Exception root for the controller.

Every error joulefarm raises on purpose derives from `JoulefarmError`, so the CLI can print
those as one clear line and leave tracebacks for real bugs.
"""


class JoulefarmError(Exception):
    """Base class of all errors joulefarm raises deliberately."""
