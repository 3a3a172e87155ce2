"""Nightly (or any cron) sweeps: a long-lived loop that starts a sweep at each fire time.

A sweep runs as its own ``joulefarm sweep run`` process, so a crash in one sweep never stops
the scheduler. A fire time that comes while the previous sweep still runs is skipped and
logged, never queued: sweeps must not pile up on a farm.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from controller.cron import Cron

Log = Callable[[str], None]


@dataclass
class Scheduler:
    """Start ``launch()`` at every fire time of ``cron``; ``launch`` returns a process-like
    object with ``poll()`` (None while running)."""

    cron: Cron
    launch: Callable[[], subprocess.Popen[bytes]]
    log: Log
    now: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    sleep: Callable[[float], None] = time.sleep
    running: subprocess.Popen[bytes] | None = None
    started: int = 0
    skipped: int = 0

    def tick(self, fire_time: datetime) -> None:
        """What happens at one fire time."""
        if self.running is not None and self.running.poll() is None:
            self.skipped += 1
            self.log(f"{fire_time:%Y-%m-%d %H:%M}: previous sweep (pid {self.running.pid}) "
                     "still running: this start is skipped")
            return
        if self.running is not None:
            self.log(f"previous sweep exited with code {self.running.returncode}")
        self.running = self.launch()
        self.started += 1
        self.log(f"{fire_time:%Y-%m-%d %H:%M}: sweep started (pid {self.running.pid})")

    def run(self, max_fires: int | None = None) -> None:
        """Loop forever (or for ``max_fires`` fire times)."""
        fires = 0
        while max_fires is None or fires < max_fires:
            now = self.now()
            fire = self.cron.next_after(now)
            self.log(f"next sweep at {fire:%Y-%m-%d %H:%M %Z}".rstrip())
            while (remaining := (fire - self.now()).total_seconds()) > 0:
                self.sleep(min(remaining, 60.0))  # wake up regularly: clocks can jump
            self.tick(fire)
            fires += 1


def sweep_command(suite: Path, devices: Path, db: Path, report_dir: Path) -> list[str]:
    """A scheduled sweep records what changed since the night before when it ends
    (controller.changes.detect_changes), logs the change points, and writes its report to
    ``report_dir``, so every night says what changed."""
    return [sys.executable, "-m", "controller.cli.app", "sweep", "run", str(suite.resolve()),
            "--devices", str(devices.resolve()), "--db", str(db.resolve()), "--detect-changes",
            "--report-dir", str(report_dir.resolve())]


def crontab_line(cron: Cron, command: Sequence[str], log_file: Path) -> str:
    return f"{cron.expression} {shlex.join(command)} >> {shlex.quote(str(log_file))} 2>&1"


def systemd_units(cron: Cron, command: Sequence[str], name: str = "joulefarm-sweep") -> str:
    """A user service + timer pair (``systemctl --user enable --now NAME.timer``)."""
    return f"""# ~/.config/systemd/user/{name}.service
[Unit]
Description=joulefarm sweep

[Service]
Type=oneshot
ExecStart={shlex.join(command)}

# ~/.config/systemd/user/{name}.timer
[Unit]
Description=joulefarm sweep on schedule ({cron.expression})

[Timer]
OnCalendar={cron.on_calendar()}
Persistent=true

[Install]
WantedBy=timers.target
"""
