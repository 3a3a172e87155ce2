"""Five-field cron expressions: parse, find the next time, and render as a systemd OnCalendar.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or jan-dec), day of week
(0-7, 0 and 7 = Sunday, or sun-sat). Each field takes ``*``, numbers, ``a-b`` ranges, ``/step``
and comma lists. As in Vixie cron, when both day fields are restricted a day matches if
EITHER matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from joulefarm.errors import InputError

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
          ("month", 1, 12, {m: i + 1 for i, m in enumerate(MONTHS)}),
          ("day of week", 0, 7, {d: i for i, d in enumerate(DAYS)}))
# Far enough to cover any valid expression (Feb 29 on a given weekday recurs within 28 years).
SEARCH_LIMIT = timedelta(days=366 * 29)


class CronError(InputError):
    """A cron expression that cannot be parsed; the message names the field."""


@dataclass(frozen=True)
class Field:
    values: frozenset[int]
    restricted: bool  # not "*"
    text: str


def _number(token: str, name: str, names: dict[str, int]) -> int:
    if token.lower() in names:
        return names[token.lower()]
    if not token.isdigit():
        raise CronError(f"{name}: {token!r} is not a number")
    return int(token)


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> Field:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            first, last = _number(a, name, names), _number(b, name, names)
        else:
            first = _number(base, name, names)
            last = high if step_text else first
        for v in (first, last):
            if not low <= v <= high:
                raise CronError(f"{name}: {v} is outside {low}-{high}")
        if first > last:
            raise CronError(f"{name}: range {base!r} runs backwards")
        values.update(range(first, last + 1, step))
    return Field(frozenset(values), text != "*", text)


@dataclass(frozen=True)
class Cron:
    expression: str
    minute: Field
    hour: Field
    dom: Field
    month: Field
    dow: Field

    @classmethod
    def parse(cls, expression: str) -> Cron:
        parts = expression.split()
        if len(parts) != 5:
            raise CronError(f"cron expression {expression!r} needs 5 fields (minute hour "
                            f"day-of-month month day-of-week), got {len(parts)}")
        fields = [_parse_field(p, *spec) for p, spec in zip(parts, FIELDS, strict=True)]
        dow = fields[4]
        if 7 in dow.values:  # 7 is Sunday too
            dow = Field(frozenset((dow.values - {7}) | {0}), dow.restricted, dow.text)
        return cls(expression, fields[0], fields[1], fields[2], fields[3], dow)

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.dom.values
        dow = (t.isoweekday() % 7) in self.dow.values
        if self.dom.restricted and self.dow.restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after: datetime) -> datetime:
        """The first matching minute strictly after ``after`` (same timezone as ``after``)."""
        t = (after + timedelta(minutes=1)).replace(second=0, microsecond=0)
        limit = after + SEARCH_LIMIT
        while t <= limit:
            if t.month not in self.month.values:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hour.values:
                t = (t + timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minute.values:
                t += timedelta(minutes=1)
                continue
            return t
        raise CronError(f"cron expression {self.expression!r} never fires")

    def on_calendar(self) -> str:
        """The equivalent systemd ``OnCalendar=`` value."""
        if self.dom.restricted and self.dow.restricted:
            raise CronError("systemd cannot express 'day of month OR day of week'; "
                            "use two timers or the crontab line")

        def fmt(field: Field, width: int, low: int, high: int) -> str:
            if not field.restricted:
                return "*"
            return ",".join(f"{v:0{width}d}" for v in sorted(field.values))

        days = ""
        if self.dow.restricted:
            names = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
            days = ",".join(names[d] for d in sorted(self.dow.values)) + " "
        date = f"*-{fmt(self.month, 2, 1, 12)}-{fmt(self.dom, 2, 1, 31)}"
        return f"{days}{date} {fmt(self.hour, 2, 0, 23)}:{fmt(self.minute, 2, 0, 59)}:00"
