"""The configuration-sweep generator: deterministic, within its caps, every model loads."""

from __future__ import annotations

from collections import Counter

import pytest

from agent.runtimes.chain import WholeModel
from joulefarm.tflite import read_layers
from joulefarm.tflite.sweep import (
    KINDS,
    SweepConfig,
    generate_sweep,
    reference_models,
    reference_names,
    sample_chains,
    sample_configs,
)

EXPECTED_OP = {
    "conv": "CONV_2D", "dwconv": "DEPTHWISE_CONV_2D", "fc": "FULLY_CONNECTED",
    "maxpool": "MAX_POOL_2D", "avgpool": "AVERAGE_POOL_2D", "add": "ADD",
    "concat": "CONCATENATION", "mean": "MEAN", "softmax": "SOFTMAX", "pad": "PAD",
}


def test_same_seed_same_configs_and_bytes():
    a = generate_sweep(30, seed=7, profile="broad")
    b = generate_sweep(30, seed=7, profile="broad")
    assert [c.name for c, _ in a] == [c.name for c, _ in b]
    assert [m for _, m in a] == [m for _, m in b]
    other = sample_configs(30, seed=8, profile="broad")
    assert [c.name for c in other] != [c.name for c, _ in a]


@pytest.mark.parametrize("profile", ["mobile", "broad"])
def test_kinds_in_turn_distinct_and_capped(profile):
    configs = sample_configs(60, seed=1, profile=profile, max_macs=20_000_000)
    assert Counter(c.kind for c in configs) == {k: 6 for k in KINDS}
    assert len({c.name for c in configs}) == 60
    for config in configs:
        layers = read_layers(config.build())
        measured = [x for x in layers if x.op == EXPECTED_OP[config.kind]]
        assert len(measured) == 1, config.name
        assert measured[0].macs <= 20_000_000
        assert all(x.dtype == "float32" for x in layers)


def test_mobile_profile_is_square():
    for config in sample_configs(40, seed=2, kinds=("conv", "dwconv"), profile="mobile"):
        _, h, w, _ = config.input_shape
        assert h == w
        assert config.layers[0].kernel[0] == config.layers[0].kernel[1]


def test_broad_profile_reaches_rectangular_shapes():
    configs = sample_configs(60, seed=3, kinds=("conv",), profile="broad")
    assert any(c.input_shape[1] != c.input_shape[2] for c in configs)
    assert any(c.layers[0].kernel[0] != c.layers[0].kernel[1] for c in configs)


def test_every_model_runs():
    configs = sample_configs(20, seed=4, profile="broad") + sample_chains(3, seed=0)
    for config in configs:
        model = WholeModel(config.build())
        model.set_inputs(model.random_inputs(0))
        model.invoke()


def test_chains_are_multi_layer_cnns():
    chains = sample_chains(5, seed=1)
    assert [c.name for c in chains] == [c.name for c in sample_chains(5, seed=1)]
    for chain in chains:
        ops = [x.op for x in read_layers(chain.build())]
        assert ops[0] == "CONV_2D" and ops[-1] == "SOFTMAX" and len(ops) >= 6


def test_reference_set_is_fixed():
    names = reference_names()
    assert len(names) == 10 and len(set(names)) == 10
    models = reference_models()
    assert [n for n, _ in models] == names
    assert [m for _, m in models] == [m for _, m in reference_models()]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown sweep kinds"):
        sample_configs(3, kinds=("lstm",))
    with pytest.raises(ValueError, match="unknown sweep profile"):
        sample_configs(3, profile="huge")
    assert isinstance(sample_configs(1)[0], SweepConfig)


def test_small_op_kinds_span_sizes_and_run():
    """The small-op kinds draw their ops from the builder's lists, over tensors from a few
    elements to the cap, and every model runs."""
    from joulefarm.tflite.builder import BINARY_OPS, REDUCE_OPS, UNARY_OPS
    from joulefarm.tflite.ops import elements
    from joulefarm.tflite.sweep import ELEMENTWISE_KINDS
    configs = sample_configs(120, seed=5, kinds=ELEMENTWISE_KINDS, max_elements=200_000)
    assert Counter(c.kind for c in configs) == {k: 20 for k in ELEMENTWISE_KINDS}
    allowed = {"unary": set(UNARY_OPS), "binary": set(BINARY_OPS), "reduce": set(REDUCE_OPS),
               "transpose": {"TRANSPOSE"}, "slice": {"STRIDED_SLICE"},
               "resize": {"RESIZE_BILINEAR"}}
    sizes = []
    for config in configs:
        model = config.build()
        (layer,) = read_layers(model)
        assert layer.op in allowed[config.kind], config.name
        sizes.append(elements(config.input_shape))
        whole = WholeModel(model)
        whole.set_inputs(whole.random_inputs(0))
        whole.invoke()
    assert min(sizes) < 100 and max(sizes) > 20_000  # tiny ops and large ones
    assert max(sizes) <= 200_000
    again = sample_configs(120, seed=5, kinds=ELEMENTWISE_KINDS, max_elements=200_000)
    assert [c.name for c in again] == [c.name for c in configs]


def test_signal_kinds_draw_models_that_run_and_keep_the_older_draws():
    from joulefarm.tflite.sweep import ALL_KINDS, SIGNAL_KINDS

    configs = sample_configs(25, seed=4, kinds=SIGNAL_KINDS)
    ops = set()
    for config in configs:
        layers = read_layers(config.build())
        ops |= {layer.op for layer in layers}
        assert layers[0].macs is None or layers[0].macs >= 0
    assert ops == {"BATCH_MATMUL", "SLICE", "SHAPE", "FILL", "RFFT2D", "COMPLEX_ABS",
                   "QUANTIZE", "DEQUANTIZE"}
    # ALL_KINDS draws as it did before SIGNAL_KINDS existed (stored sweeps keep their names).
    assert not set(SIGNAL_KINDS) & set(ALL_KINDS)
