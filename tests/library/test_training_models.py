"""Trainable models in the runtime: gradients and updates against the numpy reference
(``tests/helpers/training_reference.py``), finite differences of the runtime's own loss,
learning, op tags."""

from __future__ import annotations

import numpy as np
import pytest

from joulefarm.tflite.builder import (
    AveragePool2D,
    Conv2D,
    DepthwiseConv2D,
    Flatten,
    FullyConnected,
    MaxPool2D,
    Softmax,
    build_model,
)
from joulefarm.tflite.flatbuffer import pack_model, unpack_model
from joulefarm.tflite.training import (
    PHASES,
    SGD,
    Adam,
    trainable_from_model,
    trainable_model,
    training_info,
)
from tests.helpers.training_reference import (
    REFERENCE_MODELS,
    WEIGHT_NAMES,
    TrainingReference,
    adam_steps,
    reference_case,
    sgd_steps,
)
from tests.helpers.training_runtime import (
    GRADIENT_RTOL,
    assert_close_to,
    interpreter,
    train_once,
)


def with_weights(model_bytes: bytes, ref: TrainingReference, params: dict[str, np.ndarray]
                 ) -> bytes:
    """The inference model with its weights replaced by ``params`` (float32)."""
    model = unpack_model(model_bytes)
    graph = model.subgraphs[0]
    for n, (op, _, inputs, _) in enumerate(ref.nodes):
        for position, name in enumerate(WEIGHT_NAMES.get(op, ()), start=1):
            value = params[f"{n}/{name}"].astype(np.float32)
            model.buffers[graph.tensors[inputs[position]].buffer].data = np.frombuffer(
                value.tobytes(), np.uint8)
    return pack_model(model)


def check_gradients(name: str, loss: str, xnnpack: bool = False,
                    rtol: float = GRADIENT_RTOL) -> None:
    """One train step's gradients against the reference's, for every weight."""
    model, ref, x, target = reference_case(name, loss)
    x32, t32 = x.astype(np.float32), target.astype(np.float32)
    trainable = trainable_from_model(model, loss=loss, optimizer=SGD(0.01, 0.0),
                                     gradient_outputs=True)
    params = ref.weights()
    out = train_once(trainable, x32, t32, xnnpack)
    expected_loss, expected = ref.grads(x32.astype(np.float64), t32, params)
    assert abs(float(out["loss"]) - expected_loss) <= 1e-5 * max(abs(expected_loss), 1e-3)
    assert {k.removeprefix("grad/") for k in out if k != "loss"} == expected.keys()
    for key, grad in expected.items():
        assert_close_to(out[f"grad/{key}"], grad, rtol, f"{name} {loss} {key}")


def check_directional_derivatives(name: str, loss: str, eps: float = 1e-3) -> None:
    """The runtime's gradient against central differences of the runtime's own loss along
    the gradient and along a random direction (each a unit vector over all weights)."""
    model, ref, x, target = reference_case(name, loss)
    params = ref.weights()
    kwargs = {"loss": loss, "optimizer": SGD(0.01, 0.0)}
    out = train_once(trainable_from_model(model, gradient_outputs=True, **kwargs), x, target)
    grad = {k: out[f"grad/{k}"].astype(np.float64) for k in params}
    rng = np.random.default_rng(7)
    for direction in (grad, {k: rng.standard_normal(v.shape) for k, v in params.items()}):
        norm = np.sqrt(sum(float(np.sum(d * d)) for d in direction.values()))
        unit = {k: d / norm for k, d in direction.items()}
        slope = sum(float(np.sum(grad[k] * unit[k])) for k in params)
        ends = []
        for sign in (1, -1):
            moved = {k: params[k] + sign * eps * unit[k] for k in params}
            ends.append(float(train_once(trainable_from_model(with_weights(model, ref, moved),
                                                              **kwargs), x, target)["loss"]))
        numeric = (ends[0] - ends[1]) / (2 * eps)
        total = np.sqrt(sum(float(np.sum(g * g)) for g in grad.values()))
        assert abs(numeric - slope) <= 1e-2 * total, (name, loss, numeric, slope)


