"""Model variants: int8 quantisation and fp16 weights."""

from __future__ import annotations

import numpy as np
import pytest

from agent.local import build_recipe
from agent.runtimes.chain import WholeModel, calibration_ranges
from joulefarm.tflite import ModelError, build_model, read_layers
from joulefarm.tflite.builder import DepthwiseConv2D, Softmax
from joulefarm.tflite.flatbuffer import buffer_data_offsets, unpack_model
from joulefarm.tflite.schema import tfl
from joulefarm.tflite.variants import float16_weights, quantize_int8


def run(model: bytes, x: np.ndarray) -> np.ndarray:
    whole = WholeModel(model)
    whole.set_inputs([x])
    whole.invoke()
    return whole.outputs()[0]


@pytest.mark.parametrize("recipe", ["tiny_cnn", "mlp", "res_block", "concat_pad"])
def test_int8_tracks_the_float_model(recipe):
    float_model = build_recipe(recipe, 0)
    int8_model = quantize_int8(float_model, calibration_ranges(float_model))
    whole = WholeModel(int8_model)
    detail = whole.interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    x = np.random.default_rng(5).standard_normal(detail["shape"]).astype(np.float32)
    xq = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
    out = whole.interpreter.get_output_details()[0]
    out_scale, out_zero = out["quantization"]
    got = (run(int8_model, xq).astype(np.float32) - out_zero) * out_scale
    expected = run(float_model, x)
    np.testing.assert_allclose(got, expected, atol=0.05)
    assert np.array_equal(got.argmax(-1), expected.argmax(-1))


def test_int8_features():
    float_layers = read_layers(build_recipe("tiny_cnn", 0))
    float_model = build_recipe("tiny_cnn", 0)
    int8_model = quantize_int8(float_model, calibration_ranges(float_model))
    layers = read_layers(int8_model)
    assert all(layer.dtype == "int8" for layer in layers)
    assert [layer.macs for layer in layers] == [layer.macs for layer in float_layers]
    conv, conv_f = layers[0], float_layers[0]
    # int8 weights (1 byte) and int32 biases (4 bytes) instead of float32 for both.
    assert conv.param_bytes == conv_f.param_bytes // 4 + 3 * 32
    assert conv.act_in_bytes == conv_f.act_in_bytes // 4
    weights = unpack_model(int8_model).subgraphs[0].tensors[1]
    assert weights.type == tfl.TensorType.INT8
    assert len(weights.quantization.scale) == 32  # per output channel
    assert all(o % 16 == 0 for o in buffer_data_offsets(int8_model))


def test_int8_is_deterministic():
    model = build_recipe("res_block", 0)
    assert quantize_int8(model, calibration_ranges(model)) == quantize_int8(
        model, calibration_ranges(model))
    assert quantize_int8(model, calibration_ranges(model)) != quantize_int8(
        model, calibration_ranges(model, seed=1))


def test_int8_rejects_unknown_ops():
    model = unpack_model(build_model((1, 4, 4, 2), [DepthwiseConv2D(), Softmax()]))
    code = model.operatorCodes[model.subgraphs[0].operators[1].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = tfl.BuiltinOperator.LOGISTIC
    from joulefarm.tflite.flatbuffer import pack_model

    with pytest.raises(ModelError, match=r"node 1 \(LOGISTIC\): quantize_int8 supports only"):
        quantize_int8(pack_model(model), {})


def test_float16_weights_close_to_float():
    model = build_recipe("res_block", 0)
    half = float16_weights(model)
    x = np.random.default_rng(6).standard_normal((1, 32, 32, 16)).astype(np.float32)
    np.testing.assert_allclose(run(half, x), run(model, x), atol=2e-3)
    assert len(half) < 0.6 * len(model)
