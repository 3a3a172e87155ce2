"""What is stored is what was asked for: a result is checked against its job before it is stored.

An agent that lies (another model's sha256, another device's name) or reports a value no
measurement can have (NaN, negative or infinite latency or energy, coverage outside [0, 1], a
window that ends before it starts) fails its job once, with a message naming both values;
nothing of it is stored. The lying agent is the real agent (``agent.server``'s servicer, a
simulated meter) on loopback, its result doctored on the way out. A permanent agent error
(RESOURCE_EXHAUSTED: a model too large for the agent) is not retried.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent.server import DEFAULT_MAX_MODEL_BYTES, AgentConfig, AgentServicer, TokenAuthInterceptor
from controller.farm.result_checks import ResultRejected
from controller.farm.runner import run_suite
from controller.farm.sweep import Job, store_result
from controller.farm.timing import Timing
from controller.store import ResultStore, StoreError
from joulefarm import wire
from joulefarm.results import BenchmarkResult, LayerTable, PhaseRecord, WholeModelRecord
from protos.joulefarm.v1 import agent_pb2_grpc
from tests.helpers.results import facts, layer, new_sweep, result

pytestmark = pytest.mark.slow

TOKEN = "loopback-test-token"
QUICK = Timing(heartbeat_timeout_s=20.0, retries=2, backoff_base_s=0.05, backoff_max_s=0.1,
               health_patience_s=5.0, health_poll_s=0.1)
SUITE = """schema_version = 1
name = "one"

[select]
tags = ["remote"]

[measure]
mode = "layers"
warmup_iterations = 1
min_layer_duration_s = 0.004
min_iterations = 2
idle_duration_s = 0.07
timeout_s = 120

[[model]]
name = "mlp"
recipe = "mlp"
"""

Doctor = Callable[[BenchmarkResult], BenchmarkResult]


class LyingServicer(AgentServicer):
    """The real agent, whose result passes through ``doctor`` before it is sent."""

    def __init__(self, config: AgentConfig, doctor: Doctor) -> None:
        super().__init__(config)
        self.doctor = doctor

    def RunBenchmark(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        for event in super().RunBenchmark(request, context):
            if event.WhichOneof("event") == "result":
                event = wire.result_to_proto(self.doctor(wire.result_from_proto(event.result)))
            yield event


@contextmanager
def loopback_agent(tmp_path: Path, *, name: str = "remote", doctor: Doctor = lambda r: r,
                   max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES) -> Iterator[Path]:
    """A remote agent on 127.0.0.1 that calls itself ``name``; yields a devices file in
    which it is the device ``remote``."""
    config = AgentConfig(name=name, platform="sim", meter_kind="sim", meter_profile="rpi4",
                         cache_dir=tmp_path / "cache", max_model_bytes=max_model_bytes)
    # As the agent's own server: room for the largest model it accepts.
    size = 2 * DEFAULT_MAX_MODEL_BYTES
    server = grpc.server(ThreadPoolExecutor(max_workers=4),
                         interceptors=[TokenAuthInterceptor(TOKEN)],
                         options=[("grpc.max_receive_message_length", size),
                                  ("grpc.max_send_message_length", size)])
    agent_pb2_grpc.add_AgentServiceServicer_to_server(LyingServicer(config, doctor), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    token_file = tmp_path / "agent.token"
    token_file.write_text(TOKEN)
    devices = tmp_path / "devices.toml"
    devices.write_text(f"""schema_version = 1

[[device]]
name = "remote"
platform = "sim"
address = "127.0.0.1"
port = {port}
token_file = "{token_file}"
tags = ["remote"]

