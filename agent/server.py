"""The agent's gRPC server: device facts, model upload, benchmarks; token-authenticated.

Start it with ``python -m agent serve --help``. It prints one JSON line,
``{"event": "listening", "port": N, "pid": P}``, once it accepts calls, so a controller that
asked for port 0 learns the port it got.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import (  # type: ignore[import-untyped]  # the package ships no types
    health,
    health_pb2,
    health_pb2_grpc,
)
from grpc_reflection.v1alpha import (  # type: ignore[import-untyped]  # the package ships no types
    reflection,
)

import joulefarm
from agent.cancel import Cancel, Cancelled
from agent.facts import collect_facts
from agent.measure import measure
from agent.meters.base import Meter
from agent.meters.factory import discover_meters, open_meter
from agent.runtimes.backend import runtime_info
from joulefarm import wire
from joulefarm.errors import JoulefarmError, ModelError
from joulefarm.limits import MAX_INPUT_ELEMENTS, MEASURE_BOUNDS, bound_problem
from joulefarm.results import DeviceFacts, MeasureSettings, Progress
from joulefarm.tflite.parse import read_layers
from joulefarm.wire import MAX_NAME_CHARS, MAX_REQUEST_BYTES, MAX_RESULT_BYTES, loggable
from protos.joulefarm.v1 import agent_pb2 as pb
from protos.joulefarm.v1 import agent_pb2_grpc

log = logging.getLogger("joulefarm.agent")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AgentService"].full_name
DEFAULT_MAX_MODEL_BYTES = 64 * 1024 * 1024
DEFAULT_CACHE_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
"""Models kept on disk at most (``--cache-quota-bytes``); the least recently used go first."""
# Callers at once: gRPC answers RESOURCE_EXHAUSTED beyond. A controller makes one call at a
# time per device; the rest is health checks and people running `devices check`.
MAX_CONCURRENT_RPCS = 32
# Uploads at once: each holds up to a model in memory until it is checked and stored.
MAX_CONCURRENT_UPLOADS = 2
# Open connections at most: gRPC closes any beyond, so idle sockets cannot use up the
# agent's file descriptors (about 1,000 did, with the usual limit of 1,024).
MAX_CONNECTIONS = 256
# A connection that has not completed its handshake (HTTP/2, or TLS) by then is closed.
HANDSHAKE_TIMEOUT_MS = 5_000
# A connection with no call for this long is closed (a controller's channel reconnects).
IDLE_CONNECTION_MS = 5 * 60_000
# Refused tokens are logged at most this often (with the count since), so a flood of bad
# calls cannot fill the log.
REFUSAL_LOG_INTERVAL_S = 10.0
# Calls anyone may make without a token: load balancers and supervisors probe health.
UNAUTHENTICATED_METHODS_PREFIX = "/grpc.health.v1.Health/"
STOP_GRACE_S = 2.0
# While a benchmark runs, the stream carries at least one event this often (a "heartbeat"
# progress event when nothing else happened), so a caller can tell a slow layer from a dead
# agent.
HEARTBEAT_INTERVAL_S = 1.0
PARENT_POLL_S = 1.0


@dataclass(frozen=True)
class AgentConfig:
    name: str
    platform: str
    meter_kind: str = "sim"
    meter_profile: str = "host"
    sample_rate_hz: float | None = None
    cache_dir: Path = Path(".joulefarm/agent-cache")
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES
    # Driver settings from the device's [device.meter] options (see agent.meters.factory).
    meter_options: Mapping[str, Any] = field(default_factory=dict)
    cache_quota_bytes: int = DEFAULT_CACHE_QUOTA_BYTES
    # External delegate libraries a benchmark may load (devices.toml `delegates`): any other
    # delegate_path is refused, since loading a library runs its code on the device.
    allowed_delegates: tuple[str, ...] = ()


class ModelCache:
    """Models on disk, named by their sha256, so an upload of known bytes costs nothing.

    At most ``quota_bytes`` are kept: storing a model evicts the least recently used ones
    (by modification time, which ``get`` refreshes) until it fits."""

    def __init__(self, directory: Path, max_bytes: int,
                 quota_bytes: int = DEFAULT_CACHE_QUOTA_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.quota_bytes = quota_bytes
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp*"):  # an upload cut short by a crash
            stale.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.directory / f"{sha256}.tflite"

    def put(self, content: bytes) -> tuple[str, bool]:
        """Store ``content``; return its sha256 and whether it was already cached."""
        sha = hashlib.sha256(content).hexdigest()
        target = self.path(sha)
        with self._lock:
            if target.exists():
                os.utime(target)
                return sha, True
            self._make_room(len(content))
            tmp = target.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(content)
            tmp.replace(target)  # atomic: a reader never sees half a model
        return sha, False

    def _make_room(self, size: int) -> None:
        models = []
        for path in self.directory.glob("*.tflite"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            models.append((st.st_mtime, st.st_size, path))
        used = sum(m[1] for m in models)
        for _, bytes_, path in sorted(models):
            if used + size <= self.quota_bytes:
                break
            path.unlink(missing_ok=True)
            used -= bytes_
            log.info("model cache: evicted %s (%d bytes) to stay within %d bytes",
                     path.stem[:12], bytes_, self.quota_bytes)

    def get(self, sha256: str) -> bytes | None:
        path = self.path(sha256)
        with self._lock:
            try:
                content = path.read_bytes()
            except FileNotFoundError:
                return None
            os.utime(path)  # recently used: evicted last
        return content


_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class _RefusalLog:
    """Logs refused calls at most once per ``REFUSAL_LOG_INTERVAL_S``, with the count since the
    last line: a flood of bad tokens costs the log one line per interval."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = -REFUSAL_LOG_INTERVAL_S
        self._unlogged = 0

    def refused(self, method: str, peer: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._unlogged += 1
            if now - self._last < REFUSAL_LOG_INTERVAL_S:
                return
            count, self._unlogged, self._last = self._unlogged, 0, now
        log.warning("refused %d call(s) with a missing or wrong token in the last %g s "
                    "(latest: %s from %s)", count, REFUSAL_LOG_INTERVAL_S, loggable(method),
                    loggable(peer))


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Reject calls whose ``authorization`` metadata is not ``Bearer <token>``, before their
    request is read: the denial is a request-streaming handler that never reads, so a caller
    without the token makes the agent buffer nothing (a unary handler would receive the whole
    request first)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the agent token is empty")
        self._expected = f"Bearer {token}".encode()
        self.refusals = _RefusalLog()

    def _denial(self, method: str, response_streaming: bool) -> grpc.RpcMethodHandler[Any, Any]:
        # Any, Any: the denial stands in for every method, whatever its messages (it reads
        # nothing and answers nothing).
        def deny(requests: object, context: grpc.ServicerContext) -> None:
            self.refusals.refused(method, context.peer())
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid agent token")

        if response_streaming:
            return grpc.stream_stream_rpc_method_handler(deny)
        return grpc.stream_unary_rpc_method_handler(deny)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails],
                               grpc.RpcMethodHandler[_Request, _Response] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Request, _Response] | None:
        if details.method.startswith(UNAUTHENTICATED_METHODS_PREFIX):
            return continuation(details)
        presented = dict(details.invocation_metadata or ()).get("authorization", "")
        if isinstance(presented, str):
            presented = presented.encode()
        if hmac.compare_digest(presented, self._expected):
            return continuation(details)
        handler = continuation(details)
        return self._denial(details.method,
                            handler is not None and bool(handler.response_streaming))


