"""``joulefarm bench MODEL``: the agent's measuring pipeline, in-process, on this machine."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from controller.cli.console import (
    OutputFormat,
    console,
    err_console,
    print_rows,
    print_sections,
)
from controller.cli.model_cmd import ModelArgument, read_model_file
from controller.cli.options import InputShapeOption
from joulefarm.enums import Mode
from joulefarm.errors import InputError, MeterError, ModelError
from joulefarm.limits import (
    MAX_SAMPLE_RATE_HZ,
    MEASURE_BOUNDS,
    MIN_SAMPLE_RATE_HZ,
    bound_problem,
)

if TYPE_CHECKING:
    from agent.local import Meter
    from joulefarm.results import BenchmarkResult, MeasureSettings

ModeOption = typer.Option("layers", "--mode", help="layers: each layer looped alone; "
                          "whole: the whole model looped (latency percentiles); insitu: the "
                          "whole model looped with the runtime's per-op profiler; train: a "
                          "trainable model's training step looped with the per-op profiler "
                          "(forward, backward and update per layer).")
MeterOption = typer.Option("sim", "--meter", help="Meter kind (sim simulates power).")
ProfileOption = typer.Option("host", "--profile", help="Simulated device profile (sim meter).")
RateOption = typer.Option(None, "--sample-rate-hz", help="Meter sample rate.")
ThreadsOption = typer.Option(1, "--threads", min=1, help="Interpreter threads.")
DurationOption = typer.Option(1.0, "--min-duration-s", min=0.0,
                              help="Whole mode: minimum timed duration.")
LayerDurationOption = typer.Option(0.02, "--min-layer-duration-s", min=0.0,
                                   help="Layers mode: minimum timed duration per layer.")
FormatOpt = typer.Option(OutputFormat.table, "--format", "-f", help="table, csv or json.")
JsonOption = typer.Option(False, "--json", help="Shorthand for --format json.")
XnnpackOption = typer.Option(False, "--xnnpack/--no-xnnpack",
                             help="Use TFLite's default XNNPACK delegate (fuses ops).")
DelegateOption = typer.Option(None, "--delegate", help="External delegate library (.so).")
OptimizerOption = typer.Option(None, "--optimizer", help="Train mode, for a model without a "
                               "train signature: make it trainable on the fly with this "
                               "optimizer (sgd or adam; default settings), at its batch size.")
LossOption = typer.Option(None, "--loss", help="Train mode, with --optimizer: the loss (mse or "
                          "softmax_cross_entropy; default mse).")
PrefixesOption = typer.Option(False, "--prefixes", help="Train mode, with an inference model and "
                              "--optimizer: THOR's subtraction method. Measure the training "
                              "step of the model's first 1..n layers (each trained with MSE) "
                              "and print per layer E(k) - E(k-1) beside the per-op events.")
RoundsOption = typer.Option(3, "--rounds", min=1, max=100, help="With --prefixes: how many "
                            "times each prefix is measured (interleaved; the median is kept).")
PairsOption = typer.Option(False, "--pairs", help="Layers mode: also loop each adjacent pair of "
                           "layers (the second reading the first's output) as one sub-model and "
                           "print which pairs the runtime fuses (nn-Meter's rule).")



def _layer_rows(result: BenchmarkResult) -> tuple[list[str], list[list[object]]]:
    columns = ["index", "op", "input_shapes", "macs", "iterations", "latency_us", "energy_uj",
               "active_energy_uj", "mean_power_w", "samples", "flags"]
    if result.meter.simulated:
        columns.insert(7, "sim_truth_uj")
    rows = []
    for x in result.layers:
        row: list[object] = [x.index, x.op, x.input_shapes, x.macs, x.iterations,
                             x.latency_s * 1e6, x.energy_j * 1e6, x.active_energy_j * 1e6,
                             x.mean_power_w, x.samples, list(x.flags)]
        if result.meter.simulated:
            row.insert(7, (x.true_energy_j or 0.0) * 1e6)
        rows.append(row)
    return columns, rows


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole and math.isfinite(whole) else math.nan


def _total_rows(result: BenchmarkResult, columns: list[str]) -> list[list[object]]:
    """Under the layers, in their columns: ``total``, the layers' sum per inference (mean
    power: that energy over that time); ``whole``, the unsplit model looped in the same run
    (latency: its median call, as each layer's is a median; energy per inference); ``ratio``,
    layers / whole of latency and energy (the additivity check)."""
    layers = list(result.layers)
    latency = sum(x.latency_s for x in layers)
    energy = sum(x.energy_j for x in layers)
    truth = sum(x.true_energy_j or 0.0 for x in layers)
    rows: list[dict[str, object]] = [{
        "index": "total", "op": f"{len(layers)} layers", "macs": sum(x.macs or 0 for x in layers),
        "latency_us": latency * 1e6, "energy_uj": energy * 1e6, "sim_truth_uj": truth * 1e6,
        "active_energy_uj": sum(x.active_energy_j for x in layers) * 1e6,
        "mean_power_w": _ratio(energy, latency), "flags": []}]
    w = result.whole
    if w is not None:
        whole_truth = w.true_energy_j or 0.0
        rows.append({
            "index": "whole", "op": "whole model", "iterations": w.iterations,
            "latency_us": w.latency_p50_s * 1e6, "energy_uj": w.energy_j * 1e6,
            "sim_truth_uj": whole_truth * 1e6, "active_energy_uj": w.active_energy_j * 1e6,
            "mean_power_w": w.mean_power_w, "samples": w.samples, "flags": list(w.flags)})
        rows.append({
            "index": "ratio", "op": "layers/whole",
            "latency_us": _ratio(latency, w.latency_p50_s), "energy_uj": _ratio(energy, w.energy_j),
            "sim_truth_uj": _ratio(truth, whole_truth), "flags": []})
    return [[row.get(c) for c in columns] for row in rows]


def _whole_rows(result: BenchmarkResult) -> tuple[list[str], list[list[object]]]:
    w = result.whole
    assert w is not None
    columns = ["iterations", "latency_mean_ms", "latency_p50_ms", "latency_p90_ms",
               "latency_p99_ms", "energy_mj", "active_energy_mj", "mean_power_w", "flags"]
    row: list[object] = [w.iterations, w.latency_mean_s * 1e3, w.latency_p50_s * 1e3,
                         w.latency_p90_s * 1e3, w.latency_p99_s * 1e3, w.energy_j * 1e3,
                         w.active_energy_j * 1e3, w.mean_power_w, list(w.flags)]
    if result.meter.simulated:
        columns.insert(7, "sim_truth_mj")
        row.insert(7, (w.true_energy_j or 0.0) * 1e3)
    return columns, [row]


def _pair_rows(result: BenchmarkResult) -> tuple[list[str], list[list[object]]]:
    columns = ["first", "second", "ops", "iterations", "sum_latency_us", "pair_latency_us",
               "latency_saved_us", "fused", "beyond_call_overhead",
               "sum_energy_uj", "pair_energy_uj", "energy_ratio",
               "mean_power_w", "flags"]
    if result.meter.simulated:
        columns.insert(12, "sim_truth_uj")
    rows = []
    from joulefarm.results import check_pairs

    for c in check_pairs(result):
        p = c.pair
        row: list[object] = [p.first_index, p.second_index, p.ops, p.iterations,
                             c.sum_latency_s * 1e6, p.latency_s * 1e6, c.latency_saved_s * 1e6,
                             c.fused, c.beyond_call_overhead,
                             c.sum_energy_j * 1e6, p.energy_j * 1e6, c.energy_ratio,
                             p.mean_power_w, list(p.flags)]
        if result.meter.simulated:
            row.insert(12, (p.true_energy_j or 0.0) * 1e6)
        rows.append(row)
    return columns, rows


def _check_bounds(threads: int, min_duration_s: float, min_layer_duration_s: float,
                  sample_rate_hz: float | None) -> None:
    """The bounds a suite's settings have (``joulefarm.limits``): 100,000 threads crashed the
    runtime, and a 1e300 Hz simulated meter asked for more memory than there is."""
    checks = [("--threads", threads, MEASURE_BOUNDS["num_threads"]),
              ("--min-duration-s", min_duration_s, MEASURE_BOUNDS["min_duration_s"]),
              ("--min-layer-duration-s", min_layer_duration_s,
               MEASURE_BOUNDS["min_layer_duration_s"])]
    if sample_rate_hz is not None:
        checks.append(("--sample-rate-hz", sample_rate_hz,
                       (MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ)))
    for option, value, (low, high) in checks:
        problem = bound_problem(value, low, high)
        if problem is not None:
            raise InputError(f"{option}: {problem}")


def bench(
    model: Path = ModelArgument,
    mode: str = ModeOption,
    meter: str = MeterOption,
    profile: str = ProfileOption,
    sample_rate_hz: float | None = RateOption,
    threads: int = ThreadsOption,
    min_duration_s: float = DurationOption,
    min_layer_duration_s: float = LayerDurationOption,
    fmt: OutputFormat = FormatOpt,
    as_json: bool = JsonOption,
    xnnpack: bool = XnnpackOption,
    delegate: Path | None = DelegateOption,
    pairs: bool = PairsOption,
    input_shape: list[str] | None = InputShapeOption,
    optimizer: str | None = OptimizerOption,
    loss: str | None = LossOption,
    prefixes: bool = PrefixesOption,
    rounds: int = RoundsOption,
) -> None:
    """Measure MODEL on this machine and print latency and energy (per layer or whole).

    Layers mode ends with three rows: total (the layers' sum per inference), whole (the unsplit
    model looped in the same run: its median call, energy per inference) and ratio (layers /
    whole). In JSON they are the list "totals" beside "layers".

    Train mode prints, per layer, the forward, backward and update energy and latency per
    training step; then model-wide work (the loss), the time between ops, the step as measured
    and the additivity (op windows / step). Give a trainable model (one with a train
    signature, joulefarm.tflite.training) or --optimizer to make one of MODEL. With
    --prefixes (an inference model and --optimizer): per layer, the per-op events' energy, the
    subtraction method's E(k) - E(k-1) over the model's prefixes, their difference, and the
    simulator's truth when simulated; then a summary line."""
    from agent.local import measure, open_meter, runtime_info  # the agent, in-process
    from joulefarm.results import MeasureSettings, shape_text
    from joulefarm.tflite.inputs import parse_input_shape

    if mode not in Mode.values():
        raise InputError(f"--mode: unknown mode {mode!r} (known: {', '.join(Mode.values())})")
    if pairs and mode != Mode.LAYERS:
        raise InputError(f"--pairs needs --mode layers (got --mode {mode})")
    if optimizer is not None and mode != Mode.TRAIN:
        raise InputError(f"--optimizer needs --mode train (got --mode {mode})")
    if prefixes and mode != Mode.TRAIN:
        raise InputError(f"--prefixes needs --mode train (got --mode {mode})")
    _check_bounds(threads, min_duration_s, min_layer_duration_s, sample_rate_hz)
    input_shapes = tuple(parse_input_shape(text) for text in input_shape or ())
    content = read_model_file(model)
    try:
        power_meter = open_meter(meter, profile=profile, sample_rate_hz=sample_rate_hz)
    except (MeterError, ValueError) as e:
        raise MeterError(f"--meter {meter}: {e}") from e
    settings = MeasureSettings(mode=mode, num_threads=threads, min_duration_s=min_duration_s,
                               min_layer_duration_s=min_layer_duration_s, use_xnnpack=xnnpack,
                               delegate_path=str(delegate) if delegate else "", pairs=pairs,
                               input_shapes=input_shapes)
    fmt = OutputFormat.json if as_json else fmt
    if mode == Mode.TRAIN and prefixes:
        _bench_prefixes(model, content, (meter, profile, sample_rate_hz), settings, fmt,
                        optimizer, loss, rounds)
        return
    if mode == Mode.TRAIN:
        _bench_train(model, content, power_meter, settings, fmt, optimizer, loss or "mse")
        return
    sha = hashlib.sha256(content).hexdigest()
    try:
        with console.status(f"measuring {model.name} ({mode})"):
            result = measure(content, sha, power_meter, settings, runtime_info())
    except ModelError as e:
        raise ModelError(f"{model}: {e}") from e
    except InputError as e:  # an input the shape rule refuses (joulefarm.tflite.inputs)
        raise InputError(f"{model}: {e}") from e
    source = "simulated" if result.meter.simulated else "measured"
    meter_text = (f"meter {result.meter.kind}"
                  f"{':' + result.meter.profile if result.meter.profile else ''} "
                  f"({source.upper()})")
    columns, rows = _whole_rows(result) if mode == "whole" else _layer_rows(result)
    totals = _total_rows(result, columns) if mode == Mode.LAYERS else []
    inputs_text = "".join(f", input {key}={shape_text([shape])}" for key, shape in input_shapes)
    title = (f"{model.name}: {mode}{inputs_text}, {meter_text}, {result.runtime_name} "
             f"{result.runtime_version}, idle {result.idle_power_w:.3f} W")
    pair_sections = []
    if pairs:
        pair_sections.append(("pairs", *_pair_rows(result),
                              f"{model.name}: layer pairs, {meter_text}; fused: lat(a) + lat(b) "
                              "- lat(ab) > 0.5 min(lat(a), lat(b))"))
    # Every row says where its energy comes from, in every format.
    for section_columns, section_rows in [(columns, [*rows, *totals]),
                                          *((c, r) for _, c, r, _ in pair_sections)]:
        section_columns.append("energy_source")
        for row in section_rows:
            row.append(source)
    if not totals:  # whole and insitu modes: one result set, as always (JSON: a list)
        print_rows(columns, rows, fmt, title=title)
    elif fmt is OutputFormat.json:
        # {"layers": [...], "totals": [{"index": "total", ...}, {"index": "whole", ...},
        # {"index": "ratio", ...}], "pairs": [...]}: no total is ever read as a layer.
        print_sections([("layers", columns, rows, title), ("totals", columns, totals, None),
                        *pair_sections], fmt)
    else:  # table and CSV: the totals are the last rows, labelled in the index column
        print_sections([("layers", columns, [*rows, *totals], title), *pair_sections], fmt)
    if result.flags:
        # CSV and JSON keep stdout to the data, which a program reads whole.
        out = console if fmt is OutputFormat.table else err_console
        out.print(f"run flags: {', '.join(result.flags)}")


def _bench_train(model: Path, content: bytes, power_meter: Meter, settings: MeasureSettings,
                 fmt: OutputFormat, optimizer: str | None, loss: str) -> None:
    """``--mode train``: per layer rows, then the totals (``controller.cli.bench_train``)."""
    from agent.local import measure_train, runtime_info
    from controller.cli.bench_train import COLUMNS, train_rows, trainable

    try:
        content, made = trainable(content, optimizer, loss)
        sha = hashlib.sha256(content).hexdigest()
        with console.status(f"measuring {model.name} (train)"):
            done = measure_train(content, sha, power_meter, settings, runtime_info())
    except ModelError as e:
        raise ModelError(f"{model}: {e}") from e
    except InputError as e:
        raise InputError(f"{model}: {e}") from e
    result = done.result
    source = "simulated" if result.meter.simulated else "measured"
    meter_text = (f"meter {result.meter.kind}"
                  f"{':' + result.meter.profile if result.meter.profile else ''} "
                  f"({source.upper()})")
    rows, totals = train_rows(done)
    columns = [*COLUMNS, "energy_source"]
    for row in (*rows, *totals):
        row.append(source)
    title = (f"{model.name}: train ({made}), per training step, {meter_text}, "
             f"{result.runtime_name} {result.runtime_version}, idle {result.idle_power_w:.3f} W")
    if fmt is OutputFormat.json:
        print_sections([("layers", columns, rows, title), ("totals", columns, totals, None)],
                       fmt)
    else:
        print_sections([("layers", columns, [*rows, *totals], title)], fmt)
    if result.flags:
        out = console if fmt is OutputFormat.table else err_console
        out.print(f"run flags: {', '.join(result.flags)}")


def _bench_prefixes(model: Path, content: bytes, meter: tuple[str, str, float | None],
                    settings: MeasureSettings, fmt: OutputFormat, optimizer: str | None,
                    loss: str | None, rounds: int) -> None:
    """``--mode train --prefixes``: THOR's subtraction beside the per-op events, per layer
    (``controller.cli.bench_train.prefix_rows``). Each prefix run gets its own meter."""
    from agent.local import measure_prefixes, open_meter, runtime_info
    from controller.cli.bench_train import check_prefix_model, prefix_rows
    from joulefarm.results import Progress

    kind, profile, rate = meter
    check_prefix_model(content, optimizer, loss or "mse", loss is not None)
    assert optimizer is not None
    try:
        with console.status(f"measuring {model.name} (train, prefixes)") as status:
            def progress(p: Progress) -> None:
                if p.stage == "prefix":
                    status.update(f"measuring {model.name} (train): {p.message} "
                                  f"({p.done}/{p.total} runs done)")

            split = measure_prefixes(
                content, lambda k: open_meter(kind, profile=profile, sample_rate_hz=rate),
                settings, runtime_info(), optimizer=optimizer, progress=progress,
                rounds=rounds)
    except ModelError as e:
        raise ModelError(f"{model}: {e}") from e
    except (InputError, ValueError) as e:  # a layer without a gradient rule, say
        raise InputError(f"{model}: {e}") from e
    result = split.full.result
    source = "simulated" if result.meter.simulated else "measured"
    meter_text = (f"meter {result.meter.kind}"
                  f"{':' + result.meter.profile if result.meter.profile else ''} "
                  f"({source.upper()})")
    columns, rows, summary = prefix_rows(split)
    columns.append("energy_source")
    for row in rows:
        row.append(source)
    title = (f"{model.name}: train by prefixes ({optimizer}, mse), per training step, "
             f"{meter_text}, {result.runtime_name} {result.runtime_version}")
    print_rows(columns, rows, fmt, title=title)
    out = console if fmt is OutputFormat.table else err_console
    out.print(summary)


def register(app: typer.Typer) -> None:
    app.command(name="bench")(bench)
