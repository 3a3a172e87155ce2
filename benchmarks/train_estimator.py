"""Training-step energy estimators against the FLOPs baseline (THOR's comparison), measured here.

    python benchmarks/train_estimator.py [--models 60] [--min-duration-s 0.1] [--keep DIR]

Generates seeded random CNNs and MLPs (``joulefarm.tflite.builder`` specs: plain convolution
stacks of varied channels, kernels and strides; depthwise-separable ones; ones with max or
average pooling; fully connected stacks of varied widths; each ending in a 10-class head),
makes them trainable (Adam, softmax cross-entropy, ``joulefarm.tflite.training``), measures
one training step of each per layer and phase on this machine with the simulated meters of two
device profiles (rpi4, jetson-orin-nano), stores the runs through ``ResultStore.store_run``
(``controller.estimators.collect.measure_train_into_store``), and fits with the real
``joulefarm fit --workload train`` code (``fit_and_export``): per (op, part) GP and trees,
validated on folds grouped by model and with each model family left out, against the FLOPs
baseline (step = k x 3 x forward MACs, k per device on the training folds). Then it measures a
few models never in the database and predicts them from the exported ONNX estimator, with
their 90% interval.

The energies are SIMULATED (the profiles' power model over this machine's op timings): the
figures say how well the estimators learn that, not a real board.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.estimators.collect import (  # noqa: E402
    QUICK_TRAIN,
    TrainToMeasure,
    measure_train_into_store,
)
from controller.estimators.export import fit_and_export  # noqa: E402
from controller.estimators.metrics import scores  # noqa: E402
from controller.estimators.predict import Estimator  # noqa: E402
from joulefarm.tflite.builder import (  # noqa: E402
    AveragePool2D,
    Conv2D,
    DepthwiseConv2D,
    Flatten,
    FullyConnected,
    LayerSpec,
    MaxPool2D,
    Mean,
    Softmax,
    build_model,
)

DEVICES = (("rpi4-sim", "rpi4"), ("orin-nano-sim", "jetson-orin-nano"))
CLASSES = 10
FAMILIES = ("cnn", "dwsep", "pooled", "mlp")


def _cnn(rng: np.random.Generator) -> list[LayerSpec]:
    layers: list[LayerSpec] = []
    for _ in range(int(rng.integers(2, 5))):
        k = int(rng.choice([1, 3, 5]))
        s = int(rng.choice([1, 1, 2]))
        layers.append(Conv2D(int(rng.choice([4, 8, 12, 16, 24, 32])), (k, k), stride=(s, s)))
    return layers + [Flatten(), FullyConnected(CLASSES), Softmax()]


def _dwsep(rng: np.random.Generator) -> list[LayerSpec]:
    layers: list[LayerSpec] = [Conv2D(int(rng.choice([8, 16])), (3, 3), stride=(2, 2))]
    for _ in range(int(rng.integers(1, 4))):
        s = int(rng.choice([1, 2]))
        layers += [DepthwiseConv2D((3, 3), stride=(s, s)),
                   Conv2D(int(rng.choice([8, 16, 24, 32])), (1, 1))]
    return layers + [Mean(), FullyConnected(CLASSES), Softmax()]


def _pooled(rng: np.random.Generator) -> list[LayerSpec]:
    layers: list[LayerSpec] = []
    for _ in range(int(rng.integers(1, 3))):
        layers.append(Conv2D(int(rng.choice([8, 16, 24])), (3, 3)))
        layers.append(MaxPool2D() if rng.random() < 0.5 else AveragePool2D())
    layers.append(Flatten())
    if rng.random() < 0.6:
        layers.append(FullyConnected(int(rng.choice([16, 32, 64])), activation="RELU"))
    return layers + [FullyConnected(CLASSES), Softmax()]


def _mlp(rng: np.random.Generator) -> list[LayerSpec]:
    layers: list[LayerSpec] = [
        FullyConnected(int(rng.choice([32, 64, 128, 256])), activation="RELU")
        for _ in range(int(rng.integers(1, 4)))]
    return layers + [FullyConnected(CLASSES), Softmax()]


def generate(count: int, seed: int) -> list[TrainToMeasure]:
    """``count`` models, the families in turn, each at a seeded random size and batch."""
    rng = np.random.default_rng(seed)
    makers = {"cnn": _cnn, "dwsep": _dwsep, "pooled": _pooled, "mlp": _mlp}
    models = []
    for i in range(count):
        family = FAMILIES[i % len(FAMILIES)]
        batch = int(rng.choice([2, 4, 8]))
        if family == "mlp":
            shape: tuple[int, ...] = (batch, int(rng.choice([32, 64, 128])))
        else:
            side = int(rng.choice([12, 16, 24]))
            shape = (batch, side, side, 3)
        layers = makers[family](rng)
        content = build_model(shape, layers, seed=seed * 1000 + i, name=f"{family}-{i}")
        models.append(TrainToMeasure(f"{family}:{seed}-{i:03d}", content))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=60, help="models in the database")
    parser.add_argument("--unseen", type=int, default=8,
                        help="models measured afterwards and predicted from the estimator")
    parser.add_argument("--min-duration-s", type=float, default=0.1,
                        help="each model's timed loop of training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the database and the estimator here (default: a "
                             "temporary directory)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    settings = replace(QUICK_TRAIN, min_duration_s=args.min_duration_s)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "train.duckdb"
        db.unlink(missing_ok=True)
        start = time.monotonic()
        models = generate(args.models, args.seed)
        for device, profile in DEVICES:
            measure_train_into_store(db, device, profile, models, settings=settings,
                                     seed=args.seed)
        measured_s = time.monotonic() - start
        print(f"measured {len(models)} models x {len(DEVICES)} devices in train mode "
              f"(SIMULATED meters, Adam, softmax cross-entropy) in {measured_s:.0f} s")

        start = time.monotonic()
        result = fit_and_export(db, "energy", work / "estimator", workload="train",
                                schemes=("grouped", "family"), seed=args.seed)
        print(f"fitted and validated in {time.monotonic() - start:.0f} s\n")
        print(f"{'split':<18}{'level':<7}{'estimator':<13}{'n':>5}{'MAPE %':>9}"
              f"{'within 10%':>12}{'spearman':>10}")
        for r in result.metrics:
            print(f"{r.split:<18}{r.level:<7}{r.estimator:<13}{r.scores.n:>5}"
                  f"{r.scores.mape_pct:>9.1f}{r.scores.within_10_pct:>11.1f}%"
                  f"{r.scores.spearman:>10.3f}")

        est = Estimator(result.directory)
        train = est.manifest["train"]
        print("\nmeasured energy per part against forward (the 3 x forward proxy: "
              "(backward + update) / forward = 2)")
        for r in train["part_ratios"]:
            print(f"  {r['op']:<20} {r['layers']:>4} layers  backward/forward "
                  f"{r['backward_over_forward'] or 0:>5.2f}  (backward+update)/forward "
                  f"{r['backward_update_over_forward'] or 0:>5.2f}")
        gap = train["step_over_forward"]
        print(f"  measured step / its forward parts: median {gap['median']:.2f} "
              f"(p90/p10 {gap['p90_over_p10']:.2f}, {gap['n_steps']} steps; the proxy: 3)")

        # Models never in the database: measured, then predicted from the ONNX estimator.
        unseen = generate(args.unseen, args.seed + 1)
        held = work / "unseen.duckdb"
        held.unlink(missing_ok=True)
        covered, total = 0, 0
        errors: dict[str, list[tuple[float, float]]] = {"gp": [], "trees": [], "flops": []}
        for device, profile in DEVICES:
            measure_train_into_store(held, device, profile, unseen, settings=settings,
                                     seed=args.seed + 1000)
        con = duckdb.connect(str(held), read_only=True)
        steps = {(d, n): e for d, n, e in con.execute(
            "SELECT r.device_name, r.model_name, w.energy_j FROM whole_measurements w "
            "JOIN runs r USING (run_id) WHERE r.mode = 'train'").fetchall()}
        con.close()
        for device, _ in DEVICES:
            for model in unseen:
                truth = steps.get((device, model.name))
                if truth is None:
                    continue
                prediction = est.predict(model.content, device)
                for name in errors:
                    errors[name].append((truth, prediction.totals[name][0]))
                bounds = (prediction.intervals or {}).get(prediction.preferred)
                if bounds is not None:
                    total += 1
                    covered += bounds[0] <= truth <= bounds[1]
        print(f"\n{args.unseen} models never in the database, on {len(DEVICES)} devices: "
              f"the preferred estimator's ({est.manifest['preferred']}) 90% interval holds "
              f"the measured step {covered} of {total} times")
        for name, pairs in errors.items():
            s = scores(np.asarray([m for m, _ in pairs]), np.asarray([p for _, p in pairs]))
            print(f"  {name:<6} MAPE {s.mape_pct:5.1f}%  within 10% {s.within_10_pct:5.1f}%")

        print("\nwhole training step of held-out models (5 folds grouped by model, "
              f"{len(models)} models x {len(DEVICES)} devices; SIMULATED energy):")
        for name, label in (("gp", "per-layer GP"), ("trees", "per-layer trees"),
                            ("flops", "FLOPs baseline (k x 3 x forward MACs)")):
            row = next(r for r in result.metrics if r.split.startswith("grouped")
                       and r.level == "model" and r.estimator == name)
            print(f"  {label:<40} MAPE {row.scores.mape_pct:5.1f}%   within +-10% "
                  f"{row.scores.within_10_pct:5.1f}%")


if __name__ == "__main__":
    main()