# ---------------------------------------------------------------- stage 2: dense layers, MSE, SGD


def test_weights_signature_holds_the_builder_weights():
    model, ref, _, _ = reference_case("mlp")
    read = interpreter(trainable_from_model(model, loss="mse", optimizer="sgd"))
    got = read.get_signature_runner("weights")()
    assert got.keys() == ref.weights().keys()
    for key, value in ref.weights().items():
        np.testing.assert_array_equal(got[key], value.astype(np.float32))


def test_trainable_model_is_build_model_made_trainable():
    layers = REFERENCE_MODELS["mlp"][1]
    a = trainable_model(layers, (6,), loss="mse", optimizer="sgd", batch_size=4, seed=3)
    b = trainable_from_model(build_model((4, 6), layers, seed=3), loss="mse",
                             optimizer="sgd", description="joulefarm trainable: model (seed 3)")
    assert a == b


def test_infer_matches_the_inference_model():
    from tests.helpers.models import run_once

    model, _, x, _ = reference_case("mlp")
    it = interpreter(trainable_from_model(model, loss="mse", optimizer="sgd"))
    x32 = x.astype(np.float32)
    np.testing.assert_array_equal(it.get_signature_runner("infer")(x=x32)["y"],
                                  run_once(model, x32))


@pytest.mark.parametrize("name", ["mlp", "elementwise"])
def test_dense_gradients_match_numpy(name):
    check_gradients(name, "mse")


@pytest.mark.parametrize("name", ["mlp", "elementwise"])
def test_dense_directional_derivatives(name):
    check_directional_derivatives(name, "mse")


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_steps_match_numpy(momentum):
    model, ref, x, target = reference_case("mlp")
    x32, t32 = x.astype(np.float32), target.astype(np.float32)
    it = interpreter(trainable_from_model(model, loss="mse", optimizer=SGD(0.1, momentum)))
    train = it.get_signature_runner("train")
    for _ in range(3):
        train(x=x32, y_true=t32)
    got = it.get_signature_runner("weights")()
    expected = sgd_steps(ref.weights(), lambda p: ref.grads(x32, t32, p)[1], 3, 0.1, momentum)
    for key, value in expected.items():
        assert_close_to(got[key], value, 1e-5, key)


