"""Few-shot latency on devices never trained on, checked against HELP's published measurements.

HELP (Lee et al., NeurIPS 2021; github.com/HayeonLee/HELP, MIT) publishes the measured latency
of every NAS-Bench-201 architecture on many devices (HW-NAS-Bench's Raspberry Pi 4, Pixel 3,
FPGA and Eyeriss; phones, CPUs and GPUs). Its setting: meta-train on nine devices, then predict
each of six unseen devices from 10 fixed reference architectures plus 10 sampled ones, and
score Spearman's rho over 800 test architectures. This script reproduces that setting with
joulefarm's pieces; only the latencies come from HELP:

- every architecture is built by the model toolkit (``joulefarm.tflite.nasbench201``) and read
  back layer by layer (``read_layers``): its features are the counts of each layer
  configuration (op, input and output shapes, MACs), nothing taken from HELP;
- ``additive`` (joulefarm's per-layer view, ``controller.estimators.fewshot``): on each
  training device, whole latency = a fixed cost + one non-negative cost per layer
  configuration times its count; a new device's costs are the non-negative mix of the
  training devices' that fits its 20 measured architectures, each then moved as far as those
  measurements demand;
- ``cross_hw`` (the cross-hardware model's design at the model level): trees on the layer
  counts plus the device's embedding (ln latency on the reference architectures, less its
  mean, the scale), target ln latency less the scale; then ln-linear recalibration on the
  device's 20 measured architectures;
- ``flops``: latency proportional to MACs, the ratio a median over the 20.

Protocol as HELP's loader: architectures 0..899 are the training pool, 900..1899 the test
pool, each trimmed per device to its 10-90% latency percentiles; the 10 samples are drawn from
the trimmed training pool (numpy, ``--draws`` seeds averaged: HELP's torch draw cannot be
reproduced). Architectures whose cell output does not depend on its input are left out (a
converter prunes their network; counted in the output).

    git clone https://github.com/HayeonLee/HELP && python benchmarks/help_nb201.py --help-repo HELP
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.ensemble import ExtraTreesRegressor

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from controller.estimators.fewshot import (  # noqa: E402
    adapt_profile,
    fit_profile,
    predict_profile,
)
from joulefarm.tflite import nasbench201  # noqa: E402
from joulefarm.tflite.nasbench201 import connected, nb201_model  # noqa: E402
from joulefarm.tflite.parse import read_layers  # noqa: E402

META_TRAIN = ("1080ti_1", "1080ti_32", "1080ti_256", "silver_4114", "silver_4210r",
              "samsung_a50", "pixel3", "essential_ph_1", "samsung_s7")
META_TEST = ("titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss")
HELP_RHO = {"titan_rtx_256": 0.987, "gold_6226": 0.989, "fpga": 0.985, "pixel2": 0.802,
            "raspi4": 0.890, "eyeriss": 0.940}
"""HELP's Spearman rho with 10 samples (its README, Table 3)."""
HELP_FLOPS_RHO = {"titan_rtx_256": 0.950, "gold_6226": 0.826, "fpga": 0.900, "pixel2": 0.765,
                  "raspi4": 0.846, "eyeriss": 0.437}
TRAIN_POOL = range(0, 900)
TEST_POOL = range(900, 1900)


