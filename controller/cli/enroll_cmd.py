"""``joulefarm enroll DEVICE --estimator DIR``: make ``predict --device DEVICE`` work for a
device the estimator was not fitted on, from its ~15 s of reference runs."""

from __future__ import annotations

import enum
from pathlib import Path

import typer

from controller.cli.console import DeviceProgress, console
from controller.cli.options import DbOption, DevicesOption, WideOption, db_path
from controller.cli.summary import print_summary
from controller.demo import DEVICES_FILE, resolve_default


class Measure(enum.StrEnum):
    missing = "missing"
    always = "always"
    never = "never"


DeviceArgument = typer.Argument(..., help="The device to enroll (its name in the registry).",
                                show_default=False)
EstimatorsOption = typer.Option(..., "--estimator", help="Estimator directory written by "
                                "`joulefarm fit` (repeat for a latency and an energy one).",
                                show_default=False)
MeasureOption = typer.Option(Measure.missing, "--measure",
                             help="Run the reference suite on the device: when the database "
                                  "lacks its reference runs (missing), every time (always), or "
                                  "never (use what is stored).")
SuiteOption = typer.Option("reference", "--suite",
                           help="The reference suite to run: the built-in one, or a copy of "
                                "controller/suites/reference.toml with your own measuring "
                                "settings.")


def enroll(
    device: str = DeviceArgument,
    estimator: list[Path] = EstimatorsOption,
    db: Path | None = DbOption,
    devices: Path | None = DevicesOption,
    measure: Measure = MeasureOption,
    suite: str = SuiteOption,
    wide: bool = WideOption,
) -> None:
    """Enroll DEVICE in estimators fitted without it: run the reference suite on it (ten small
    models, whole) and place it among the training devices, so that `joulefarm predict
    MODEL --device DEVICE` answers for any model, with an interval calibrated on training
    devices left out. Nothing is refitted."""
    from controller.estimators.dataset import load_dataset
    from controller.estimators.enroll import check_enrollable, enroll
    from controller.estimators.errors import EstimatorError
    from controller.estimators.models import few_shot_device

    manifests = [check_enrollable(d, device) for d in estimator]  # before measuring anything
    database = db_path(db)

    def has_reference_runs() -> bool:
        if not database.exists():
            return False
        dataset = load_dataset(database)
        try:
            for m in manifests:
                few_shot_device(dataset, device, m["target"], m["platforms"])
        except EstimatorError:
            return False
        return True

    if measure is Measure.always or (measure is Measure.missing and not has_reference_runs()):
        _run_reference(device, suite, resolve_default(devices, DEVICES_FILE), database, wide)
    dataset = load_dataset(database)
    for directory in estimator:
        done = enroll(directory, dataset, device, str(database))
        intervals = ("intervals calibrated on training devices left out" if done.calibrated
                     else "no intervals (the estimator was not validated across devices)")
        console.print(f"enrolled {device} in {directory} ({done.target}) from "
                      f"{done.few_shot.n_reference} reference runs; {intervals}",
                      markup=False, soft_wrap=True)
    console.print(f"predict with: joulefarm predict MODEL --device {device} --estimator "
                  f"{estimator[0]}", markup=False, soft_wrap=True)


def _run_reference(device: str, suite: str, devices_path: Path, database: Path,
                   wide: bool) -> None:
    from controller.cli.sweep_cmd import announce_sweep
    from controller.farm.runner import run_suite

    console.print(f"running the reference suite on {device}", markup=False)
    with DeviceProgress([device]) as live:
        report = run_suite(devices_path, Path(suite), database, progress=live.update,
                           on_start=announce_sweep, only=[device])
    print_summary(report, database, wide=wide)
    if not report.ok:
        console.print(f"the reference runs did not complete; resume with: joulefarm sweep "
                      f"resume {report.outcome.sweep_id}, then enroll with --measure never",
                      markup=False, soft_wrap=True)
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.command(name="enroll")(enroll)
