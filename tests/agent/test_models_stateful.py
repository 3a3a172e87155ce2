"""Models that keep state, run other subgraphs or use a custom op the runtime resolves are
measurable whole, by layer and in situ: an ``IF`` with its bodies, a running sum in a resource
variable, ``AudioSpectrogram`` (hand-built with the real schema, run by the real runtime)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.runtimes.chain import LayerChain, WholeModel
from joulefarm.tflite.flatbuffer import unpack_model
from joulefarm.tflite.parse import read_layers
from joulefarm.tflite.split import split_model
from tests.helpers import run_cli
from tests.helpers.stateful_models import (
    assign_then_read_model,
    if_model,
    running_sum_model,
    spectrogram_model,
)


def test_the_whole_model_keeps_its_state_between_invocations() -> None:
    whole = WholeModel(running_sum_model())
    x = np.full((1, 4), 1.5, np.float32)
    sums = []
    for _ in range(3):
        whole.set_inputs([x])
        whole.invoke()
        sums.append(float(whole.outputs()[0][0, 0]))
    assert sums == [1.5, 3.0, 4.5]


def test_setup_nodes_are_folded_and_travel_with_the_layers_that_need_them() -> None:
    model = running_sum_model()
    assert [x.op for x in read_layers(model)] == ["READ_VARIABLE", "ADD", "ASSIGN_VARIABLE",
                                                  "MUL"]
    parts = {m.op: m for m in split_model(model)}
    # The read carries the initialiser (CALL_ONCE, its subgraph) and the handle, so the
    # variable holds its initial value when the layer runs alone.
    read = read_layers(parts["READ_VARIABLE"].model_bytes, include_weight_prep=True)
    assert [x.op for x in read] == ["CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE"]
    assert len(unpack_model(parts["READ_VARIABLE"].model_bytes).subgraphs) == 2
    assert len(unpack_model(parts["ADD"].model_bytes).subgraphs) == 1  # no state, no init


def test_a_control_flow_layer_carries_its_bodies_and_computes_what_the_model_does() -> None:
    model = if_model()
    (layer,) = split_model(model)
    assert layer.op == "IF"
    chain = LayerChain(model)
    whole = WholeModel(model)
    x = np.full((1, 4), 1.5, np.float32)
    for cond in (True, False):
        inputs = [np.array([cond]), x]
        whole.set_inputs(inputs)
        whole.invoke()
        assert np.array_equal(chain.feed(inputs)[0], whole.outputs()[0])
    assert chain.feed([np.array([False]), x])[0][0, 0] == 3.0


@pytest.mark.parametrize("build", [if_model, running_sum_model, spectrogram_model])
@pytest.mark.parametrize("mode", ["whole", "layers", "insitu"])
def test_every_mode_measures_them(build, mode: str, tmp_path) -> None:
    path = tmp_path / f"{build.__name__}.tflite"
    path.write_bytes(build())
    done = run_cli("bench", str(path), "--mode", mode, "--min-duration-s", "0.1",
                   "--min-layer-duration-s", "0.005", "--format", "csv")
    assert done.returncode == 0, done.stdout + done.stderr
    if mode != "whole":
        ops = {line.split(",")[1] for line in done.stdout.splitlines()[1:] if line}
        expected = {if_model: {"IF"}, spectrogram_model: {"CUSTOM:AudioSpectrogram"},
                    running_sum_model: {"READ_VARIABLE", "ADD", "ASSIGN_VARIABLE", "MUL"}}
        assert expected[build] <= ops, done.stdout


def test_an_op_without_a_cost_formula_has_unknown_macs_everywhere(tmp_path) -> None:
    import json

    path = tmp_path / "if.tflite"
    path.write_bytes(if_model())
    (layer,) = read_layers(path.read_bytes())
    assert layer.macs is None  # IF has no cost formula: not an element count
    listed = run_cli("model", "layers", str(path), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["macs"] is None
    done = run_cli("bench", str(path), "--mode", "layers", "--min-layer-duration-s", "0.005",
                   "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    (measured,) = json.loads(done.stdout)["layers"]
    assert measured["macs"] is None and "no_cost_formula" in measured["flags"]


def test_a_layer_that_cannot_run_alone_is_named_and_the_rest_measured(tmp_path) -> None:
    """A variable read with no initialiser holds a value only after the model's own assign:
    alone it fails in the runtime. It is reported (named, flagged, nothing made up), its
    output comes from the whole model, and every other layer is measured."""
    import json

    model = assign_then_read_model()
    chain, whole = LayerChain(model), WholeModel(model)
    x = np.full((1, 4), 2.0, np.float32)
    whole.set_inputs([x])
    whole.invoke()
    assert np.array_equal(chain.feed([x])[0], whole.outputs()[0])
    (reason,) = chain.not_isolated.values()
    assert reason.startswith("node 2 (READ_VARIABLE) cannot run on its own: ")

    path = tmp_path / "assign_then_read.tflite"
    path.write_bytes(model)
    done = run_cli("bench", str(path), "--mode", "layers", "--min-layer-duration-s", "0.005",
                   "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["op"]: row for row in json.loads(done.stdout)["layers"]}
    assert rows["READ_VARIABLE"]["flags"] == ["not_isolated"]
    assert rows["READ_VARIABLE"]["latency_us"] is None
    assert rows["ADD"]["latency_us"] > 0 and "not_isolated" not in rows["ADD"]["flags"]
    assert "node 2 (READ_VARIABLE) cannot run on its own" in done.stderr
