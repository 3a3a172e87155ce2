"""split_model and LayerChain: the chain of single-layer interpreters is the whole model."""

from __future__ import annotations

import numpy as np
import pytest

from agent.local import build_recipe
from agent.runtimes.chain import LayerChain, WholeModel
from joulefarm.tflite import (
    RECIPES,
    Conv2D,
    FullyConnected,
    Reshape,
    build_model,
    read_layers,
    split_model,
)
from joulefarm.tflite.flatbuffer import buffer_data_offsets, unpack_model
from joulefarm.tflite.variants import float16_weights


def whole_outputs(model_bytes: bytes, inputs: list[np.ndarray], **kwargs) -> list[np.ndarray]:
    whole = WholeModel(model_bytes, **kwargs)
    whole.set_inputs(inputs)
    whole.invoke()
    return whole.outputs()


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_chain_equals_whole_model_bit_exactly(recipe):
    model = build_recipe(recipe, 0)
    chain = LayerChain(model)
    for seed in (0, 1):
        inputs = chain.random_inputs(seed)
        got = chain.run(inputs)
        expected = whole_outputs(model, inputs)
        assert len(got) == len(expected) == 1
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b), f"{recipe}: max diff {np.abs(a - b).max()}"


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_chain_with_xnnpack_is_close(recipe):
    model = build_recipe(recipe, 0)
    chain = LayerChain(model, use_xnnpack=True)
    inputs = chain.random_inputs(2)
    (expected,) = whole_outputs(model, inputs)
    (got,) = chain.run(inputs)
    if expected.dtype == np.int8:  # XNNPACK rounds int8 requantisation its own way
        np.testing.assert_allclose(got.astype(int), expected.astype(int), atol=4)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_split_sub_models(recipe):
    model = build_recipe(recipe, 0)
    parts = split_model(model)
    graph = unpack_model(model).subgraphs[0]
    assert [p.index for p in parts] == list(range(len(graph.operators)))
    assert [p.op for p in parts] == [layer.op for layer in read_layers(model)]
    for part in parts:
        original = graph.operators[part.index]
        assert part.output_tensors == tuple(original.outputs)
        assert set(part.input_tensors) <= set(original.inputs)
        sub = unpack_model(part.model_bytes)
        assert len(sub.subgraphs[0].operators) == 1
        assert len(sub.subgraphs[0].inputs) == len(part.input_tensors)
        assert all(o % 16 == 0 for o in buffer_data_offsets(part.model_bytes))


def test_residual_input_order():
    """ADD reads two earlier tensors: the sub-model keeps the node's input order."""
    model = build_recipe("res_block", 0)
    add = next(p for p in split_model(model) if p.op == "ADD")
    graph = unpack_model(model).subgraphs[0]
    assert add.input_tensors == tuple(graph.operators[add.index].inputs)


def test_feed_then_invoke_layer_repeats_the_layer():
    model = build_recipe("res_block", 0)
    chain = LayerChain(model)
    outputs = chain.feed(chain.random_inputs(3))
    layer_outputs = []
    for it in chain.interpreters:
        layer_outputs.append([it.get_tensor(d["index"]) for d in it.get_output_details()])
    for i in reversed(range(len(chain))):  # any order: each layer holds its own inputs
        for _ in range(3):
            chain.invoke_layer(i)
        it = chain.interpreters[i]
        again = [it.get_tensor(d["index"]) for d in it.get_output_details()]
        for a, b in zip(again, layer_outputs[i], strict=True):
            assert np.array_equal(a, b)
    assert np.array_equal(chain.interpreters[-1].get_tensor(
        chain.interpreters[-1].get_output_details()[0]["index"]), outputs[0])


def test_layers_line_up_with_chain():
    model = build_recipe("tiny_cnn", 0)
    chain = LayerChain(model)
    assert chain.layers == read_layers(model)
    assert len(chain) == len(chain.layers) == len(chain.interpreters) == len(chain.invokers)


def test_fp16_weights_are_folded_into_their_layers():
    model = build_recipe("tiny_cnn", 0)
    half = float16_weights(model)
    all_nodes = read_layers(half, include_weight_prep=True)
    layers = read_layers(half)
    assert [n.op for n in all_nodes].count("DEQUANTIZE") == 5  # 3 conv, 1 depthwise, 1 fc
    assert [layer.op for layer in layers] == [layer.op for layer in read_layers(model)]
    # The kernel reads the expanded float32 weights: same parameter bytes as the float model.
    assert [layer.param_bytes for layer in layers] == [
        layer.param_bytes for layer in read_layers(model)]
    parts = split_model(half)
    assert [p.index for p in parts] == [layer.index for layer in layers]
    conv = unpack_model(parts[0].model_bytes).subgraphs[0]
    assert len(conv.operators) == 2  # DEQUANTIZE + CONV_2D

    chain = LayerChain(half)
    inputs = chain.random_inputs(0)
    got = chain.run(inputs)[0]
    assert np.array_equal(got, whole_outputs(half, inputs)[0])
    np.testing.assert_allclose(got, whole_outputs(model, inputs)[0], atol=2e-3)


def test_batch_resize_through_the_chain():
    """Feeding another batch size resizes every layer and refreshes the layer features."""
    model = build_model((1, 6, 6, 2), [Conv2D(4), Reshape((-1, 144)), FullyConnected(3)])
    chain = LayerChain(model)
    x = np.random.default_rng(0).standard_normal((3, 6, 6, 2)).astype(np.float32)
    whole = WholeModel(model)
    whole.set_inputs([x])
    whole.invoke()
    (got,) = chain.run([x])
    assert got.shape == (3, 3)
    assert np.array_equal(got, whole.outputs()[0])
    assert chain.layers[0].input_shapes == ((3, 6, 6, 2),)
    assert chain.layers[2].macs == 3 * 144 * 3


