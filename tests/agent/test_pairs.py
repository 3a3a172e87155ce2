"""Layer pairs: two-op sub-models, their measurement, storage, view and CLI table (the fusion
check of nn-Meter: fused when lat(a) + lat(b) - lat(ab) > 0.5 * min(lat(a), lat(b)))."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.local import build_recipe
from agent.measure import measure
from agent.meters.base import MeterDescription
from agent.meters.sim import SimMeter
from agent.runtimes.backend import load_interpreter, runtime_info
from agent.runtimes.chain import LayerChain, LayerPairs
from agent.server import AgentConfig, build_server
from controller.config.registry import Device, MeterConfig
from controller.config.suite import load_suite
from controller.farm.sweep import Endpoint, job_configs, run_sweep
from controller.store import ResultStore, StoreError, query_readonly
from joulefarm import wire
from joulefarm.results import (
    BenchmarkResult,
    LayerRecord,
    LayerTable,
    MeasureSettings,
    PairRecord,
    check_pairs,
    is_fused,
)
from joulefarm.tflite import RECIPES, ModelError, pair_model, read_layers
from joulefarm.tflite.variants import float16_weights
from tests.helpers import run_cli

FAST = MeasureSettings(min_layer_duration_s=0.004, min_iterations=2, idle_duration_s=0.06,
                       warmup_iterations=1, pairs=True)


def run_pair(model: bytes, first: int, second: int, values: dict[int, np.ndarray]
             ) -> dict[int, np.ndarray]:
    """Run ``pair_model`` in a fresh interpreter on inputs taken from a chain run."""
    pair = pair_model(model, first, second)
    interpreter = load_interpreter(pair.model_bytes)
    ins = [d["index"] for d in interpreter.get_input_details()]
    outs = [d["index"] for d in interpreter.get_output_details()]
    assert len(ins) == len(pair.input_tensors) and len(outs) == len(pair.output_tensors)
    for index, t in zip(ins, pair.input_tensors, strict=True):
        interpreter.set_tensor(index, values[t])
    interpreter.invoke()
    return {t: interpreter.get_tensor(i) for t, i in zip(pair.output_tensors, outs, strict=True)}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_pair_equals_its_two_layers_in_sequence_bit_exactly(recipe: str) -> None:
    model = build_recipe(recipe, 0)
    chain = LayerChain(model)
    # The chain runs every single-op sub-model in sequence: its tensor values are the truth.
    values = chain.tensor_values(chain.random_inputs(1))
    positions = chain.adjacent_pairs()
    assert positions == [(i, i + 1) for i in range(len(chain) - 1)]  # the recipes are chains
    for a, b in positions:
        first, second = chain.layer_models[a], chain.layer_models[b]
        got = run_pair(model, first.index, second.index, values)
        assert tuple(got)[:len(second.output_tensors)] == second.output_tensors
        for t, array in got.items():
            assert array.dtype == values[t].dtype and np.array_equal(array, values[t]), (
                f"{recipe} pair {a}+{b}: tensor {t}")


def test_pair_io_and_what_stays_inside() -> None:
    model = build_recipe("res_block", 0)
    layers = read_layers(model)
    chain = LayerChain(model)
    stem, conv1 = chain.layer_models[0], chain.layer_models[1]
    pair = pair_model(model, 0, 1)
    assert pair.op == "CONV_2D+CONV_2D" and pair.nodes == (0, 1) and pair.index == 0
    assert pair.input_tensors == stem.input_tensors  # the weights travel inside
    # The stem's output also feeds the residual ADD: the real model keeps it, so does the pair.
    assert pair.output_tensors == conv1.output_tensors + stem.output_tensors
    # conv1's output only feeds conv2: it stays inside the pair (free to be fused away).
    assert pair_model(model, 1, 2).output_tensors == chain.layer_models[2].output_tensors
    # ADD reads conv2 and the stem: the stem's output comes from outside the pair.
    add = pair_model(model, 2, 3)
    assert set(add.input_tensors) == {chain.layer_models[2].input_tensors[0],
                                      stem.output_tensors[0]}
    assert [x.op for x in layers[2:4]] == ["CONV_2D", "ADD"]


def test_weight_prep_is_folded_into_the_pair() -> None:
    half = float16_weights(build_recipe("tiny_cnn", 0))
    chain = LayerChain(half)
    pairs = LayerPairs(chain)
    values = chain.tensor_values(chain.random_inputs(0))
    pairs.feed(values)
    assert len(pairs) == len(chain) - 1
    for k in range(len(pairs)):
        pairs.invokers[k]()
        assert all(np.array_equal(v, values[t]) for t, v in pairs.outputs(k).items())
    prep = next(n for n, x in enumerate(read_layers(half, include_weight_prep=True))
                if x.op == "DEQUANTIZE")
    with pytest.raises(ModelError, match="only prepares weights"):
        pair_model(half, prep, prep + 1)


def test_independent_or_misordered_pairs_are_refused() -> None:
    model = build_recipe("tiny_cnn", 0)
    with pytest.raises(ModelError, match="node 2 .* reads no output of node 0"):
        pair_model(model, 0, 2)  # not adjacent: conv 2 reads the depthwise conv, not conv 0
    with pytest.raises(ModelError, match="reads no output"):
        pair_model(model, 1, 0)
    with pytest.raises(ModelError, match="reads no output"):
        pair_model(model, 1, 1)
    with pytest.raises(ModelError, match="node 99 does not exist"):
        pair_model(model, 0, 99)


def test_nn_meter_rule() -> None:
    assert is_fused(1e-3, 1e-3, 1.4e-3)          # saves 0.6 ms > 0.5 ms
    assert not is_fused(1e-3, 1e-3, 1.5e-3)      # saves exactly half: not more
    assert not is_fused(1e-3, 4e-3, 4.6e-3)      # the shorter op is what counts


@pytest.fixture(scope="module")
def measured() -> BenchmarkResult:
    model = build_recipe("tiny_cnn", 0)
    return measure(model, hashlib.sha256(model).hexdigest(), SimMeter("host", seed=2), FAST,
                   runtime_info())


def test_measure_times_every_adjacent_pair_close_to_the_truth(measured: BenchmarkResult
                                                             ) -> None:
    layers = list(measured.layers)
    assert [(p.first_index, p.second_index) for p in measured.pairs] == [
        (a.index, b.index) for a, b in zip(layers, layers[1:], strict=False)]
    for p, a, b in zip(measured.pairs, layers, layers[1:], strict=False):
        assert p.ops == f"{a.op}+{b.op}"
        assert p.iterations >= FAST.min_iterations and p.latency_s > 0
        assert p.true_energy_j is not None
        assert p.energy_j == pytest.approx(p.true_energy_j, rel=0.05)
        assert p.mean_power_w > measured.idle_power_w
    checks = check_pairs(measured)
    assert len(checks) == len(measured.pairs)
    for c, a, b in zip(checks, layers, layers[1:], strict=False):
        assert c.sum_latency_s == pytest.approx(a.latency_s + b.latency_s)
        assert c.spread_s == pytest.approx(
            (a.latency_high_s - a.latency_low_s + b.latency_high_s - b.latency_low_s
             + c.pair.latency_high_s - c.pair.latency_low_s) / 2)
        assert c.fused == (c.latency_saved_s > 0.5 * min(a.latency_s, b.latency_s)
                           and c.latency_saved_s > c.spread_s)
        assert c.energy_ratio == pytest.approx((a.energy_j + b.energy_j) / c.pair.energy_j)
    assert measured.whole is not None  # the whole-model check still runs after the pairs


def test_a_saving_within_the_spread_is_not_fusion() -> None:
    def layer(index: int, latency: float, half: float) -> LayerRecord:
        return LayerRecord(
            index=index, op="ADD", macs=0, param_bytes=0, act_in_bytes=0, act_out_bytes=0,
            input_shapes="", output_shapes="", iterations=100, window_start_s=0.0,
            window_end_s=1.0, latency_s=latency, energy_j=latency, active_energy_j=0.0,
            mean_power_w=1.0, samples=10, coverage=1.0,
            latency_low_s=latency - half, latency_high_s=latency + half)

    def pair(half: float) -> PairRecord:
        # a + b = 20 us, the pair 12 us: 8 us saved, beyond nn-Meter's 0.5 * 10 us.
        return PairRecord(first_index=0, second_index=1, ops="ADD+ADD", iterations=100,
                          latency_s=12e-6, energy_j=12e-6, mean_power_w=1.0,
                          latency_low_s=12e-6 - half, latency_high_s=12e-6 + half)

    def verdict(half: float) -> bool:
        result = BenchmarkResult(
            model_sha256="a" * 64, mode="layers", meter=MeterDescription("sim", True, 1e3),
            runtime_name="x", runtime_version="0", num_threads=1, idle_power_w=0.0,
            clock_offset_s=0.0, alignment_correlation=1.0, started_unix_s=0.0,
            finished_unix_s=1.0, layers=LayerTable.from_records(
                [layer(0, 10e-6, half), layer(1, 10e-6, half)]),
            pairs=(pair(half),))
        (check,) = check_pairs(result)
        assert check.latency_saved_s == pytest.approx(8e-6)
        assert check.spread_s == pytest.approx(3 * half)
        return check.fused

    assert verdict(1e-6)  # 8 us saved against 3 us of spread
    assert not verdict(3e-6)  # 8 us saved against 9 us: cannot tell from no saving


def test_pairs_cross_the_wire(measured: BenchmarkResult) -> None:
    back = wire.result_from_proto(wire.result_to_proto(measured).result)
    assert back.pairs == measured.pairs
    real = PairRecord(first_index=3, second_index=4, ops="A+B", iterations=7, latency_s=1e-4,
                      energy_j=2e-4, mean_power_w=2.0, flags=("partial_coverage",),
                      latency_low_s=0.9e-4, latency_high_s=1.2e-4)
    msg = wire.pairs_to_proto((real,))
    assert wire.pairs_from_proto(msg) == (real,)  # no truth stays None
    # An older agent sends no interval: the pair reads back with an unmeasured one.
    msg.ClearField("latency_low_s")
    msg.ClearField("latency_high_s")
    (old,) = wire.pairs_from_proto(msg)
    assert np.isnan(old.latency_low_s) and np.isnan(old.latency_high_s)
    request = wire.settings_to_proto("a" * 64, FAST)
    assert wire.settings_from_proto(request).pairs is True
    assert wire.settings_from_proto(wire.settings_to_proto("a", MeasureSettings())
                                       ).pairs is False


def test_without_pairs_no_pair_is_timed() -> None:
    model = build_recipe("mlp", 0)
    settings = MeasureSettings(min_layer_duration_s=0.002, min_iterations=2,
                               idle_duration_s=0.06, warmup_iterations=1)
    result = measure(model, "b" * 64, SimMeter("host", seed=1), settings, runtime_info())
    assert result.pairs == () and len(result.layers) == 4


SIM = MeterDescription(kind="sim", simulated=True, sample_rate_hz=10_000.0, profile="rpi4")


def _layer(i: int, latency: float, energy: float) -> LayerRecord:
    return LayerRecord(
        index=i, op=f"OP{i}", macs=1, param_bytes=1, act_in_bytes=1, act_out_bytes=1,
        input_shapes="1", output_shapes="1", iterations=10, window_start_s=0.0,
        window_end_s=0.01, latency_s=latency, energy_j=energy, active_energy_j=energy / 2,
        mean_power_w=1.0, samples=100, coverage=1.0)


def _pair(a: int, b: int, latency: float, energy: float) -> PairRecord:
    return PairRecord(first_index=a, second_index=b, ops=f"OP{a}+OP{b}", iterations=10,
                      latency_s=latency, energy_j=energy, mean_power_w=1.0,
                      true_energy_j=energy if a else None)


def _result(pairs: tuple[PairRecord, ...]) -> BenchmarkResult:
    layers = (_layer(0, 1e-3, 2e-3), _layer(1, 1e-3, 2e-3), _layer(2, 2e-3, 4e-3))
    return BenchmarkResult(
        model_sha256="a" * 64, mode="layers", meter=SIM, runtime_name="rt", runtime_version="1",
        num_threads=1, idle_power_w=1.0, clock_offset_s=0.0, alignment_correlation=1.0,
        started_unix_s=1.7e9, finished_unix_s=1.7e9 + 1, layers=layers, pairs=pairs)


def test_store_and_the_layer_pairs_view(tmp_path: Path) -> None:
    from tests.helpers.results import facts, new_sweep

    db = tmp_path / "r.duckdb"
    fused, apart = _pair(0, 1, 1.2e-3, 2.5e-3), _pair(1, 2, 2.9e-3, 6e-3)
    with ResultStore(db) as store:
        sweep = new_sweep(store)
        job = store.add_job(sweep, "dev", "m", "a" * 64)
        twice = _result((fused, fused))
        with pytest.raises(StoreError, match="lists a layer pair more than once"):
            store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                            result=twice)
        _, nothing = store.query("SELECT (SELECT count(*) FROM runs), "
                                 "(SELECT count(*) FROM layer_measurements)")
        assert nothing == [(0, 0)]  # the whole run rolled back
        store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                        result=_result((fused, apart)))
    _, stored = query_readonly(db, "SELECT first_index, second_index, ops, latency_s, "
                                   "iterations, flags, true_energy_j, meter_kind, simulated "
                                   "FROM pair_measurements ORDER BY 1")
    assert stored == [(0, 1, "OP0+OP1", 1.2e-3, 10, [], None, "sim", True),
                      (1, 2, "OP1+OP2", 2.9e-3, 10, [], 6e-3, "sim", True)]
    cols, rows = query_readonly(db, "SELECT first_index, sum_latency_s, pair_latency_s, "
                                    "latency_saved_s, fused, energy_ratio, energy_source, "
                                    "device_name FROM layer_pairs ORDER BY 1")
    assert cols[4] == "fused"
    assert rows == [
        (0, pytest.approx(2e-3), 1.2e-3, pytest.approx(0.8e-3), True, pytest.approx(4 / 2.5),
         "simulated", "dev"),
        (1, pytest.approx(3e-3), 2.9e-3, pytest.approx(0.1e-3), False, pytest.approx(1.0),
         "simulated", "dev")]
    # The view and the agent-side check agree.
    assert [c.fused for c in check_pairs(_result((fused, apart)))] == [True, False]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = AgentConfig(name="pairs-agent", platform="sim", meter_kind="sim",
                         meter_profile="rpi4", cache_dir=tmp_path_factory.mktemp("cache"))
    server, port, _ = build_server(config, "tok", port=0)
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


def test_suite_pairs_go_through_a_sweep(tmp_path: Path, agent: str) -> None:
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(
        'schema_version = 1\nname = "pairs"\n[select]\ntags = ["t"]\n'
        '[measure]\nmode = "layers"\npairs = true\nwarmup_iterations = 1\n'
        'min_layer_duration_s = 0.003\nmin_iterations = 2\nidle_duration_s = 0.06\n'
        '[matrix]\nnum_threads = [1]\n[[model]]\nname = "mlp"\nrecipe = "mlp"\n')
    suite = load_suite(suite_file)
    assert suite.settings.pairs is True
    assert all(c["pairs"] is True for c in job_configs(suite))
    device = Device(name="pairs-agent", platform="sim", address="127.0.0.1",
                    meter=MeterConfig(kind="sim", profile="rpi4"), tags=("t",))
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        outcome = run_sweep(suite, [device], [Endpoint(device, agent, "tok")], store,
                            devices_file="devices.toml")
    assert outcome.status == "done", outcome
    _, rows = query_readonly(db, "SELECT ops, simulated, fused IS NOT NULL, "
                                 "abs(pair_energy_j / pair_true_energy_j - 1) < 0.1 "
                                 "FROM layer_pairs ORDER BY first_index")
    assert rows == [("FULLY_CONNECTED+FULLY_CONNECTED", True, True, True)] * 2 + [
        ("FULLY_CONNECTED+SOFTMAX", True, True, True)]


def test_bench_prints_the_pair_table(tmp_path: Path) -> None:
    model = tmp_path / "mlp.tflite"
    model.write_bytes(build_recipe("mlp", 0))
    proc = run_cli("bench", str(model), "--pairs", "--min-layer-duration-s", "0.003", "--json",
                   timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])
    assert len(data["layers"]) == 4
    assert [(p["first"], p["second"]) for p in data["pairs"]] == [(0, 1), (1, 2), (2, 3)]
    for p in data["pairs"]:
        assert isinstance(p["fused"], bool) and p["energy_source"] == "simulated"
        assert p["pair_energy_uj"] == pytest.approx(p["sim_truth_uj"], rel=0.1)
    table = run_cli("bench", str(model), "--pairs", "--min-layer-duration-s", "0.002",
                    timeout=120)
    assert table.returncode == 0, table.stderr
    assert "layer pairs" in table.stdout and "SIMULATED" in table.stdout
    assert "fused" in table.stdout
    whole = run_cli("bench", str(model), "--pairs", "--mode", "whole", timeout=60)
    assert whole.returncode == 2 and "--pairs needs --mode layers" in whole.stderr


def test_a_saving_of_about_one_call_is_not_counted_as_fusion(tmp_path: Path) -> None:
    from tests.helpers.results import facts, new_sweep

    # Cheapest layer call 1 ms: saving 0.8 ms passes nn-Meter's rule but is within two calls;
    # a pair of layers 1 and 2 (1 ms + 2 ms) run together in 0.5 ms saves 2.5 ms: beyond.
    within, beyond = _pair(0, 1, 1.2e-3, 2.5e-3), _pair(1, 2, 0.5e-3, 3e-3)
    checks = check_pairs(_result((within, beyond)))
    assert [(c.fused, c.beyond_call_overhead) for c in checks] == [(True, False), (True, True)]
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        sweep = new_sweep(store)
        job = store.add_job(sweep, "dev", "m", "a" * 64)
        store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m",
                        result=_result((within, beyond)))
    _, rows = query_readonly(db, "SELECT first_index, fused, beyond_call_overhead "
                                 "FROM layer_pairs ORDER BY 1")
    assert rows == [(0, True, False), (1, True, True)]
