"""A cancelled or timed-out benchmark frees the agent within seconds, whatever it asked for.

Each request below would keep the agent measuring for minutes (or hours) if nothing looked at
the cancel: the caller gives up after a second, and the next benchmark must get the agent
soon after. On a busy 2-core machine the cancel is seen within ``CHECK_INTERVAL_S`` of agent
time; ``FREED_WITHIN_S`` leaves room for a starved scheduler.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from agent.local import build_recipe
from agent.server import AgentConfig, build_server
from controller.farm.client import AgentCallError, AgentClient
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import Unary, build_model

TOKEN = "cancel-token"
FAST = MeasureSettings(min_layer_duration_s=0.005, min_iterations=2, idle_duration_s=0.06)
FREED_WITHIN_S = 15.0
# Requests that each keep an agent that never looks at the cancel busy for minutes.
LONG = {
    "whole loop of 20 min": MeasureSettings(mode="whole", min_duration_s=1200.0,
                                            idle_duration_s=0.06),
    "idle baseline of 20 min": MeasureSettings(mode="whole", idle_duration_s=1200.0),
    "a million iterations of a layer": MeasureSettings(
        min_layer_duration_s=0.005, min_iterations=1_000_000, idle_duration_s=0.06),
    "layer windows of a minute": MeasureSettings(min_layer_duration_s=60.0,
                                                 idle_duration_s=0.06),
    "in-situ loop of 20 min": MeasureSettings(mode="insitu", min_duration_s=1200.0,
                                              idle_duration_s=0.06),
}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = AgentConfig(name="cancel-agent", platform="sim", meter_kind="sim",
                         meter_profile="rpi4", cache_dir=tmp_path_factory.mktemp("cache"))
    server, port, _ = build_server(config, TOKEN, port=0)
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


def _seconds_until_free(client: AgentClient, sha: str) -> float:
    """Time until a short benchmark gets the agent (a busy agent answers ABORTED)."""
    start = time.monotonic()
    while True:
        try:
            client.run_benchmark(sha, FAST, timeout_s=120)
            return time.monotonic() - start
        except AgentCallError as e:
            assert e.code == grpc.StatusCode.ABORTED, e
            if time.monotonic() - start > 120:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("what", list(LONG))
def test_a_timed_out_benchmark_frees_the_agent(agent: str, what: str) -> None:
    with AgentClient("cancel-agent", agent, TOKEN) as client:
        sha = client.upload("mlp", build_recipe("mlp", 0))
        with pytest.raises(AgentCallError) as err:
            client.run_benchmark(sha, LONG[what], timeout_s=1.5)
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert _seconds_until_free(client, sha) < FREED_WITHIN_S, what


def test_cancelling_the_split_of_a_huge_model_frees_the_agent(agent: str) -> None:
    # 20,000 layers: splitting takes seconds and loading their interpreters minutes.
    huge = build_model([1, 4], [Unary("RELU")] * 20_000)
    with AgentClient("cancel-agent", agent, TOKEN) as client:
        sha = client.upload("huge", huge, timeout_s=120)
        with pytest.raises(AgentCallError) as err:
            client.run_benchmark(sha, FAST, timeout_s=2.0)
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        small = client.upload("mlp", build_recipe("mlp", 0))
        assert _seconds_until_free(client, small) < FREED_WITHIN_S