def test_wrong_inputs_are_rejected():
    chain = LayerChain(build_recipe("mlp", 0))
    with pytest.raises(ValueError, match="model has 1 inputs, got 2"):
        chain.run(chain.random_inputs(0) * 2)
    with pytest.raises(ValueError, match="input 0 must be float32, got float64"):
        chain.run([np.zeros((16, 256))])


def test_impossible_resize_is_model_error():
    from joulefarm.tflite import ModelError

    model = build_model((1, 6, 6, 2), [Conv2D(4), Reshape((1, 144))])  # fixed batch of 1
    with pytest.raises(ModelError, match=r"node 1 \(RESHAPE\): the runtime could not allocate"):
        LayerChain(model).run([np.zeros((2, 6, 6, 2), np.float32)])
    with pytest.raises(ModelError, match="whole model: the runtime could not allocate"):
        WholeModel(model).set_inputs([np.zeros((2, 6, 6, 2), np.float32)])


def test_placeholder_shapes_in_the_file_do_not_stop_a_layer() -> None:
    """Converters leave placeholder shapes on inner tensors (a STRIDED_SLICE output stored as
    [1, 1] is [1, 144000] at run time): the whole model runs (the runtime computes them), and
    so must each layer, at the shapes it is fed; its features then say those shapes."""
    from joulefarm.tflite.builder import tiny_cnn
    from joulefarm.tflite.flatbuffer import pack_model

    model = unpack_model(tiny_cnn())
    graph = model.subgraphs[0]
    inner = graph.operators[2].inputs[0]  # the 1x1 conv's input: 32 channels, not 1
    real = list(graph.tensors[inner].shape)
    graph.tensors[inner].shape = [1, 1, 1, 1]
    graph.tensors[inner].shapeSignature = None
    placeholder = pack_model(model)
    chain = LayerChain(placeholder)
    whole = WholeModel(placeholder)
    inputs = chain.random_inputs(0)
    whole.set_inputs(inputs)
    whole.invoke()
    assert np.array_equal(chain.feed(inputs)[0], whole.outputs()[0])
    assert list(chain.layers[2].input_shapes[0]) == real
    chain.invoke_layer(2)


def test_an_empty_operand_nothing_writes_is_a_constant_not_an_input() -> None:
    """Converters store RESHAPE's optional shape operand as an empty tensor ([0], no bytes;
    BirdNET, openWakeWord): it is no layer input, there being no value to feed it (before,
    the chain looked for one and failed with a KeyError)."""
    from joulefarm.tflite.builder import tiny_cnn
    from joulefarm.tflite.flatbuffer import pack_model
    from joulefarm.tflite.graph import load_graph
    from joulefarm.tflite.split import split_model

    model = unpack_model(tiny_cnn())
    graph = model.subgraphs[0]
    codes = [model.operatorCodes[op.opcodeIndex].builtinCode for op in graph.operators]
    reshape = graph.operators[codes.index(22)]  # RESHAPE
    empty = graph.tensors[reshape.inputs[1]]
    empty.shape, empty.shapeSignature, empty.buffer = [0], None, 0
    stored = pack_model(model)
    (part,) = [m for m in split_model(stored) if m.op == "RESHAPE"]
    assert part.input_tensors == (reshape.inputs[0],)
    assert load_graph(stored).is_constant(reshape.inputs[1])


def test_layer_tables_give_the_runtime_s_shapes_and_mark_the_file_s_placeholders(
        tmp_path) -> None:
    """BirdNET stores [1, 1] for tensors that are [1, 144000] at run time, so its file's MACs
    are 56x too small: the layer tables use what the runtime computes and say where the file
    differs."""
    import json

    from joulefarm.tflite.builder import tiny_cnn
    from joulefarm.tflite.flatbuffer import pack_model
    from joulefarm.tflite.parse import read_layers
    from tests.helpers import run_cli

    model = unpack_model(tiny_cnn())
    graph = model.subgraphs[0]
    inner = graph.operators[2].inputs[0]  # the 1x1 conv's input
    graph.tensors[inner].shape, graph.tensors[inner].shapeSignature = [1, 1, 1, 1], None
    path = tmp_path / "placeholder.tflite"
    path.write_bytes(pack_model(model))
    honest = {x.index: x for x in read_layers(tiny_cnn())}

    listed = run_cli("model", "layers", str(path), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["index"]: row for row in json.loads(listed.stdout)}
    assert rows[2]["input_shapes"] == [list(honest[2].input_shapes[0])]
    assert rows[2]["macs"] == honest[2].macs and rows[2]["file_shapes_differ"]
    assert not rows[0]["file_shapes_differ"]
    from_file = run_cli("model", "layers", str(path), "--file-shapes", "--format", "json")
    assert json.loads(from_file.stdout)[2]["input_shapes"] == [[1, 1, 1, 1]]

    measured = run_cli("bench", str(path), "--mode", "layers", "--min-layer-duration-s",
                       "0.003", "--json")
    assert measured.returncode == 0, measured.stderr
    layers = {row["index"]: row for row in json.loads(measured.stdout)["layers"]}
    assert "file_shapes_differ" in layers[2]["flags"] and layers[2]["macs"] == honest[2].macs
