"""``trainable_model``'s choices: frozen layers, the op -> (layer, phase) map, recipes and sweep
chains made trainable, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from joulefarm.tflite import RECIPES
from joulefarm.tflite.builder import Conv2D, Flatten, FullyConnected, Unary, build_model
from joulefarm.tflite.flatbuffer import op_name, unpack_model
from joulefarm.tflite.sweep import sample_chains
from joulefarm.tflite.training import (
    SGD,
    Adam,
    trainable_from_model,
    trainable_model,
    training_info,
)
from tests.helpers.training_reference import TrainingReference, reference_case
from tests.helpers.training_runtime import (
    GRADIENT_RTOL,
    assert_close_to,
    interpreter,
    train_once,
)

# conv 1x1 (0), conv 3x2 stride 2 VALID (1), reshape (2), fully connected (3)
FROZEN_CASE = "conv_valid_s2"


def phases_of(info, layer: int) -> set[str]:
    return {tag.phase for tag in info.ops("train") if tag.layer == layer}


def test_frozen_layers_pass_the_gradient_on():
    """Only the first layer trains: the frozen convolution and fully connected layer after it
    keep constant weights and compute no weight gradient, yet their input gradients carry the
    loss back to layer 0, whose gradient is the reference's."""
    model, ref, x, target = reference_case(FROZEN_CASE)
    trainable = trainable_from_model(model, loss="mse", optimizer=SGD(0.1, 0.0),
                                     trainable={0}, gradient_outputs=True)
    out = train_once(trainable, x, target)
    _, expected = ref.grads(x.astype(np.float32).astype(np.float64),
                            target.astype(np.float32), ref.weights())
    assert sorted(k for k in out if k != "loss") == ["grad/0/bias", "grad/0/filter"]
    for key in ("0/filter", "0/bias"):
        assert_close_to(out[f"grad/{key}"], expected[key], GRADIENT_RTOL, key)
    info = training_info(trainable)
    assert info.trainable == {0}
    assert info.variables == ("0/filter", "0/bias")
    assert phases_of(info, 0) == {"forward", "backward-weights", "update"}
    assert phases_of(info, 1) == {"forward", "backward-input"}
    assert phases_of(info, 2) == {"forward", "backward-input"}
    assert phases_of(info, 3) == {"forward", "backward-input"}


def test_frozen_layers_before_the_trainable_one_get_no_backward():
    model, ref, x, target = reference_case(FROZEN_CASE)
    trainable = trainable_from_model(model, loss="mse", optimizer="adam", trainable={3},
                                     gradient_outputs=True)
    info = training_info(trainable)
    for layer in (0, 1, 2):
        assert phases_of(info, layer) == {"forward"}
    assert phases_of(info, 3) == {"forward", "backward-weights", "update"}
    out = train_once(trainable, x, target)
    _, expected = ref.grads(x.astype(np.float32).astype(np.float64),
                            target.astype(np.float32), ref.weights())
    assert_close_to(out["grad/3/weights"], expected["3/weights"], GRADIENT_RTOL, "3/weights")


def test_frozen_weights_do_not_change():
    model, ref, x, target = reference_case(FROZEN_CASE)
    it = interpreter(trainable_from_model(model, loss="mse", optimizer=SGD(0.1, 0.9),
                                          trainable={1}))
    before = it.get_signature_runner("infer")(x=x.astype(np.float32))["y"]
    for _ in range(3):
        it.get_signature_runner("train")(x=x.astype(np.float32), y_true=target.astype(
            np.float32))
    weights = it.get_signature_runner("weights")()
    assert weights.keys() == {"1/filter", "1/bias"}
    assert not np.array_equal(it.get_signature_runner("infer")(x=x.astype(np.float32))["y"],
                              before)
    # The frozen layers are the inference model's constants, untouched: a model in which
    # layer 1 holds the trained weights computes what the trained model's infer computes.
    params = {**ref.weights(), **{k: v.astype(np.float64) for k, v in weights.items()}}
    values, _ = ref.forward(x.astype(np.float32).astype(np.float64), params)
    np.testing.assert_allclose(it.get_signature_runner("infer")(x=x.astype(np.float32))["y"],
                               values[ref.output], rtol=1e-4, atol=1e-5)


