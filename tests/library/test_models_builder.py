"""The model builder: recipes run in the runtime; single ops match numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from agent.local import build_recipe
from agent.runtimes.backend import load_interpreter, runtime_info
from agent.runtimes.chain import WholeModel
from joulefarm.tflite import (
    RECIPES,
    Add,
    Conv2D,
    DepthwiseConv2D,
    Flatten,
    FullyConnected,
    MaxPool2D,
    build_model,
    read_layers,
)
from joulefarm.tflite.flatbuffer import buffer_data_offsets, numpy_dtype, unpack_model
from tests.helpers.models import run_once


def constants(model_bytes: bytes) -> dict[int, np.ndarray]:
    """Constant tensors of a model by tensor index, as numpy arrays of their shapes."""
    model = unpack_model(model_bytes)
    out = {}
    for t, tensor in enumerate(model.subgraphs[0].tensors):
        data = model.buffers[tensor.buffer].data
        if data is not None and len(data):
            dtype = numpy_dtype(tensor.type)
            out[t] = np.frombuffer(data.tobytes(), dtype).reshape(tuple(tensor.shape))
    return out


def same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def conv_ref(x, w, b, stride, padding, depthwise=False):
    """NHWC conv (w: [cout, kh, kw, cin]) or depthwise conv (w: [1, kh, kw, c]), float64."""
    _, h, wd, c = x.shape
    kh, kw = w.shape[1:3]
    sh, sw = stride
    if padding == "SAME":
        (pt, pb), (pl, pr) = same_pad(h, kh, sh), same_pad(wd, kw, sw)
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh = (x.shape[1] - kh) // sh + 1
    ow = (x.shape[2] - kw) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[0] if not depthwise else w.shape[3]))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + sh * oh : sh, j : j + sw * ow : sw, :].astype(np.float64)
            if depthwise:
                out += patch * w[0, i, j, :]
            else:
                out += np.einsum("nhwc,oc->nhwo", patch, w[:, i, j, :])
    return out + b


def test_runtime_is_found():
    name, version = runtime_info()
    assert name in ("ai-edge-litert", "tflite-runtime")
    assert version[0].isdigit()


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipes_load_and_run(recipe):
    model = build_recipe(recipe, 0)
    whole = WholeModel(model)
    whole.set_inputs(whole.random_inputs(0))
    whole.invoke()
    (probs,) = whole.outputs()
    if recipe.endswith("_int8"):
        assert probs.dtype == np.int8
        scale, zero_point = whole.interpreter.get_output_details()[0]["quantization"]
        assert (scale, zero_point) == (1 / 256, -128)  # the int8 softmax output spec
        probs = (probs.astype(np.float32) - zero_point) * scale
        tolerance = 0.05
    else:
        assert probs.dtype == np.float32
        tolerance = 1e-5
    assert np.all(np.isfinite(probs))
    # Every recipe ends in softmax.
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=tolerance)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipes_are_seeded_and_aligned(recipe):
    a, b, c = build_recipe(recipe, 0), build_recipe(recipe, 0), build_recipe(recipe, 1)
    assert a == b
    assert a != c
    assert a[4:8] == b"TFL3"
    offsets = buffer_data_offsets(a)
    assert offsets and all(o % 16 == 0 for o in offsets)


@pytest.mark.parametrize(("stride", "padding", "kernel"), [
    ((1, 1), "SAME", (3, 3)),
    ((2, 2), "SAME", (3, 3)),
    ((1, 1), "VALID", (3, 3)),
    ((2, 1), "VALID", (5, 3)),
    ((2, 2), "SAME", (4, 4)),  # even kernel: SAME pads more after than before
])
def test_conv2d_matches_numpy(stride, padding, kernel):
    model = build_model((1, 11, 9, 3), [Conv2D(5, kernel, stride, padding, "NONE")], seed=3)
    x = np.random.default_rng(0).standard_normal((1, 11, 9, 3)).astype(np.float32)
    w, b = (v for _, v in sorted(constants(model).items()))
    got = run_once(model, x)
    np.testing.assert_allclose(got, conv_ref(x, w, b, stride, padding), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("stride", "padding", "multiplier"), [
    ((1, 1), "SAME", 1), ((2, 2), "SAME", 1), ((1, 1), "VALID", 2),
])
def test_depthwise_conv2d_matches_numpy(stride, padding, multiplier):
    model = build_model((1, 10, 10, 4), [DepthwiseConv2D((3, 3), stride, padding, "NONE",
                                                         multiplier)], seed=4)
    x = np.random.default_rng(1).standard_normal((1, 10, 10, 4)).astype(np.float32)
    w, b = (v for _, v in sorted(constants(model).items()))
    # Depthwise with multiplier m: output channel c*m + k reads input channel c.
    x_rep = np.repeat(x, multiplier, axis=3)
    expected = conv_ref(x_rep, w, b, stride, padding, depthwise=True)
    np.testing.assert_allclose(run_once(model, x), expected, rtol=1e-4, atol=1e-4)


def test_fully_connected_matches_numpy():
    model = build_model((3, 20), [FullyConnected(7)], seed=5)
    x = np.random.default_rng(2).standard_normal((3, 20)).astype(np.float32)
    w, b = (v for _, v in sorted(constants(model).items()))
    np.testing.assert_allclose(run_once(model, x), x @ w.T + b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("activation", "fn"), [
    ("RELU", lambda v: np.maximum(v, 0)), ("RELU6", lambda v: np.clip(v, 0, 6)),
])
def test_fused_activation(activation, fn):
    model = build_model((2, 16), [FullyConnected(8, activation)], seed=6)
    x = 4 * np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    w, b = (v for _, v in sorted(constants(model).items()))
    np.testing.assert_allclose(run_once(model, x), fn(x @ w.T + b), rtol=1e-5, atol=1e-5)


def test_residual_add_and_pool():
    model = build_model((1, 8, 8, 4), [
        Conv2D(4, (1, 1), activation="NONE"),
        Add(source=0, activation="RELU"),  # adds the conv output to itself
        MaxPool2D((2, 2)),
        Flatten(),
    ], seed=7)
    x = np.random.default_rng(4).standard_normal((1, 8, 8, 4)).astype(np.float32)
    w, b = (v for _, v in sorted(constants(model).items()) if v.dtype == np.float32)
    y = np.maximum(2 * conv_ref(x, w, b, (1, 1), "SAME"), 0)
    y = y.reshape(1, 4, 2, 4, 2, 4).max(axis=(2, 4)).reshape(1, -1)
    np.testing.assert_allclose(run_once(model, x), y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("layers", "message"), [
    ([FullyConnected(3)], "add Flatten"),
    ([Conv2D(3, padding="FULL")], "padding must be one of"),
    ([Conv2D(3, activation="GELU")], "activation must be one of"),
    ([Conv2D(3), Add(source=1)], "source must be an earlier layer"),
    ([Conv2D(3), Add(source=0), Conv2D(4), Add(source=0)], "cannot add shape"),
    ([Conv2D(3, (9, 9), padding="VALID")], "VALID window 9 is larger"),
    ([], "at least one layer"),
])
def test_bad_specs_raise(layers, message):
    with pytest.raises(ValueError, match=message):
        build_model((1, 8, 8, 3), layers)


def test_load_interpreter_pins_input_shapes():
    model = build_model((1, 16), [FullyConnected(4)])
    interpreter = load_interpreter(model, input_shapes=[(5, 16)])
    assert tuple(interpreter.get_output_details()[0]["shape"]) == (5, 4)


def _generic_specs():
    from joulefarm.tflite.builder import (
        BINARY_OPS,
        OPERANDS,
        REDUCE_OPS,
        UNARY_OPS,
        Binary,
        Reduce,
        ResizeBilinear,
        StridedSlice,
        Transpose,
        Unary,
    )
    return ([Unary(op) for op in UNARY_OPS]
            + [Binary(op, operand) for op in BINARY_OPS for operand in OPERANDS]
            + [Reduce(op, (1, 2), keep) for op in REDUCE_OPS for keep in (False, True)]
            + [Transpose((0, 2, 1, 3)), StridedSlice((0, 1, 0, 0), (1, 8, 6, 3), (1, 2, 1, 1)),
               ResizeBilinear((16, 20))])


@pytest.mark.parametrize("spec", _generic_specs(), ids=lambda s: s.describe())
def test_generic_op_specs_run_with_their_shapes_and_macs(spec):
    """Every op the sweeps draw for the small-op kinds runs in the real runtime, with the
    output shape the spec states and the MACs the op registry gives the parsed node."""
    shape = (1, 8, 6, 3)
    model = build_model(shape, [spec], seed=3)
    x = np.random.default_rng(0).uniform(0.1, 2.0, shape).astype(np.float32)
    out = run_once(model, x)
    assert out.shape == spec.out_shape(shape)
    assert np.all(np.isfinite(out))
    (layer,) = read_layers(model)
    assert layer.op == spec.op
    assert layer.macs == spec.macs(shape)


def test_generic_op_values_match_numpy():
    from joulefarm.tflite.builder import Binary, Reduce, Transpose, Unary
    shape = (1, 4, 5, 3)
    x = np.random.default_rng(1).uniform(0.1, 2.0, shape).astype(np.float32)
    np.testing.assert_allclose(run_once(build_model(shape, [Unary("SQRT")]), x), np.sqrt(x),
                               rtol=1e-5)
    np.testing.assert_allclose(run_once(build_model(shape, [Reduce("SUM", (1, 2))]), x),
                               x.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(run_once(build_model(shape, [Transpose((0, 3, 1, 2))]), x),
                                  x.transpose(0, 3, 1, 2))
    model = build_model(shape, [Binary("MUL", "channel")], seed=4)
    (alpha,) = [c for c in constants(model).values() if c.dtype == np.float32]
    np.testing.assert_allclose(run_once(model, x), x * alpha, rtol=1e-6)


def test_generic_specs_refuse_ops_they_do_not_build():
    from joulefarm.tflite.builder import Binary, Unary
    with pytest.raises(ValueError, match="not one of"):
        build_model((1, 4), [Unary("CONV_2D")])
    with pytest.raises(ValueError, match="operand"):
        build_model((1, 4), [Binary("ADD", "row")])


def test_signal_specs_match_numpy_in_the_runtime():
    """The audio front-end and quantize ops (joulefarm.tflite.sweep.SIGNAL_KINDS) run in the
    real runtime and compute what numpy does."""
    from joulefarm.tflite.builder import (
        BatchMatMul,
        ComplexAbs,
        Dequantize,
        Fill,
        Quantize,
        Rfft2d,
        ShapeOf,
        Slice,
    )
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (1, 7, 12)).astype(np.float32)
    model = build_model(x.shape, [BatchMatMul(5)], seed=5)
    (rhs,) = [c for c in constants(model).values() if c.dtype == np.float32]
    np.testing.assert_allclose(run_once(model, x), x @ rhs, rtol=1e-5, atol=1e-6)
    assert read_layers(model)[0].macs == 7 * 12 * 5
    np.testing.assert_array_equal(
        run_once(build_model(x.shape, [Slice((0, 2, 3), (1, 4, 6))]), x), x[:, 2:6, 3:9])
    filled = run_once(build_model(x.shape, [ShapeOf(), Fill(x.shape)]), x)
    assert filled.shape == x.shape and np.all(filled == 0.5)
    frames = rng.uniform(-1, 1, (1, 4, 16)).astype(np.float32)
    spectrum = run_once(build_model(frames.shape, [Rfft2d(), ComplexAbs()]), frames)
    np.testing.assert_allclose(spectrum, np.abs(np.fft.rfft2(frames[0]))[None], rtol=1e-4,
                               atol=1e-4)
    roundtrip = run_once(build_model(x.shape, [Quantize(0.01), Dequantize()]), x)
    np.testing.assert_allclose(roundtrip, np.clip(np.round(x / 0.01), -128, 127) * 0.01,
                               atol=1e-6)
    assert [layer.op for layer in read_layers(build_model(x.shape, [Quantize(), Dequantize()]))
            ] == ["QUANTIZE", "DEQUANTIZE"]
    with pytest.raises(ValueError, match="powers of two"):
        build_model((1, 4, 12), [Rfft2d()])
    with pytest.raises(ValueError, match="does not fit"):
        build_model(x.shape, [Slice((0, 5, 0), (1, 4, 12))])
