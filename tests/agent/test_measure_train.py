"""Train mode: a training step measured per layer and phase with the simulated meter."""

from __future__ import annotations

import threading
import time

import pytest

from agent.cancel import Cancel, Cancelled
from agent.measure_train import TrainResult, measure_train
from agent.meters.sim import SimMeter
from agent.runtimes.train_step import UNTAGGED
from joulefarm.errors import InputError, ModelError
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import Conv2D, Flatten, FullyConnected, build_model
from joulefarm.tflite.flatbuffer import pack_model, unpack_model
from joulefarm.tflite.training import trainable_model, training_info
from tests.helpers import REPO
from tests.helpers.converted import without_training_metadata

LAYERS = [Conv2D(8), Conv2D(8), Flatten(), FullyConnected(5)]
SETTINGS = MeasureSettings(mode="train", min_duration_s=0.3, idle_duration_s=0.06)
RUNTIME = ("ai-edge-litert", "test")
# The simulator counts time outside every op window (the runtime between ops, the loop) at
# its busy power: the phases plus that time at that power are the step, within this (the
# meter's sampling and the windows' edges).
STEP_TOLERANCE = 0.1
FREED_WITHIN_S = 10.0
CUSTOM = 32  # BuiltinOperator.CUSTOM
CONVERTED = REPO / "tests/fixtures/models/tf_trainable"


@pytest.fixture(scope="module")
def model() -> bytes:
    return trainable_model(LAYERS, (12, 12, 3), loss="softmax_cross_entropy",
                           optimizer="adam", batch_size=4, seed=0)


@pytest.fixture(scope="module")
def measured(model: bytes) -> tuple[TrainResult, SimMeter]:
    meter = SimMeter("rpi4", seed=3)
    return measure_train(model, "sha", meter, SETTINGS, RUNTIME), meter


def test_every_op_of_the_step_is_attributed(model: bytes,
                                            measured: tuple[TrainResult, SimMeter]) -> None:
    done, _ = measured
    steps = done.result.whole.iterations if done.result.whole else 0
    assert steps >= SETTINGS.min_iterations
    assert done.train_ops == len(training_info(model).ops("train"))
    for r in done.phases:  # each op of the step seen once per step: none lost
        assert r.events == r.ops * steps, r
    assert {r.layer for r in done.phases} == {None, 0, 1, 2, 3}
    assert {r.phase for r in done.phases if r.layer == 1} == {
        "forward", "backward-activation", "backward-input", "backward-weights", "update"}


def test_phases_add_up_to_the_step(measured: tuple[TrainResult, SimMeter]) -> None:
    done, meter = measured
    whole = done.result.whole
    assert whole is not None and done.result.meter.simulated
    phases = sum(r.energy_j for r in done.phases)
    between = (whole.latency_mean_s - done.attributed_latency_s) * (
        meter.profile.idle_w + meter.profile.busy_w)
    assert 0 < done.attributed_latency_s < whole.latency_mean_s
    assert phases + between == pytest.approx(whole.energy_j, rel=STEP_TOLERANCE)
    assert whole.energy_j == pytest.approx(whole.true_energy_j, rel=STEP_TOLERANCE)
    # Op windows of a few microseconds fall between samples (rpi4: 10 kHz), so one phase alone
    # is off by tens of percent; their sum over thousands of windows is what the trace holds.
    truth = sum(r.true_energy_j or 0.0 for r in done.phases)
    assert phases == pytest.approx(truth, rel=STEP_TOLERANCE)


def test_backward_costs_more_than_forward_for_conv(
        measured: tuple[TrainResult, SimMeter]) -> None:
    """Layer 1's backward pass has two convolutions (input and filter gradients) where its
    forward pass has one; layer 0 needs no input gradient, only the filter's."""
    done, _ = measured
    split = done.split(1)
    assert split["backward"][0] >= split["forward"][0]
    assert split["backward"][1] >= split["forward"][1]
    assert split["update"][0] > 0 and done.split(2)["update"] == (0.0, 0.0)


def test_a_cancel_frees_the_run_within_seconds(model: bytes) -> None:
    cancel = Cancel()
    long = MeasureSettings(mode="train", min_duration_s=1200.0, idle_duration_s=0.06)
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            measure_train(model, "sha", SimMeter("rpi4"), long, RUNTIME, cancel=cancel)
    finally:
        timer.cancel()
    assert time.monotonic() - start < FREED_WITHIN_S


def test_a_model_without_a_train_signature_is_refused() -> None:
    inference = build_model((4, 12, 12, 3), LAYERS, seed=0)
    with pytest.raises(ModelError, match="no 'train' signature"):
        measure_train(inference, "sha", SimMeter("rpi4"), SETTINGS, RUNTIME)


def test_custom_ops_in_the_train_signature_are_named(model: bytes) -> None:
    tree = unpack_model(model)
    code = tree.operatorCodes[tree.subgraphs[1].operators[-1].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = CUSTOM
    code.customCode = "MyGradient"
    with pytest.raises(ModelError, match="custom ops \\(MyGradient\\)"):
        measure_train(pack_model(tree), "sha", SimMeter("rpi4"), SETTINGS, RUNTIME)


def test_a_converted_model_without_tags_is_measured_per_op_type(model: bytes) -> None:
    """A model with a train signature but no joulefarm metadata (converted elsewhere): the
    step is measured, and each op type of it gets a row of phase ``untagged``."""
    done = measure_train(without_training_metadata(model), "sha", SimMeter("rpi4", seed=1),
                         SETTINGS, RUNTIME)
    assert done.result.whole is not None and done.result.whole.energy_j > 0
    assert {r.phase for r in done.phases} == {UNTAGGED}
    assert {r.layer for r in done.phases} == {None}
    ops = {r.op: r.ops for r in done.phases}
    assert ops["CONV_2D"] >= 2 and ops["FULLY_CONNECTED"] >= 1  # forward and gradients
    assert done.train_ops == len(unpack_model(model).subgraphs[1].operators)


def test_a_model_tensorflow_converted_is_measured_and_its_flex_ops_named() -> None:
    """Models TensorFlow's converter wrote (tests/fixtures/models/tf_trainable): the builtin
    one's step runs, its variables given values first (the converter leaves them for a
    checkpoint); the one whose convolution's gradients became Flex ops is refused by name."""
    done = measure_train((CONVERTED / "dense_builtin.tflite").read_bytes(), "sha",
                         SimMeter("rpi4", seed=2), SETTINGS, RUNTIME)
    assert done.result.whole is not None and done.result.whole.iterations >= 1
    ops = {r.op for r in done.phases}
    assert {"BATCH_MATMUL", "ASSIGN_VARIABLE", "CALL_ONCE"} <= ops  # CALL_ONCE: the init
    assert all(r.phase == UNTAGGED and r.events == r.ops * done.result.whole.iterations
               for r in done.phases)
    with pytest.raises(ModelError, match=r"custom ops \(FlexConv2DBackpropFilter, "
                                         r"FlexReluGrad\)"):
        measure_train((CONVERTED / "conv_flex.tflite").read_bytes(), "sha",
                      SimMeter("rpi4"), SETTINGS, RUNTIME)


def test_other_modes_and_xnnpack_are_refused(model: bytes) -> None:
    with pytest.raises(InputError, match="XNNPACK"):
        measure_train(model, "sha", SimMeter("rpi4"),
                      MeasureSettings(mode="train", use_xnnpack=True), RUNTIME)
    with pytest.raises(InputError, match="mode train"):
        measure_train(model, "sha", SimMeter("rpi4"), MeasureSettings(mode="insitu"), RUNTIME)
