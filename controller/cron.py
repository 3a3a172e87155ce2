"""Five-field cron expressions: parse, find the next time, and render as a systemd OnCalendar.

Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or jan-dec), day of week
(0-7, 0 and 7 = Sunday, or sun-sat). Each field takes ``*``, numbers, ``a-b`` ranges, ``/step``
and comma lists.

Parsing and matching are cronsim's, which follows Debian (Vixie) cron, down to its day rule: a
day field whose text starts with ``*`` (``*``, ``*/2``) makes a day match only when BOTH day
fields match; only when neither starts with ``*`` does EITHER suffice. So ``0 0 */2 * 1`` fires
on Mondays that are odd days of the month, not on every odd day and every Monday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cronsim import CronSim, CronSimError

from joulefarm.errors import InputError

FIELDS = ("minute", "hour", "day of month", "month", "day of week")
# What each field accepts, for error messages (cronsim only says "Bad <field>").
_ALLOWED = ("0-59", "0-23", "1-31", "1-12 or jan-dec", "0-7 (0 and 7 are Sunday) or sun-sat")
_CRONSIM_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
# cronsim parses relative to a start time; any will do when only the fields are wanted.
_PARSE_AT = datetime(2000, 1, 1)
_DAY_NAMES = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")


class CronError(InputError):
    """A cron expression that cannot be parsed; the message names the field."""


def _field_error(expression: str, parts: list[str], message: str) -> CronError:
    """Our message for cronsim's ``Bad <field>``: the field, its text and what it accepts."""
    name = message.removeprefix("Bad ")
    if name not in _CRONSIM_FIELDS:
        return CronError(f"cron expression {expression!r}: {message}")
    i = _CRONSIM_FIELDS.index(name)
    if i == 2:
        # cronsim also refuses day-of-month values that no chosen month has ("31 2"): valid
        # on their own, so say that the expression never fires rather than that 31 is bad.
        try:
            CronSim(" ".join([*parts[:3], "*", parts[4]]), _PARSE_AT)
        except CronSimError:
            pass
        else:
            return CronError(f"cron expression {expression!r} never fires: day of month "
                             f"{parts[2]!r} does not occur in month {parts[3]!r}")
    return CronError(f"{FIELDS[i]}: {parts[i]!r} is not valid; use {_ALLOWED[i]}, '*', a-b "
                     "ranges, /steps and comma lists")


@dataclass(frozen=True)
class Cron:
    """A parsed expression; the value sets are what :meth:`on_calendar` renders."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (a 7 in the expression is folded into 0)
    days_and: bool  # a day field starts with "*": a day must match both day fields

    @classmethod
    def parse(cls, expression: str) -> Cron:
        if expression.strip().startswith("@"):
            raise CronError(f"cron nicknames such as {expression.split()[0]!r} are not "
                            "supported; write the five fields (@daily is '0 0 * * *')")
        parts = expression.split()
        # cronsim would also take a sixth (seconds) field, which a crontab line cannot carry.
        if len(parts) != 5:
            raise CronError(f"cron expression {expression!r} needs 5 fields (minute hour "
                            f"day-of-month month day-of-week), got {len(parts)}")
        try:
            sim = CronSim(expression, _PARSE_AT)
        except CronSimError as e:
            raise _field_error(expression, parts, str(e)) from None
        # cronsim also knows Quartz's L, LW and #n; Vixie cron does not, and the expression
        # goes verbatim into the crontab line we print.
        if any(day < 0 for day in sim.days):
            raise CronError(f"day of month: {parts[2]!r}: 'L' and 'LW' are not crontab syntax")
        if any(isinstance(day, tuple) for day in sim.weekdays):
            raise CronError(f"day of week: {parts[4]!r}: 'L' and '#' are not crontab syntax")
        weekdays = frozenset(day % 7 for day in sim.weekdays if isinstance(day, int))
        return cls(expression, frozenset(sim.minutes), frozenset(sim.hours),
                   frozenset(sim.days), frozenset(sim.months), weekdays, sim.day_and)

    def next_after(self, after: datetime) -> datetime:
        """The first matching minute strictly after ``after`` (same timezone as ``after``)."""
        try:
            return next(CronSim(self.expression, after))
        except StopIteration:  # cronsim looks 50 years ahead
            raise CronError(f"cron expression {self.expression!r} never fires") from None

    def on_calendar(self) -> str:
        """The equivalent systemd ``OnCalendar=`` value."""
        if not self.days_and:
            raise CronError("systemd cannot express 'day of month OR day of week'; "
                            "use two timers or the crontab line")

        def fmt(values: frozenset[int], full: range) -> str:
            if values >= set(full):
                return "*"
            return ",".join(f"{v:02d}" for v in sorted(values))

        days = ""
        if not self.weekdays >= set(range(7)):
            days = ",".join(_DAY_NAMES[d] for d in sorted(self.weekdays)) + " "
        date = f"*-{fmt(self.months, range(1, 13))}-{fmt(self.days, range(1, 32))}"
        return f"{days}{date} {fmt(self.hours, range(24))}:{fmt(self.minutes, range(60))}:00"
