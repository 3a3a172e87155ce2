"""The controller under load: 100 lightweight agents on loopback, and DuckDB ingest speed.

    python benchmarks/bench_controller.py [--agents 100] [--jobs-per-agent 5] [--layers 200]
                                          [--ingest-rows 2000000]

1. Dispatch: a child process serves ``--agents`` lightweight agents (real gRPC servers on
   127.0.0.1, token-authenticated, answering at once with a synthetic result of ``--layers``
   layers, labelled simulated); the controller runs a sweep against all of them and stores
   every result. Prints jobs/s and the controller's overhead per job.
2. Ingest: ``ResultStore.store_run`` of results with many layers into a fresh DuckDB file
   (Arrow bulk insert, one transaction per run). Prints layer rows/s (target >= 500k), alone
   and again while another process runs a read-only query every ``--reader-every`` seconds
   (what ``joulefarm sweep status`` does during a sweep), with how long each read waited.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc

from agent.meters.base import MeterDescription
from agent.server import TokenAuthInterceptor
from controller.config.registry import parse_registry
from controller.config.suite import load_suite
from controller.farm.sweep import Endpoint, run_sweep
from controller.farm.timing import Timing
from controller.store import ResultStore
from joulefarm import wire
from joulefarm.results import BenchmarkResult, DeviceFacts, LayerRecord
from protos.joulefarm.v1 import agent_pb2 as pb
from protos.joulefarm.v1 import agent_pb2_grpc

TOKEN = "bench-token"
METER = MeterDescription(kind="sim", simulated=True, sample_rate_hz=10_000.0,
                         profile="bench", description="simulated: benchmark stand-in")


def synthetic_result(sha: str, n_layers: int) -> BenchmarkResult:
    layers = tuple(LayerRecord(
        index=i, op="CONV_2D", macs=1000 * i, param_bytes=64, act_in_bytes=128,
        act_out_bytes=128, input_shapes="1x8x8x4", output_shapes="1x8x8x4", iterations=10,
        window_start_s=i * 0.01, window_end_s=i * 0.01 + 0.009, latency_s=9e-4,
        energy_j=1e-3, active_energy_j=5e-4, mean_power_w=1.1, samples=90, coverage=1.0,
        flags=(), true_energy_j=1e-3) for i in range(n_layers))
    return BenchmarkResult(
        model_sha256=sha, mode="layers", meter=METER, runtime_name="bench",
        runtime_version="0", num_threads=1, idle_power_w=1.0, clock_offset_s=0.0,
        alignment_correlation=1.0, started_unix_s=time.time(), finished_unix_s=time.time(),
        layers=layers)


class LightAgent(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, name: str, n_layers: int) -> None:
        self.name, self.n_layers = name, n_layers
        self.facts = DeviceFacts(
            device_name=name, platform="sim", machine="x86_64", cpu_model="bench", cpu_count=1,
            memory_bytes=0, os="", kernel="", python_version="", runtime_name="bench",
            runtime_version="0", agent_version="0", rust_core_profile="release",
            meters=(METER,), fingerprint=hashlib.sha256(name.encode()).hexdigest())

    def GetDeviceFacts(self, request, context):  # noqa: N802 (gRPC method name)
        return pb.GetDeviceFactsResponse(facts=wire.facts_to_proto(self.facts))

    def UploadModelChunks(self, chunks, context):  # noqa: N802
        content = b"".join(chunk.data for chunk in chunks)
        sha = hashlib.sha256(content).hexdigest()
        return pb.UploadModelResponse(sha256=sha, size_bytes=len(content))

    def RunBenchmark(self, request, context):  # noqa: N802
        yield wire.result_to_proto(synthetic_result(request.model_sha256, self.n_layers))


def serve_agents(n: int, n_layers: int, ports: mp.Queue, stop: mp.Event) -> None:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servers = []
    for i in range(n):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                             interceptors=[TokenAuthInterceptor(TOKEN)],
                             options=[("grpc.max_receive_message_length", 64 << 20)])
        agent_pb2_grpc.add_AgentServiceServicer_to_server(LightAgent(f"light-{i:03d}", n_layers),
                                                          server)
        hs = health.HealthServicer()
        hs.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(hs, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        ports.put(port)
    stop.wait()
    for s in servers:
        s.stop(0)


def bench_dispatch(n_agents: int, jobs_per_agent: int, n_layers: int, workdir: Path) -> None:
    ctx = mp.get_context("spawn")
    ports: mp.Queue = ctx.Queue()
    stop = ctx.Event()
    child = ctx.Process(target=serve_agents, args=(n_agents, n_layers, ports, stop), daemon=True)
    child.start()
    port_list = [ports.get(timeout=120) for _ in range(n_agents)]
    devices_text = "schema_version = 1\n" + "".join(
        f'\n[[device]]\nname = "light-{i:03d}"\nplatform = "sim"\naddress = "127.0.0.1"\n'
        f'port = {p}\ntags = ["bench"]\n\n[device.meter]\nkind = "sim"\nprofile = "host"\n'
        for i, p in enumerate(port_list))
    registry = parse_registry(devices_text, "bench-devices.toml")
    suite_path = workdir / "suite.toml"
    models = "".join(f'\n[[model]]\nname = "m{k}"\nrecipe = "tiny_cnn"\nseed = {k}\n'
                     for k in range(jobs_per_agent))
    suite_path.write_text(f'schema_version = 1\nname = "bench"\n{models}')
    suite = load_suite(suite_path)
    endpoints = [Endpoint(d, d.grpc_target(), TOKEN) for d in registry]
    with ResultStore(workdir / "dispatch.duckdb") as store:
        t = time.perf_counter()
        outcome = run_sweep(suite, list(registry), endpoints, store, devices_file="bench",
                            timing=Timing(retries=0))
        elapsed = time.perf_counter() - t
        _, rows = store.query("SELECT count(*) FROM layer_measurements")
    stop.set()
    child.join(10)
    jobs = n_agents * jobs_per_agent
    print(f"dispatch: {n_agents} agents x {jobs_per_agent} jobs ({n_layers} layers each): "
          f"{elapsed:.2f} s, {jobs / elapsed:.0f} jobs/s ({elapsed / jobs * 1e3:.1f} ms of "
          f"controller wall time per job, upload + stream + store); status {outcome.status}; "
          f"{rows[0][0]} layer rows stored")


def poll_readonly(db: Path, every_s: float, stop: mp.Event, out: mp.Queue) -> None:
    """A user running ``joulefarm query`` every ``every_s`` during ingest: each read's wait."""
    from controller.store import query_readonly

    waits: list[float] = []
    while not db.exists() and not stop.is_set():
        time.sleep(0.01)
    while not stop.is_set():
        t = time.perf_counter()
        query_readonly(db, "SELECT count(*) FROM layer_energy")
        waits.append(time.perf_counter() - t)
        stop.wait(every_s)
    out.put(waits)


