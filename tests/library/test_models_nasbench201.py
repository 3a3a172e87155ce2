"""NAS-Bench-201 networks built by the toolkit: parsed from architecture strings, the DAG
cells wired as PyTorch's InferCell runs them, run by the real runtime."""

from __future__ import annotations

import numpy as np
import pytest

from joulefarm.tflite.nasbench201 import connected, nb201_layers, nb201_model, parse_arch
from joulefarm.tflite.parse import read_layers

ALL_3X3 = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
           "nor_conv_3x3~2|")
# NAS-Bench-201 index 0 (HELP's and HW-NAS-Bench's latency lists start with it).
INDEX_0 = ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
           "skip_connect~2|")
DEAD = "|none~0|+|skip_connect~0|none~1|+|none~0|skip_connect~1|none~2|"


def _ops(arch: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for layer in read_layers(nb201_model(arch)):
        out[layer.op] = out.get(layer.op, 0) + 1
    return out


def test_the_largest_network_has_the_published_flops() -> None:
    # NAS-Bench-201 gives 220.11 MFLOPs (multiply-accumulates) for its largest CIFAR-10
    # network; ours also counts the elementwise ops, the pools and the FC.
    macs = sum(layer.macs or 0 for layer in read_layers(nb201_model(ALL_3X3)))
    assert 220.11e6 <= macs <= 1.01 * 220.11e6


def test_cells_are_wired_as_pytorch_runs_them() -> None:
    ops = _ops(INDEX_0)
    # 15 cells x (1 pool + 2 relu-conv 1x1) edges, 3 skips; node 2 sums 2 edges, node 3 sums 3
    # (1 + 2 ADDs a cell); the reductions add 3 convs, 2 relus, 1 pool and 1 ADD each; the head
    # a per-channel MUL, ADD and RELU.
    assert ops["AVERAGE_POOL_2D"] == 15 + 2
    assert ops["CONV_2D"] == 1 + 15 * 2 + 2 * 3
    assert ops["RELU"] == 15 * 2 + 2 * 2 + 1
    assert ops["ADD"] == 15 * 3 + 2 + 1
    assert ops["MUL"] == 1 and ops["MEAN"] == 1 and ops["FULLY_CONNECTED"] == 1
    # A none edge runs as PyTorch's x.mul(0.): a MUL per none edge, summed like any edge.
    assert _ops(DEAD)["MUL"] == 1 + 15 * 4


def test_the_runtime_runs_a_network_to_ten_logits() -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=nb201_model(INDEX_0))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    assert list(inp["shape"]) == [1, 32, 32, 3]
    interpreter.set_tensor(inp["index"], np.random.default_rng(0).random(
        (1, 32, 32, 3), dtype=np.float32))
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert out.shape == (1, 10) and np.isfinite(out).all()


def test_connected_and_parse_errors() -> None:
    assert connected(INDEX_0) and connected(ALL_3X3) and not connected(DEAD)
    assert [e.op for e in parse_arch(INDEX_0)][:2] == ["avg_pool_3x3", "nor_conv_1x1"]
    with pytest.raises(ValueError, match="unknown op 'conv_5x5'"):
        parse_arch(INDEX_0.replace("nor_conv_1x1~0|skip", "conv_5x5~0|skip"))
    with pytest.raises(ValueError, match="should come from node 1"):
        parse_arch(INDEX_0.replace("skip_connect~1|+", "skip_connect~0|+"))
    with pytest.raises(ValueError, match="3 nodes, 6 edges"):
        nb201_layers("|nor_conv_3x3~0|")
