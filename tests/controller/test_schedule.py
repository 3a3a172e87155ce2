"""Cron parsing and the scheduler loop (with an injected clock: no real waiting)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from controller.cron import Cron, CronError
from controller.schedule import Scheduler, crontab_line, systemd_units
from tests.helpers import REPO, run_cli

T0 = datetime(2026, 11, 21, 23, 36)  # a Saturday


@pytest.mark.parametrize(("expr", "expected"), [
    ("0 2 * * *", datetime(2026, 11, 22, 2, 0)),
    ("*/15 * * * *", datetime(2026, 11, 21, 23, 45)),
    ("30 2 * * mon-fri", datetime(2026, 11, 23, 2, 30)),
    ("0 0 1 jan *", datetime(2027, 1, 1, 0, 0)),
    ("0 12 29 2 *", datetime(2028, 2, 29, 12, 0)),
    ("0 3 13 * 5", datetime(2026, 11, 27, 3, 0)),  # the 13th OR a Friday: Friday comes first
    ("0 3 * * 7", datetime(2026, 11, 22, 3, 0)),  # 7 is Sunday
    ("0 9 * * fri-7", datetime(2026, 11, 22, 9, 0)),  # a range may end at 7 (Sunday)
    ("30 4 1,15 * 5", datetime(2026, 11, 27, 4, 30)),  # both days restricted: the 1st, 15th OR Fri
    ("0 0 13 * */2", datetime(2026, 12, 13, 0, 0)),  # day of week starts with *: the 13th AND Sun
])
def test_next_fire_times(expr: str, expected: datetime) -> None:
    assert Cron.parse(expr).next_after(T0) == expected


def test_day_of_month_starting_with_a_star_and_a_weekday_both_must_match() -> None:
    # Vixie cron sets DOM_STAR from the field's first character, so "*/2" is not "restricted":
    # odd days of the month AND Mondays, not every odd day and every Monday.
    cron = Cron.parse("0 0 */2 * 1")
    fires = [T0]
    for _ in range(30):
        fires.append(cron.next_after(fires[-1]))
    assert fires[1:4] == [datetime(2026, 11, 23), datetime(2026, 12, 7), datetime(2026, 12, 21)]
    assert all(t.isoweekday() == 1 and t.day % 2 == 1 for t in fires[1:])
    assert cron.on_calendar() == ("Mon *-*-01,03,05,07,09,11,13,15,17,19,21,23,25,27,29,31 "
                                  "00:00:00")


@pytest.mark.parametrize(("expr", "message"), [
    ("0 2 * *", "needs 5 fields"),
    ("0 2 * * * *", "needs 5 fields"),  # no seconds field: the line goes into a crontab
    ("61 * * * *", "minute: '61' is not valid; use 0-59"),
    ("0 2 * * funday", "day of week: 'funday' is not valid; use 0-7 (0 and 7 are Sunday) or "
                       "sun-sat"),
    ("0 5-2 * * *", "hour: '5-2' is not valid; use 0-23"),
    ("*/0 * * * *", "minute: '*/0' is not valid"),
    ("0 0 32 * *", "day of month: '32' is not valid; use 1-31"),
    ("0 0 * 13 *", "month: '13' is not valid; use 1-12 or jan-dec"),
    ("0 0 L * *", "day of month: 'L': 'L' and 'LW' are not crontab syntax"),
    ("0 0 * * 1#2", "day of week: '1#2': 'L' and '#' are not crontab syntax"),
    ("@daily", "cron nicknames such as '@daily' are not supported"),
])
def test_bad_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)):
        Cron.parse(expr)


def test_next_fire_keeps_the_timezone_of_now() -> None:
    plus_one = timezone(timedelta(hours=1))
    fire = Cron.parse("0 2 * * *").next_after(T0.replace(tzinfo=plus_one))
    assert fire == datetime(2026, 11, 22, 2, 0, tzinfo=plus_one) and fire.tzinfo == plus_one

def test_never_firing_expression_is_an_error() -> None:
    with pytest.raises(CronError, match="never fires"):
        Cron.parse("0 0 31 2 *").next_after(T0)


class FakeProcess:
    _next_pid = 100

    def __init__(self, duration: timedelta, clock: list[datetime]) -> None:
        self.end = clock[0] + duration
        self.clock = clock
        self.returncode: int | None = None
        FakeProcess._next_pid += 1
        self.pid = FakeProcess._next_pid

    def poll(self) -> int | None:
        if self.clock[0] >= self.end:
            self.returncode = 0
        return self.returncode


def test_scheduler_starts_on_time_and_skips_while_a_sweep_runs() -> None:
    clock = [T0]
    durations = iter([timedelta(minutes=20), timedelta(minutes=5), timedelta(minutes=5)])
    launched: list[datetime] = []
    log: list[str] = []

    def launch() -> FakeProcess:
        launched.append(clock[0])
        return FakeProcess(next(durations), clock)

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    scheduler = Scheduler(Cron.parse("*/15 * * * *"), launch, log.append,  # type: ignore[arg-type]
                          now=lambda: clock[0], sleep=sleep)
    scheduler.run(max_fires=3)
    # 23:45 starts a 20-minute sweep; 00:00 finds it running and skips; 00:15 starts again.
    assert launched == [datetime(2026, 11, 21, 23, 45), datetime(2026, 11, 22, 0, 15)]
    assert scheduler.started == 2 and scheduler.skipped == 1
    assert any("still running: this start is skipped" in line for line in log)


def test_timer_and_crontab_rendering(tmp_path: Path) -> None:
    cron = Cron.parse("30 2 * * mon-fri")
    assert cron.on_calendar() == "Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00"
    units = systemd_units(cron, ["joulefarm", "sweep", "run", "s.toml"])
    assert "OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 02:30:00" in units
    assert "ExecStart=joulefarm sweep run s.toml" in units
    assert crontab_line(cron, ["a b", "c"], tmp_path / "l.log").startswith(
        "30 2 * * mon-fri 'a b' c >> ")
    with pytest.raises(CronError, match="systemd cannot express"):
        Cron.parse("0 3 13 * 5").on_calendar()


def test_schedule_command_prints_a_crontab_line_and_rejects_bad_cron() -> None:
    ok = run_cli("schedule", str(REPO / "benchmarks/demo.toml"), "--cron", "0 2 * * *",
                 "--print-crontab", timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("0 2 * * * ") and "sweep run" in ok.stdout
    # Every night says what changed: change points recorded and logged, and a report written.
    assert "--detect-changes" in ok.stdout and "--report-dir" in ok.stdout
    bad = run_cli("schedule", str(REPO / "benchmarks/demo.toml"), "--cron", "0 2 * *",
                  timeout=60)
    assert bad.returncode == 2 and "needs 5 fields" in bad.stderr
