"""The agent's gRPC service on a real loopback server: auth, upload, benchmark, errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.local import build_recipe
from agent.server import AgentConfig, build_server
from controller.farm.client import AgentCallError, AgentClient
from joulefarm.results import MeasureSettings, Progress
from joulefarm.wire import UPLOAD_CHUNK_BYTES
from protos.joulefarm.v1 import agent_pb2 as pb
from protos.joulefarm.v1 import agent_pb2_grpc

TOKEN = "t0ken-for-tests"
FAST = MeasureSettings(min_layer_duration_s=0.005, min_iterations=2, idle_duration_s=0.06)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cache = tmp_path_factory.mktemp("cache")
    config = AgentConfig(name="test-agent", platform="sim", meter_kind="sim",
                         meter_profile="rpi4", cache_dir=cache, max_model_bytes=8_000_000)
    server, port, _ = build_server(config, TOKEN, port=0)
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


def test_calls_without_the_right_token_are_unauthenticated(agent: str) -> None:
    for token in ("", "wrong"):
        with AgentClient("x", agent, token) as client, pytest.raises(AgentCallError) as err:
            client.facts()
        assert err.value.code == grpc.StatusCode.UNAUTHENTICATED
    # The streaming call is refused too, before any work.
    with AgentClient("x", agent, "wrong") as client, pytest.raises(AgentCallError) as err:
        client.run_benchmark("0" * 64, FAST, timeout_s=10)
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_health_needs_no_token(agent: str) -> None:
    with grpc.insecure_channel(agent) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="joulefarm.v1.AgentService"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_facts_describe_the_device_and_its_simulated_meter(agent: str) -> None:
    with AgentClient("test-agent", agent, TOKEN) as client:
        first, second = client.facts(), client.facts()
    assert first.device_name == "test-agent" and first.cpu_count >= 1
    assert first.meters[0].kind == "sim" and first.meters[0].simulated
    assert first.meters[0].profile == "rpi4"
    assert len(first.fingerprint) == 64 and first.fingerprint == second.fingerprint
    assert first.runtime_name in ("ai-edge-litert", "tflite-runtime")


def _upload(stub: agent_pb2_grpc.AgentServiceStub, name: str, content: bytes,
            size: int | None = None) -> pb.UploadModelResponse:
    md = (("authorization", f"Bearer {TOKEN}"),)
    pieces = [content[at:at + UPLOAD_CHUNK_BYTES]
              for at in range(0, len(content), UPLOAD_CHUNK_BYTES)] or [b""]
    chunks = iter([pb.UploadModelChunk(name=name, data=pieces[0],
                                       size_bytes=len(content) if size is None else size),
                   *(pb.UploadModelChunk(data=piece) for piece in pieces[1:])])
    reply: pb.UploadModelResponse = stub.UploadModelChunks(chunks, metadata=md, timeout=10)
    return reply


def test_upload_is_content_addressed_and_validated(agent: str) -> None:
    model = build_recipe("mlp", 0)
    with grpc.insecure_channel(agent) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        first, again = _upload(stub, "mlp", model), _upload(stub, "mlp", model)
        assert first.sha256 == again.sha256 and not first.already_cached and again.already_cached
        with pytest.raises(grpc.RpcError) as err:
            _upload(stub, "junk", b"not a model" * 10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "junk" in err.value.details()
        # Refused on the size announced in the first chunk, before the bytes are sent.
        with pytest.raises(grpc.RpcError) as err:
            _upload(stub, "big", b"", size=8_500_000)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 8000000" in err.value.details()
        for size in (len(model) - 1, len(model) + 1):  # fewer or more bytes than announced
            with pytest.raises(grpc.RpcError) as err:
                _upload(stub, "mlp", model, size=size)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "announced" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            _upload(stub, "x" * 10_000, model)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_uploads_of_many_chunks_arrive_whole(agent: str) -> None:
    # A model of several chunks (UPLOAD_CHUNK_BYTES each), through the controller's client.
    model = build_recipe("mlp", 1)
    assert len(model) > 2 * UPLOAD_CHUNK_BYTES
    with AgentClient("test-agent", agent, TOKEN) as client:
        assert client.upload("many", model) == hashlib.sha256(model).hexdigest()


def test_benchmark_streams_progress_then_a_result(agent: str) -> None:
    model = build_recipe("tiny_cnn", 0)
    seen: list[Progress] = []
    with AgentClient("test-agent", agent, TOKEN) as client:
        sha = client.upload("tiny_cnn", model)
        result = client.run_benchmark(sha, FAST, timeout_s=120, on_progress=seen.append)
    assert result.model_sha256 == sha and result.meter.simulated
    assert len(result.layers) >= 5
    assert [p.stage for p in seen][0] == "prepare" and any(p.stage == "layers" for p in seen)
    for layer in result.layers:
        assert layer.iterations >= 2 and layer.samples > 0 and layer.true_energy_j is not None
        assert layer.energy_j == pytest.approx(layer.true_energy_j, rel=0.1)
    assert result.true_clock_offset_s is not None
    assert result.clock_offset_s == pytest.approx(result.true_clock_offset_s, abs=2e-4)


def test_unknown_model_and_deadline_errors_leave_the_agent_serving(agent: str) -> None:
    with AgentClient("test-agent", agent, TOKEN) as client:
        with pytest.raises(AgentCallError) as err:
            client.run_benchmark("ab" * 32, FAST, timeout_s=10)
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        sha = client.upload("res_block", build_recipe("res_block", 0))
        slow = MeasureSettings(min_layer_duration_s=0.2, idle_duration_s=0.06)
        with pytest.raises(AgentCallError) as err:
            client.run_benchmark(sha, slow, timeout_s=0.3)
        assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # The cancelled measurement stops by itself; the next one runs.
        result = None
        for _ in range(50):
            try:
                result = client.run_benchmark(sha, FAST, timeout_s=120)
                break
            except AgentCallError as e:
                assert e.code == grpc.StatusCode.ABORTED  # busy: worth a retry
                time.sleep(0.1)
        assert result is not None and len(result.layers) > 0


def test_bad_token_file_stops_the_agent_with_a_clear_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty.token"
    empty.write_text("")
    proc = subprocess.run([sys.executable, "-m", "agent", "serve", "--name", "a",
                           "--token-file", str(empty)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and "token file" in proc.stderr and "is empty" in proc.stderr


def test_server_reflection_lists_the_services(agent: str) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    md = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(agent) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (reply,) = list(stub.ServerReflectionInfo(iter([request]), metadata=md, timeout=5))
    names = {s.name for s in reply.list_services_response.service}
    assert {"joulefarm.v1.AgentService", "grpc.health.v1.Health"} <= names
