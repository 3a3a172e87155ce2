"""The numpy reference of training itself (tests/helpers/training_reference.py): its analytic
gradients against central finite differences, and its forward pass against the runtime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.models import run_once
from tests.helpers.training_reference import (
    REFERENCE_MODELS,
    finite_differences,
    reference_case,
)


@pytest.mark.parametrize("name", sorted(REFERENCE_MODELS))
@pytest.mark.parametrize("loss", ["mse", "softmax_cross_entropy"])
def test_reference_gradients_match_finite_differences(name, loss):
    _, ref, x, target = reference_case(name, loss)
    params = ref.weights()
    _, analytic = ref.grads(x, target, params)
    numeric = finite_differences(lambda p: ref.loss_value(x, target, p), params)
    assert analytic.keys() == numeric.keys()
    for key in analytic:
        scale = max(np.abs(analytic[key]).max(), 1e-3)
        np.testing.assert_allclose(analytic[key], numeric[key], rtol=0, atol=1e-6 * scale,
                                   err_msg=key)


def test_reference_forward_matches_the_runtime():
    """The reference computes what the runtime computes on the inference model."""
    for name in sorted(REFERENCE_MODELS):
        model, ref, x, _ = reference_case(name)
        values, _ = ref.forward(x, ref.weights())
        got = run_once(model, x.astype(np.float32))
        np.testing.assert_allclose(got, values[ref.output], rtol=1e-4, atol=1e-4,
                                   err_msg=name)
