"""A real published model: basic-pitch 0.4.0's nmp.tflite (Apache-2.0, float32, 222 ops).

The model comes from the basic-pitch wheel on PyPI (the ``nmp`` fixture of this folder's
conftest).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from agent.runtimes.chain import LayerChain, WholeModel
from joulefarm.tflite import model_summary, read_layers, split_model
from joulefarm.tflite.flatbuffer import unpack_model

pytestmark = pytest.mark.slow


def test_read_layers(nmp):
    layers = read_layers(nmp)
    assert len(layers) == 222
    ops = Counter(layer.op for layer in layers)
    assert ops["CONV_2D"] == 32 and ops["TRANSPOSE"] == 44
    assert all(layer.dtype for layer in layers)
    convs = [layer for layer in layers if layer.op == "CONV_2D"]
    assert all(layer.macs > 0 and layer.param_bytes > 0 and layer.kernel for layer in convs)
    summary = model_summary(nmp)
    assert summary["layers"] == 222
    # The input has a dynamic batch: shape [1, 43844, 1], signature [-1, 43844, 1].
    assert summary["inputs"][0]["shape"] == [1, 43844, 1]
    tensor = unpack_model(nmp).subgraphs[0].tensors[summary["inputs"][0]["index"]]
    assert list(tensor.shapeSignature) == [-1, 43844, 1]


def test_split_chain_matches_whole_model(nmp):
    parts = split_model(nmp)
    assert [p.index for p in parts] == list(range(222))
    chain = LayerChain(nmp)
    inputs = chain.random_inputs(0)
    assert inputs[0].shape == (1, 43844, 1)
    whole = WholeModel(nmp)
    whole.set_inputs(inputs)
    whole.invoke()
    expected = whole.outputs()
    got = chain.run(inputs)
    assert [g.shape for g in got] == [(1, 172, 88), (1, 172, 88), (1, 172, 264)]
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    # Every layer can be re-run alone on what the chain left it.
    for i in (0, len(chain) // 2, len(chain) - 1):
        chain.invoke_layer(i)
    # Another batch size computes other reshape targets: the chain rebuilds the layers whose
    # computed shapes it had frozen, and still matches the whole model.
    batch = [np.concatenate([inputs[0], inputs[0][:, ::-1]], axis=0)]
    whole.set_inputs(batch)
    whole.invoke()
    got = chain.run(batch)
    assert [g.shape[0] for g in got] == [2, 2, 2]
    for a, b in zip(got, whole.outputs(), strict=True):
        assert np.array_equal(a, b)


def test_bench_layers_runs_on_the_published_model(nmp, tmp_path):
    """`joulefarm bench --mode layers` on a model no one here wrote, end to end."""
    import json

    from tests.helpers import run_cli

    path = tmp_path / "nmp.tflite"
    path.write_bytes(nmp)
    proc = run_cli("bench", str(path), "--mode", "layers", "--profile", "rpi4",
                   "--min-layer-duration-s", "0.001", "--json", timeout=280)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])["layers"]
    assert len(rows) == 222
    assert all(r["energy_source"] == "simulated" and r["samples"] > 0 for r in rows)
    total = sum(r["energy_uj"] for r in rows)
    truth = sum(r["sim_truth_uj"] for r in rows)
    assert total == pytest.approx(truth, rel=0.05)
    assert not any("not_isolated" in r["flags"] for r in rows)


def test_insitu_runs_on_the_published_model_despite_its_dynamic_outputs(nmp):
    """Its Keras reshapes take their target shape from SHAPE -> STRIDED_SLICE -> PACK, so its
    outputs are dynamic tensors, which the LiteRT C API cannot bind: the profiled model reads
    those operands from constants of the values one inference computes (the nodes that compute
    them still run), and every op is measured in place."""
    from agent.runtimes.profiler import profile_inferences
    from joulefarm.tflite.parse import read_layers
    from joulefarm.tflite.split import computed_shape_operands_of_model

    assert computed_shape_operands_of_model(nmp)  # what made it unmeasurable before
    run = profile_inferences(nmp, iterations=2, backend="litert-capi", measure_overhead=False)
    profiled = set(run.node_index[run.node_index >= 0].tolist())
    assert {x.index for x in read_layers(nmp)} <= profiled  # SHAPE, PACK, RESHAPE included
