"""``joulefarm schedule SUITE``: start sweeps on a cron schedule (or print a timer for it)."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import typer

from controller.cli.console import console
from controller.cli.options import DbOption, DevicesOption, db_path
from controller.demo import DEVICES_FILE, resolve_default

SuiteArgument = typer.Argument(..., help="Suite file; its [schedule] cron is used unless "
                               "--cron is given.", show_default=False)
CronOption = typer.Option(None, "--cron", help='Cron expression, e.g. "0 2 * * *" (02:00 '
                          "daily, local time).")
CrontabOption = typer.Option(False, "--print-crontab", help="Print a crontab line and exit.")
SystemdOption = typer.Option(False, "--print-systemd",
                             help="Print a systemd user service + timer and exit.")
ReportDirOption = typer.Option(Path("reports"), "--report-dir",
                               help="Each sweep's report goes here as SWEEP_ID.html.")
LogOption = typer.Option(Path("joulefarm-sweeps.log"), "--log-file",
                         help="Where each sweep's output goes.")


def register(app: typer.Typer) -> None:
    @app.command(help="Run as a long-lived process that starts `sweep run SUITE` at every fire "
                 "time of a cron expression; a start is skipped while the previous sweep "
                 "still runs. Or print an equivalent crontab line / systemd timer.")
    def schedule(suite: Path = SuiteArgument, cron: str | None = CronOption,
                 devices: Path | None = DevicesOption, db: Path | None = DbOption,
                 print_crontab: bool = CrontabOption, print_systemd: bool = SystemdOption,
                 log_file: Path = LogOption, report_dir: Path = ReportDirOption) -> None:
        devices_path = resolve_default(devices, DEVICES_FILE)
        from controller.config.suite import SuiteError
        from controller.cron import Cron
        from controller.farm.runner import load_inputs
        from controller.schedule import Scheduler, crontab_line, sweep_command, systemd_units

        _, loaded, _ = load_inputs(devices_path, suite)  # validate before anything starts
        expression = cron or loaded.cron
        if expression is None:
            raise SuiteError(suite, 0, "schedule.cron",
                             "the suite has no [schedule] cron and no --cron was given")
        parsed = Cron.parse(expression)
        command = sweep_command(suite, devices_path, db_path(db), report_dir)
        if print_crontab:
            line = crontab_line(parsed, command, log_file.resolve())
            console.print(line, markup=False, soft_wrap=True)
            return
        if print_systemd:
            console.print(systemd_units(parsed, command), markup=False, soft_wrap=True)
            return

        def launch() -> subprocess.Popen[bytes]:
            with open(log_file, "ab") as log:
                return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

        def log(message: str) -> None:
            console.print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M:%S} {message}",
                          markup=False, soft_wrap=True)

        log(f"scheduling {suite} with {expression!r}; sweep output goes to {log_file}")
        Scheduler(parsed, launch, log).run()
