"""Accuracy metrics of the estimator literature (nn-Meter, HELP, NeuralPower), numpy only.

Percentage errors are relative to the measurement: 100 * (predicted - measured) / measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRIC_COLUMNS: tuple[str, ...] = ("n", "mape_pct", "rmspe_pct", "within_5_pct",
                                   "within_10_pct", "spearman")


@dataclass(frozen=True)
class Scores:
    """Accuracy over ``n`` predictions. Percentages in percent; ``within_*`` are shares of
    predictions within +/- 5 % and 10 % of the measurement (nn-Meter's headline figure)."""

    n: int
    mape_pct: float
    rmspe_pct: float
    within_5_pct: float
    within_10_pct: float
    spearman: float

    def as_row(self) -> list[float | int]:
        return [self.n, self.mape_pct, self.rmspe_pct, self.within_5_pct, self.within_10_pct,
                self.spearman]


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank (as Spearman's rho needs)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; NaN with fewer than 3 points or a constant input."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 3:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def scores(measured: np.ndarray, predicted: np.ndarray) -> Scores:
    """Scores of ``predicted`` against ``measured`` (both positive, same length)."""
    measured = np.asarray(measured, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if measured.shape != predicted.shape:
        raise ValueError(f"shapes differ: {measured.shape} vs {predicted.shape}")
    if len(measured) == 0:
        nan = float("nan")
        return Scores(0, nan, nan, nan, nan, nan)
    error = np.abs(predicted - measured) / measured
    return Scores(
        n=len(measured),
        mape_pct=float(100 * error.mean()),
        rmspe_pct=float(100 * np.sqrt((error ** 2).mean())),
        within_5_pct=float(100 * (error <= 0.05).mean()),
        within_10_pct=float(100 * (error <= 0.10).mean()),
        spearman=spearman(measured, predicted),
    )