def test_mlp_learns_a_regression():
    """y = sin(2 x0) * x1 on [-1, 1]^2 (variance 0.19): 300 SGD steps of batch 32 take the
    MSE over all 512 examples from about 0.74 to below 0.005."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (512, 2)).astype(np.float32)
    y = (np.sin(2 * x[:, :1]) * x[:, 1:]).astype(np.float32)
    model = trainable_model([FullyConnected(32, "RELU"), FullyConnected(32, "RELU"),
                             FullyConnected(1)], (2,), loss="mse", optimizer=SGD(0.05, 0.9),
                            batch_size=32)
    it = interpreter(model)
    train, infer = it.get_signature_runner("train"), it.get_signature_runner("infer")

    def mse() -> float:
        return float(np.mean([(infer(x=x[i:i + 32])["y"] - y[i:i + 32]) ** 2
                              for i in range(0, 512, 32)]))

    before = mse()
    for step in range(300):
        i = (step % 16) * 32
        train(x=x[i:i + 32], y_true=y[i:i + 32])
    after = mse()
    assert before > 0.3
    assert after < 0.005, (before, after)


def test_every_train_op_is_tagged():
    model, _, _, _ = reference_case("mlp")
    trainable = trainable_from_model(model, loss="mse", optimizer=SGD(0.1, 0.9))
    info = training_info(trainable)
    assert info.loss == "mse" and info.batch_size == 4
    assert info.optimizer == {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}
    assert info.layers == ("FULLY_CONNECTED",) * 3
    assert info.trainable == {0, 1, 2}
    parsed = unpack_model(trainable)
    for key, ops in info.signatures.items():
        assert len(ops.tags) == len(parsed.subgraphs[ops.subgraph].operators), key
        assert all(tag.phase in PHASES for tag in ops.tags)
    tags = info.ops("train")
    assert tags[0].phase == "init"
    for layer in range(3):
        assert info.layer_ops(layer, "forward")
        assert info.layer_ops(layer, "backward-weights")
        assert info.layer_ops(layer, "update")
    # The first layer needs no input gradient; the others do.
    assert not info.layer_ops(0, "backward-input")
    assert info.layer_ops(1, "backward-input") and info.layer_ops(2, "backward-input")
    # Phases come in order within each layer.
    for layer in range(3):
        phases = [t.phase for t in tags if t.layer == layer]
        order = [PHASES.index(p) for p in phases]
        assert order == sorted(order), phases


def test_training_info_needs_a_trainable_model():
    from joulefarm.errors import ModelError

    model, _, _, _ = reference_case("mlp")
    with pytest.raises(ModelError, match="not a trainable model"):
        training_info(model)


# ---------------------------------------------------------------- stage 3: cross-entropy, Adam


@pytest.mark.parametrize("name", ["mlp", "mlp_softmax"])
def test_cross_entropy_gradients_match_numpy(name):
    # mlp: the loss reads the last layer's output as logits; mlp_softmax: the logits are the
    # final SOFTMAX's input (fused softmax cross-entropy, the softmax's backward skipped).
    check_gradients(name, "softmax_cross_entropy")


def test_softmax_gradient_under_mse():
    check_gradients("mlp_softmax", "mse")


@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "mse"])
def test_softmax_directional_derivatives(loss):
    check_directional_derivatives("mlp_softmax", loss)


def test_adam_steps_match_numpy():
    model, ref, x, target = reference_case("mlp_softmax", "softmax_cross_entropy")
    x32, t32 = x.astype(np.float32), target.astype(np.float32)
    adam = Adam(0.01, 0.8, 0.99, 1e-7)
    it = interpreter(trainable_from_model(model, loss="softmax_cross_entropy", optimizer=adam))
    train = it.get_signature_runner("train")
    for _ in range(3):
        train(x=x32, y_true=t32)
    got = it.get_signature_runner("weights")()
    expected = adam_steps(ref.weights(), lambda p: ref.grads(x32, t32, p)[1], 3, 0.01, 0.8,
                          0.99, 1e-7)
    for key, value in expected.items():
        assert_close_to(got[key], value, 1e-5, key)


def test_mlp_learns_a_classification():
    """Three classes on [-1, 1]^2: inside the circle r < 0.5, else the XOR of the signs of
    x0 and x1. 400 Adam steps of batch 32 take the cross-entropy over all 512 examples from
    about 1.4 to below 0.1, and the accuracy from about 0.17 to above 0.95."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (512, 2)).astype(np.float32)
    labels = np.where(np.hypot(x[:, 0], x[:, 1]) < 0.5, 2, (x[:, 0] * x[:, 1] > 0).astype(int))
    y = np.eye(3, dtype=np.float32)[labels]
    model = trainable_model([FullyConnected(32, "RELU"), FullyConnected(32, "RELU"),
                             FullyConnected(3), Softmax()], (2,),
                            loss="softmax_cross_entropy", optimizer=Adam(0.01), batch_size=32)
    it = interpreter(model)
    train, infer = it.get_signature_runner("train"), it.get_signature_runner("infer")

    def evaluate() -> tuple[float, float]:
        p = np.concatenate([infer(x=x[i:i + 32])["y"] for i in range(0, 512, 32)])
        return (float(-np.mean(np.log(p[np.arange(512), labels]))),
                float(np.mean(p.argmax(axis=1) == labels)))

    loss_before, accuracy_before = evaluate()
    for step in range(400):
        i = (step % 16) * 32
        train(x=x[i:i + 32], y_true=y[i:i + 32])
    loss_after, accuracy_after = evaluate()
    assert loss_before > 1.0 and accuracy_before < 0.5
    assert loss_after < 0.1 and accuracy_after > 0.95, (loss_after, accuracy_after)