def bench_ingest(total_rows: int, rows_per_run: int, workdir: Path,
                 reader_every_s: float | None = None) -> None:
    """Ingest alone, or (``reader_every_s``) with a reader process polling the same file."""
    db = workdir / f"ingest-{'read' if reader_every_s else 'alone'}.duckdb"
    result = synthetic_result("a" * 64, rows_per_run)
    runs = max(1, total_rows // rows_per_run)
    stop, waits_q = mp.Event(), mp.Queue()
    reader = None
    if reader_every_s:
        reader = mp.Process(target=poll_readonly, args=(db, reader_every_s, stop, waits_q))
        reader.start()
    with ResultStore(db) as store:
        sweep = store.start_sweep(suite="bench", suite_file="", devices_file="",
                                  joulefarm_version="0", git_revision="", rust_core_profile="")
        jobs = store.add_jobs(sweep, [("light", f"m{i}", "a" * 64, {}) for i in range(runs)])
        facts = LightAgent("light", 0).facts
        t = time.perf_counter()
        for job in jobs:
            store.store_run(job_id=job, sweep_id=sweep, device=facts, model_name="m",
                            result=result)
        elapsed = time.perf_counter() - t
        opened = store.times_opened
    rows = runs * rows_per_run
    label = f"with a reader every {reader_every_s:g} s" if reader_every_s else "no reader"
    print(f"ingest ({label}): {rows} layer rows in {runs} runs of {rows_per_run}: "
          f"{elapsed:.2f} s, {rows / elapsed:,.0f} rows/s (target >= 500,000); "
          f"file opened {opened}x")
    if reader is not None:
        stop.set()
        waits = sorted(waits_q.get(timeout=60))
        reader.join()
        if waits:
            print(f"  reader: {len(waits)} queries, wait median {waits[len(waits) // 2]:.3f} s, "
                  f"max {waits[-1]:.3f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--jobs-per-agent", type=int, default=5)
    parser.add_argument("--layers", type=int, default=200)
    parser.add_argument("--ingest-rows", type=int, default=2_000_000)
    parser.add_argument("--rows-per-run", type=int, default=20_000)
    parser.add_argument("--reader-every", type=float, default=2.0,
                        help="seconds between a concurrent reader's queries during ingest "
                             "(2 s: what `watch joulefarm sweep status` does)")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="joulefarm-bench-") as tmp:
        bench_dispatch(ns.agents, ns.jobs_per_agent, ns.layers, Path(tmp))
        bench_ingest(ns.ingest_rows, ns.rows_per_run, Path(tmp))
        bench_ingest(ns.ingest_rows, ns.rows_per_run, Path(tmp), ns.reader_every)
    print(json.dumps({"note": "figures are wall-clock on this machine; see README"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
