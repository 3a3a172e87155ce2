"""Synthetic power signals with known answers, for the Rust core's tests."""

from __future__ import annotations

import math

import numpy as np

from tests.helpers.energy_reference import busy_occupancy

ALIGN_FS = 10_000.0
"""The alignment tests' meter rate."""


def busy_pattern(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Twelve bursts of 20-80 ms with 30-100 ms gaps: not periodic, so one correlation peak."""
    rng = np.random.default_rng(seed)
    busy = rng.uniform(0.02, 0.08, 12)
    gaps = rng.uniform(0.03, 0.1, 12)
    starts = 0.2 + np.concatenate([[0.0], np.cumsum(busy + gaps)[:-1]])
    return starts, starts + busy


def meter_trace(starts, ends, offset_s, n=20_000, t0=0.0, noise_w=0.0, seed=0) -> np.ndarray:
    occ = np.array(busy_occupancy(n, ALIGN_FS, t0, list(starts), list(ends), offset_s))
    noise = np.random.default_rng(seed).normal(0.0, noise_w, n) if noise_w else 0.0
    return 1.0 + 2.0 * occ + noise


FOLD_FS = 1000.0  # an on-board sensor at 1 kHz


def simulate_folding(rng, n_layers=15, reps=300, gap_w=2.5, noise_w=0.0):
    """Inferences of layers lasting 20-600 us at random phases of a 1 kHz integrating sampler.

    Returns (trace, starts, ends, ids, true layer powers). The trace is the exact mean of the
    piecewise-constant true power over each sample interval, plus Gaussian noise.
    """
    durations = rng.uniform(20e-6, 600e-6, n_layers)
    powers = rng.uniform(3.0, 9.0, n_layers)
    starts, ends, ids = [], [], []
    t = rng.uniform(0.5e-3, 1.5e-3)
    for _ in range(reps):
        for k in range(n_layers):
            d = durations[k] * rng.uniform(0.95, 1.05)
            starts.append(t)
            ends.append(t + d)
            ids.append(k)
            t += d + rng.uniform(0.0, 30e-6)
        t += rng.uniform(0.3e-3, 2e-3)
    starts, ends, ids = np.array(starts), np.array(ends), np.array(ids)
    n = math.ceil(t * FOLD_FS) + 1
    # Cumulative energy at every power change; exact under linear interpolation.
    bounds = np.concatenate([[0.0], np.column_stack([starts, ends]).ravel(), [n / FOLD_FS]])
    levels = np.empty(len(bounds) - 1)
    levels[0::2] = gap_w
    levels[1::2] = powers[ids]
    cum = np.concatenate([[0.0], np.cumsum(levels * np.diff(bounds))])
    energy = np.interp(np.arange(n + 1) / FOLD_FS, bounds, cum)
    trace = np.diff(energy) * FOLD_FS + rng.normal(0.0, noise_w, n)
    return trace, starts, ends, ids, powers


