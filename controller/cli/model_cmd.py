"""``joulefarm model ...``: inspect .tflite models with the model toolkit (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import typer

from controller.cli.console import OutputFormat, print_rows
from controller.cli.options import FormatOption
from joulefarm.errors import ModelError

ModelArgument = typer.Argument(..., help="A .tflite file.", show_default=False)

app = typer.Typer(help="Inspect .tflite models.", no_args_is_help=True)


def read_model_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read: {e.strerror}") from e


def _shapes(shapes: list[list[int]]) -> str:
    return ",".join("x".join(map(str, s)) for s in shapes)


@app.command("layers", help="List a model's layers with their features (op, shapes, kernel, "
             "stride, padding, dtype, MACs, parameter and activation bytes).")
def layers(model: Path = ModelArgument,
           fmt: OutputFormat = FormatOption) -> None:
    from joulefarm.tflite.parse import layer_to_dict, read_layers

    try:
        infos = read_layers(read_model_file(model))
    except ModelError as e:
        raise ModelError(f"{model}: {e}") from e
    dicts = [layer_to_dict(x) for x in infos]
    if fmt is OutputFormat.json:
        columns = list(dicts[0]) if dicts else []
        print_rows(columns, [[d[c] for c in columns] for d in dicts], fmt)
        return
    columns = ["index", "op", "input_shapes", "output_shapes", "kernel", "stride", "padding",
               "activation", "dtype", "macs", "param_bytes", "act_in_bytes", "act_out_bytes"]
    rows = []
    for d in dicts:
        row = dict(d, input_shapes=_shapes(d["input_shapes"]),
                   output_shapes=_shapes(d["output_shapes"]))
        rows.append([row[c] for c in columns])
    print_rows(columns, rows, fmt, title=f"{model} ({len(rows)} layers, "
               f"{sum(x.macs or 0 for x in infos):,} MACs"
               + (f"; {unknown} without a cost formula" if (unknown := sum(
                   x.macs is None for x in infos)) else "") + ")")
