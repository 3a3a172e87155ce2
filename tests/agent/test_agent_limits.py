"""What a caller can cost an agent: nothing without the token, and bounded with it.

A real agent process on loopback (``python -m agent serve``), with the open-file limit of a
stock device (1,024 here: the attack that found this used about that many sockets), measured
from outside through /proc: its peak memory and its open descriptors.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from agent.local import build_recipe
from agent.server import ModelCache
from controller.farm.client import AgentCallError, AgentClient
from joulefarm.results import MeasureSettings
from protos.joulefarm.v1 import agent_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
TOKEN = "limits-token"
FILE_LIMIT = 1024
UPLOAD = "/joulefarm.v1.AgentService/UploadModelChunks"


@dataclass
class AgentProcess:
    process: subprocess.Popen[str]
    target: str
    log: Path

    def status(self, field: str) -> int:
        """A /proc/PID/status field in kB (VmHWM: peak resident memory)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    cmd = [sys.executable, "-m", "agent", "serve", "--name", "limits", "--platform", "sim",
           "--meter", "sim", "--token-file", str(token_file), "--cache-dir",
           str(tmp_path / "cache"), "--exit-with-parent", str(os.getpid()),
           "--allow-delegate", str(tmp_path / "allowed.so")]
    log = tmp_path / "agent.log"
    with log.open("w") as out:  # the child keeps its own descriptor
        process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=out, text=True,
                                   preexec_fn=_limit_files)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, log.read_text()[-3000:]
        yield AgentProcess(process, f"127.0.0.1:{json.loads(line)['port']}", log)
    finally:
        process.terminate()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()


