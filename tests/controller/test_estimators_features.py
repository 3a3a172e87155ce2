"""Feature vectors (same from a model file and from the database) and accuracy metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.local import build_recipe
from controller.estimators.features import (
    LAYER_FEATURES,
    DeviceInfo,
    device_feature_names,
    device_vector,
    embedding,
    from_layer_info,
    from_row,
    kernel_area,
    layer_matrix,
    layer_vector,
    op_onehot,
)
from controller.estimators.metrics import scores, spearman
from joulefarm.results import parse_shapes, shape_text
from joulefarm.tflite import read_layers
from joulefarm.tflite.sweep import sample_configs


def _layers():
    models = [build_recipe(n, 0) for n in ("tiny_cnn", "mlp", "res_block", "concat_pad")]
    models += [c.build() for c in sample_configs(30, seed=5, profile="broad")]
    return [layer for m in models for layer in read_layers(m)]


def test_shape_text_round_trips():
    for shapes in [((1, 32, 32, 3),), ((1, 10), (1, 10)), ((),), ((4,), (1, 2, 3))]:
        if shapes != ((),):
            assert parse_shapes(shape_text(shapes)) == shapes
    assert parse_shapes("") == ()
    assert parse_shapes(None) == ()


def test_file_and_database_give_the_same_vector():
    for info in _layers():
        stored = from_row(info.op, info.macs, info.param_bytes, info.act_in_bytes,
                          info.act_out_bytes, shape_text(info.input_shapes),
                          shape_text(info.output_shapes))
        assert np.array_equal(layer_vector(stored), layer_vector(from_layer_info(info)))


def test_kernel_area_recovered_from_macs():
    checked = 0
    for info in _layers():
        if info.kernel and info.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D",
                                       "AVERAGE_POOL_2D"):
            assert kernel_area(from_layer_info(info)) == pytest.approx(
                info.kernel[0] * info.kernel[1])
            checked += 1
    assert checked > 10


def test_vector_values():
    conv = next(x for x in read_layers(build_recipe("tiny_cnn", 0)) if x.op == "CONV_2D")
    v = dict(zip([n for n, _, _ in LAYER_FEATURES], layer_vector(from_layer_info(conv)),
                 strict=True))
    assert v["log_macs"] == pytest.approx(math.log1p(conv.macs))
    assert v["log_in_h"] == pytest.approx(math.log(64)) and v["log_in_c"] == pytest.approx(
        math.log(3))
    assert v["log_kernel_area"] == pytest.approx(math.log(9))
    assert v["n_inputs"] == 1 and v["in_rank"] == 4
    assert np.all(np.isfinite(layer_matrix([from_layer_info(x) for x in _layers()], ["ADD"])))


def test_op_onehot_and_device_block():
    assert op_onehot("ADD", ["ADD", "CONV_2D"]).tolist() == [1, 0, 0]
    assert op_onehot("TRANSPOSE", ["ADD", "CONV_2D"]).tolist() == [0, 0, 1]
    device = DeviceInfo("pi", "rpi", 2_400_000, 4, 8 << 30)
    vector = device_vector(device, ["linux", "rpi"])
    assert vector.tolist()[:2] == [2.4, 4.0] and vector.tolist()[-2:] == [0.0, 1.0]
    names = device_feature_names(["linux", "rpi"], ["ref:a", "ref:b"])
    assert names[-2:] == ["ref=ref:a", "ref=ref:b"] and len(names) == len(vector) + 2
    assert embedding({"ref:a": 1.0, "ref:b": math.e}, ["ref:a", "ref:b"]).tolist() == [0, 1]
    with pytest.raises(KeyError):
        embedding({"ref:a": 1.0}, ["ref:a", "ref:b"])


def test_scores():
    measured = np.array([1.0, 2.0, 4.0, 8.0])
    s = scores(measured, measured * np.array([1.04, 0.92, 1.2, 1.0]))
    assert s.n == 4
    assert s.mape_pct == pytest.approx(100 * (0.04 + 0.08 + 0.2) / 4)
    assert s.rmspe_pct == pytest.approx(100 * math.sqrt((0.04**2 + 0.08**2 + 0.2**2) / 4))
    assert s.within_5_pct == 50.0 and s.within_10_pct == 75.0
    assert s.spearman == pytest.approx(1.0)
    assert math.isnan(scores(np.array([]), np.array([])).mape_pct)


def test_spearman_matches_the_definition():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert spearman(np.array([1, 2, 2, 3.0]), np.array([1, 2, 3, 4.0])) == pytest.approx(
        0.9486832980505138)  # ties take their average rank (scipy.stats.spearmanr's value)
    assert math.isnan(spearman(np.ones(5), np.arange(5.0)))
