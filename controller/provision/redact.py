"""Scrub secrets from text before it is shown or stored: a second line of defence.

Messages are built not to contain secrets in the first place; this catches what slips through
(a library quoting a value back, a log line) by replacing every known secret with ``***``.
"""

from __future__ import annotations

MASK = "***"
# Shorter strings are too likely to occur by chance, and no real secret is that short.
MIN_SECRET_LEN = 6


class Redactor:
    """Holds the secrets of a run; `scrub` masks them in any text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= MIN_SECRET_LEN:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        # Longest first, so a secret that contains another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text
