"""Slow, obviously-correct reference for joulefarm's energy integration (pure Python).

Cuts each window at every sample boundary and midpoint: between cuts power is linear under both
signal models, so length x value-at-centre is the exact integral of each piece.
"""

import math
from dataclasses import dataclass

FLAG_NO_SAMPLES = 1
FLAG_PARTIAL_COVERAGE = 2
FLAG_NAN_SAMPLES = 4


def power_at(x: list[float], u: float, model: str) -> float | None:
    """Power at sample coordinate ``u``; None off the trace or on an invalid sample."""
    n = len(x)
    i = math.floor(u)
    if u < 0 or i >= n or not math.isfinite(x[i]):
        return None
    if model == "hold":
        return x[i]
    mid = i + 0.5
    j = i - 1 if u < mid else i + 1
    other = x[j] if 0 <= j < n and math.isfinite(x[j]) else x[i]
    w = abs(u - mid)
    return x[i] * (1 - w) + other * w


def piece_power(x: list[float], lo: float, hi: float, model: str) -> float | None:
    """Power at the centre of the piece ``[lo, hi)``, which lies inside one half of one sample.

    The sample and the half are taken from ``lo``, not from the centre: for a piece a few ULPs
    long at a sample's end, ``(lo + hi) / 2`` can round onto the next sample.
    """
    n = len(x)
    i = math.floor(lo)
    if lo < 0 or i >= n or not math.isfinite(x[i]):
        return None
    if model == "hold":
        return x[i]
    mid = i + 0.5
    left = lo < mid
    u = min(max(0.5 * (lo + hi), lo), mid if left else i + 1)
    j = i - 1 if left else i + 1
    other = x[j] if 0 <= j < n and math.isfinite(x[j]) else x[i]
    w = abs(u - mid)
    return x[i] * (1 - w) + other * w


@dataclass
class RefWindow:
    energy_j: float
    mean_power_w: float
    samples: int
    coverage: float
    flags: int


def reference_window(
    x: list[float],
    fs: float,
    start: float,
    end: float,
    t0: float = 0.0,
    offset_s: float = 0.0,
    drift_ppm: float = 0.0,
    model: str = "hold",
) -> RefWindow:
    rate = 1.0 + drift_ppm * 1e-6
    a = (start * rate + offset_s - t0) * fs
    b = (end * rate + offset_s - t0) * fs
    n = len(x)
    cuts = [a] + [k / 2 for k in range(math.floor(2 * a) + 1, math.ceil(2 * b))] + [b]
    energy = covered = 0.0
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        if hi > lo:
            p = piece_power(x, lo, hi, model)
            if p is not None:
                energy += p * (hi - lo)
                covered += hi - lo
    samples = invalid = 0
    for i in range(max(0, math.floor(a)), min(n, math.ceil(b))):
        if min(b, i + 1) - max(a, i) > 0:
            if math.isfinite(x[i]):
                samples += 1
            else:
                invalid += 1
    flags = 0
    if a < 0 or b > n:
        flags |= FLAG_PARTIAL_COVERAGE
    if invalid:
        flags |= FLAG_NAN_SAMPLES | FLAG_PARTIAL_COVERAGE
    if covered <= 0 or samples == 0:
        return RefWindow(math.nan, math.nan, samples, 0.0, flags | FLAG_NO_SAMPLES)
    return RefWindow(energy / fs, energy / covered, samples, min(1.0, covered / (b - a)), flags)


def busy_occupancy(
    n: int, fs: float, t0: float, starts: list[float], ends: list[float], offset_s: float
) -> list[float]:
    """Fraction of each sample interval covered by the busy intervals shifted by ``offset_s``."""
    occ = []
    for j in range(n):
        lo, hi = t0 + j / fs, t0 + (j + 1) / fs
        busy = sum(
            max(0.0, min(e + offset_s, hi) - max(s + offset_s, lo))
            for s, e in zip(starts, ends, strict=True)
        )
        occ.append(busy * fs)
    return occ
