"""``rebatch``: a generated model run at another batch computes each row as the original does."""

from __future__ import annotations

import numpy as np
import pytest

from agent.runtimes.chain import WholeModel
from joulefarm.errors import ModelError
from joulefarm.tflite.builder import (
    RECIPES,
    Binary,
    Concatenation,
    LayerSpec,
    Pad,
    Reduce,
    Reshape,
    Slice,
    StridedSlice,
    Transpose,
    Unary,
    build_model,
    tiny_cnn,
)
from joulefarm.tflite.flatbuffer import pack_model, shape_of, unpack_model
from joulefarm.tflite.rebatch import rebatch
from joulefarm.tflite.schema import tfl
from joulefarm.tflite.sweep import ELEMENTWISE_KINDS, KINDS, SIGNAL_KINDS, sample_configs
from joulefarm.tflite.training import trainable_from_model, training_info

FLOAT_RECIPES = sorted(name for name, recipe in RECIPES.items() if not recipe.int8)
# Small caps: every sweep model runs many times (once per row) on a busy CI machine.
SWEEP_CAPS = {"max_macs": 2_000_000, "max_elements": 50_000}


def _batch(model_bytes: bytes) -> int:
    model = unpack_model(model_bytes)
    return shape_of(model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]])[0]


def _run(whole: WholeModel, x: np.ndarray) -> np.ndarray:
    whole.set_inputs([x])
    whole.invoke()
    return np.array(whole.outputs()[0])


def assert_rows_match(original: bytes, rebatched: bytes, batch: int, seed: int = 0) -> None:
    """``rebatched`` on ``batch`` random rows gives, row for row, what ``original`` gives on
    the same rows (fed ``b0`` at a time, the last chunk filled up with repeats)."""
    b0 = _batch(original)
    big, small = WholeModel(rebatched), WholeModel(original)
    (shape, dtype, _), = big.input_specs
    assert shape[0] == batch and shape[1:] == small.input_specs[0][0][1:]
    x = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    got = _run(big, x)
    assert got.shape[0] == batch
    for start in range(0, batch, b0):
        rows = x[start:start + b0]
        chunk = np.resize(rows, (b0, *shape[1:])).astype(dtype)  # repeats rows to fill b0
        expected = _run(small, chunk)[:len(rows)]
        finite = np.abs(expected[np.isfinite(expected)])
        scale = float(finite.max()) if finite.size else 1.0
        np.testing.assert_allclose(got[start:start + len(rows)], expected, rtol=1e-5,
                                   atol=1e-5 * max(scale, 1e-6))


@pytest.mark.parametrize("name", FLOAT_RECIPES)
@pytest.mark.parametrize("batch", [3, 8])
def test_recipe_rows_match(name: str, batch: int) -> None:
    original = RECIPES[name]()
    rebatched = rebatch(original, batch)
    for tensor in unpack_model(rebatched).subgraphs[0].tensors:
        if tensor.buffer == 0:  # every activation leads with the new batch
            assert shape_of(tensor)[0] == batch
    assert_rows_match(original, rebatched, batch)


def test_recipes_cover_batches_other_than_one() -> None:
    assert "mlp" in FLOAT_RECIPES and _batch(RECIPES["mlp"]()) == 16
    assert not any(RECIPES[name].int8 for name in FLOAT_RECIPES)


@pytest.mark.parametrize("kinds", [KINDS, ELEMENTWISE_KINDS + SIGNAL_KINDS],
                         ids=["layers", "elementwise-signal"])
def test_sweep_rows_match(kinds: tuple[str, ...]) -> None:
    configs = sample_configs(12, seed=7, kinds=kinds, **SWEEP_CAPS)
    accepted = 0
    for config in configs:
        original = config.build()
        try:
            rebatched = {batch: rebatch(original, batch) for batch in (3, 8)}
        except ModelError:
            continue
        accepted += 1
        for batch, model in rebatched.items():
            assert_rows_match(original, model, batch, seed=batch)
    assert accepted >= 8, f"only {accepted} of {len(configs)} sweep configs rebatched"


def test_back_to_the_original_batch() -> None:
    original = tiny_cnn()
    assert_rows_match(original, rebatch(rebatch(original, 5), 1), 1)


def test_batch_below_one_is_refused() -> None:
    for batch in (0, -2):
        with pytest.raises(ValueError, match="batch"):
            rebatch(tiny_cnn(), batch)


