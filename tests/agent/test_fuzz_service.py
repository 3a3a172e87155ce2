"""Fuzz: mutated real model files fed to the parser and to a live agent process.

No crash, no hang: every mutant is either refused with a clear error or benchmarked, and the
agent keeps serving. Deterministic (seeded) so a failure reproduces.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import grpc
import pytest

from agent.local import build_recipe
from controller.config.registry import parse_registry
from controller.farm.client import AgentCallError, AgentClient
from controller.farm.localfarm import LocalFarm
from joulefarm.errors import ModelError
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import Unary, build_model
from joulefarm.tflite.parse import read_layers
from tests.helpers.bombs import shared_table_bomb

pytestmark = pytest.mark.slow

N_MUTANTS = 120
FAST = MeasureSettings(min_layer_duration_s=0.002, min_iterations=1, idle_duration_s=0.06,
                       warmup_iterations=0)
ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "truncate", "splice", "zero"])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del b[rng.randrange(8, len(b)):]
    elif kind == "splice":
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        i = rng.randrange(len(b))
        b[i:i + rng.randint(1, 64)] = bytes(min(64, len(b) - i))
    return bytes(b)


def test_mutated_models_never_crash_the_parser() -> None:
    rng = random.Random(1)
    seeds = [build_recipe(name, 0) for name in ("tiny_cnn", "res_block", "concat_pad")]
    for _ in range(600):
        with contextlib.suppress(ModelError):  # a clear refusal is fine; anything else fails
            read_layers(mutate(rng.choice(seeds), rng))


def test_mutated_models_never_crash_or_hang_the_agent(tmp_path: Path) -> None:
    registry = parse_registry('schema_version = 1\n[[device]]\nname = "fuzz"\nplatform = "sim"\n'
                              'address = "127.0.0.1"\nlocal = true\n[device.meter]\n'
                              'kind = "sim"\nprofile = "rpi4"\n', "fuzz.toml")
    rng = random.Random(2)
    seeds = [build_recipe(name, 0) for name in ("tiny_cnn", "concat_pad")]
    outcomes = {"refused": 0, "benchmarked": 0, "failed_cleanly": 0}
    with LocalFarm(tmp_path) as farm:
        agent = farm.start(registry.get("fuzz"))
        with AgentClient("fuzz", agent.target, farm.token) as client:
            for k in range(N_MUTANTS):
                mutant = mutate(rng.choice(seeds), rng)
                try:
                    sha = client.upload(f"mutant-{k}", mutant, timeout_s=30)
                except AgentCallError as e:
                    assert e.code in ALLOWED, (k, e)
                    outcomes["refused"] += 1
                    continue
                try:
                    client.run_benchmark(sha, FAST, timeout_s=60)
                    outcomes["benchmarked"] += 1
                except AgentCallError as e:
                    assert e.code in ALLOWED, (k, e)
                    outcomes["failed_cleanly"] += 1
                assert agent.process.poll() is None, f"agent died on mutant {k}"
            assert client.healthy()
            # Still does real work after all that.
            good = client.upload("tiny_cnn", seeds[0])
            assert client.run_benchmark(good, FAST, timeout_s=60).layers
    assert sum(outcomes.values()) == N_MUTANTS
    assert outcomes["refused"] > 0
    assert outcomes["benchmarked"] + outcomes["failed_cleanly"] > 0, outcomes


# Structural mutations: (operators listed, inputs each reads) of one shared table and vector.
BOMBS = [(1000, 1000), (6000, 6000), (125_000, 125_000), (250_000, 4), (16, 200_000)]


@pytest.mark.parametrize(("operators", "fanout"), BOMBS)
def test_shared_table_bombs_are_refused_before_decoding(operators: int, fanout: int) -> None:
    # Before: 6,000 x 6,000 (48 kB) took 5.6 s of CPU and 334 MB to decode; 1 MB, hours.
    bomb = shared_table_bomb(operators, fanout)
    start = time.process_time()
    with pytest.raises(ModelError, match="decode to more than"):
        read_layers(bomb)
    assert time.process_time() - start < 2.0  # the walk stops at its budget: milliseconds


def test_structural_mutants_on_a_live_agent_are_refused_and_a_cancel_frees_it(
        tmp_path: Path) -> None:
    registry = parse_registry('schema_version = 1\n[[device]]\nname = "fuzz"\nplatform = "sim"\n'
                              'address = "127.0.0.1"\nlocal = true\n[device.meter]\n'
                              'kind = "sim"\nprofile = "rpi4"\n', "fuzz.toml")
    with LocalFarm(tmp_path) as farm:
        agent = farm.start(registry.get("fuzz"))
        with AgentClient("fuzz", agent.target, farm.token) as client:
            for k, (operators, fanout) in enumerate(BOMBS):
                with pytest.raises(AgentCallError) as err:
                    client.upload(f"bomb-{k}", shared_table_bomb(operators, fanout),
                                  timeout_s=30)
                assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
            # A huge but honest graph (20,000 operators) is taken; a benchmark of it that the
            # caller gives up on frees the agent within seconds.
            huge = client.upload("huge", build_model([1, 4], [Unary("RELU")] * 20_000),
                                 timeout_s=60)
            with pytest.raises(AgentCallError) as err:
                client.run_benchmark(huge, FAST, timeout_s=2.0)
            assert err.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            good = client.upload("tiny_cnn", build_recipe("tiny_cnn", 0))
            start = time.monotonic()
            while True:
                try:
                    assert client.run_benchmark(good, FAST, timeout_s=60).layers
                    break
                except AgentCallError as e:
                    assert e.code == grpc.StatusCode.ABORTED  # still busy: retry
                    assert time.monotonic() - start < 15, "the cancel did not free the agent"
                    time.sleep(0.1)
            assert agent.process.poll() is None
