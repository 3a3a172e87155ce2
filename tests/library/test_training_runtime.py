"""What the runtime does with resource variables and signatures (docs/training-models.md).

A hand-built model: one variable ``w`` [3, 1], initialised by CALL_ONCE from a constant;
``infer(x) = x @ w``; ``train(x, y)`` takes one SGD step of the linear MSE
(w <- w - lr * 2/B * x^T (x w - y)) and returns the loss; ``weights()`` reads ``w``.
"""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from joulefarm.tflite.flatbuffer import op_name, unpack_model
from joulefarm.tflite.training import emit
from joulefarm.tflite.training.writer import ModelWriter, SubgraphWriter

BATCH = 4
LR = 0.1
W0 = np.array([[0.5], [-1.0], [2.0]], np.float32)


def linear_model() -> bytes:
    m = ModelWriter("linear probe")
    infer, train, weights, init = (m.subgraph(n) for n in ("infer", "train", "weights", "init"))
    emit.assign_variable(init, emit.var_handle(init, "w"), init.const(W0))

    def read(g: SubgraphWriter) -> tuple[int, int]:
        emit.call_once(g, m.index(init))
        handle = emit.var_handle(g, "w")
        return handle, emit.read_variable(g, handle, W0.shape, "w")

    x = infer.tensor((BATCH, 3), "x")
    _, w = read(infer)
    m.signature("infer", infer, {"x": x}, {"y": emit.batch_matmul(infer, x, w)})

    x, y = train.tensor((BATCH, 3), "x"), train.tensor((BATCH, 1), "y")
    handle, w = read(train)
    diff = emit.sub(train, emit.batch_matmul(train, x, w), y)
    loss = emit.reduce(train, "MEAN", emit.mul(train, diff, diff), (0, 1))
    grad = emit.scale(train, emit.batch_matmul(train, x, diff, adj_x=True), 2.0 / BATCH)
    emit.assign_variable(train, handle, emit.sub(train, w, emit.scale(train, grad, LR)))
    m.signature("train", train, {"x": x, "y": y}, {"loss": loss})

    _, w = read(weights)
    m.signature("weights", weights, {}, {"w": w})
    return m.finish()


def interpreter(model: bytes, xnnpack: bool = False) -> Interpreter:
    resolver = (OpResolverType.BUILTIN if xnnpack
                else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return Interpreter(model_content=model, experimental_op_resolver_type=resolver)


def data() -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).standard_normal((BATCH, 3)).astype(np.float32)
    return x, (x @ np.array([[1.0], [2.0], [3.0]])).astype(np.float32)


def numpy_steps(x: np.ndarray, y: np.ndarray, steps: int) -> np.ndarray:
    w = W0.astype(np.float64)
    for _ in range(steps):
        w = w - LR * 2 / BATCH * x.T @ (x @ w - y)
    return w


def test_signatures_are_listed():
    it = interpreter(linear_model())
    assert it.get_signature_list() == {
        "infer": {"inputs": ["x"], "outputs": ["y"]},
        "train": {"inputs": ["x", "y"], "outputs": ["loss"]},
        "weights": {"inputs": [], "outputs": ["w"]},
    }
    assert it.num_subgraphs() == 4  # the init subgraph has no signature


@pytest.mark.parametrize("xnnpack", [False, True])
def test_variable_persists_across_signature_calls(xnnpack):
    it = interpreter(linear_model(), xnnpack)
    x, y = data()
    read = it.get_signature_runner("weights")
    np.testing.assert_array_equal(read()["w"], W0)  # CALL_ONCE ran the init subgraph
    train = it.get_signature_runner("train")
    losses = [float(train(x=x, y=y)["loss"]) for _ in range(3)]
    assert losses[0] > losses[1] > losses[2]
    w = read()["w"]
    np.testing.assert_allclose(w, numpy_steps(x, y, 3), rtol=1e-5)
    # infer sees what train assigned; the init subgraph did not run again.
    np.testing.assert_allclose(it.get_signature_runner("infer")(x=x)["y"], x @ w, rtol=1e-5)
    np.testing.assert_allclose(read()["w"], w)


def test_interpreters_do_not_share_variables():
    model = linear_model()
    a, b = interpreter(model), interpreter(model)
    x, y = data()
    a.get_signature_runner("train")(x=x, y=y)
    assert not np.array_equal(a.get_signature_runner("weights")()["w"], W0)
    np.testing.assert_array_equal(b.get_signature_runner("weights")()["w"], W0)


def test_reset_all_variables_leaves_resource_variables():
    # reset_all_variables resets the old "variable tensors", not resource variables: a fresh
    # start of training needs a fresh interpreter.
    it = interpreter(linear_model())
    x, y = data()
    it.get_signature_runner("train")(x=x, y=y)
    trained = it.get_signature_runner("weights")()["w"]
    it.reset_all_variables()
    np.testing.assert_array_equal(it.get_signature_runner("weights")()["w"], trained)


def test_plain_invoke_runs_the_first_subgraph():
    it = interpreter(linear_model())
    it.allocate_tensors()
    x, _ = data()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    np.testing.assert_allclose(it.get_tensor(it.get_output_details()[0]["index"]), x @ W0,
                               rtol=1e-6)
    model = unpack_model(linear_model())
    assert [op_name(model, op) for op in model.subgraphs[0].operators] == [
        "CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE", "BATCH_MATMUL"]
