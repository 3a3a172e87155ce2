"""The controller's side of the agent protocol: every call authenticated and under a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import grpc
from grpc_health.v1 import (  # type: ignore[import-untyped]  # the package ships no types
    health_pb2,
    health_pb2_grpc,
)

from joulefarm import wire
from joulefarm.errors import JoulefarmError
from joulefarm.results import BenchmarkResult, DeviceFacts, MeasureSettings, Progress
from joulefarm.wire import MAX_REQUEST_BYTES, MAX_RESULT_BYTES, UPLOAD_CHUNK_BYTES, loggable
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


def _chunks(name: str, content: bytes) -> Iterator[pb.UploadModelChunk]:
    view = memoryview(content)
    yield pb.UploadModelChunk(name=name, size_bytes=len(content),
                              data=bytes(view[:UPLOAD_CHUNK_BYTES]))
    for at in range(UPLOAD_CHUNK_BYTES, len(content), UPLOAD_CHUNK_BYTES):
        yield pb.UploadModelChunk(data=bytes(view[at:at + UPLOAD_CHUNK_BYTES]))


class AgentClient:
    """One agent, one channel. ``token`` goes in the ``authorization`` metadata of every call."""

    def __init__(self, device: str, target: str, token: str,
                 root_certificates: bytes | None = None,
                 server_name: str | None = None) -> None:
        """``root_certificates``: the PEM the agent's certificate must chain to (TLS; a pinned
        self-signed certificate is its own root); ``server_name``: the name to check it
        against when ``target`` is not one the certificate names (an SSH tunnel's port)."""
        self.device = device
        self.target = target
        # The agent's limits, mirrored: a large result is received, and no request is larger
        # than the agent accepts (uploads go in chunks).
        options: list[tuple[str, object]] = [
            ("grpc.max_receive_message_length", MAX_RESULT_BYTES),
            ("grpc.max_send_message_length", MAX_REQUEST_BYTES)]
        if root_certificates is not None:
            if server_name is not None:
                options.append(("grpc.ssl_target_name_override", server_name))
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
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

    def health_problem(self, timeout_s: float = HEALTH_TIMEOUT_S) -> str | None:
        """None when the agent reports SERVING; otherwise what is wrong, in one line."""
        try:
            reply = self._health.Check(health_pb2.HealthCheckRequest(service=""),
                                       timeout=timeout_s)
        except grpc.RpcError as e:
            details = (e.details() or "").splitlines()[0] if e.details() else ""
            return f"{e.code().name}: {details}" if details else e.code().name
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return None

    def healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
        return self.health_problem(timeout_s) is None

    def facts(self, timeout_s: float = FACTS_TIMEOUT_S) -> DeviceFacts:
        try:
            reply = self._stub.GetDeviceFacts(pb.GetDeviceFactsRequest(), timeout=timeout_s,
                                              metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._fail("GetDeviceFacts", e) from None
        return wire.facts_from_proto(reply.facts)

    def upload(self, name: str, content: bytes, timeout_s: float = UPLOAD_TIMEOUT_S) -> str:
        """Store ``content`` on the agent (in chunks); returns its sha256."""
        try:
            reply = self._stub.UploadModelChunks(_chunks(name, content), timeout=timeout_s,
                                                 metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._fail(f"UploadModel({loggable(name)})", e) from None
        return reply.sha256

    def run_benchmark(
        self, model_sha256: str, settings: MeasureSettings, *, timeout_s: float,
        on_progress: Callable[[Progress], None] | None = None,
        heartbeat_timeout_s: float | None = None,
    ) -> BenchmarkResult:
        """Run a benchmark; ``heartbeat_timeout_s`` cancels it when the stream goes silent
        (the agent sends an event at least every second while it works)."""
        request = wire.settings_to_proto(model_sha256, settings)
        result = None
        call = self._stub.RunBenchmark(request, timeout=timeout_s, metadata=self._metadata)
        last_event = [time.monotonic()]
        stalled, finished = threading.Event(), threading.Event()

        def watchdog() -> None:
            assert heartbeat_timeout_s is not None
            while not finished.wait(min(0.2, heartbeat_timeout_s / 4)):
                if time.monotonic() - last_event[0] > heartbeat_timeout_s:
                    stalled.set()
                    call.cancel()
                    return

        if heartbeat_timeout_s:
            threading.Thread(target=watchdog, daemon=True, name="heartbeat").start()
        try:
            for event in call:
                last_event[0] = time.monotonic()
                kind = event.WhichOneof("event")
                if kind == "progress" and on_progress:
                    on_progress(wire.progress_from_proto(event.progress))
                elif kind == "result":
                    result = wire.result_from_proto(event.result)
        except grpc.RpcError as e:
            if stalled.is_set():
                raise AgentCallError(self.device, "RunBenchmark",
                                     grpc.StatusCode.DEADLINE_EXCEEDED,
                                     f"no heartbeat for {heartbeat_timeout_s:g} s") from None
            raise self._fail("RunBenchmark", e) from None
        finally:
            finished.set()
        if result is None:
            raise AgentCallError(self.device, "RunBenchmark", grpc.StatusCode.DATA_LOSS,
                                 "the stream ended without a result")
        return result
