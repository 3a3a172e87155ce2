"""Whether one quantity moved between two nights, by how much, and how sure we are.

The test: Welch's t-test on the logarithms of the night's repetitions, two-sided, and the
ratio of the nights' geometric means with its ``1 - alpha`` confidence interval (scipy's t
distribution). Chosen over the alternatives the issue names, for these reasons:

- A Mann-Whitney U test cannot say much about a night of 3 to 6 repetitions, which is what a
  farm affords: its smallest two-sided p-value is ``2 / C(n + m, n)`` whatever the data (0.1
  for 3 against 3, 0.008 for 5 against 5), so after the Holm correction over a model's layers
  (``holm``) it finds nothing. A t-test reads the size of the step against the repetitions'
  spread, so a 20% step over a 1% spread is found from 3 repetitions.
- E-divisive (Otava) and ``ruptures`` look for change points in one long series of values;
  a night is a handful of repetitions, and the question each night is "did this night move
  against the last comparable one", which is a two-sample test.
- Logarithms, because energy and latency are positive, their noise is multiplicative, and the
  size of a step is a ratio; Welch rather than Student, because a noisier night (a hot
  device) must not borrow the other night's spread. Not trimmed (Yuen's test): on 5
  repetitions it keeps 3, and found a 20% energy step in 64% of nights where this test finds
  it in all; a repetition that something else disturbed says so itself (a flag), and the
  caller leaves it out (controller.changes).

A night with fewer than ``MIN_REPETITIONS`` repetitions has no spread worth the name: the test
then uses the uncertainty each measurement states (a layer's 95% latency interval, its energy
error), a z-test on the logarithms. That uncertainty is within one run: it knows nothing of
what moves between runs (the device's temperature, other load), so with one repetition a
night the false-alarm rate holds only as far as runs agree within their stated uncertainty.
Quantities with neither are not tested (``shift`` returns None), never guessed.

The false-alarm rate ``alpha`` is per measurement series (one device, model and settings):
the chance that a series without any step gets a change point, over all its metrics and
layers together, is at most ``alpha`` (Holm's correction keeps it under any dependence between
them). tests/controller/test_shifts.py measures it over many seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

ALPHA = 0.05
"""The default false-alarm rate per series (see the module's docstring)."""
MIN_REPETITIONS = 3
"""Below this many repetitions in a night, the stated uncertainty is used instead."""
STATED_Z = 1.959963984540054
"""Stated uncertainties are 95% half-widths: a standard error is the half-width / this."""

# How the evidence for a shift was weighed (the change_points table's ``evidence``).
REPETITIONS = "repetitions"
STATED = "stated_uncertainty"


@dataclass(frozen=True)
class Shift:
    """One quantity in two nights: geometric means (the quantity's unit), their ratio (after /
    before) with its ``1 - alpha`` confidence interval, and the unadjusted two-sided p-value."""

    before: float
    after: float
    ratio: float
    low: float
    high: float
    p_value: float
    evidence: str
    n_before: int
    n_after: int


def _positive(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """The values that can be measured (finite, above zero): a NULL is not a zero."""
    v = np.asarray(values, dtype=np.float64)
    return v[np.isfinite(v) & (v > 0)]


def shift(before: Sequence[float] | np.ndarray, after: Sequence[float] | np.ndarray, *,
          before_err: Sequence[float] | np.ndarray | None = None,
          after_err: Sequence[float] | np.ndarray | None = None,
          alpha: float = ALPHA) -> Shift | None:
    """Compare one quantity's repetitions in two nights. ``*_err``: each value's stated 95%
    half-width (same unit), or None where none is stated. None when it cannot be tested: a
    night without a value, or fewer than ``MIN_REPETITIONS`` and no stated uncertainty."""
    if _positive(before).size == 0 or _positive(after).size == 0:
        return None
    if min(_positive(before).size, _positive(after).size) >= MIN_REPETITIONS:
        return _welch(_positive(before), _positive(after), alpha)
    if before_err is None or after_err is None:
        return None
    return _stated(before, before_err, after, after_err, alpha)


def _welch(before: np.ndarray, after: np.ndarray, alpha: float) -> Shift:
    x, y = np.log(before), np.log(after)
    d = float(y.mean() - x.mean())
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0.0:  # no spread at all (a quantised meter): any difference is certain
        p, half = (0.0 if d else 1.0), 0.0
    else:
        df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
        # The ufuncs of the t and normal distributions (scipy.stats' own, without the cost of
        # its distribution objects: a night's comparison runs a hundred tests).
        p = float(2.0 * special.stdtr(df, -abs(d) / se))
        half = float(special.stdtrit(df, 1.0 - alpha / 2.0)) * se
    return Shift(before=float(np.exp(x.mean())), after=float(np.exp(y.mean())),
                 ratio=math.exp(d), low=math.exp(d - half), high=math.exp(d + half),
                 p_value=p, evidence=REPETITIONS, n_before=x.size, n_after=y.size)


def _log_mean_se(values: Sequence[float] | np.ndarray, err: Sequence[float] | np.ndarray
                 ) -> tuple[float, float, int] | None:
    """A night's mean logarithm and its standard error from the stated half-widths (delta
    method: a relative error is the logarithm's), or None where one is not stated."""
    v, e = np.asarray(values, dtype=np.float64), np.asarray(err, dtype=np.float64)
    keep = np.isfinite(v) & (v > 0)
    v, e = v[keep], e[keep]
    if v.size == 0 or not np.all(np.isfinite(e) & (e >= 0)):
        return None
    rel = e / STATED_Z / v
    return float(np.log(v).mean()), float(math.sqrt(float(np.sum(rel**2))) / v.size), v.size


def _stated(before: Sequence[float] | np.ndarray, before_err: Sequence[float] | np.ndarray,
            after: Sequence[float] | np.ndarray, after_err: Sequence[float] | np.ndarray,
            alpha: float) -> Shift | None:
    b, a = _log_mean_se(before, before_err), _log_mean_se(after, after_err)
    if b is None or a is None:
        return None
    d = a[0] - b[0]
    se = math.hypot(a[1], b[1])
    if se == 0.0:
        p, half = (0.0 if d else 1.0), 0.0
    else:
        p = float(2.0 * special.ndtr(-abs(d) / se))
        half = float(special.ndtri(1.0 - alpha / 2.0)) * se
    return Shift(before=math.exp(b[0]), after=math.exp(a[0]), ratio=math.exp(d),
                 low=math.exp(d - half), high=math.exp(d + half), p_value=p, evidence=STATED,
                 n_before=b[2], n_after=a[2])


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: reject where the adjusted p-value is at most alpha, and
    the chance of any false rejection in the family stays at most alpha, whatever the
    dependence between the tests (a model's layers and its whole move together)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def beyond(ratio: float, threshold: float) -> bool:
    """Whether a ratio moved by at least ``threshold`` (0.05: up 5% or more, or down 5% or
    more): a step too small to matter is no change point, however significant."""
    return ratio >= 1.0 + threshold or ratio <= 1.0 - threshold


__all__ = ["ALPHA", "MIN_REPETITIONS", "REPETITIONS", "STATED", "Shift", "beyond", "holm",
           "shift"]
