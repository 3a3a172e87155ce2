"""THOR's subtraction method: per-layer training energy from the steps of model prefixes.

A meter that samples every few milliseconds cannot resolve one op of a training step, but it
can measure a whole step well. THOR (Zhang et al., arXiv 2501.16397) measures the training
step of the model's first k layers, E(k), for k = 1..n, and takes E(k) - E(k-1) as layer k's
energy (its forward, backward and update), relying on additivity. This module is the
arithmetic only: ``differences`` turns the prefixes' step values into per-layer values, and
``agreement`` says how well per-layer values match a reference (the per-op events, or the
simulator's truth). Making the prefixes is ``joulefarm.tflite.training.prefixes``; measuring
them is ``agent.measure_prefixes``.

E(0) is 0: the empty prefix is not measured, so what every step pays once whatever its layers
(the loss, the optimizer's per-step work, the runtime's invoke) lands in the first layer's
difference, and each later difference holds the change in the loss's cost with the prefix's
output size. Those are the method's own errors, beside the meter's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    """One layer's E(k) - E(k-1): ``layer`` is k - 1 (the node index)."""

    layer: int
    value: float
    sigma: float | None = None
    """Its standard uncertainty, when the prefixes' values carry one: the two runs are
    independent, so their uncertainties add in quadrature."""


def differences(steps: Sequence[float], sigmas: Sequence[float] | None = None, *,
                base: float = 0.0, base_sigma: float = 0.0) -> tuple[Difference, ...]:
    """Per-layer E(k) - E(k-1) from ``steps[k - 1]`` = E(k), k = 1..n (energies or
    latencies), with E(0) = ``base`` (the step with no layer: its fixed work; 0 where it was
    not measured) of uncertainty ``base_sigma``. ``sigmas`` (same length as ``steps``) gives
    each E(k)'s standard uncertainty. A difference may be negative: a small layer between two
    noisy steps."""
    if sigmas is not None and len(sigmas) != len(steps):
        raise ValueError(f"{len(sigmas)} uncertainties for {len(steps)} steps")
    out = []
    previous, previous_sigma = float(base), float(base_sigma)
    for k, value in enumerate(steps):
        sigma = None
        if sigmas is not None:
            sigma = math.hypot(sigmas[k], previous_sigma)
            previous_sigma = sigmas[k]
        out.append(Difference(k, float(value) - previous, sigma))
        previous = float(value)
    return tuple(out)


def median_sigma(values: Sequence[float]) -> float | None:
    """Standard uncertainty of the median of ``values`` from their spread (1.2533 sd /
    sqrt(n), the normal case); None for fewer than two."""
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return 1.2533 * sd / math.sqrt(len(values))


def typical_step(value: float, latency_p50_s: float, latency_mean_s: float) -> float:
    """A loop's energy (or true energy) per step, ``value`` per mean step, brought to its
    median step: the mean has a long tail (a step the OS interrupted counts whole) that moves
    it by several percent from run to run; the median moves by about one, and a difference of
    two steps inherits the runs' noise times E(k) / (E(k) - E(k-1))."""
    return value * (latency_p50_s / latency_mean_s) if latency_mean_s > 0 else value


def relative_difference(value: float, reference: float) -> float:
    """(value - reference) / reference; NaN where the reference is not positive (a layer the
    reference gives no energy cannot be off by a share of it)."""
    return (value - reference) / reference if reference > 0 else math.nan


@dataclass(frozen=True)
class Agreement:
    """How well per-layer values match per-layer reference values."""

    relative: tuple[float, ...]
    """Per layer, (value - reference) / reference (NaN where the reference is not positive)."""
    shares: tuple[float, ...]
    """Per layer, the reference's share of ``total``: which layers matter."""
    tolerance: float
    """The X of ``within``, as a fraction (0.1 = 10%)."""
    within: float
    """The share of ``total`` held by layers whose value is within +/- ``tolerance`` of the
    reference: a small layer far off weighs little, a large one much."""
    total: float

    @property
    def median_abs_relative(self) -> float:
        """Median |relative difference| over layers with a positive reference (NaN if none):
        robust to one tiny layer whose relative difference is huge."""
        finite = [abs(r) for r in self.relative if math.isfinite(r)]
        return statistics.median(finite) if finite else math.nan

    def large(self, min_share: float) -> tuple[int, ...]:
        """Positions of the layers holding at least ``min_share`` of ``total``."""
        return tuple(i for i, s in enumerate(self.shares) if s >= min_share)


def agreement(values: Sequence[float], reference: Sequence[float], *, tolerance: float = 0.1,
              total: float | None = None) -> Agreement:
    """Compare per-layer ``values`` with per-layer ``reference`` values.

    ``total`` is what shares are of: the step's energy (the reference layers' sum when not
    given; a step also holds work of no layer, so pass the step to weigh layers against it).
    """
    if len(values) != len(reference):
        raise ValueError(f"{len(values)} values for {len(reference)} reference values")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    whole = float(sum(reference)) if total is None else float(total)
    relative = tuple(relative_difference(float(v), float(r))
                     for v, r in zip(values, reference, strict=True))
    shares = tuple(float(r) / whole if whole > 0 else math.nan for r in reference)
    inside = sum(float(r) for r, rel in zip(reference, relative, strict=True)
                 if math.isfinite(rel) and abs(rel) <= tolerance)
    return Agreement(relative, shares, tolerance, inside / whole if whole > 0 else math.nan,
                     whole)


def additivity(parts: Sequence[float], whole: float) -> float:
    """sum(parts) / whole (NaN for a whole that is not positive): how much of a step the
    per-layer parts account for; 1 when nothing falls between or outside them."""
    return float(sum(parts)) / whole if whole > 0 else math.nan
