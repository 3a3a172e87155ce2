"""The layer-additive few-shot model (controller.estimators.fewshot) on devices whose
per-configuration costs are known: a training profile is recovered, and a new device is
predicted from 20 of its models."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from controller.estimators.fewshot import adapt_profile, fit_profile, predict_profile

CONFIGS = 12


def _space(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 8, size=(n, CONFIGS)).astype(float)


def _devices(rng: np.random.Generator, n: int) -> np.ndarray:
    """Profiles (fixed cost, per-config costs): a shared shape times a device speed, each
    config's cost bent by up to a factor of two per device."""
    shape = np.concatenate([[5.0], rng.uniform(0.1, 3.0, CONFIGS)])
    speed = rng.uniform(0.2, 5.0, (n, 1))
    return shape * speed * np.exp(rng.uniform(-0.7, 0.7, (n, CONFIGS + 1)))


def test_a_training_profile_is_recovered() -> None:
    rng = np.random.default_rng(0)
    x = _space(rng, 400)
    true = _devices(rng, 1)[0]
    found = fit_profile(x, predict_profile(true, x))
    assert np.allclose(found, true, rtol=1e-6)


def test_a_new_device_is_predicted_from_twenty_models() -> None:
    rng = np.random.default_rng(1)
    profiles = np.vstack([fit_profile(x, predict_profile(p, x) * np.exp(
        0.02 * rng.standard_normal(len(x)))) for p in _devices(rng, 9)
        for x in [_space(rng, 300)]])
    # The new device: like two training devices, slower, with two configurations that cost
    # three times more than any mix of theirs would say.
    new = 1.5 * (0.6 * profiles[2] + 0.4 * profiles[5])
    new[[3, 7]] *= 3.0
    known, test = _space(rng, 20), _space(rng, 500)
    measured = predict_profile(new, known) * np.exp(0.02 * rng.standard_normal(20))
    truth = predict_profile(new, test)
    predicted = predict_profile(adapt_profile(profiles, known, measured), test)
    error = np.abs(predicted / truth - 1)
    macs_rank = spearmanr(test.sum(axis=1), truth).statistic
    assert np.mean(error <= 0.10) >= 0.9, np.mean(error)
    assert spearmanr(predicted, truth).statistic > max(0.95, macs_rank)
    # Without the per-configuration step (a very strong pull), the two bent costs are missed.
    mix_only = predict_profile(adapt_profile(profiles, known, measured, ridge=1e6), test)
    assert np.mean(np.abs(mix_only / truth - 1)) > 1.5 * np.mean(error)
