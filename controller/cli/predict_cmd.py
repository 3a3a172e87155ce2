"""``joulefarm predict MODEL --device NAME --estimator DIR``: per-layer and total latency or
energy of a model on a device, from an estimator directory (onnxruntime only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.cli.console import OutputFormat, console, err_console, print_rows
from controller.cli.model_cmd import ModelArgument, model_layers, read_model_file
from controller.cli.options import FormatOption, InputShapeOption

if TYPE_CHECKING:
    from controller.estimators.predict import ModelPrediction

DeviceOption = typer.Option(..., "--device", help="Device to predict for: one the estimator "
                            "was fitted on, or one added with `joulefarm enroll`.",
                            show_default=False)
EstimatorOption = typer.Option(..., "--estimator", help="Estimator directory written by "
                               "`joulefarm fit`.", show_default=False)

# Layers are small: print them in micro-units, totals in milli-units.
_LAYER_SCALE = {"s": (1e6, "us"), "J": (1e6, "uJ")}
_TOTAL_SCALE = {"s": (1e3, "ms"), "J": (1e3, "mJ")}


def predict(
    model: Path = ModelArgument,
    device: str = DeviceOption,
    estimator: Path = EstimatorOption,
    input_shape: list[str] | None = InputShapeOption,
    file_shapes: bool = typer.Option(
        False, "--file-shapes", help="Describe the layers by the shapes stored in the file, "
        "without running the model (a converter's placeholder shapes then reach the "
        "features)."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Predict MODEL's per-layer and whole-model latency or energy on DEVICE, with a
    calibrated interval on the whole model. Layers are described at the shapes the runtime
    computes for one inference (--input-shape for dynamic inputs).

    With an estimator fitted with `fit --workload train`, MODEL is the *inference* model, at
    the batch size of the training step: it is made trainable as the training data were
    (the manifest's optimizer and loss), and one training step is predicted, per layer and
    part (forward, backward, update; the loss and optimizer's model-wide work as `step`),
    with the step's interval."""
    # onnxruntime loads only when needed
    from controller.estimators.predict import PREFERENCE, Estimator
    from controller.estimators.train_features import PartDesc

    est = Estimator(estimator)
    content = read_model_file(model)
    infos, note = model_layers(model, content, input_shape, file_shapes)
    if note:
        err_console.print(note, markup=False)
    result = est.predict_layers(est.describe(content, infos), device)
    train = est.workload == "train"
    source = est.manifest.get("energy_source", "n/a")
    layer_scale, layer_unit = _LAYER_SCALE[result.unit]
    total_scale, total_unit = _TOTAL_SCALE[result.unit]
    names = list(result.values)

    columns = ["index", "op", *(["part"] if train else []), "macs"]
    for name in names:
        columns.append(f"{name}_{layer_unit}")
        if name == "gp" and result.gp_std is not None:
            columns.append(f"gp_std_{layer_unit}")
    rows: list[list[object]] = []
    for i, desc in enumerate(result.layers):
        row: list[object] = [i, desc.op, desc.macs]
        if isinstance(desc, PartDesc):
            row = [desc.layer_index, desc.op, desc.part, desc.macs]
        for name in names:
            row.append(float(result.values[name][i]) * layer_scale)
            if name == "gp" and result.gp_std is not None:
                row.append(float(result.gp_std[i]) * layer_scale)
        rows.append(row)
    level = f"{100 * result.interval_level:.0f}"
    total_columns = ["estimator", f"total_{total_unit}", f"std_{total_unit}",
                     f"low{level}_{total_unit}", f"high{level}_{total_unit}", "preferred"]
    total_rows = []
    for name, (value, std) in result.totals.items():
        bounds = (result.intervals or {}).get(name)
        total_rows.append([name, value * total_scale, None if std is None else std * total_scale,
                           None if bounds is None else bounds[0] * total_scale,
                           None if bounds is None else bounds[1] * total_scale,
                           name == result.preferred])

    if fmt is OutputFormat.json:
        data = {"model": str(model), "device": device, "target": result.target,
                "workload": est.workload,
                "unit": result.unit, "energy_source": source,
                "interval_level": result.interval_level,
                "unseen_ops": list(result.unseen_ops),
                "layers": [dict(zip(columns, r, strict=True)) for r in rows],
                "totals": [dict(zip(total_columns, r, strict=True)) for r in total_rows]}
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    if fmt is OutputFormat.csv:
        total_row: list[object] = ["total", "", *([""] if train else []),
                                   sum(d.macs for d in result.layers
                                       if not isinstance(d, PartDesc) or d.part == "forward")]
        for name in names:
            total_row.append(result.totals[name][0] * layer_scale)
            if name == "gp" and result.gp_std is not None:
                std = result.totals[name][1]
                total_row.append(None if std is None else std * layer_scale)
        print_rows(columns, [*rows, total_row], fmt)
        return
    label = f", energy {source.upper()}" if result.target == "energy" else ""
    if train:
        _print_parts(result, model.name, device, layer_scale, layer_unit, label, fmt)
        print_rows(total_columns, total_rows, fmt,
                   title=f"one training step (sum of the parts, corrected for what the op "
                         f"windows miss; std: GP, errors taken as independent{label})")
    else:
        print_rows(columns, rows, fmt, title=f"{model.name} on {device}: per-layer "
                   f"{result.target} ({layer_unit}{label})")
        print_rows(total_columns, total_rows, fmt,
                   title=f"whole model (sum of layers, corrected for non-additivity; std: GP, "
                         f"layer errors taken as independent{label})")
    if est.enrolled(device):
        runs = est.manifest["devices"][device]["enrolled"]["reference_runs"]
        console.print(f"{device} was enrolled from its {runs} reference runs: predicted by the "
                      "cross-hardware model (and the FLOPs baseline)", markup=False)
        if result.intervals:
            console.print(f"low/high: the {level}% interval, calibrated on training devices "
                          "left out and predicted from their reference runs alone",
                          markup=False)
        else:
            console.print("no interval: the estimator was not validated across devices (fit "
                          "it with three or more devices that ran the reference suite, and "
                          "the 'device' split)", markup=False)
    elif est.manifest.get("preferred"):
        console.print(f"preferred estimator: {result.preferred} (lowest cross-validated error "
                      "when fitted, and better than the baselines)", markup=False)
    else:
        console.print(f"no estimator beat the baselines when fitted (metrics.md); marked: "
                      f"{result.preferred}, the first of {', '.join(PREFERENCE)} here",
                      markup=False)
    if result.intervals and not est.enrolled(device):
        console.print(f"low/high: the {level}% interval, calibrated on models of packages left "
                      "out when fitting", markup=False)
    if result.unseen_ops:
        console.print(f"ops never seen in training: {', '.join(result.unseen_ops)}: priced by "
                      "their op family's model, the interval widened for them", markup=False)


def _print_parts(result: ModelPrediction, name: str, device: str, scale: float, unit: str,
                 label: str, fmt: OutputFormat) -> None:
    """A train prediction's table: per layer, forward, backward and update of the preferred
    estimator (the loss and optimizer's model-wide work as ``step``)."""
    from controller.estimators.predict import part_table

    rows: list[list[object]] = []
    for index, op, parts in part_table(result, result.preferred):
        values = [parts.get(p) for p in ("forward", "backward", "update")]
        if index is None:
            values = [None, None, None]
        row: list[object] = ["step" if index is None else index, op]
        row += [None if v is None else v * scale for v in values]
        row.append(sum(parts.values()) * scale)
        rows.append(row)
    print_rows(["index", "op", f"forward_{unit}", f"backward_{unit}", f"update_{unit}",
                f"total_{unit}"], rows, fmt,
               title=f"{name} on {device}: one training step per layer and part, "
                     f"{result.target} ({unit}, {result.preferred}{label})")


def register(app: typer.Typer) -> None:
    app.command(name="predict")(predict)