[device.meter]
kind = "sim"
profile = "rpi4"
""")
    try:
        yield devices
    finally:
        server.stop(0).wait()


def sweep_with(tmp_path: Path, **agent: Any) -> tuple[list[tuple[object, ...]], int, list[str]]:
    """Run the one-model suite on a loopback agent: (jobs (status, attempts, error), runs
    stored, the report's errors)."""
    suite = tmp_path / "one.toml"
    suite.write_text(SUITE)
    db = tmp_path / "r.duckdb"
    with loopback_agent(tmp_path, **agent) as devices:
        report = run_suite(devices, suite, db, timing=QUICK)
    con = duckdb.connect(str(db), read_only=True)
    jobs = con.execute("SELECT status, attempts, error FROM jobs").fetchall()
    (runs,) = con.execute("SELECT count(*) FROM runs").fetchone() or (0,)
    con.close()
    return jobs, int(runs), report.errors()


def with_layer_value(name: str, value: float) -> Doctor:
    """Layer 0's ``name`` set to ``value``."""
    def doctor(r: BenchmarkResult) -> BenchmarkResult:
        columns = {k: (v.copy() if isinstance(v, np.ndarray) else list(v))
                   for k, v in r.layers.columns.items()}
        columns[name][0] = value
        return replace(r, layers=LayerTable(columns))
    return doctor


def with_whole_value(name: str, value: float) -> Doctor:
    def doctor(r: BenchmarkResult) -> BenchmarkResult:
        assert r.whole is not None  # layers mode loops the whole model too
        return replace(r, whole=replace(r.whole, **{name: value}))
    return doctor


def test_an_honest_agent_on_loopback_is_stored(tmp_path: Path) -> None:
    jobs, runs, errors = sweep_with(tmp_path)
    assert jobs == [("done", 1, None)] and runs == 1, errors


def test_a_result_for_another_model_fails_the_job_once_and_stores_nothing(
        tmp_path: Path) -> None:
    jobs, runs, errors = sweep_with(tmp_path,
                                    doctor=lambda r: replace(r, model_sha256="b" * 64))
    ((status, attempts, error),) = jobs
    assert (status, attempts, runs) == ("failed", 1, 0)
    assert "b" * 64 in str(error) and "model sha256" in str(error), error
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    (asked,) = con.execute("SELECT model_sha256 FROM jobs").fetchone() or ("",)
    assert asked in str(error)
    assert con.execute("SELECT count(*) FROM layer_measurements").fetchone() == (0,)
    assert errors and "b" * 64 in errors[0]


def test_an_agent_answering_as_another_device_fails_the_job_once(tmp_path: Path) -> None:
    jobs, runs, errors = sweep_with(tmp_path, name="impostor")
    ((status, attempts, error),) = jobs
    assert (status, attempts, runs) == ("failed", 1, 0)
    assert "'impostor'" in str(error) and "'remote'" in str(error), error
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    # Not even the device's facts are taken from it.
    assert con.execute("SELECT count(*) FROM devices").fetchone() == (0,)


@pytest.mark.parametrize(("doctor", "expected"), [
    (with_layer_value("energy_j", -1e-3), "energy_j is -0.001"),
    (with_layer_value("latency_s", math.inf), "latency_s is inf"),
    (with_layer_value("latency_s", math.nan), "latency_s is nan"),
    (with_layer_value("coverage", 1.5), "coverage is 1.5"),
    (with_layer_value("window_end_s", -1.0), "window_end_s"),
    (with_whole_value("latency_p50_s", math.nan), "latency_p50_s is nan"),
    (with_whole_value("energy_j", math.inf), "energy_j is inf"),
], ids=["negative-energy", "infinite-latency", "nan-latency", "coverage-above-1",
        "window-reversed", "nan-whole-latency", "infinite-whole-energy"])
def test_an_impossible_value_fails_the_job_once_and_stores_nothing(
        tmp_path: Path, doctor: Doctor, expected: str) -> None:
    jobs, runs, errors = sweep_with(tmp_path, doctor=doctor)
    ((status, attempts, error),) = jobs
    assert (status, attempts, runs) == ("failed", 1, 0), errors
    assert expected in str(error) and "nothing stored" in str(error), error


def test_a_model_too_large_for_the_agent_is_attempted_once(tmp_path: Path) -> None:
    # RESOURCE_EXHAUSTED: the agent will never take this model; a retry cannot help.
    jobs, runs, errors = sweep_with(tmp_path, max_model_bytes=100)
    ((status, attempts, error),) = jobs
    assert (status, attempts, runs) == ("failed", 1, 0)
    assert "RESOURCE_EXHAUSTED" in str(error) and "at most 100" in str(error), error


# -- crafted results through the path that stores a job's result -------------------------------

def stored(tmp_path: Path, run: BenchmarkResult) -> duckdb.DuckDBPyConnection:
    """Store ``run`` as the result of a job for device ``dev``, model ``"a" * 64``."""
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        sweep = new_sweep(store)
        (job_id,) = store.add_jobs(sweep, [("dev", "m", "a" * 64, {})])
        job = Job(job_id, "dev", "m", "a" * 64, {})
        store_result(store, job, sweep, facts(), run)
    return duckdb.connect(str(db), read_only=True)


def test_values_not_measured_are_stored_as_null_never_as_numbers(tmp_path: Path) -> None:
    nan = math.nan
    # A layer that could not run alone (every number NaN), one the meter missed (energy NaN).
    alone = replace(layer(1), iterations=0, window_start_s=nan, window_end_s=nan, latency_s=nan,
                    energy_j=nan, active_energy_j=nan, mean_power_w=nan, samples=0,
                    coverage=0.0, flags=("not_isolated",), true_energy_j=None)
    missed = replace(layer(2), energy_j=nan, active_energy_j=nan, mean_power_w=nan, samples=0,
                     coverage=0.0, flags=("no_samples",))
    whole = WholeModelRecord(iterations=5, window_start_s=0.0, window_end_s=0.1,
                             latency_mean_s=0.02, latency_p50_s=0.02, latency_p90_s=0.02,
                             latency_p99_s=0.02, energy_j=nan, active_energy_j=nan,
                             mean_power_w=nan, samples=0, coverage=0.0, flags=("no_samples",))
    con = stored(tmp_path, replace(result((layer(0), alone, missed)), whole=whole))
    rows = con.execute("SELECT layer_index, latency_s, energy_j, window_start_s, mean_power_w "
                       "FROM layer_measurements ORDER BY 1").fetchall()
    assert rows == [(0, 1e-3, 1e-3, 0.0, 1.0), (1, None, None, None, None),
                    (2, 1e-3, None, 0.0, None)]
    assert con.execute("SELECT energy_j, mean_power_w FROM whole_measurements").fetchall() == [
        (None, None)]
    # The run's sums are unknown where a part is: NULL, not NaN.
    assert con.execute("SELECT latency_s, energy_j FROM runs").fetchall() == [(None, None)]
    assert con.execute("SELECT count(*) FROM layer_measurements WHERE isnan(latency_s) OR "
                       "isnan(energy_j) OR isnan(mean_power_w)").fetchone() == (0,)


@pytest.mark.parametrize(("run", "expected"), [
    (result((replace(layer(0), latency_s=math.nan),)),
     "layer 0 (CONV_2D): latency_s is nan"),
    (result((layer(0), replace(layer(1), energy_j=math.nan))),
     "layer 1 (CONV_2D): energy_j is nan"),
    (result((replace(layer(0), coverage=-0.1),)), "coverage is -0.1"),
    (result((replace(layer(0), window_start_s=2.0, window_end_s=1.0),)),
     "window_end_s 1.0 is before window_start_s 2.0"),
    (replace(result((layer(0),)), model_sha256="c" * 64), "c" * 64),
], ids=["unexplained-nan-latency", "unexplained-nan-energy", "negative-coverage",
        "window-reversed", "another-model"])
def test_a_crafted_result_is_refused_and_nothing_is_stored(
        tmp_path: Path, run: BenchmarkResult, expected: str) -> None:
    with pytest.raises(ResultRejected, match="nothing stored") as refused:
        stored(tmp_path, run)
    assert expected in str(refused.value)
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    assert con.execute("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM "
                       "layer_measurements), (SELECT status FROM jobs)").fetchone() == (
        0, 0, "pending")


# -- train mode: the step and its (layer, phase) rows ----------------------------------------

STEP = WholeModelRecord(iterations=5, window_start_s=0.0, window_end_s=0.1, latency_mean_s=0.02,
                        latency_p50_s=0.02, latency_p90_s=0.02, latency_p99_s=0.02,
                        energy_j=0.05, active_energy_j=0.01, mean_power_w=2.5, samples=50,
                        coverage=1.0)
PHASES = (PhaseRecord(0, "CONV_2D", "forward", 3, 15, 0.004, 0.01, 0.011),
          PhaseRecord(0, "CONV_2D", "backward-weights", 2, 10, 0.006, 0.015, None),
          PhaseRecord(None, "", "loss", 4, 20, 0.001, 0.002, None))


def train_result(phases: tuple[PhaseRecord, ...] = PHASES) -> BenchmarkResult:
    return replace(result(()), mode="train", whole=STEP, phases=phases)


def test_a_training_step_crosses_the_wire_and_is_stored_by_phase(tmp_path: Path) -> None:
    sent = train_result()
    received = wire.result_from_proto(wire.result_to_proto(sent).result)
    assert received.phases == sent.phases and received.mode == "train"
    con = stored(tmp_path, received)
    assert con.execute("SELECT layer_index, op, phase, ops, events, latency_s, energy_j, "
                       "true_energy_j FROM phase_measurements ORDER BY layer_index NULLS LAST, "
                       "phase").fetchall() == [
        (0, "CONV_2D", "backward-weights", 2, 10, 0.006, 0.015, None),
        (0, "CONV_2D", "forward", 3, 15, 0.004, 0.01, 0.011),
        (None, "", "loss", 4, 20, 0.001, 0.002, None)]
    # The run holds the op windows' sum; the step is its whole row.
    [(mode, layers, latency, energy)] = con.execute(
        "SELECT mode, layer_count, latency_s, energy_j FROM runs").fetchall()
    assert (mode, layers) == ("train", 1)
    assert latency == pytest.approx(0.011) and energy == pytest.approx(0.027)
    assert con.execute("SELECT part FROM train_phase_energy ORDER BY layer_index NULLS LAST, "
                       "phase").fetchall() == [("backward",), ("forward",), ("other",)]


@pytest.mark.parametrize(("run", "expected"), [
    (train_result((replace(PHASES[0], energy_j=-1.0),)),
     "layer 0 (CONV_2D), phase forward: energy_j is -1.0"),
    (train_result((replace(PHASES[2], latency_s=math.inf),)),
     "model-wide, phase loss: latency_s is inf"),
    (train_result(()), "mode train without phase rows"),
    (replace(train_result(), whole=None), "mode train without the step"),
    (replace(result((layer(0),)), phases=PHASES), "mode layers with 3 training phase rows"),
], ids=["negative-energy", "infinite-latency", "no-phases", "no-step", "phases-not-train"])
def test_a_crafted_training_result_is_refused(tmp_path: Path, run: BenchmarkResult,
                                              expected: str) -> None:
    with pytest.raises(ResultRejected, match="nothing stored") as refused:
        stored(tmp_path, run)
    assert expected in str(refused.value)


def test_a_phase_listed_twice_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="phase more than once"):
        stored(tmp_path, train_result((*PHASES, PHASES[0])))
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    assert con.execute("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM "
                       "phase_measurements)").fetchone() == (0, 0)
