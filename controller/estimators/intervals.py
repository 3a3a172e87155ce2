"""Whole-model prediction intervals that are calibrated, not decorative (numpy only: fit and
predict share it).

A whole-model prediction's error, in ln(measured / predicted), has three parts:

- what the Gaussian processes know they do not know: the total's relative standard deviation
  (``combine.whole_totals``; zero for estimators without one);
- layers of ops never seen in training, priced by their op family's model alone: their share
  of the predicted total times ``UNSEEN_LOG_SIGMA``;
- everything else (op models biased on a new kind of model, non-additivity the correction
  misses, the measurement's own spread): one ``floor`` per estimator, calibrated on held-out
  models.

sigma = sqrt(relative_std^2 + (UNSEEN_LOG_SIGMA * unseen_share)^2 + floor^2), and the interval
is predicted * exp(+-z * sigma). ``calibrate`` picks the smallest floor under which the
interval covers the cross-validated residuals at the stated level, with the split-conformal
rank (the ceil((n + 1) * level)-th smallest of the floors each residual needs), so that the
coverage on new models is at least the level when they are like the held-out ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TypedDict

LEVEL = 0.9
"""The stated coverage of every interval."""
UNSEEN_LOG_SIGMA = 1.0
"""ln-space standard deviation of a layer whose op no training sample had: its family's
model may be off by a factor of e either way."""

Residual = tuple[float, float, float]
"""(ln(measured / predicted), relative standard deviation, unseen share) of one model."""


class CalibrationJson(TypedDict):
    level: float
    z: float
    floor: dict[str, float]
    n_models: int
    unseen_log_sigma: float
    formula: str


def z_value(level: float) -> float:
    """The two-sided normal quantile of ``level`` (1.645 for 0.9)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


@dataclass
class Calibration:
    """The floors of each estimator, fitted on ``n_models`` held-out whole models."""

    level: float = LEVEL
    floor: dict[str, float] = field(default_factory=dict)
    n_models: int = 0

    def log_sigma(self, estimator: str, relative_std: float, unseen_share: float
                  ) -> float | None:
        """ln-space standard deviation of a prediction; None where the estimator has no
        calibrated floor."""
        floor = self.floor.get(estimator)
        if floor is None:
            return None
        return math.sqrt(relative_std ** 2 + (UNSEEN_LOG_SIGMA * unseen_share) ** 2
                         + floor ** 2)

    def interval(self, estimator: str, total: float, relative_std: float,
                 unseen_share: float) -> tuple[float, float] | None:
        """(low, high) of the ``level`` interval around ``total``; None without a floor."""
        sigma = self.log_sigma(estimator, relative_std, unseen_share)
        if sigma is None:
            return None
        half = z_value(self.level) * sigma
        return total * math.exp(-half), total * math.exp(half)

    def to_json(self) -> CalibrationJson:
        return {"level": self.level, "z": z_value(self.level), "floor": dict(self.floor),
                "n_models": self.n_models, "unseen_log_sigma": UNSEEN_LOG_SIGMA,
                "formula": "interval = total * exp(+-z * sqrt(relative_std^2 + "
                           "(unseen_log_sigma * unseen_share)^2 + floor[estimator]^2))"}

    @classmethod
    def from_json(cls, data: CalibrationJson | None) -> Calibration:
        if not data:
            return cls()
        return cls(float(data["level"]), {k: float(v) for k, v in data["floor"].items()},
                   int(data["n_models"]))


def needed_floor(residual: Residual, z: float) -> float:
    """The smallest floor whose interval covers this residual."""
    log_ratio, relative_std, unseen_share = residual
    rest = (abs(log_ratio) / z) ** 2 - relative_std ** 2 - (UNSEEN_LOG_SIGMA * unseen_share) ** 2
    return math.sqrt(max(rest, 0.0))


def calibrate(residuals: Mapping[str, Sequence[Residual]], level: float = LEVEL) -> Calibration:
    """Per estimator, the split-conformal floor over its residuals (estimators with fewer than
    two get none: no interval is better than a made-up one)."""
    z = z_value(level)
    floors: dict[str, float] = {}
    n_models = 0
    for name, values in residuals.items():
        finite = [r for r in values if all(math.isfinite(v) for v in r)]
        if len(finite) < 2:
            continue
        needed = sorted(needed_floor(r, z) for r in finite)
        rank = math.ceil((len(needed) + 1) * level)
        floors[name] = needed[min(rank, len(needed)) - 1]
        n_models = max(n_models, len(finite))
    return Calibration(level, floors, n_models)
