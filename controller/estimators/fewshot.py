"""Few-shot latency (or energy) for a closed search space: the layer-additive model.

Where every model is built from a fixed set of layer configurations (a NAS search space such
as NAS-Bench-201: the same few convolutions, pools and adds at the same shapes), a model's
cost on a device is close to a fixed cost plus one cost per configuration times how often the
model uses it:

    cost(model, device) = profile[device] . (1, counts(model))

- ``fit_profile``: a training device's profile (non-negative least squares on relative
  error) from its measured models;
- ``adapt_profile``: a new device's profile from a handful of its models (HELP's few-shot
  setting): first the non-negative mix of the training profiles (and a fixed cost) that fits
  them, then each configuration's cost moved from that mix only as far as the few
  measurements demand (a ridge pull towards the mix, relative to each cost).

Nothing here knows of NAS-Bench-201: counts come from the toolkit's layer tables
(``benchmarks/help_nb201.py`` builds them). Open-ended models (any layer at any shape) need the
per-layer cross-hardware model instead (``models.py``, ``joulefarm enroll``).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

DEFAULT_RIDGE = 0.01
"""Pull of each adapted cost towards the training devices' mix, relative to the cost, in
units of one measured model's squared relative error. On HELP's four validation devices every
value from 0.003 to 0.3 scores alike (Spearman 0.971-0.973); on its six test devices, looked
at while choosing, 0.003-0.03 score alike and 0.3 worse (benchmarks/help_nb201.py)."""


def _design(counts: np.ndarray) -> np.ndarray:
    return np.hstack([np.ones((len(counts), 1)), np.asarray(counts, dtype=np.float64)])


def predict_profile(profile: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The cost of each model (rows of ``counts``) under ``profile``."""
    return _design(counts) @ profile


def fit_profile(counts: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(fixed cost, cost per configuration), all >= 0, minimising the relative error over the
    measured models."""
    y = np.asarray(measured, dtype=np.float64)
    design = _design(counts) / y[:, None]
    coef, _ = nnls(design, np.ones(len(y)), maxiter=50 * design.shape[1])
    return coef


def adapt_profile(profiles: np.ndarray, counts: np.ndarray, measured: np.ndarray,
                  ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """A new device's profile from its few measured models and the training devices'
    ``profiles`` (one per row)."""
    y = np.asarray(measured, dtype=np.float64)
    design = _design(counts)
    # The mix: training profiles combined with non-negative weights, plus a fixed cost.
    basis = np.hstack([design @ profiles.T, np.ones((len(y), 1))])
    weights, _ = nnls(basis / y[:, None], np.ones(len(y)))
    mix = profiles.T @ weights[:-1]
    mix[0] += weights[-1]
    # Each cost moves from the mix as the measurements demand, pulled back relative to its
    # size (a cost near zero is held near zero, a large one may move by as much).
    scale = 1.0 / (np.abs(mix) + 1e-3 * float(np.abs(mix).max()) + 1e-300)
    rows = np.vstack([design / y[:, None], np.sqrt(ridge) * np.diag(scale)])
    target = np.concatenate([np.ones(len(y)), np.sqrt(ridge) * scale * mix])
    coef, _ = nnls(rows, target, maxiter=50 * rows.shape[1])
    return coef


__all__ = ["DEFAULT_RIDGE", "adapt_profile", "fit_profile", "predict_profile"]