# ---------------------------------------------------------------- stage 4: window ops

SPATIAL_MODELS = sorted(set(REFERENCE_MODELS) - {"mlp", "mlp_softmax", "elementwise"})


@pytest.mark.parametrize("name", SPATIAL_MODELS)
def test_window_op_gradients_match_numpy(name):
    """Conv2D stride 1/2, SAME/VALID, an even kernel; depthwise (multiplier 2, stride 2,
    SAME/VALID with a leftover row); max and average pooling tiled and overlapping, SAME and
    VALID, with leftover rows; a residual ADD. Every window op follows a trainable layer, so
    its input gradient is checked through that layer's weight gradient."""
    check_gradients(name, "mse")


@pytest.mark.parametrize("name", ["conv_same_s2_even", "depthwise_same_s2", "pools_tiled"])
def test_window_op_gradients_under_cross_entropy(name):
    check_gradients(name, "softmax_cross_entropy")


@pytest.mark.parametrize("name", ["conv_valid_s2", "depthwise_same_s2", "pools_overlapping",
                                  "residual"])
def test_window_op_directional_derivatives(name):
    check_directional_derivatives(name, "mse")


@pytest.mark.parametrize("name", ["conv_same_s2_even", "depthwise_same_s2",
                                  "pools_overlapping"])
def test_gradients_with_the_xnnpack_delegate(name):
    # The default delegate takes what it supports of the train subgraph; the gradients
    # stay those of the reference (its own summation order: a looser tolerance).
    check_gradients(name, "mse", xnnpack=True, rtol=1e-4)


def bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 one-channel images in noise (sd 0.3): a horizontal bar, a vertical bar or the
    diagonal (labels 0, 1, 2)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    x = 0.3 * rng.standard_normal((n, 8, 8, 1)).astype(np.float32)
    for k in range(n):
        r = rng.integers(1, 7)
        if labels[k] == 0:
            x[k, r, :, 0] += 1
        elif labels[k] == 1:
            x[k, :, r, 0] += 1
        else:
            x[k, np.arange(8), np.arange(8), 0] += 1
    return x, labels


def test_cnn_learns_bars():
    """Conv, max pool, depthwise (stride 2, RELU6), 1x1 conv, average pool, FC, softmax on
    ``bars``: 150 Adam steps (lr 0.01, batch 32) take the cross-entropy over all 384 images
    from about 1.1 to below 0.05 and the accuracy from about 0.4 to above 0.97."""
    x, labels = bars(384, 2)
    y = np.eye(3, dtype=np.float32)[labels]
    layers = [Conv2D(4, (3, 3)), MaxPool2D((2, 2)),
              DepthwiseConv2D((3, 3), (2, 2), activation="RELU6"), Conv2D(8, (1, 1)),
              AveragePool2D((2, 2)), Flatten(), FullyConnected(3), Softmax()]
    model = trainable_model(layers, (8, 8, 1), loss="softmax_cross_entropy",
                            optimizer=Adam(0.01), batch_size=32)
    it = interpreter(model)
    train, infer = it.get_signature_runner("train"), it.get_signature_runner("infer")

    def evaluate() -> tuple[float, float]:
        p = np.concatenate([infer(x=x[i:i + 32])["y"] for i in range(0, 384, 32)])
        return (float(-np.mean(np.log(p[np.arange(384), labels]))),
                float(np.mean(p.argmax(axis=1) == labels)))

    loss_before, accuracy_before = evaluate()
    for step in range(150):
        i = (step % 12) * 32
        train(x=x[i:i + 32], y_true=y[i:i + 32])
    loss_after, accuracy_after = evaluate()
    assert loss_before > 0.9 and accuracy_before < 0.6
    assert loss_after < 0.05 and accuracy_after > 0.97, (loss_after, accuracy_after)
