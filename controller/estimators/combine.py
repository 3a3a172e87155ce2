"""From per-layer predictions to a whole-model prediction, numpy only (fit and predict share it).

A whole model is the sum of its layers, corrected for non-additivity (``Correction``), fitted
on models measured both whole and layer by layer. The GP's spread is carried to the total as a
sum of per-layer variances: each layer's GP is Gaussian in ln(target), so the layer is
lognormal with variance ``(exp(s^2) - 1) exp(2m + s^2)``; the point prediction of a layer is
its median ``exp(m)``.
Summing variances treats layer errors as independent. They are not (a bias of the device or
of the op model moves many layers together), so the total's spread is a lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import numpy as np

NO_CORRECTION = ("flops",)
"""Estimators whose totals are plain sums: the FLOPs baseline knows nothing else."""


class CorrectionJson(TypedDict):
    """A ``Correction`` as an estimator manifest stores it; ``formula`` is for human readers."""

    alpha: float
    beta: float
    n_models: int
    gamma: NotRequired[float]
    formula: NotRequired[str]


@dataclass
class Correction:
    """whole = alpha * sum(layers) + beta * (n_layers - 1) + gamma.

    Each isolated layer was measured with its own interpreter call, so a sum of n layers
    counts n call overheads where the whole model pays one: ``beta`` (target units per extra
    layer, usually negative) takes that back. An in-situ layer time holds the profiler's own
    per-op cost (``beta`` again) and none of the call's fixed cost (copying inputs, starting
    the plan): ``gamma``, per model. ``alpha`` scales what remains (cache reuse between
    layers, or its absence). A total never drops below ``FLOOR`` of the plain sum.
    """

    alpha: float = 1.0
    beta: float = 0.0
    n_models: int = 0
    gamma: float = 0.0

    FLOOR = 0.25

    def apply(self, total: float, n_layers: int) -> tuple[float, float]:
        """(corrected total, the factor applied to the sum's spread)."""
        if self.n_models == 0 or total <= 0:
            return total, 1.0
        corrected = self.alpha * total + self.beta * max(n_layers - 1, 0) + self.gamma
        corrected = max(corrected, self.FLOOR * total)
        return corrected, corrected / total

    def to_json(self) -> CorrectionJson:
        return {"alpha": self.alpha, "beta": self.beta, "n_models": self.n_models,
                "gamma": self.gamma,
                "formula": "whole = max(alpha * sum(layers) + beta * (n_layers - 1) + gamma, "
                           f"{self.FLOOR} * sum(layers))"}

    @classmethod
    def from_json(cls, data: CorrectionJson) -> Correction:
        return cls(float(data["alpha"]), float(data["beta"]), int(data["n_models"]),
                   float(data.get("gamma", 0.0)))


def lognormal_variance(log_mean: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """Variance in linear units of exp(N(log_mean, log_std^2))."""
    return np.expm1(log_std ** 2) * np.exp(2 * log_mean + log_std ** 2)


def whole_totals(values: Mapping[str, np.ndarray], gp_log_std: np.ndarray | None,
                 correction: Correction, n_layers: int
                 ) -> dict[str, tuple[float, float | None]]:
    """(whole-model prediction, standard deviation or None) per estimator."""
    out: dict[str, tuple[float, float | None]] = {}
    for name, layer_values in values.items():
        total = float(np.sum(layer_values))
        if name in NO_CORRECTION:
            out[name] = (total, None)
            continue
        corrected, factor = correction.apply(total, n_layers)
        std = None
        if name == "gp" and gp_log_std is not None:
            variance = lognormal_variance(np.log(layer_values), gp_log_std)
            std = factor * math.sqrt(float(variance.sum()))
        out[name] = (corrected, std)
    return out