def _raw_upload(target: str, payload: bytes, token: str) -> grpc.StatusCode:
    """One upload call carrying ``payload`` as a single message: what an attacker sends."""
    with grpc.insecure_channel(target) as channel:
        call = channel.stream_unary(UPLOAD, request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        try:
            call(iter([payload]), metadata=(("authorization", f"Bearer {token}"),), timeout=60)
        except grpc.RpcError as e:
            return e.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_wrong_token_uploads_cost_the_agent_no_memory(agent: AgentProcess) -> None:
    # Before: ten such calls drove an agent to 888 MB, each request read whole before the
    # token was looked at.
    payload = b"\0" * (48 * 1024 * 1024)
    before = agent.status("VmHWM")
    codes: list[grpc.StatusCode] = []
    threads = [threading.Thread(target=lambda: codes.append(
        _raw_upload(agent.target, payload, "wrong"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(codes) == 4 and all(
        c in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED) for c in codes)
    grown_mb = (agent.status("VmHWM") - before) / 1024
    assert grown_mb < 64, f"the agent's peak memory grew by {grown_mb:.0f} MB"
    # With the token, a message larger than a chunk is refused by size, not buffered either.
    assert _raw_upload(agent.target, payload, TOKEN) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (agent.status("VmHWM") - before) / 1024 < 64


def test_idle_connections_do_not_lock_the_controller_out(agent: AgentProcess) -> None:
    # Before: about a thousand idle sockets used up the agent's descriptors and real calls
    # timed out. Now connections beyond MAX_CONNECTIONS are closed, and idle ones are dropped
    # when their handshake times out.
    host, port = agent.target.split(":")
    sockets = []
    try:
        for _ in range(FILE_LIMIT + 100):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect((host, int(port)))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        start = time.monotonic()
        facts = None
        while facts is None and time.monotonic() - start < 60:
            try:
                with AgentClient("limits", agent.target, TOKEN) as client:
                    facts = client.facts(timeout_s=5)
            except AgentCallError:
                time.sleep(0.5)
        assert facts is not None and facts.device_name == "limits"
        assert agent.open_files() < FILE_LIMIT - 100
        assert agent.process.poll() is None
    finally:
        for s in sockets:
            s.close()


def test_refused_tokens_are_logged_at_a_bounded_rate(agent: AgentProcess) -> None:
    with AgentClient("limits", agent.target, "wrong") as client:
        for _ in range(200):
            with pytest.raises(AgentCallError):
                client.facts()
    lines = [x for x in agent.log.read_text().splitlines() if "missing or wrong token" in x]
    # One line per REFUSAL_LOG_INTERVAL_S (10 s) at most; 200 calls take a few seconds.
    assert 1 <= len(lines) <= 3, lines
    assert "GetDeviceFacts" in lines[0]


def test_a_model_name_cannot_forge_a_log_line(agent: AgentProcess) -> None:
    forged = "FORGED joulefarm.agent INFO model mlp stored"
    with AgentClient("limits", agent.target, TOKEN) as client:
        client.upload("mlp\n" + forged + "\n" + "x" * 400, build_recipe("mlp", 0))
    text = agent.log.read_text()
    assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert "mlp\\nFORGED" in text and "x" * 200 not in text  # escaped, and cut short


def test_settings_beyond_the_limits_are_refused_by_the_agent(agent: AgentProcess) -> None:
    # Before: num_threads = 100000 got an agent OOM-killed.
    with AgentClient("limits", agent.target, TOKEN) as client:
        sha = client.upload("mlp", build_recipe("mlp", 0))
        for settings, field in ((MeasureSettings(num_threads=100_000), "num_threads"),
                                (MeasureSettings(min_duration_s=1e9), "min_duration_s"),
                                (MeasureSettings(min_iterations=10**9), "min_iterations"),
                                (MeasureSettings(input_shapes=(("0", (1 << 20, 1 << 20)),)),
                                 "input_shapes")):
            with pytest.raises(AgentCallError) as err:
                client.run_benchmark(sha, settings, timeout_s=30)
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert field in str(err.value)


def test_only_allowed_delegates_are_loaded(agent: AgentProcess, tmp_path: Path) -> None:
    fast = MeasureSettings(min_layer_duration_s=0.005, min_iterations=2, idle_duration_s=0.06)
    with AgentClient("limits", agent.target, TOKEN) as client:
        sha = client.upload("tiny_cnn", build_recipe("tiny_cnn", 0))
        with pytest.raises(AgentCallError) as err:
            client.run_benchmark(sha, MeasureSettings(delegate_path="/tmp/evil.so"),
                                 timeout_s=30)
        assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert "delegates" in str(err.value)
        # The allowed one passes the check (and then fails to load: there is no such file).
        with pytest.raises(AgentCallError) as err:
            client.run_benchmark(sha, MeasureSettings(
                delegate_path=str(tmp_path / "allowed.so"), **{
                    k: getattr(fast, k) for k in ("min_layer_duration_s", "min_iterations",
                                                  "idle_duration_s")}), timeout_s=60)
        assert err.value.code != grpc.StatusCode.PERMISSION_DENIED


def test_the_model_cache_keeps_to_its_quota(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path, max_bytes=1000, quota_bytes=3000)
    shas = []
    for k in range(3):
        shas.append(cache.put(bytes([k]) * 1000)[0])
        time.sleep(0.02)  # distinct modification times
    assert cache.get(shas[0]) is not None  # recently used: kept over the second
    time.sleep(0.02)
    shas.append(cache.put(b"\xff" * 1000)[0])
    kept = {p.stem for p in tmp_path.glob("*.tflite")}
    assert kept == {shas[0], shas[2], shas[3]}
    assert sum(p.stat().st_size for p in tmp_path.glob("*.tflite")) <= 3000
    # A stale partial upload (the agent crashed mid-write) is removed at start.
    (tmp_path / f"{shas[0]}.tmp1.2").write_bytes(b"half")
    ModelCache(tmp_path, max_bytes=1000, quota_bytes=3000)
    assert not list(tmp_path.glob("*.tmp*"))


def test_upload_chunks_match_the_agent_limits() -> None:
    from joulefarm.wire import MAX_REQUEST_BYTES, UPLOAD_CHUNK_BYTES

    chunk = pb.UploadModelChunk(name="n" * 512, size_bytes=2**63, data=b"x" * UPLOAD_CHUNK_BYTES)
    assert chunk.ByteSize() < MAX_REQUEST_BYTES