def settings_problem(settings: MeasureSettings) -> str | None:
    """What in a benchmark request is outside ``joulefarm.limits``, or None: the controller
    checks suites against the same bounds, and a request that did not come through it must not
    wedge or crash the device either."""
    for name, (low, high) in MEASURE_BOUNDS.items():
        problem = bound_problem(getattr(settings, name), low, high)
        if problem:
            return f"{name}: {problem}"
    for key, dims in settings.input_shapes:
        if any(d < 1 for d in dims) or math.prod(dims) > MAX_INPUT_ELEMENTS:
            return (f"input_shapes: {loggable(str(key))} {list(dims)[:8]}: every dimension must "
                    f"be >= 1 and the input at most {MAX_INPUT_ELEMENTS} elements")
    return None


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.cache = ModelCache(config.cache_dir, config.max_model_bytes,
                                config.cache_quota_bytes)
        self._uploads = threading.BoundedSemaphore(MAX_CONCURRENT_UPLOADS)
        self._delegates = {os.path.realpath(p) for p in config.allowed_delegates}
        self.runtime = runtime_info()
        # One benchmark at a time: two would compete for the CPU and the meter.
        self._bench_lock = threading.Lock()
        self._runs = 0
        probe = self._open_meter(seed=0)
        # The configured meter first, then any other meter found on the device.
        found = [m for m in discover_meters() if m.kind != probe.description.kind]
        self.facts: DeviceFacts = collect_facts(
            config.name, config.platform, (probe.description, *found), self.runtime,
            joulefarm.build_profile(),
        )

    def _open_meter(self, seed: int) -> Meter:
        c = self.config
        return open_meter(c.meter_kind, profile=c.meter_profile, sample_rate_hz=c.sample_rate_hz,
                          seed=seed, options=c.meter_options)

    def GetDeviceFacts(self, request: pb.GetDeviceFactsRequest,
                       context: grpc.ServicerContext) -> pb.GetDeviceFactsResponse:
        return pb.GetDeviceFactsResponse(facts=wire.facts_to_proto(self.facts))

    def UploadModelChunks(self, chunks: Iterator[pb.UploadModelChunk],
                          context: grpc.ServicerContext) -> pb.UploadModelResponse:
        if not self._uploads.acquire(blocking=False):
            context.abort(grpc.StatusCode.ABORTED,
                          f"{MAX_CONCURRENT_UPLOADS} uploads are already running on this agent")
        try:
            name, content = self._receive(chunks, context)
            try:
                read_layers(content)  # refuse what cannot be benchmarked, before storing
            except ModelError as e:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"model {name!r}: {e}")
            sha, cached = self.cache.put(content)
        finally:
            self._uploads.release()
        log.info("model %s (%s, %d bytes) %s", loggable(name), sha[:12], len(content),
                 "already cached" if cached else "stored")
        return pb.UploadModelResponse(sha256=sha, size_bytes=len(content), already_cached=cached)

    def _receive(self, chunks: Iterator[pb.UploadModelChunk], context: grpc.ServicerContext
                 ) -> tuple[str, bytes]:
        """The model's name and bytes, chunk by chunk: a size over the limit is refused from the
        first chunk, before its bytes arrive, and more bytes than announced at once."""
        first = next(chunks, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an upload without a chunk")
        name, size = first.name, first.size_bytes
        if len(name) > MAX_NAME_CHARS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"model name of {len(name)} characters; at most {MAX_NAME_CHARS}")
        if size > self.cache.max_bytes:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"model {name!r} is {size} bytes; this agent accepts at most "
                          f"{self.cache.max_bytes}")
        content = bytearray(first.data)
        for chunk in chunks:
            content += chunk.data
            if len(content) > size:
                break
        if len(content) != size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"model {name!r}: {len(content)}{'+' if len(content) > size else ''} "
                          f"bytes sent, {size} announced")
        return name, bytes(content)

    def RunBenchmark(self, request: pb.RunBenchmarkRequest,
                     context: grpc.ServicerContext) -> Iterator[pb.RunBenchmarkResponse]:
        try:
            settings = wire.settings_from_proto(request)
            content = self.cache.get(request.model_sha256)
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        problem = settings_problem(settings)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if settings.delegate_path and (
                os.path.realpath(settings.delegate_path) not in self._delegates):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"delegate {loggable(settings.delegate_path)!r} is not allowed on "
                          f"{self.config.name}: list it under the device's `delegates` in "
                          "devices.toml (loading a library runs its code on the device)")
        if content is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"model {request.model_sha256} is not on this agent: upload it first")
        if not self._bench_lock.acquire(blocking=False):
            # ABORTED, not RESOURCE_EXHAUSTED: a caller retries a busy agent, but not a request
            # that is too large, which RESOURCE_EXHAUSTED means.
            context.abort(grpc.StatusCode.ABORTED, "another benchmark is running on this agent")
        # From here the worker thread owns the lock: it releases it when the measurement has
        # really stopped, even if this call was cancelled or timed out long before.
        yield from self._run(content, request.model_sha256, settings, context)

    def _run(self, content: bytes, sha: str, settings: MeasureSettings,
             context: grpc.ServicerContext) -> Iterator[pb.RunBenchmarkResponse]:
        events: queue.Queue[pb.RunBenchmarkResponse | BaseException | None] = queue.Queue()
        cancel = Cancel()
        # Called when the call ends for any reason (done, cancelled, deadline, disconnect): a
        # measurement still running then stops at its next look at the flag (agent.cancel).
        if not context.add_callback(cancel.set):
            cancel.set()  # the call had already ended

        def progress(p: Progress) -> None:
            cancel.check()
            events.put(wire.progress_to_proto(p))

        def work() -> None:
            try:
                self._runs += 1
                meter = self._open_meter(seed=settings.seed * 1000 + self._runs)
                result = measure(content, sha, meter, settings, self.runtime, progress,
                                 cancel=cancel)
                events.put(wire.result_to_proto(result))
            except BaseException as e:  # handed to the gRPC thread, which reports it
                events.put(e)
            finally:
                self._bench_lock.release()
                events.put(None)

        worker = threading.Thread(target=work, name="benchmark", daemon=True)
        worker.start()
        while True:
            try:
                event = events.get(timeout=HEARTBEAT_INTERVAL_S)
            except queue.Empty:
                yield wire.progress_to_proto(Progress("heartbeat", 0, 0))
                continue
            if event is None:
                break
            if isinstance(event, Cancelled):
                log.info("benchmark of %s cancelled by the caller", sha[:12])
                return
            if isinstance(event, JoulefarmError):  # each error class names its status
                context.abort(getattr(grpc.StatusCode, event.grpc_status), str(event))
            if isinstance(event, BaseException):
                log.exception("benchmark failed", exc_info=event)
                context.abort(grpc.StatusCode.INTERNAL, f"benchmark failed: {event!r}")
            yield event
        worker.join()


