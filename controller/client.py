"""The controller's side of the agent protocol: every call authenticated and under a deadline."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent import convert
from agent.results import BenchmarkResult, DeviceFacts, MeasureSettings, Progress
from controller.errors import JoulefarmError
from protos.joulefarm.v1 import agent_pb2 as pb
from protos.joulefarm.v1 import agent_pb2_grpc

FACTS_TIMEOUT_S = 10.0
UPLOAD_TIMEOUT_S = 120.0
HEALTH_TIMEOUT_S = 5.0


class AgentCallError(JoulefarmError):
    """An agent call failed; ``code`` is the gRPC status code."""

    def __init__(self, device: str, what: str, code: grpc.StatusCode, details: str) -> None:
        self.device, self.code = device, code
        super().__init__(f"{device}: {what} failed ({code.name}): {details}")


class AgentClient:
    """One agent, one channel. ``token`` goes in the ``authorization`` metadata of every call."""

    def __init__(self, device: str, target: str, token: str,
                 root_certificates: bytes | None = None) -> None:
        self.device = device
        self.target = target
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, creds)
        else:
            self._channel = grpc.insecure_channel(target)
        self._stub = agent_pb2_grpc.AgentServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, what: str, e: grpc.RpcError) -> AgentCallError:
        return AgentCallError(self.device, what, e.code(), e.details() or "")

    def healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=""),
                                       timeout=timeout_s)
        except grpc.RpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def facts(self, timeout_s: float = FACTS_TIMEOUT_S) -> DeviceFacts:
        try:
            reply = self._stub.GetDeviceFacts(pb.GetDeviceFactsRequest(), timeout=timeout_s,
                                              metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._fail("GetDeviceFacts", e) from None
        return convert.facts_from_proto(reply.facts)

    def upload(self, name: str, content: bytes, timeout_s: float = UPLOAD_TIMEOUT_S) -> str:
        try:
            reply = self._stub.UploadModel(pb.UploadModelRequest(name=name, content=content),
                                           timeout=timeout_s, metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._fail(f"UploadModel({name})", e) from None
        return reply.sha256

    def run_benchmark(
        self, model_sha256: str, settings: MeasureSettings, *, timeout_s: float,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> BenchmarkResult:
        request = convert.settings_to_proto(model_sha256, settings)
        result = None
        try:
            for event in self._stub.RunBenchmark(request, timeout=timeout_s,
                                                 metadata=self._metadata):
                kind = event.WhichOneof("event")
                if kind == "progress" and on_progress:
                    on_progress(convert.progress_from_proto(event.progress))
                elif kind == "result":
                    result = convert.result_from_proto(event.result)
        except grpc.RpcError as e:
            raise self._fail("RunBenchmark", e) from None
        if result is None:
            raise AgentCallError(self.device, "RunBenchmark", grpc.StatusCode.DATA_LOSS,
                                 "the stream ended without a result")
        return result
