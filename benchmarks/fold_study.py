"""How many inferences equivalent-time folding needs: per-layer error vs repetitions.

    python benchmarks/fold_study.py [--trials 100] [--reps 10,30,100,...] [--jitter-us 0]

Simulates an on-board sensor sampling at 1 kHz that integrates power over each sample period
(the value is the mean power over its interval), with Gaussian noise of 1% of the mean power and
40 mW quantisation (an INA3221 on a Jetson: 40 uV shunt LSB over 5 mOhm at 5 V). Each trial draws
a model of 10-30 layers lasting 20-600 us (log-uniform) with distinct powers of 3-9 W, runs it
N times with 0-20 us between layers and 0.5-3 ms of idle (2.5 W) between inferences, so the
inferences fall at random phases of the sample clock, and recovers every layer's energy per call
with ``joulefarm.fold_layers``. ``--jitter-us`` adds Gaussian error to the layer markers the
solver sees (the true windows are unchanged) to show how timing error limits the method.

Prints, for each N: the median and 90th percentile over all layers of all trials of the relative
error of energy per call, the share of layers whose true energy lies inside the 95% interval,
and the median error by layer duration; then the N at which the median and the 90th percentile
reach 5% (interpolated on log-log axes between the grid points).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import joulefarm

FS = 1000.0
IDLE_W = 2.5
NOISE_FRACTION = 0.01
LSB_W = 0.040
TARGET = 0.05
DURATION_BINS_US = (20, 60, 200, 600)


def simulate(rng: np.random.Generator, durations: np.ndarray, powers: np.ndarray, reps: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One run of ``reps`` inferences: (trace W, starts s, ends s, layer ids)."""
    k = len(durations)
    layer = durations * rng.uniform(0.95, 1.05, (reps, k))
    after = rng.uniform(0.0, 20e-6, (reps, k))
    after[:, -1] += rng.uniform(0.5e-3, 3e-3, reps)  # idle between inferences
    segments = np.empty((reps, 2 * k))
    segments[:, 0::2], segments[:, 1::2] = layer, after
    edges = rng.uniform(0.0, 1e-3) + np.concatenate([[0.0], np.cumsum(segments.ravel())])
    starts, ends = edges[0:-1:2], edges[1::2]
    levels = np.empty(2 * k * reps)
    levels[0::2] = np.tile(powers, reps)
    levels[1::2] = IDLE_W
    # Exact integrating sampler: differences of the cumulative energy at sample boundaries.
    bounds = np.concatenate([[0.0], edges])  # idle before the first layer
    levels = np.concatenate([[IDLE_W], levels])
    cum = np.concatenate([[0.0], np.cumsum(levels * np.diff(bounds))])
    n = math.floor(bounds[-1] * FS)
    trace = np.diff(np.interp(np.arange(n + 1) / FS, bounds, cum)) * FS
    trace += rng.normal(0.0, NOISE_FRACTION * trace.mean(), n)
    trace = np.round(trace / LSB_W) * LSB_W
    return trace, starts, ends, np.tile(np.arange(k), reps)


def trial(seed: int, model: int, reps: int, jitter_s: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relative errors, CI hits and durations (s) of every layer of random model ``model``.

    The model depends on (seed, model) only, so every N sees the same models and the rows of
    the table differ by the number of repetitions, not by luck of the draw.
    """
    rng = np.random.default_rng([seed, model])
    k = int(rng.integers(10, 31))
    durations = np.exp(rng.uniform(math.log(20e-6), math.log(600e-6), k))
    powers = rng.uniform(3.0, 9.0, k)
    rng = np.random.default_rng([seed, model, reps])
    trace, starts, ends, ids = simulate(rng, durations, powers, reps)
    if jitter_s > 0:  # timestamp error of the layer markers
        starts = starts + rng.normal(0.0, jitter_s, len(starts))
        ends = np.maximum(starts, ends + rng.normal(0.0, jitter_s, len(ends)))
    r = joulefarm.fold_layers(trace, FS, starts, ends, ids)
    true = powers * r["mean_duration_s"]
    err = np.abs(r["energy_j"] - true) / true
    hit = (r["energy_ci_low_j"] <= true) & (true <= r["energy_ci_high_j"])
    err[~np.isfinite(err)] = np.inf  # an unidentified layer counts as a miss
    return err, hit, durations


def reps_for(target: float, grid: list[int], errors: list[float]) -> str:
    """N where the error curve crosses ``target`` (log-log interpolation), as text."""
    for (n0, e0), (n1, e1) in zip(zip(grid, errors, strict=True),
                                  zip(grid[1:], errors[1:], strict=True), strict=False):
        if e0 > target >= e1 and np.isfinite(e0):
            f = (math.log(e0) - math.log(target)) / (math.log(e0) - math.log(e1))
            return f"~{math.exp(math.log(n0) + f * (math.log(n1) - math.log(n0))):.0f}"
    if errors and errors[0] <= target:
        return f"<= {grid[0]}"
    return f"> {grid[-1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="random models (same for every N)")
    parser.add_argument("--reps", default="10,30,100,300,1000,3000,10000",
                        help="comma-separated repetition counts N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jitter-us", type=float, default=0.0,
                        help="standard deviation of the layer markers' timestamp error")
    ns = parser.parse_args()
    grid = [int(v) for v in ns.reps.split(",")]
    began = time.perf_counter()
    print(f"1 kHz integrating sensor, noise {NOISE_FRACTION:.0%} of mean power, "
          f"{LSB_W * 1e3:.0f} mW LSB; {ns.trials} models of 10-30 layers of 20-600 us; "
          f"marker jitter {ns.jitter_us:g} us; build {joulefarm.build_profile()}")
    bins = list(zip(DURATION_BINS_US, DURATION_BINS_US[1:], strict=False))
    head = "".join(f"{f'{lo}-{hi} us':>12}" for lo, hi in bins)
    print(f"{'':>43}median error by layer duration")
    print(f"{'N':>6} {'layers':>6} {'median':>8} {'p90':>8} {'95% CI cover':>12}{head}")
    medians, p90s = [], []
    for reps in grid:
        results = [trial(ns.seed, m, reps, ns.jitter_us * 1e-6) for m in range(ns.trials)]
        err = np.concatenate([e for e, _, _ in results])
        hit = np.concatenate([h for _, h, _ in results])
        dur_us = np.concatenate([d for _, _, d in results]) * 1e6
        med, p90 = float(np.median(err)), float(np.quantile(err, 0.9))
        medians.append(med)
        p90s.append(p90)
        by_bin = "".join(f"{np.median(err[(dur_us >= lo) & (dur_us < hi)]):>12.1%}"
                         for lo, hi in bins)
        print(f"{reps:>6} {len(err):>6} {med:>8.1%} {p90:>8.1%} {hit.mean():>12.1%}{by_bin}")
    print(f"repetitions for {TARGET:.0%} error: median {reps_for(TARGET, grid, medians)}, "
          f"p90 {reps_for(TARGET, grid, p90s)}")
    print(f"elapsed {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
