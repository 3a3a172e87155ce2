"""read_layers features (known answers) and ModelError on bad or unsupported models."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from agent.local import build_recipe
from agent.runtimes.backend import load_interpreter
from joulefarm.tflite import (
    RECIPES,
    AveragePool2D,
    Conv2D,
    DepthwiseConv2D,
    Flatten,
    FullyConnected,
    Mean,
    ModelError,
    Softmax,
    build_model,
    layer_from_dict,
    layer_to_dict,
    model_summary,
    read_layers,
)
from joulefarm.tflite.flatbuffer import pack_model, unpack_model
from joulefarm.tflite.schema import tfl


@pytest.fixture(scope="module")
def small_cnn() -> bytes:
    return build_model((1, 16, 16, 3), [
        Conv2D(8, (3, 3), (2, 2), "SAME", "RELU6"),   # 0 -> 1x8x8x8
        DepthwiseConv2D((3, 3), (1, 1), "VALID"),      # 1 -> 1x6x6x8
        AveragePool2D((2, 2)),                         # 2 -> 1x3x3x8
        Flatten(),                                     # 3 -> 1x72
        FullyConnected(10),                            # 4 -> 1x10
        Softmax(),                                     # 5
    ])


def test_known_answers(small_cnn):
    layers = read_layers(small_cnn)
    assert [layer.index for layer in layers] == list(range(6))
    assert [layer.op for layer in layers] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
        "SOFTMAX"]
    conv, dw, pool, reshape, fc, softmax = layers

    assert conv.input_shapes == ((1, 16, 16, 3),)
    assert conv.output_shapes == ((1, 8, 8, 8),)
    assert (conv.kernel, conv.stride, conv.padding, conv.activation) == ((3, 3), (2, 2), "SAME",
                                                                          "RELU6")
    assert conv.macs == 8 * 8 * 8 * 3 * 3 * 3
    assert conv.param_bytes == 4 * (8 * 3 * 3 * 3 + 8)
    assert conv.act_in_bytes == 4 * 16 * 16 * 3
    assert conv.act_out_bytes == 4 * 8 * 8 * 8
    assert conv.dtype == "float32"

    assert dw.output_shapes == ((1, 6, 6, 8),)
    assert (dw.padding, dw.activation) == ("VALID", "RELU")
    assert dw.macs == 6 * 6 * 8 * 3 * 3
    assert dw.param_bytes == 4 * (3 * 3 * 8 + 8)

    assert (pool.kernel, pool.stride, pool.padding) == ((2, 2), (2, 2), "VALID")
    assert pool.macs == 3 * 3 * 8 * 2 * 2
    assert pool.param_bytes == 0

    assert reshape.output_shapes == ((1, 72),)
    assert reshape.macs == 0
    assert reshape.param_bytes == 8  # the int32 [2] shape operand
    assert (reshape.kernel, reshape.stride, reshape.padding, reshape.activation) == (
        None, None, None, None)

    assert fc.macs == 72 * 10
    assert fc.param_bytes == 4 * (72 * 10 + 10)
    assert fc.activation == "NONE"
    assert softmax.macs == 10


def test_batch_counts_in_macs():
    (fc,) = read_layers(build_model((16, 256), [FullyConnected(32)]))
    assert fc.macs == 16 * 256 * 32
    (mean,) = read_layers(build_model((2, 5, 5, 4), [Mean((1, 2))]))
    assert mean.output_shapes == ((2, 4),)
    assert mean.macs == 2 * 5 * 5 * 4  # reductions count their input elements


def test_layer_dict_roundtrip(small_cnn):
    for layer in read_layers(small_cnn):
        data = json.loads(json.dumps(layer_to_dict(layer)))
        assert layer_from_dict(data) == layer


def test_model_summary(small_cnn):
    summary = model_summary(small_cnn)
    layers = read_layers(small_cnn)
    assert summary["layers"] == 6
    assert summary["macs"] == sum(layer.macs for layer in layers)
    assert summary["param_bytes"] == sum(layer.param_bytes for layer in layers)
    assert summary["inputs"] == [{"index": 0, "shape": [1, 16, 16, 3], "dtype": "float32"}]
    assert summary["ops"]["CONV_2D"] == 1


def test_shape_overrides_change_features(small_cnn):
    fc = read_layers(small_cnn)[4]
    graph = unpack_model(small_cnn).subgraphs[0]
    x = graph.operators[4].inputs[0]
    resized = read_layers(small_cnn, shapes={x: (4, 72)})[4]
    assert resized.macs == 4 * fc.macs
    assert resized.act_in_bytes == 4 * fc.act_in_bytes


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_layers_differ_in_cost(recipe):
    macs = [layer.macs for layer in read_layers(build_recipe(recipe, 0))]
    assert max(macs) > 20 * min(m for m in macs if m > 0)


# ------------------------------------------------------------------ errors


def test_truncated_bytes(small_cnn):
    for cut in (3, 100, len(small_cnn) // 2, len(small_cnn) - 16):
        with pytest.raises(ModelError, match=r"not a TFLite model|corrupt|truncated"):
            read_layers(small_cnn[:cut])


def test_truncated_header_message(small_cnn):
    with pytest.raises(ModelError, match="not a TFLite model: only 3 bytes"):
        read_layers(small_cnn[:3])


def test_random_bytes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        junk = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        with pytest.raises(ModelError, match="not a TFLite model: file identifier"):
            read_layers(junk)
        junk = junk[:4] + b"TFL3" + junk[8:]  # right identifier, garbage elsewhere
        with pytest.raises(ModelError, match="corrupt|truncated"):
            read_layers(junk)


def test_not_a_tflite_file():
    with pytest.raises(ModelError, match=r"file identifier is b'\\x89PNG'|identifier is b'PK"):
        read_layers(b"PK\x03\x04" + b"\x89PNG" + bytes(100))
    with pytest.raises(ModelError, match="model must be bytes, got str"):
        read_layers("model.tflite")  # type: ignore[arg-type]


def test_several_subgraphs_are_read_and_refused_only_by_rewrites(small_cnn):
    from joulefarm.tflite.parse import model_summary
    from joulefarm.tflite.variants import float16_weights

    model = unpack_model(small_cnn)
    model.subgraphs = [model.subgraphs[0], model.subgraphs[0]]
    both = pack_model(model)
    assert [x.op for x in read_layers(both)] == [x.op for x in read_layers(small_cnn)]
    assert model_summary(both)["subgraphs"] == 2
    with pytest.raises(ModelError, match="float16_weights cannot rewrite this model: it has 2 "
                                         "subgraphs"):
        float16_weights(both)


def test_custom_op_is_a_layer_of_its_own(small_cnn):
    from joulefarm.tflite.variants import float16_weights

    model = unpack_model(small_cnn)
    code = model.operatorCodes[model.subgraphs[0].operators[2].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = tfl.BuiltinOperator.CUSTOM
    code.customCode = "MyPool"
    custom = pack_model(model)
    assert [x.op for x in read_layers(custom)][2] == "CUSTOM:MyPool"
    with pytest.raises(ModelError, match=r"node 2 is a custom op \('MyPool'\)"):
        float16_weights(custom)


def test_a_variable_handle_is_folded_not_a_layer(small_cnn):
    model = unpack_model(small_cnn)
    code = model.operatorCodes[model.subgraphs[0].operators[5].opcodeIndex]
    code.builtinCode = tfl.BuiltinOperator.VAR_HANDLE
    code.deprecatedBuiltinCode = tfl.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
    layers = read_layers(pack_model(model))
    assert 5 not in {x.index for x in layers}
    assert len(layers) == len(read_layers(small_cnn)) - 1


def test_deprecated_builtin_code_only(small_cnn):
    """Old converters set only deprecated_builtin_code: the op must still be read."""
    model = unpack_model(small_cnn)
    for code in model.operatorCodes:
        code.builtinCode = 0  # ADD, the schema default
    assert [layer.op for layer in read_layers(pack_model(model))] == [
        layer.op for layer in read_layers(small_cnn)]


def test_runtime_load_failure_is_model_error(small_cnn):
    with pytest.raises(ModelError, match="the runtime could not load the model"):
        load_interpreter(small_cnn[: len(small_cnn) // 2])
    with pytest.raises(ModelError, match="the runtime could not load the model"):
        load_interpreter(b"not a model at all")


def test_every_spec_s_macs_before_building_equal_the_parsed_models() -> None:
    # One MAC rule per op (joulefarm.tflite.ops): the sweeps' caps, the parser and the
    # estimators' features all read it, so a spec's MACs known before building are what the
    # parser finds in the built model.
    from joulefarm.tflite.builder import (
        Add,
        AveragePool2D,
        Concatenation,
        Conv2D,
        DepthwiseConv2D,
        FullyConnected,
        MaxPool2D,
        Mean,
        Pad,
        Reshape,
        Rfft2d,
        Softmax,
    )
    from joulefarm.tflite.ops import OPS, op_entry

    image = (1, 12, 10, 6)
    cases = [
        (image, [Conv2D(8, (3, 2), (2, 1), "VALID")]),
        (image, [DepthwiseConv2D((3, 3), (2, 2), depth_multiplier=2)]),
        ((4, 33), [FullyConnected(7)]),
        (image, [MaxPool2D((3, 3), (2, 2), "SAME")]),
        (image, [AveragePool2D((2, 5))]),
        (image, [Reshape(image), Add(0)]),
        (image, [Reshape(image), Concatenation(0, axis=1)]),
        (image, [Pad(((0, 0), (1, 2), (0, 3), (0, 0)))]),
        (image, [Mean((1, 2), keep_dims=True)]),
        ((3, 17), [Softmax()]),
    ]
    for shape, layers in cases:
        spec = layers[-1]
        assert spec.op in OPS
        parsed = read_layers(build_model(shape, layers))[-1]
        assert parsed.op == spec.op
        assert parsed.macs == spec.macs(shape) > 0, spec
    assert op_entry("IF").family == "unknown"  # ops without an entry have no formula
    # RFFT2D: a real FFT's butterflies, (n / 2) log2 n per transform of the last two dims.
    assert read_layers(build_model((1, 43, 1, 2048), [Rfft2d()]))[0].macs == 43 * 1024 * 11


def test_ops_without_a_formula_get_no_count() -> None:
    from joulefarm.tflite.ops import OpShapes, op_entry

    node = OpShapes(((1, 16),), ((1, 16),), ((1, 16),))
    assert op_entry("SIN").macs(node) == 16  # listed: elementwise, its formula is its elements
    assert op_entry("WHILE").macs(node) is None  # no formula: never a made-up count
    assert op_entry("CUSTOM:Convolution2DTransposeBias").family == "unknown"
    # A formula that cannot read the node's shapes gives None too, not an element count.
    assert op_entry("CONV_2D").macs(OpShapes(((1, 16),), ((1, 16),), ((1, 16),))) is None


def test_unknown_macs_survive_the_table_and_the_wire() -> None:
    from joulefarm.results import LayerRecord, LayerTable
    from joulefarm.wire import layers_from_proto, layers_to_proto

    known = LayerRecord(index=0, op="ADD", macs=16, param_bytes=0, act_in_bytes=64,
                        act_out_bytes=64, input_shapes="[1,16]", output_shapes="[1,16]",
                        iterations=10, window_start_s=0.0, window_end_s=1.0, latency_s=0.1,
                        energy_j=1.0, active_energy_j=0.5, mean_power_w=10.0, samples=100,
                        coverage=1.0)
    unknown = replace(known, index=1, op="RFFT2D", macs=None)
    table = LayerTable.from_records([known, unknown])
    assert table.columns["macs"].tolist() == [16, 0]
    assert table[1].macs is None and table[1].flags == ("no_cost_formula",)
    again = layers_from_proto(layers_to_proto(table))
    assert [x.macs for x in again] == [16, None]
