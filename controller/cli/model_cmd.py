"""``joulefarm model ...``: inspect .tflite models with the model toolkit (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.cli.console import OutputFormat, err_console, print_rows
from controller.cli.options import FormatOption, InputShapeOption
from joulefarm.errors import InputError, ModelError
from joulefarm.files import FileRefused, read_regular_file
from joulefarm.limits import MAX_MODEL_FILE_BYTES

if TYPE_CHECKING:  # numpy loads with it: --help stays light
    from joulefarm.tflite.parse import LayerInfo

ModelArgument = typer.Argument(..., help="A .tflite file.", show_default=False)

app = typer.Typer(help="Inspect .tflite models.", no_args_is_help=True)


def read_model_file(path: Path) -> bytes:
    """The bytes of the model file ``path``: a regular file of at most ``MAX_MODEL_FILE_BYTES``
    (a named pipe would block the read for ever, ``/dev/zero`` fill memory)."""
    try:
        return read_regular_file(path, MAX_MODEL_FILE_BYTES, "model file")
    except OSError as e:
        raise ModelError(f"{path}: cannot read: {e.strerror}") from e
    except FileRefused as e:
        raise ModelError(f"{path}: {e}") from None


def _shapes(shapes: list[list[int]]) -> str:
    return ",".join("x".join(map(str, s)) for s in shapes)


def model_layers(model: Path, content: bytes, input_shape: list[str] | None,
                 file_shapes: bool) -> tuple[list[LayerInfo], str]:
    """The layers of ``content`` at the shapes the runtime computes (``--input-shape`` for
    dynamic inputs), or the file's shapes with ``file_shapes``; the note says when the
    runtime could not run the model and the file's shapes stand in."""
    from joulefarm.tflite.inputs import parse_input_shape
    from joulefarm.tflite.parse import read_layers

    note = ""
    try:
        infos = read_layers(content)
        if not file_shapes:
            from agent.local import runtime_layers

            given = tuple(parse_input_shape(text) for text in input_shape or ())
            try:
                infos = runtime_layers(content, given)
            except (ModelError, InputError) as e:
                if given:
                    raise
                # A dynamic input with no shape given, or a model the runtime cannot load:
                # the file's shapes are still worth seeing, said to be the file's.
                note = f"the file's shapes: the runtime cannot run the model ({e})"
    except ModelError as e:
        raise ModelError(f"{model}: {e}") from e
    return infos, note


@app.command("layers", help="List a model's layers with their features (op, shapes, kernel, "
             "stride, padding, dtype, MACs, parameter and activation bytes). Shapes are those "
             "the runtime computes for one inference, marked * where the file stores others "
             "(a converter's placeholders); --file-shapes reads the file alone.")
def layers(model: Path = ModelArgument,
           fmt: OutputFormat = FormatOption,
           input_shape: list[str] | None = InputShapeOption,
           file_shapes: bool = typer.Option(
               False, "--file-shapes", help="The shapes stored in the file, without running "
               "the model (also what is shown when the runtime cannot load it).")) -> None:
    from joulefarm.tflite.parse import layer_to_dict

    content = read_model_file(model)
    infos, note = model_layers(model, content, input_shape, file_shapes)
    dicts = [layer_to_dict(x) for x in infos]
    if note:  # the runtime could not run it: say whose shapes these are
        err_console.print(note, markup=False)
        note = ""
    if fmt is OutputFormat.json:
        columns = list(dicts[0]) if dicts else []
        print_rows(columns, [[d[c] for c in columns] for d in dicts], fmt)
        return
    columns = ["index", "op", "input_shapes", "output_shapes", "kernel", "stride", "padding",
               "activation", "dtype", "macs", "param_bytes", "act_in_bytes", "act_out_bytes"]
    if fmt is not OutputFormat.table:  # data for programs: a column, not a mark
        columns.append("file_shapes_differ")
    rows = []
    for d in dicts:
        mark = "*" if d["file_shapes_differ"] and fmt is OutputFormat.table else ""
        row = dict(d, input_shapes=_shapes(d["input_shapes"]) + mark,
                   output_shapes=_shapes(d["output_shapes"]) + mark)
        rows.append([row[c] for c in columns])
    if fmt is OutputFormat.table and any(d["file_shapes_differ"] for d in dicts):
        note = "* the runtime's shapes; the file stores others (placeholders)"
    print_rows(columns, rows, fmt, title=f"{model} ({len(rows)} layers, "
               f"{sum(x.macs or 0 for x in infos):,} MACs"
               + (f"; {unknown} without a cost formula" if (unknown := sum(
                   x.macs is None for x in infos)) else "") + ")")
    if note:
        err_console.print(note, markup=False)
