"""``joulefarm report``: one self-contained HTML page about a sweep, or the nights since a date."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import console
from controller.cli.options import DbOption, db_path

HELP = """Write one HTML file about a sweep (the newest by default), or every sweep since a
date: what changed against the night before (change points, with the layers that moved, and
series that changed), devices side by side, each model's energy per layer per device, a run's
power trace with its layer windows, the history of each series with its change points, and,
with --estimator, predicted against measured. The file loads nothing (inline SVG plots and
style, no script): it opens offline. Simulated data is marked on every plot."""


def register(app: typer.Typer) -> None:
    @app.command(help=HELP)
    def report(
        sweep: str | None = typer.Option(None, "--sweep", help="A sweep id, or a date "
                                         "YYYY-MM-DD (that day's last sweep). Default: the "
                                         "newest sweep."),
        since: str | None = typer.Option(None, "--since", help="Every sweep started on or "
                                         "after this date (YYYY-MM-DD)."),
        out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
        estimator: list[Path] | None = typer.Option(None, "--estimator", help="An estimator "
                                                    "directory (`joulefarm fit --out`) whose "
                                                    "predictions to plot against the "
                                                    "measurements (repeatable)."),
        db: Path | None = DbOption,
    ) -> None:
        from controller.report_page import build_report, changes_in, scope_for
        from controller.results_frames import open_results

        results = open_results(db_path(db))
        scope = scope_for(results, sweep, since)
        with console.status(f"drawing the report of {scope.title}"):
            changes, series = changes_in(results, scope)
            page = build_report(results, scope, changes, series, estimator or ())
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)  # a reader never sees half a page
        console.print(f"wrote {out} ({len(page) / 1e6:.1f} MB): {scope.title}, "
                      f"{changes.height} change point(s)", soft_wrap=True)
