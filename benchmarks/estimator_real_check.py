"""Real check of the latency estimator on this machine's CPU.

1. Train only on generated models: single-layer sweep configurations (``broad`` profile) and a
   few generated multi-layer chains (for the non-additivity correction), each measured here
   with the agent's pipeline (``measure``; ``whole`` mode gives the median latency of a
   single-layer model, a quick ``layers`` run stores its features).
2. Validate on the sweep (grouped 5-fold by model) and on held-out sweep configurations drawn
   with another seed (per-layer accuracy).
3. Predict the whole-model latency of real published models never used in training, taken from
   PyPI wheels (no model hubs): basic-pitch 0.4.0's ``nmp.tflite`` and the float32 models that
   the toolkit can run from mediapipe 0.10.14's wheel; each measured with ``measure(...,
   mode="whole")`` three times (median reported, spread shown). Report the share within +/-10 %
   per model and overall (nn-Meter: 99.0 % of 26k models on a Pixel 4 CPU).
4. Per-layer accuracy on the real models (each measured layer by layer once), and how far their
   whole latency departs from the sum of their isolated layers.

Latency is real (this host's CPU, ai-edge-litert builtin kernels, 1 thread); the simulated
meter is only there because ``measure`` needs one; no energy is reported.

    python benchmarks/estimator_real_check.py                # ~15-20 min on 2 busy cores
    python benchmarks/estimator_real_check.py --quick        # smaller sweep, ~6 min
    python benchmarks/estimator_real_check.py --reuse        # refit/predict, no re-measuring
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from agent.measure import measure
from agent.meters import open_meter
from agent.runtimes.backend import runtime_info
from controller.estimators.collect import ModelToMeasure, measure_into_store
from controller.estimators.dataset import load_dataset
from controller.estimators.export import fit_and_export
from controller.estimators.features import from_layer_info
from controller.estimators.metrics import scores
from controller.estimators.predict import Estimator
from joulefarm.results import MeasureSettings
from joulefarm.tflite import read_layers
from joulefarm.tflite.published import BASIC_PITCH_NMP, download_wheel, fetch
from joulefarm.tflite.sweep import WEIGHTED_KINDS, sample_chains, sample_configs

DEVICE = "this-host"
PROFILE = "host"
MEDIAPIPE_WHEEL = "mediapipe==0.10.14"
MEDIAPIPE_MODELS = (
    # float32, builtin ops only (the others in the wheel use custom ops)
    "face_detection_short_range", "face_detection_full_range_sparse", "face_landmark",
    "hand_landmark_lite", "hand_landmark_full", "hand_recrop", "iris_landmark",
    "palm_detection_lite", "palm_detection_full", "pose_detection", "pose_landmark_full",
)
ESTIMATORS = ("gp", "trees", "flops")

SWEEP_LAYERS = MeasureSettings(mode="layers", min_layer_duration_s=0.03, min_iterations=3,
                               idle_duration_s=0.05, warmup_iterations=2)
SWEEP_WHOLE = MeasureSettings(mode="whole", min_duration_s=0.15, min_iterations=7,
                              idle_duration_s=0.05, warmup_iterations=3)
REAL_WHOLE = MeasureSettings(mode="whole", min_duration_s=1.0, min_iterations=10,
                             idle_duration_s=0.1, warmup_iterations=5)
REAL_LAYERS = MeasureSettings(mode="layers", min_layer_duration_s=0.02, min_iterations=5,
                              idle_duration_s=0.1, warmup_iterations=3)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def real_models(cache: Path) -> list[tuple[str, bytes]]:
    """nmp.tflite (basic-pitch 0.4.0, same wheel and checksum as the toolkit's test) and the
    runnable float32 mediapipe 0.10.14 models, from PyPI wheels."""
    models = [(BASIC_PITCH_NMP.name, fetch(BASIC_PITCH_NMP, cache))]
    with zipfile.ZipFile(download_wheel(MEDIAPIPE_WHEEL, cache / "wheels")) as archive:
        members = {Path(n).stem: n for n in archive.namelist() if n.endswith(".tflite")}
        for stem in MEDIAPIPE_MODELS:
            models.append((f"mediapipe/{stem}", archive.read(members[stem])))
    return models


def measure_training(db: Path, n_configs: int, n_chains: int, max_macs: int, seed: int) -> None:
    configs = sample_configs(n_configs, seed=seed, kinds=WEIGHTED_KINDS, profile="broad",
                             max_macs=max_macs)
    models = [ModelToMeasure(c.name, c.build(), ("layers", "whole")) for c in configs]
    models += [ModelToMeasure(c.name, c.build(), ("layers", "whole"))
               for c in sample_chains(n_chains, seed=seed, max_macs=max_macs)]
    log(f"measuring {len(models)} generated models into {db}")
    start = time.time()

    def progress(message: str) -> None:
        done = int(message.split(" ")[2].split("/")[0])  # "DEVICE: MODE i/n NAME"
        if " whole " in message and done % 25 == 0:
            log(message[:100])

    measure_into_store(db, DEVICE, PROFILE, models, layers_settings=SWEEP_LAYERS,
                       whole_settings=SWEEP_WHOLE, progress=progress)
    log(f"measured in {time.time() - start:.0f} s")


def _table(title: str, columns: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if not math.isfinite(v) else f"{v:.4g}"
        return str(v)

    widths = [max(len(c), *(len(cell(r[i])) for r in rows)) if rows else len(c)
              for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def heldout_layers(estimator: Estimator, db: Path) -> list[list[object]]:
    data = load_dataset(db)
    samples = [s for s in data.layers if s.device == DEVICE
               and len(data.model_layers[s.model_sha]) == 1]
    measured = np.asarray([s.latency_s for s in samples])
    prediction = estimator.predict_layers([s.desc for s in samples], DEVICE)
    rows = []
    for name in ESTIMATORS:
        s = scores(measured, prediction.values[name])
        rows.append(["held-out sweep configs", name, *s.as_row()])
    return rows


def measure_real(models: list[tuple[str, bytes]], repeats: int) -> dict[str, list[float]]:
    runtime = runtime_info()
    results: dict[str, list[float]] = {name: [] for name, _ in models}
    for r in range(repeats):  # interleaved: a burst of contention hits one run of each
        for name, content in models:
            sha = hashlib.sha256(content).hexdigest()
            meter = open_meter("sim", profile=PROFILE, seed=r)
            result = measure(content, sha, meter, REAL_WHOLE, runtime)
            assert result.whole is not None
            results[name].append(result.whole.latency_p50_s)
            log(f"{name}: whole p50 {result.whole.latency_p50_s * 1e3:.2f} ms (run {r + 1})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(os.environ.get(
        "TMPDIR", "/tmp")) / "joulefarm-estimator-real-check")
    parser.add_argument("--configs", type=int, default=600)
    parser.add_argument("--heldout", type=int, default=80)
    parser.add_argument("--chains", type=int, default=24)
    parser.add_argument("--max-macs", type=int, default=400_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="200 configs, 40 held out, 12 chains, 2 repeats")
    parser.add_argument("--reuse", action="store_true",
                        help="keep databases and measurements already in --workdir")
    parser.add_argument("--no-real-layers", action="store_true",
                        help="skip the layer-by-layer measurement of the real models")
    args = parser.parse_args()
    if args.quick:
        args.configs, args.heldout, args.chains, args.repeats = 200, 40, 12, 2
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    train_db, heldout_db = work / "train.duckdb", work / "heldout.duckdb"
    started = time.time()

    if not (args.reuse and train_db.exists()):
        train_db.unlink(missing_ok=True)
        measure_training(train_db, args.configs, args.chains, args.max_macs, args.seed)
    if not (args.reuse and heldout_db.exists()):
        heldout_db.unlink(missing_ok=True)
        measure_training(heldout_db, args.heldout, 0, args.max_macs, args.seed + 1000)

    log("fitting (grouped 5-fold validation, then all data) and exporting to ONNX")
    fitted = fit_and_export(train_db, "latency", work / "estimator", folds=5,
                            schemes=("grouped",), seed=args.seed)
    estimator = Estimator(fitted.directory)
    cv_rows = [["sweep, grouped 5-fold", r.estimator, *r.scores.as_row()]
               for r in fitted.metrics if r.level == "layer"]
    cv_rows += [["generated chains, grouped 5-fold (whole)", r.estimator, *r.scores.as_row()]
                for r in fitted.metrics if r.level == "model"]
    layer_rows = cv_rows + heldout_layers(estimator, heldout_db)

    models = real_models(work / "wheels")
    cache = work / "real_whole.json"
    measured = json.loads(cache.read_text()) if args.reuse and cache.exists() else {}
    missing = [(n, c) for n, c in models if n not in measured]
    if missing:
        measured.update(measure_real(missing, args.repeats))
        cache.write_text(json.dumps(measured, indent=1))

    real_rows, errors = [], {name: [] for name in ESTIMATORS}
    details = {}
    for name, content in models:
        truth = float(np.median(measured[name]))
        prediction = estimator.predict(content, DEVICE)
        row: list[object] = [name, len(prediction.layers),
                             sum(d.macs for d in prediction.layers) / 1e6, truth * 1e3,
                             f"{min(measured[name]) * 1e3:.2f}-{max(measured[name]) * 1e3:.2f}"]
        for est in ESTIMATORS:
            total, _ = prediction.totals[est]
            err = 100 * (total - truth) / truth
            errors[est].append(err)
            row += [total * 1e3, err]
        gp_total, gp_std = prediction.totals["gp"]
        row += ["yes" if abs(errors["gp"][-1]) <= 10 else "no",
                "" if gp_std is None else f"{gp_std * 1e3:.2f}"]
        real_rows.append(row)
        details[name] = {"measured_s": measured[name], "predicted_s": {
            k: v[0] for k, v in prediction.totals.items()}, "gp_std_s": gp_std}

    summary_rows = []
    for est in ESTIMATORS:
        e = np.abs(np.asarray(errors[est]))
        summary_rows.append([est, len(e), float(e.mean()), float(np.sqrt((e ** 2).mean())),
                             float(100 * (e <= 5).mean()), float(100 * (e <= 10).mean())])

    real_layer_rows, additivity_rows = [], []
    if not args.no_real_layers:
        runtime = runtime_info()
        for name, content in models:
            sha = hashlib.sha256(content).hexdigest()
            result = measure(content, sha, open_meter("sim", profile=PROFILE), REAL_LAYERS,
                             runtime)
            lat = np.asarray([x.latency_s for x in result.layers])
            descs = [from_layer_info(i) for i in read_layers(content)]
            pred = estimator.predict_layers(descs, DEVICE)
            s_gp = scores(lat, pred.values["gp"])
            s_tr = scores(lat, pred.values["trees"])
            truth = float(np.median(measured[name]))
            real_layer_rows.append([name, len(lat), s_gp.mape_pct, s_gp.within_10_pct,
                                    s_tr.mape_pct, s_tr.within_10_pct, s_gp.spearman])
            additivity_rows.append([name, lat.sum() * 1e3, truth * 1e3,
                                    100 * (truth / lat.sum() - 1),
                                    float(pred.values["gp"].sum()) * 1e3])
            log(f"{name}: layers measured")

    out = [
        "",
        f"device: {DEVICE} ({runtime_info()[0]} {runtime_info()[1]}, 1 thread, builtin kernels"
        f", {os.cpu_count()} logical CPUs, shared); training: {args.configs} single-layer "
        f"configs (broad profile, weighted kinds, <= {args.max_macs / 1e6:.0f}M MACs) + "
        f"{args.chains} chains, seed {args.seed}",
        "",
        _table("PER-LAYER accuracy (latency)", ["set", "estimator", "n", "MAPE%", "RMSPE%",
                                                "within5%", "within10%", "spearman"],
               layer_rows),
        "",
        _table("WHOLE-MODEL latency of real models never seen in training (median of "
               f"{args.repeats} whole runs; ms)",
               ["model", "layers", "MMACs", "measured", "range",
                "gp", "gp_err%", "trees", "trees_err%", "flops", "flops_err%", "gp<=10%",
                "gp_std"], real_rows),
        "",
        _table("SUMMARY over real models (|error| %)", ["estimator", "models", "MAPE%",
                                                       "RMSPE%", "within5%", "within10%"],
               summary_rows),
    ]
    if real_layer_rows:
        out += ["", _table("PER-LAYER accuracy on the real models (each layer looped alone)",
                           ["model", "layers", "gp MAPE%", "gp within10%", "trees MAPE%",
                            "trees within10%", "gp spearman"], real_layer_rows),
                "", _table("ADDITIVITY of the real models (ms)",
                           ["model", "sum of measured layers", "measured whole",
                            "whole/sum-1 %", "gp sum of predicted layers"], additivity_rows)]
    out += ["", f"correction: {fitted.estimator.correction.to_json()}",
            f"total time {time.time() - started:.0f} s; estimator in {fitted.directory}"]
    text = "\n".join(out)
    print(text)
    (work / "report.txt").write_text(text + "\n")
    (work / "results.json").write_text(json.dumps(details, indent=1))


if __name__ == "__main__":
    main()