def test_op_phases_name_the_layer_of_every_train_op():
    """The tag of each op names a layer whose op (or its weights' variables, or its
    gradient's builtin ops) it is; the forward op of each layer is tagged with that layer."""
    model, _, _, _ = reference_case("pools_tiled")
    trainable = trainable_from_model(model, loss="softmax_cross_entropy",
                                     optimizer=Adam())
    info = training_info(trainable)
    parsed = unpack_model(trainable)
    train = parsed.subgraphs[info.signatures["train"].subgraph]
    names = [op_name(parsed, op) for op in train.operators]
    assert len(names) == len(info.ops("train"))
    for layer, op in enumerate(info.layers):
        forward = [names[i] for i in info.layer_ops(layer, "forward")]
        assert forward.count(op) == 1, (layer, forward)
    # Every ASSIGN_VARIABLE of train is an update, each READ_VARIABLE a forward or update.
    for name, tag in zip(names, info.ops("train"), strict=True):
        if name == "ASSIGN_VARIABLE":
            assert tag.phase == "update"
        if name == "READ_VARIABLE":
            assert tag.phase in ("forward", "update")
    # Adam's powers are model-wide work; the max pool's gradient is its backward-input.
    assert info.layer_ops(None, "update")  # type: ignore[arg-type]
    assert "EQUAL" in {names[i] for i in info.layer_ops(1, "backward-input")}
    assert "TRANSPOSE_CONV" not in names  # layer 0's input gradient is never needed
    assert info.layer_ops(0, "backward-activation") == []  # conv 0 has no fused activation


@pytest.mark.parametrize("recipe", ["tiny_cnn", "mlp", "res_block", "concat_pad"])
def test_recipes_train(recipe):
    """A recipe's float model made trainable: the gradients of every weight are the
    reference's (cross-entropy on the logits before the final softmax)."""
    model = RECIPES[recipe](0)
    trainable = trainable_from_model(model, loss="softmax_cross_entropy",
                                     optimizer=SGD(0.01, 0.9), gradient_outputs=True)
    ref = TrainingReference(model, "softmax_cross_entropy")
    rng = np.random.default_rng(5)
    shape = ref.shapes[ref.input]
    x = rng.standard_normal(shape).astype(np.float32)
    classes = ref.shapes[ref.output]
    target = np.eye(classes[-1], dtype=np.float32)[rng.integers(0, classes[-1], classes[0])]
    out = train_once(trainable, x, target)
    loss, expected = ref.grads(x.astype(np.float64), target, ref.weights())
    assert abs(float(out["loss"]) - loss) <= 1e-5 * loss
    for key, grad in expected.items():
        assert_close_to(out[f"grad/{key}"], grad, GRADIENT_RTOL, f"{recipe} {key}")


def test_sweep_chains_train():
    """Sweep chains (conv, depthwise, residual adds, pooling, mean, fc, softmax) build and
    train: ten SGD steps on one batch lower its loss."""
    for config in sample_chains(2, seed=3, max_macs=20_000_000):
        trainable = trainable_from_model(config.build(), loss="softmax_cross_entropy",
                                         optimizer=SGD(0.05, 0.9))
        it = interpreter(trainable)
        rng = np.random.default_rng(0)
        x = rng.standard_normal(config.input_shape).astype(np.float32)
        classes = it.get_signature_runner("infer").get_output_details()["y"]["shape"]
        target = np.eye(classes[-1], dtype=np.float32)[[0] * classes[0]]
        train = it.get_signature_runner("train")
        losses = [float(train(x=x, y_true=target)["loss"]) for _ in range(10)]
        assert losses[-1] < losses[0] * 0.5, (config.name, losses)


def test_trainable_model_refuses_what_it_cannot_train():
    with pytest.raises(ValueError, match="no weights to train"):
        trainable_model([Conv2D(2), Flatten(), FullyConnected(2)], (4, 4, 1), loss="mse",
                        optimizer="sgd", batch_size=1, trainable={1})
    with pytest.raises(ValueError, match="no gradient for it"):
        trainable_model([FullyConnected(3), Unary("EXP")], (4,), loss="mse", optimizer="sgd",
                        batch_size=2)
    with pytest.raises(ValueError, match="loss must be"):
        trainable_model([FullyConnected(3)], (4,), loss="hinge", optimizer="sgd", batch_size=2)
    with pytest.raises(ValueError, match="optimizer must be"):
        trainable_model([FullyConnected(3)], (4,), loss="mse", optimizer="rmsprop",
                        batch_size=2)
    # A layer without a gradient is fine where no trainable layer lies before it.
    model = trainable_model([Unary("EXP"), FullyConnected(3)], (4,), loss="mse",
                            optimizer="sgd", batch_size=2)
    assert training_info(model).trainable == {1}


def test_nothing_trainable_still_computes_the_loss():
    model = build_model((2, 4), [FullyConnected(3)], seed=1)
    trainable = trainable_from_model(model, loss="mse", optimizer="adam", trainable=set())
    it = interpreter(trainable)
    x = np.ones((2, 4), np.float32)
    y = it.get_signature_runner("infer")(x=x)["y"]
    out = it.get_signature_runner("train")(x=x, y_true=np.zeros_like(y))
    np.testing.assert_allclose(out["loss"], np.mean(y ** 2), rtol=1e-6)
    assert it.get_signature_runner("weights")() == {}
