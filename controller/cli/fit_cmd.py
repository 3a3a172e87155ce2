"""``joulefarm fit``: fit latency or energy estimators on a results database and export them
(ONNX + manifest.json + the validation table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from controller.cli.console import OutputFormat, console, err_console, print_rows
from controller.cli.options import DbOption, FormatOption, db_path

TargetOption = typer.Option(..., "--target", help="What to predict: latency or energy.",
                            show_default=False)
OutOption = typer.Option(..., "--out", help="Directory to write the estimator to.",
                         show_default=False)
FoldsOption = typer.Option(5, "--folds", min=2, help="Folds of the grouped (by model) split.")
SplitsOption = typer.Option("family,device", "--splits",
                            help="Validation schemes, comma separated: family (leave one model "
                                 "family out: picks the preferred estimator, calibrates the "
                                 "intervals), device (leave one device out, few-shot: "
                                 "calibrates those of enrolled devices), grouped (k folds by "
                                 "model; the slowest).")
WorkloadOption = typer.Option(
    "inference", "--workload",
    help="What the estimators predict: inference (a model's inferences), or train (one "
         "training step of a model, per layer and part, fitted on runs of mode train; "
         "`predict` then takes the inference model and predicts its step).")
SeedOption = typer.Option(0, "--seed", help="Seed of the folds, subsampling and trees.")
GpOption = typer.Option(True, "--validate-gp/--no-validate-gp",
                        help="Refit the Gaussian processes in every fold (the slow part).")


def fit(
    target: str = TargetOption,
    db: Path | None = DbOption,
    out: Path = OutOption,
    folds: int = FoldsOption,
    splits: str = SplitsOption,
    seed: int = SeedOption,
    validate_gp: bool = GpOption,
    workload: str = WorkloadOption,
    fmt: OutputFormat = FormatOption,
) -> None:
    """Fit estimators (GP, trees, cross-hardware), validate against baselines, export ONNX."""
    # Imported here: scikit-learn and onnx take a second to load, other commands need neither.
    from controller.estimators.errors import EstimatorError
    from controller.estimators.export import fit_and_export
    from controller.estimators.manifest import read_manifest
    from controller.estimators.validation import SCHEMES, TABLE_COLUMNS

    schemes = [s.strip() for s in splits.split(",") if s.strip()]
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise EstimatorError(f"--splits: unknown scheme {unknown[0]!r} (known: "
                             f"{', '.join(SCHEMES)})")
    path = db_path(db)
    quiet = fmt is not OutputFormat.table

    def progress(message: str) -> None:
        if not quiet:
            err_console.print(message, markup=False)

    result = fit_and_export(path, target, out, folds=folds, schemes=schemes, seed=seed,
                            validate_gp=validate_gp, progress=progress, workload=workload)
    manifest = read_manifest(result.directory)
    source = manifest["energy_source"]
    label = f", energy {source.upper()}" if target == "energy" else ""
    what = "training-step " if workload == "train" else ""
    print_rows(list(TABLE_COLUMNS), [r.as_row() for r in result.metrics], fmt,
               title=f"{target} {what}estimators vs baselines{label} ({path})")
    if workload == "train" and not quiet:
        _print_train(manifest, target, fmt)
    if not quiet:
        preferred = manifest.get("preferred") or ("none: no estimator beat the FLOPs and "
                                                  "constant-power baselines")
        excluded = manifest["excluded"]
        train = manifest.get("train") or {}
        samples = ("(layer, part) and", "training-step") if workload == "train" else (
            "layer and", "whole-model")
        console.print(f"trained on {manifest['training_layers']} {samples[0]} "
                      f"{manifest['training_whole_models']} {samples[1]} measurements; left "
                      f"out: {excluded['unusable']} flagged unusable, "
                      f"{excluded['no_features']} without MACs"
                      + (f", {excluded['energy_only_unusable']} energies (meter flags)"
                         if target == "energy" else "")
                      + (f", {train['excluded_steps']} train runs without layer tags"
                         if train.get("excluded_steps") else ""), markup=False)
        interval = manifest["interval"]
        if interval["floor"]:
            console.print(f"{100 * interval['level']:.0f}% intervals calibrated on "
                          f"{interval['n_models']} held-out whole models", markup=False)
        console.print(f"wrote {len(result.files)} ONNX models, manifest.json, metrics.csv and "
                      f"metrics.md to {result.directory} (preferred: {preferred})",
                      markup=False)
        for note in result.estimator.notes:
            console.print(f"note: {note}", markup=False)


def _print_train(manifest: dict[str, Any], target: str, fmt: OutputFormat) -> None:
    """How far the FLOPs proxy (training = 3 x forward) is from the measured parts."""
    train = manifest["train"]
    rows = [[r["op"], r["layers"], r["backward_over_forward"],
             r["backward_update_over_forward"]] for r in train["part_ratios"]]
    print_rows(["layer_type", "layers", "backward/forward", "(backward+update)/forward"], rows,
               fmt, title=f"measured {target} per part against forward (the 3 x forward "
                          "proxy assumes (backward+update)/forward = 2)")
    gap = train["step_over_forward"]
    if gap["n_steps"]:
        console.print(f"measured step / its forward parts: median {gap['median']:.2f} over "
                      f"{gap['n_steps']} steps (the proxy: 3; the loss, the optimizer's "
                      "model-wide work and the runtime between ops are in the step)",
                      markup=False)


def register(app: typer.Typer) -> None:
    app.command(name="fit")(fit)
