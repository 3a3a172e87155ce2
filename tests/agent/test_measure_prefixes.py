"""THOR's subtraction method: trainable prefixes, measured with the simulated meter."""

from __future__ import annotations

import numpy as np
import pytest

from agent.measure_prefixes import PrefixSplit, measure_prefixes
from agent.meters.sim import SimMeter
from joulefarm.errors import InputError, ModelError
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import (
    Add,
    Branch,
    Conv2D,
    Flatten,
    FullyConnected,
    MaxPool2D,
    build_model,
)
from joulefarm.tflite.training import training_info
from joulefarm.tflite.training.prefixes import (
    dead_layers,
    layer_count,
    prefix_model,
    trainable_prefixes,
)
from tests.helpers.models import run_once

RUNTIME = ("ai-edge-litert", "test")
# The generated CNN of the agreement test: the big layers hold >= 10% of the step each.
CNN = [Conv2D(16), Conv2D(16), Conv2D(16, stride=(2, 2)), Flatten(), FullyConnected(10)]
CNN_INPUT = (4, 16, 16, 8)
SETTINGS = MeasureSettings(mode="train", min_duration_s=0.2, idle_duration_s=0.05)
ROUNDS = 5
LARGE_SHARE = 0.1
# |subtraction - truth| / truth of every layer holding >= LARGE_SHARE of the step whose
# prefixes ran undisturbed, with E(0) (the step's fixed work) measured and each prefix's
# least disturbed round of 5. Without E(0) the first layer held the fixed work (+0.22 to
# +0.43); with 3 rounds, or their median, or differences within a round, a run stretched 1.3
# to 1.5 times without its thread leaving the CPU moved layers by up to 0.7. With two busy
# loops beside it, runs are flagged cpu_contended and the method does not vouch for their
# layers (PrefixLayer.contended).
TRUTH_TOLERANCE = 0.25


def _residual() -> bytes:
    return build_model((2, 16, 16, 3), [
        MaxPool2D(), Conv2D(8), Conv2D(8), Add(source=1), Branch(1, Conv2D(8)), Flatten(),
        FullyConnected(5)], seed=0)


def test_each_prefix_is_a_model_that_runs_as_the_full_model_up_to_it() -> None:
    model = _residual()
    n = layer_count(model)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    shapes = [(2, 8, 8, 3), (2, 8, 8, 8), (2, 8, 8, 8), (2, 8, 8, 8), (2, 8, 8, 8),
              (2, 512), (2, 5)]
    for k in range(1, n + 1):
        assert run_once(prefix_model(model, k), x).shape == shapes[k - 1]
    np.testing.assert_allclose(run_once(prefix_model(model, n), x), run_once(model, x),
                               rtol=1e-6)
    # Ending mid-residual (k = 3) every node reaches the output; on the branch, the residual
    # (layers 2 and 3) is a dead end.
    assert dead_layers(model, 3) == () and dead_layers(model, 5) == (2, 3)
    for k in (0, n + 1):
        with pytest.raises(ValueError, match=f"in 1..{n}"):
            prefix_model(model, k)


def test_trainable_prefixes_train_the_layers_with_weights_they_hold() -> None:
    prefixes = trainable_prefixes(_residual(), optimizer="sgd", trainable={1, 6})
    assert [k for k, _ in prefixes] == list(range(1, 8))
    infos = [training_info(b) for _, b in prefixes]
    assert all(i.loss == "mse" for i in infos)
    # Prefix 1 is a weightless max pool: forward and loss only, no trainable layer.
    assert infos[0].trainable == frozenset()
    assert {tag.phase for tag in infos[0].ops("train")} <= {"init", "forward", "loss"}
    assert [sorted(i.trainable) for i in infos] == [[], [1], [1], [1], [1], [1], [1, 6]]
    with pytest.raises(ValueError, match="not layers of the model"):
        trainable_prefixes(_residual(), optimizer="sgd", trainable={9})


@pytest.fixture(scope="module")
def split() -> PrefixSplit:
    model = build_model(CNN_INPUT, CNN, seed=0)
    return measure_prefixes(model, lambda k: SimMeter("rpi4", seed=k), SETTINGS, RUNTIME,
                            optimizer="sgd", rounds=ROUNDS)


def test_the_differences_add_up_to_the_full_step(split: PrefixSplit) -> None:
    assert [p.k for p in split.prefixes] == [1, 2, 3, 4, 5]
    # Runs another process disturbed are left out where undisturbed ones exist.
    assert all(1 <= p.runs <= ROUNDS for p in split.prefixes)
    assert all((p.energy_sigma_j is not None) == (p.runs > 1) for p in split.prefixes)
    # Prefix 0 (no layer: the step's fixed work) is taken out; the rest adds up to E(n).
    assert split.baseline is not None and split.baseline.energy_j > 0
    assert sum(x.subtraction_energy_j for x in split.layers) == pytest.approx(
        split.step_energy_j - split.baseline.energy_j)
    assert [x.op for x in split.layers] == ["CONV_2D", "CONV_2D", "CONV_2D", "RESHAPE",
                                            "FULLY_CONNECTED"]
    # Events per mean step over the typical (median) step: near 1 unless another process
    # stretched some steps of every round of the full model (flagged).
    assert split.additivity > 0.5
    assert split.additivity < 1.5 or split.prefixes[-1].contended


def test_subtraction_recovers_the_simulators_truth_of_large_layers(split: PrefixSplit) -> None:
    """Within TRUTH_TOLERANCE for every large layer the method vouches for; a layer it does
    not vouch for had a prefix that ran only beside another process (flagged)."""
    truth = split.agreement("truth", tolerance=TRUTH_TOLERANCE)
    events = split.agreement("events", tolerance=TRUTH_TOLERANCE)
    large = truth.large(LARGE_SHARE)
    assert 1 in large  # the largest convolution, at least
    for i in large:
        layer = split.layers[i]
        if layer.contended:
            ran = [p for p in split.prefixes if p.k in (i, i + 1)]
            assert any(p.contended for p in ran) or all(
                "cpu_contended" in done.result.flags for done in split.full_runs)
            continue
        assert abs(truth.relative[i]) <= TRUTH_TOLERANCE, (i, truth.relative)
        assert abs(events.relative[i]) <= TRUTH_TOLERANCE, (i, events.relative)


def test_bad_requests_are_refused() -> None:
    model = build_model(CNN_INPUT, CNN, seed=0)
    with pytest.raises(InputError, match="mode train"):
        measure_prefixes(model, lambda k: SimMeter("rpi4"), MeasureSettings(mode="whole"),
                         RUNTIME, optimizer="sgd")
    with pytest.raises(InputError, match="rounds"):
        measure_prefixes(model, lambda k: SimMeter("rpi4"), SETTINGS, RUNTIME,
                         optimizer="sgd", rounds=0)
    two = build_model(CNN_INPUT, CNN, seed=0)
    with pytest.raises(ModelError):
        prefix_model(two[:100], 1)