def test_same_batch_returns_the_same_bytes() -> None:
    for name in FLOAT_RECIPES:
        original = RECIPES[name]()
        assert rebatch(original, _batch(original)) == original


def test_reshape_shape_constant_and_options_are_rewritten() -> None:
    model = unpack_model(rebatch(build_model((1, 4, 6), [Reshape((1, 24)), Reshape((-1, 6, 4))]),
                                 6))
    graph = model.subgraphs[0]
    targets = []
    for node in graph.operators:
        const = graph.tensors[node.inputs[1]]
        raw = np.asarray(model.buffers[const.buffer].data, np.uint8).tobytes()
        targets.append((np.frombuffer(raw, np.int32).tolist(),
                        [int(d) for d in node.builtinOptions.newShape]))
    assert targets == [([6, 24], [6, 24]), ([-1, 6, 4], [-1, 6, 4])]


def test_shape_signatures_follow_the_batch() -> None:
    model = unpack_model(tiny_cnn())
    graph = model.subgraphs[0]
    graph.tensors[graph.inputs[0]].shapeSignature = [1, 64, 64, 3]
    graph.tensors[graph.outputs[0]].shapeSignature = [-1, 10]
    out = unpack_model(rebatch(pack_model(model), 3)).subgraphs[0]
    assert list(out.tensors[out.inputs[0]].shapeSignature) == [3, 64, 64, 3]
    assert list(out.tensors[out.outputs[0]].shapeSignature) == [-1, 10]


def test_two_inputs_are_refused() -> None:
    model = unpack_model(build_model((1, 4), [Binary("ADD", "input")]))
    graph = model.subgraphs[0]
    second = tfl.TensorT()
    second.shape, second.type, second.buffer, second.name = [1, 4], tfl.TensorType.FLOAT32, 0, "y"
    graph.tensors.append(second)
    graph.inputs.append(len(graph.tensors) - 1)
    graph.operators[0].inputs = [graph.inputs[0], graph.inputs[1]]
    with pytest.raises(ModelError, match="one input"):
        rebatch(pack_model(model), 4)


@pytest.mark.parametrize(("shape", "layers", "node"), [
    ((1, 4, 6), [Reduce("SUM", (0,), keep_dims=True)], r"node 0 \(SUM\)"),
    ((1, 4, 6), [Reduce("SUM", (0, 1))], r"node 0 \(SUM\)"),
    ((1, 1, 6), [Transpose((1, 0, 2))], r"node 0 \(TRANSPOSE\)"),
    ((2, 5), [Binary("ADD", "full")], r"node 0 \(ADD\)"),
    ((1, 5), [Pad(((1, 0), (0, 0)))], r"node 0 \(PAD\)"),
    ((1, 5), [Unary("RELU"), Concatenation(0, axis=0)], r"node 1 \(CONCATENATION\)"),
    ((2, 4), [Slice((1, 0), (1, 4))], r"node 0 \(SLICE\)"),
    ((2, 4), [StridedSlice((0, 0), (2, 4), (2, 1))], r"node 0 \(STRIDED_SLICE\)"),
    ((1, 2, 3), [Reshape((2, 3))], r"node 0 \(RESHAPE\)"),
])
def test_ops_that_act_across_the_batch_are_refused(shape: tuple[int, ...],
                                                   layers: list[LayerSpec], node: str) -> None:
    model = build_model(shape, layers)
    for batch in (3, shape[0]):  # refused at the model's own batch too
        with pytest.raises(ModelError, match=node):
            rebatch(model, batch)


def test_refused_op_later_in_a_model_names_its_node() -> None:
    model = build_model((1, 1, 6), [Unary("RELU"), Unary("TANH"), Transpose((1, 0, 2))])
    with pytest.raises(ModelError, match=r"node 2 \(TRANSPOSE\)"):
        rebatch(model, 4)


def test_whole_batch_slices_are_rewritten() -> None:
    x_shape = (2, 3, 8)
    for layer in (Slice((0, 1, 2), (2, 2, 5)), StridedSlice((0, 0, 1), (2, 3, 7), (1, 2, 3))):
        original = build_model(x_shape, [layer])
        assert_rows_match(original, rebatch(original, 5), 5)


def test_a_rebatched_model_trains_at_its_batch() -> None:
    model = trainable_from_model(rebatch(tiny_cnn(), 4), loss="softmax_cross_entropy",
                                 optimizer="adam")
    assert training_info(model).batch_size == 4
