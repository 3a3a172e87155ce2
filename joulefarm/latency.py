"""Per-call latency of a timed loop, by a statistic that one interruption cannot move.

A layer's window loops one call many times. The window's mean (duration / calls) is what an
idle machine gives, but one preemption inside the window inflates it: a 0.7 µs call stored at
5.6 ms under outside load. So the window's calls are cut into ``batches`` of equal count and
each batch gives a per-call latency; the stored latency is the **median over batches**, and its
spread is a distribution-free 95% confidence interval of that median (order statistics of a
binomial, no assumption on the latency distribution). An interruption moves at most the
batches it falls in; a run where more than a few did shows it as a wide interval.

Batches rather than single calls: one call of a sub-microsecond op is close to the clock's
resolution and the loop's own overhead, while a batch's mean per call is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MAX_BATCHES = 20
"""A window is cut into at most this many batches (fewer when it holds fewer calls)."""
CONFIDENCE = 0.95
OUTLIER_SHARE = 0.2
"""The window mean exceeding the median by more than this share (and lying above the
interval) means something else ran inside the window: flag ``latency_outlier``."""
UNSTABLE_SPREAD = 0.5
"""A confidence interval wider than this share of the median: flag ``latency_unstable`` (the
median itself may be contaminated; the row is not used for training)."""


@dataclass(frozen=True)
class LoopLatency:
    """One timed loop's per-call latency (seconds)."""

    median_s: float
    """Median over batches of each batch's mean per call: the stored ``latency_s``."""
    low_s: float
    high_s: float
    """The 95% confidence interval of ``median_s``."""
    window_s: float
    """Window duration / calls: the plain mean, inflated by any interruption."""
    batches: int

    @property
    def flags(self) -> tuple[str, ...]:
        flags = []
        if (self.window_s > self.high_s
                and self.window_s > (1 + OUTLIER_SHARE) * self.median_s):
            flags.append("latency_outlier")
        if self.median_s > 0 and (self.high_s - self.low_s) > UNSTABLE_SPREAD * self.median_s:
            flags.append("latency_unstable")
        return tuple(flags)


def median_interval(values: npt.ArrayLike, confidence: float = CONFIDENCE
                    ) -> tuple[float, float, float]:
    """The median of ``values`` and a distribution-free confidence interval for it: the order
    statistics ``x(k)``, ``x(n-k+1)`` with the largest ``k`` whose binomial coverage
    ``1 - 2 P(Bin(n, 1/2) < k)`` is at least ``confidence``. With too few values for that
    (n < 6 at 95%) the interval is the full range."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    median = float(np.median(x))
    k, below = 0, 0.0  # below = P(Bin(n, 1/2) < k+1) as k grows
    while k + 1 <= n // 2:
        below += math.comb(n, k) / 2.0**n
        if 1 - 2 * below < confidence:
            break
        k += 1
    if k == 0:
        return median, float(x[0]), float(x[-1])
    return median, float(x[k - 1]), float(x[n - k])


def batch_latencies(start_s: float, call_ends_s: npt.ArrayLike,
                    max_batches: int = MAX_BATCHES) -> np.ndarray:
    """Per-call latency of each batch of a loop that started at ``start_s`` and whose calls
    ended at ``call_ends_s`` (clock reads after each call), batches of equal call count."""
    ends = np.asarray(call_ends_s, dtype=np.float64)
    n = len(ends)
    if n == 0:
        return np.empty(0)
    b = max(1, min(max_batches, n))
    edges = np.linspace(0, n, b + 1).round().astype(np.int64)  # call counts at batch edges
    stamps = np.concatenate(([start_s], ends))
    per_call: np.ndarray = np.diff(stamps[edges]) / np.diff(edges)
    return per_call


def loop_latency(start_s: float, call_ends_s: npt.ArrayLike,
                 max_batches: int = MAX_BATCHES) -> LoopLatency:
    """The robust per-call latency of one timed loop (see the module's docstring)."""
    ends = np.asarray(call_ends_s, dtype=np.float64)
    if len(ends) == 0:
        return LoopLatency(math.nan, math.nan, math.nan, math.nan, 0)
    per_batch = batch_latencies(start_s, ends, max_batches)
    median, low, high = median_interval(per_batch)
    return LoopLatency(median, low, high, float(ends[-1] - start_s) / len(ends), len(per_batch))


__all__ = ["CONFIDENCE", "MAX_BATCHES", "LoopLatency", "batch_latencies", "loop_latency",
           "median_interval"]