def load_pt(path: Path) -> Any:
    """A torch >= 1.6 .pt archive whose pickle holds only Python lists, dicts and floats:
    read with the standard library (checked: no global or persistent-id opcode)."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        return pickle.loads(archive.read(name))  # noqa: S301 - HELP's own data files


def trimmed(pool: Sequence[int], latency: np.ndarray) -> np.ndarray:
    """HELP's remove_outlier: the pool's architectures within the 10-90% latency range."""
    index = np.asarray(pool)
    values = latency[index]
    low, high = np.percentile(values, 10), np.percentile(values, 90)
    return index[(values >= low) & (values <= high)]


def layer_counts(archs: dict[int, str], cache: Path) -> tuple[dict[int, np.ndarray],
                                                             list[str], np.ndarray]:
    """Per architecture, the count of each layer configuration (built and parsed here; cached
    in ``cache`` by the architectures' hash), the configurations' names and their MACs."""
    # Keyed by the architectures and the network's definition (the builder module's source).
    source = Path(nasbench201.__file__).read_bytes()
    digest = hashlib.sha256(json.dumps(sorted(archs.items())).encode() + source
                            ).hexdigest()[:16]
    path = cache / f"nb201-layers-{digest}.json"
    if path.exists():
        data = json.loads(path.read_text())
    else:
        data = {"keys": {}, "counts": {}}
        started = time.monotonic()
        for n, (idx, arch) in enumerate(sorted(archs.items())):
            counts: dict[str, int] = {}
            for layer in read_layers(nb201_model(arch)):
                key = (f"{layer.op} {'x'.join(map(str, layer.input_shapes[0]))}->"
                       f"{'x'.join(map(str, layer.output_shapes[0]))} "
                       f"{layer.macs or 0} MAC")  # MACs tell a 1x1 from a 3x3 kernel
                data["keys"][key] = int(layer.macs or 0)
                counts[key] = counts.get(key, 0) + 1
            data["counts"][str(idx)] = counts
            if n % 200 == 0:
                print(f"  built {n}/{len(archs)} networks ({time.monotonic() - started:.0f} s)",
                      file=sys.stderr)
        path.write_text(json.dumps(data))
    keys = sorted(data["keys"])
    macs = np.asarray([data["keys"][k] for k in keys], dtype=np.float64)
    out = {int(i): np.asarray([c.get(k, 0) for k in keys], dtype=np.float64)
           for i, c in data["counts"].items()}
    return out, keys, macs


def scores(measured: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    ratio = predicted / measured
    return {"rho": float(spearmanr(measured, predicted).statistic),
            "within10": float(np.mean(np.abs(ratio - 1) <= 0.10)),
            "mape": float(np.mean(np.abs(ratio - 1)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--help-repo", type=Path, required=True,
                        help="a checkout of github.com/HayeonLee/HELP")
    parser.add_argument("--samples", type=int, default=10, help="sampled architectures per "
                        "test device, beside the 10 reference ones (HELP: 10)")
    parser.add_argument("--draws", type=int, default=5, help="sample draws averaged")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/joulefarm-help"),
                        help="where the built networks' layer counts are cached")
    args = parser.parse_args(argv)
    data = args.help_repo / "data" / "nasbench201"
    if not (data / "latency").is_dir():
        parser.error(f"{args.help_repo}: no data/nasbench201/latency (a HELP checkout?)")
    args.workdir.mkdir(parents=True, exist_ok=True)
    latency = {d: np.asarray(load_pt(data / "latency" / f"{d}.pt"), dtype=np.float64)
               for d in (*META_TRAIN, *META_TEST)}
    arch_of = {int(i): s for s, i in load_pt(data / "str_arch2idx.pt").items()}
    references = [int(i) for i in load_pt(data / "hardware_embedding_index.pt")]
    needed = sorted(set(TRAIN_POOL) | set(TEST_POOL) | set(references))
    alive = {i for i in needed if connected(arch_of[i])}
    print(f"{len(needed)} architectures, {len(needed) - len(alive)} left out (cell output "
          f"independent of its input)", file=sys.stderr)
    counts, keys, macs = layer_counts({i: arch_of[i] for i in sorted(alive)}, args.workdir)
    print(f"{len(keys)} layer configurations over {len(counts)} networks", file=sys.stderr)

    def matrix(index: Sequence[int]) -> np.ndarray:
        return np.vstack([counts[i] for i in index])

    refs = [r for r in references if r in alive]
    profiles, tree_x, tree_y = [], [], []
    for device in META_TRAIN:
        lat = latency[device]
        pool = [i for i in trimmed(TRAIN_POOL, lat) if i in alive]
        profiles.append(fit_profile(matrix(pool), lat[pool]))
        emb = np.log(lat[refs])
        scale = emb.mean()
        x = matrix(pool)
        tree_x.append(np.hstack([np.log1p(x), np.log(x @ macs)[:, None],
                                 np.tile(emb - scale, (len(pool), 1))]))
        tree_y.append(np.log(lat[pool]) - scale)
    profile_matrix = np.vstack(profiles)
    trees = ExtraTreesRegressor(n_estimators=200, min_samples_leaf=2, random_state=0,
                                n_jobs=1).fit(np.vstack(tree_x), np.concatenate(tree_y))

    rows = []
    for device in META_TEST:
        lat = latency[device]
        train_pool = [i for i in trimmed(TRAIN_POOL, lat) if i in alive]
        test = [i for i in trimmed(TEST_POOL, lat) if i in alive]
        x_test = matrix(test)
        emb = np.log(lat[refs])
        scale = emb.mean()
        tree_test = trees.predict(np.hstack([np.log1p(x_test), np.log(x_test @ macs)[:, None],
                                             np.tile(emb - scale, (len(test), 1))])) + scale
        found: dict[str, list[dict[str, float]]] = {"additive": [], "cross_hw": [],
                                                    "flops": []}
        for draw in range(args.draws):
            rng = np.random.default_rng(draw)
            sample = rng.choice(train_pool, args.samples, replace=False).tolist()
            known = refs + [i for i in sample if i not in refs]
            x_known, y_known = matrix(known), lat[known]
            profile = adapt_profile(profile_matrix, x_known, y_known)
            found["additive"].append(scores(lat[test], predict_profile(profile, x_test)))
            tree_known = trees.predict(np.hstack([
                np.log1p(x_known), np.log(x_known @ macs)[:, None],
                np.tile(emb - scale, (len(known), 1))])) + scale
            slope, intercept = np.polyfit(tree_known, np.log(y_known), 1)
            found["cross_hw"].append(scores(lat[test], np.exp(intercept + slope * tree_test)))
            ratio = float(np.median(y_known / (x_known @ macs)))
            found["flops"].append(scores(lat[test], ratio * (x_test @ macs)))
        for name, values in found.items():
            rows.append((device, name, len(test),
                         *(float(np.mean([v[k] for v in values]))
                           for k in ("rho", "within10", "mape"))))

    print(f"\nHELP's setting: {len(META_TRAIN)} training devices; each test device known by "
          f"its {len(refs)} reference architectures + {args.samples} sampled "
          f"({args.draws} draws averaged); scored on its trimmed test pool")
    print(f"{'device':<14} {'estimator':<9} {'n':>4} {'rho':>6} {'HELP rho':>8} "
          f"{'FLOPS rho':>9} {'within10':>8} {'MAPE':>6}")
    for device, name, n, rho, within, mape in rows:
        print(f"{device:<14} {name:<9} {n:>4} {rho:>6.3f} {HELP_RHO[device]:>8.3f} "
              f"{HELP_FLOPS_RHO[device]:>9.3f} {100 * within:>7.1f}% {100 * mape:>5.1f}%")
    print()
    for name in ("additive", "cross_hw", "flops"):
        mine = [r for r in rows if r[1] == name]
        rho, within = np.mean([r[3] for r in mine]), 100 * np.mean([r[4] for r in mine])
        print(f"mean over {len(mine)} devices, {name:<9}: rho {rho:.3f} (HELP 0.932, "
              f"FLOPS 0.787), within +/-10% {within:.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