def build_server(
    config: AgentConfig, token: str, *, host: str = "127.0.0.1", port: int = 0,
    tls: tuple[bytes, bytes] | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Create and start the server; return it, its bound port and its health servicer."""
    if config.max_model_bytes > config.cache_quota_bytes:
        raise ValueError(f"the model limit ({config.max_model_bytes} bytes) is above the cache "
                         f"quota ({config.cache_quota_bytes} bytes)")
    servicer = AgentServicer(config)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="rpc"),
        interceptors=[TokenAuthInterceptor(token)],
        options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                 ("grpc.max_send_message_length", MAX_RESULT_BYTES),
                 ("grpc.max_allowed_incoming_connections", MAX_CONNECTIONS),
                 ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
                 ("grpc.max_connection_idle_ms", IDLE_CONNECTION_MS)],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
    )
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    address = f"{host}:{port}"
    if tls:
        bound = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"could not bind {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, bound, health_servicer


def _raise_file_limit() -> None:
    """Raise the soft limit on open files to the hard one: each connection holds a descriptor,
    and the usual soft limit of 1,024 is close to what ``MAX_CONNECTIONS`` and the meters and
    models need together."""
    try:
        import resource  # POSIX only; Termux has it
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as e:
            log.info("could not raise the open-file limit from %d: %s", soft, e)


def _watch_parent(pid: int, stopping: threading.Event) -> None:
    """Stop when the process that started us is gone (a local agent must not outlive a
    controller that was killed)."""
    while not stopping.wait(PARENT_POLL_S):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.info("parent process %d is gone; stopping", pid)
            stopping.set()
        except PermissionError:
            pass  # it exists, under another user


def serve(config: AgentConfig, token: str, *, host: str, port: int,
          tls: tuple[bytes, bytes] | None = None, parent_pid: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or the parent's death), then stop gracefully."""
    _raise_file_limit()
    server, bound, health_servicer = build_server(config, token, host=host, port=port, tls=tls)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if parent_pid:
        threading.Thread(target=_watch_parent, args=(parent_pid, stopping), daemon=True,
                         name="parent-watch").start()
    print(json.dumps({"event": "listening", "port": bound, "pid": os.getpid()}), flush=True)
    log.info("agent %s listening on %s:%d", config.name, host, bound)
    stopping.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(STOP_GRACE_S).wait()
    log.info("agent %s stopped", config.name)
    sys.stdout.flush()
