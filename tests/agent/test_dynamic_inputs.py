"""Models with dynamic input shapes on the real TFLite runtime: every runtime (whole model,
layer chain and pairs, in-situ profiler, the litert-c backend) runs them at the shapes of the
input shape rule (``joulefarm.tflite.inputs``), and so does a measurement through the agent."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace

import grpc
import numpy as np
import pytest

from agent.local import open_meter, runtime_info
from agent.measure import measure
from agent.runtimes import backend as runtime
from agent.runtimes import litert_capi
from agent.runtimes.chain import LayerChain, LayerPairs, WholeModel, run_layers
from agent.runtimes.profiler import ProfilerUnavailable, open_profiled_model
from agent.server import AgentConfig, build_server
from controller.farm.client import AgentCallError, AgentClient
from joulefarm.errors import InputError
from joulefarm.results import MeasureSettings, parse_shapes
from tests.helpers.dynamic_models import audio_model, batch_model

AUDIO = {"audio": (1, 16000)}
FAST = MeasureSettings(min_layer_duration_s=0.002, min_iterations=2, idle_duration_s=0.06,
                       warmup_iterations=1, min_duration_s=0.02)
TOKEN = "dyn-t0ken"
# The audio model at 16000 samples: reshape, conv (kernel 9, stride 4, VALID), mean, fc, softmax.
LAYER_SHAPES = [("RESHAPE", "1x16000", "1x16000x1x1"), ("CONV_2D", "1x16000x1x1", "1x3998x1x8"),
                ("MEAN", "1x3998x1x8", "1x8"), ("FULLY_CONNECTED", "1x8", "1x4"),
                ("SOFTMAX", "1x4", "1x4")]


@pytest.fixture(autouse=True)
def default_runtime() -> Iterator[None]:
    """Every test leaves the process on the default runtime: other tests rely on it."""
    yield
    runtime.configure_runtime()


def test_every_runtime_refuses_a_dynamic_input_without_a_shape() -> None:
    model = audio_model()
    for make in (WholeModel, LayerChain, open_profiled_model):
        with pytest.raises(InputError, match=r"model input 'audio' \(position 0\) has a dynamic "
                                             r"shape: shape_signature \[-1, -1\]"):
            make(model)


def test_whole_model_chain_and_pairs_run_at_the_given_shape() -> None:
    model = audio_model()  # placeholders of 1: the file's own shapes do not even allocate
    whole = WholeModel(model, input_shapes=AUDIO)
    assert whole.input_specs[0][0] == (1, 16000) and whole.input_plan.given == (True,)
    inputs = whole.random_inputs(3)
    whole.set_inputs(inputs)
    whole.invoke()
    expected = whole.outputs()
    chain = LayerChain(model, input_shapes=[("0", (1, 16000))])  # by position
    assert chain.input_specs[0][0] == (1, 16000)
    np.testing.assert_array_equal(chain.run(inputs)[0], expected[0])
    assert [(x.op, x.input_shapes, x.output_shapes) for x in chain.layers] == [
        (op, parse_shapes(i), parse_shapes(o)) for op, i, o in LAYER_SHAPES]
    for i in range(len(chain)):
        chain.invoke_layer(i)
    pairs = LayerPairs(chain)
    pairs.feed(chain.tensor_values(inputs))
    for k in range(len(pairs)):
        pairs.invokers[k]()
    # The layers' features at the run's shapes, without a chain (the runtime's tensor shapes).
    assert [x.macs for x in run_layers(model, input_shapes=AUDIO)] == [
        x.macs for x in chain.layers]


def test_the_profiler_runs_at_the_given_shape() -> None:
    model = audio_model()
    whole = WholeModel(model, input_shapes=AUDIO)
    whole.set_inputs(whole.random_inputs(5))
    whole.invoke()
    try:
        profiled = open_profiled_model(model, input_shapes=AUDIO, seed=5)
    except ProfilerUnavailable as e:
        pytest.skip(f"no in-situ profiler here: {e}")
    with profiled:
        profiled.warmup(2)
        assert profiled.input_plan is not None and profiled.input_plan.shapes == ((1, 16000),)
        np.testing.assert_allclose(profiled.outputs()[0], whole.outputs()[0], rtol=1e-5)


def test_the_litert_c_backend_compiles_at_the_given_shape() -> None:
    try:
        litert_capi.library_path()
    except litert_capi.LiteRtUnavailable:
        pytest.skip("ai-edge-litert's libLiteRt missing")
    model = audio_model()
    python = WholeModel(model, input_shapes=AUDIO)
    inputs = python.random_inputs(1)
    python.set_inputs(inputs)
    python.invoke()
    runtime.configure_runtime(runtime.LITERT_C)
    capi = WholeModel(model, input_shapes=AUDIO)
    capi.set_inputs(inputs)
    capi.invoke()
    np.testing.assert_allclose(capi.outputs()[0], python.outputs()[0], rtol=1e-5)
    # Only inputs and outputs are reachable: the layers' shapes come from a chain run.
    assert capi.tensor_shapes() == {}
    assert [x.input_shapes for x in capi.run_layers(1)] == [
        parse_shapes(i) for _, i, _ in LAYER_SHAPES]


@pytest.mark.parametrize("mode", ["whole", "layers", "insitu"])
def test_measuring_uses_the_given_shape_in_every_mode(mode: str) -> None:
    model = audio_model()
    sha = hashlib.sha256(model).hexdigest()
    settings = replace(FAST, mode=mode, input_shapes=(("audio", (1, 16000)),))
    with pytest.raises(InputError, match="has a dynamic shape"):
        measure(model, sha, open_meter("sim"), MeasureSettings(mode=mode), runtime_info())
    try:
        result = measure(model, sha, open_meter("sim"), settings, runtime_info())
    except ProfilerUnavailable as e:
        pytest.skip(f"no in-situ profiler here: {e}")
    assert "batch_defaulted" not in result.flags
    if mode == "whole":
        assert result.whole is not None and result.whole.iterations >= 2
        assert len(result.layers) == 0
    else:
        assert [(x.op, x.input_shapes, x.output_shapes) for x in result.layers] == LAYER_SHAPES
        assert result.layers[1].macs == 3998 * 8 * 9  # the convolution at 16000 samples


@pytest.mark.parametrize("mode", ["whole", "layers", "insitu"])
def test_a_defaulted_batch_is_flagged(mode: str) -> None:
    model = batch_model()
    settings = replace(FAST, mode=mode)
    try:
        result = measure(model, "b" * 64, open_meter("sim"), settings, runtime_info())
    except ProfilerUnavailable as e:
        pytest.skip(f"no in-situ profiler here: {e}")
    assert "batch_defaulted" in result.flags
    assert all(x.input_shapes.startswith("1x") for x in result.layers)
    given = replace(settings, input_shapes=(("batch/input", (4, 64)),))
    result = measure(model, "b" * 64, open_meter("sim"), given, runtime_info())
    assert "batch_defaulted" not in result.flags
    assert all(x.input_shapes.startswith("4x") for x in result.layers)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = AgentConfig(name="dyn-agent", platform="sim", meter_kind="sim",
                         meter_profile="rpi4", cache_dir=tmp_path_factory.mktemp("cache"))
    server, port, _ = build_server(config, TOKEN, port=0)
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


def test_the_agent_measures_at_the_shape_sent_and_refuses_without_one(agent: str) -> None:
    model = audio_model()
    with AgentClient("dyn-agent", agent, TOKEN) as client:
        sha = client.upload("audio", model)
        with pytest.raises(AgentCallError) as err:
            client.run_benchmark(sha, FAST, timeout_s=60)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "model input 'audio' (position 0) has a dynamic shape" in str(err.value)
        assert "--input-shape audio=1,N" in str(err.value)
        settings = replace(FAST, input_shapes=(("audio", (1, 16000)),))
        result = client.run_benchmark(sha, settings, timeout_s=60)
    assert [(x.op, x.input_shapes, x.output_shapes) for x in result.layers] == LAYER_SHAPES
