"""In-situ per-operator timing (agent.runtimes.profiler): events per node, on the agent clock.

The LiteRT C API backend runs here (ai-edge-litert, numpy 2). The tflite-runtime hook needs
numpy < 2: its test runs in a separate interpreter named by ``JOULEFARM_TFLITE_RUNTIME_PYTHON``
(a venv with ``numpy<2`` and ``tflite-runtime``) and skips when there is none.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from agent.local import build_recipe
from agent.runtimes import litert_capi, profiler
from agent.runtimes.chain import WholeModel
from agent.runtimes.profiler import (
    BRACKET_TOLERANCE_S,
    ProfilerUnavailable,
    open_profiled_model,
    profile_inferences,
)
from joulefarm.tflite import read_layers
from tests.helpers import REPO

ITERATIONS = 6

try:
    litert_capi.load_library()
    HAVE_LITERT = True
except litert_capi.LiteRtUnavailable:
    HAVE_LITERT = False
needs_litert = pytest.mark.skipif(not HAVE_LITERT, reason="ai-edge-litert's libLiteRt missing")


@pytest.fixture(scope="module", params=["tiny_cnn", "mlp"])
def recipe(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    return request.param, build_recipe(request.param, 0)


@pytest.fixture(scope="module")
def litert_run(recipe: tuple[str, bytes]) -> profiler.ProfileRun:
    if not HAVE_LITERT:
        pytest.skip("ai-edge-litert's libLiteRt missing")
    return profile_inferences(recipe[1], iterations=ITERATIONS, backend="litert-capi",
                              measure_overhead=False)


@needs_litert
def test_one_event_per_node_per_iteration_in_read_layers_order(
        recipe: tuple[str, bytes], litert_run: profiler.ProfileRun) -> None:
    layers = read_layers(recipe[1])
    run = litert_run
    assert run.backend == "litert-capi" and run.iterations == ITERATIONS
    assert len(run) == ITERATIONS * len(layers)
    for i in range(ITERATIONS):
        mine = run.iteration == i
        assert run.node_index[mine].tolist() == [x.index for x in layers]
        assert run.op[mine].tolist() == [x.op for x in layers]
    assert run.exact.all() and (run.delegate_index == -1).all() and (run.subgraph == 0).all()
    assert run.delegated_nodes == () and run.notes == ()
    assert run.node_ops == tuple(x.op for x in layers)


@needs_litert
def test_events_lie_inside_their_inference_and_do_not_overlap(
        litert_run: profiler.ProfileRun) -> None:
    run = litert_run
    tol = BRACKET_TOLERANCE_S
    assert (run.ends_s >= run.starts_s).all()
    assert (run.starts_s >= run.inference_starts_s[run.iteration] - tol).all()
    assert (run.ends_s <= run.inference_ends_s[run.iteration] + tol).all()
    # Invoke windows (the profiler's) sit inside the perf_counter brackets too.
    assert (run.invoke_starts_s >= run.inference_starts_s - tol).all()
    assert (run.invoke_ends_s <= run.inference_ends_s + tol).all()
    for i in range(run.iterations):
        mine = run.iteration == i
        starts, ends = run.starts_s[mine], run.ends_s[mine]
        assert (starts[1:] >= ends[:-1] - 1.5e-6).all()  # sequential, up to 1 us truncation
        assert (starts >= run.invoke_starts_s[i] - tol).all()
        assert (ends <= run.invoke_ends_s[i] + tol).all()
    assert abs(run.clock_offset_s) < 1e-3  # perf_counter is CLOCK_MONOTONIC on Linux


# Inferences behind the statistics below: enough that interruptions (a loaded host) reach
# only a minority of them.
MANY = 60


@needs_litert
def test_sum_of_op_windows_matches_inference_latency(recipe: tuple[str, bytes]) -> None:
    """The sum of an inference's op windows (busy) against its subgraph's Invoke window and
    its perf_counter bracket.

    Guaranteed on any host, for every inference: the op windows lie inside the Invoke window
    and that inside the bracket, one after another, up to the timestamps' truncation
    (BRACKET_TOLERANCE_S at each end, 1.5 us between ops): busy is bounded by both. How much
    of them busy fills is the runtime's, not the profiler's: an interruption lengthens a bracket
    and not the ops in it, and outside Invoke the C API's per-inference work grows with load for
    most inferences (run_overhead_s ~0.12 ms idle, ~2 ms with both cores of a 2-core host busy,
    where the median busy/bracket fell from 0.89 to 0.40). So the lower bounds are statistics
    an interrupted minority cannot move: the median over many inferences against Invoke, the
    least interrupted inference against its bracket, and median against median of the same
    model unprofiled."""
    run = profile_inferences(recipe[1], iterations=MANY, backend="litert-capi",
                             measure_overhead=False)
    ops = np.bincount(run.iteration, minlength=run.iterations)
    busy = np.bincount(run.iteration, weights=run.durations_s, minlength=run.iterations)
    bracket = run.inference_ends_s - run.inference_starts_s
    invoke = run.invoke_ends_s - run.invoke_starts_s
    slack = 2 * BRACKET_TOLERANCE_S + (ops - 1) * 1.5e-6
    assert (busy > 0).all()
    assert (busy <= invoke + slack).all() and (busy <= bracket + slack).all()
    assert (invoke <= bracket + 2 * BRACKET_TOLERANCE_S).all()
    # What the profiler states about the gaps is the median of these same inferences.
    assert run.overhead.gap_per_op_s == pytest.approx(np.median((invoke - busy) / ops))
    assert run.overhead.run_overhead_s == pytest.approx(np.median(bracket - invoke))
    # The ops are most of Invoke (the rest is the interpreter's dispatch between them).
    assert np.median(busy / invoke) > 0.6
    # Interruptions only lengthen brackets: the least interrupted shows the runtime's own cost.
    assert (busy / bracket).max() > 0.3
    # Same kernels as the Python interpreter without delegates: the same order of magnitude.
    model = WholeModel(recipe[1])
    model.set_inputs(model.random_inputs(0))
    for _ in range(3):
        model.invoke()
    latencies = []
    for _ in range(MANY):
        t0 = time.perf_counter()
        model.invoke()
        latencies.append(time.perf_counter() - t0)
    assert 1 / 4 < np.median(busy) / np.median(latencies) < 4


@needs_litert
def test_arrays_for_integration(litert_run: profiler.ProfileRun) -> None:
    arrays = litert_run.as_arrays()
    assert set(arrays) == {"starts", "ends", "node_index", "iteration"}
    assert arrays["starts"].dtype == np.float64 and arrays["ends"].dtype == np.float64
    assert arrays["node_index"].dtype == np.int64 and arrays["iteration"].dtype == np.int64
    assert {len(v) for v in arrays.values()} == {len(litert_run)}
    means = litert_run.mean_duration_by_node()
    assert sorted(means) == sorted(set(litert_run.node_index.tolist()))
    assert all(v >= 0 for v in means.values())


@needs_litert
def test_outputs_match_the_python_interpreter(recipe: tuple[str, bytes]) -> None:
    reference = WholeModel(recipe[1])
    reference.set_inputs(reference.random_inputs(3))
    reference.invoke()
    with open_profiled_model(recipe[1], seed=3, backend="litert-capi") as model:
        model.warmup(1)
        outputs = model.outputs()
    for mine, theirs in zip(outputs, reference.outputs(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


@needs_litert
def test_runs_longer_than_the_event_buffer_are_read_in_chunks() -> None:
    model_bytes = build_recipe("tiny_cnn", 0)
    with open_profiled_model(model_bytes, backend="litert-capi") as model:
        model.warmup(2)
        model._chunk = 3  # noqa: SLF001 - force several buffer refills in a short run
        run = model.run(8, min_duration_s=0.0)
    n = len(read_layers(model_bytes))
    assert run.iterations == 8 and len(run) == 8 * n
    assert np.bincount(run.iteration).tolist() == [n] * 8
    assert (np.diff(run.starts_s) >= 0).all()


@needs_litert
def test_min_duration_extends_the_run() -> None:
    with open_profiled_model(build_recipe("mlp", 0), backend="litert-capi") as model:
        run = model.run(1, min_duration_s=0.03)
    # The stopping rule, exact on any host: the first inference to end 30 ms or more after the
    # first one started is the last. (How many that takes depends on the host's load.)
    deadline = run.inference_starts_s[0] + 0.03
    assert run.inference_ends_s[-1] >= deadline
    assert (run.inference_ends_s[:-1] < deadline).all()


@needs_litert
def test_xnnpack_events_are_marked_unmapped_and_reconstructed() -> None:
    model_bytes = build_recipe("tiny_cnn", 0)
    run = profile_inferences(model_bytes, iterations=4, use_xnnpack=True, backend="litert-capi",
                             measure_overhead=False)
    assert len(run) > 0 and run.use_xnnpack
    assert (run.node_index == -1).all() and not run.exact.any()
    assert (run.delegate_index >= 0).all()
    assert run.delegated_nodes == tuple(x.index for x in read_layers(model_bytes))
    assert any("reconstructed" in note for note in run.notes)
    per_iteration = np.bincount(run.iteration)
    assert len(set(per_iteration.tolist())) == 1  # the same delegate ops every inference
    assert (run.starts_s >= run.inference_starts_s[run.iteration] - BRACKET_TOLERANCE_S).all()
    assert (run.ends_s <= run.inference_ends_s[run.iteration] + 1e-5).all()


@needs_litert
def test_overhead_is_measured() -> None:
    run = profile_inferences(build_recipe("tiny_cnn", 0), iterations=3, backend="litert-capi")
    o = run.overhead
    assert o.ops_per_inference == 8
    assert o.per_inference_s is not None and np.isfinite(o.per_inference_s)
    assert o.per_op_s is not None and o.profiled_latency_s and o.unprofiled_latency_s
    assert o.gap_per_op_s > -2e-6 and o.run_overhead_s > 0


@needs_litert
def test_a_clock_that_does_not_match_perf_counter_is_refused() -> None:
    with open_profiled_model(build_recipe("mlp", 0), backend="litert-capi") as model:
        model._session.clock_offset_s += 0.5  # type: ignore[attr-defined]  # noqa: SLF001
        with pytest.raises(ProfilerUnavailable, match="outside their inference"):
            model.warmup(1)


@needs_litert
def test_events_with_an_unexpected_layout_are_refused() -> None:
    with open_profiled_model(build_recipe("mlp", 0), backend="litert-capi") as model:
        session = model._session  # noqa: SLF001
        session.start()
        session.invoke()
        session.stop()
        raw = session.take()
        raw["event_type"][:] = 12345
        with pytest.raises(ProfilerUnavailable, match="layout"):
            session.decode(raw, 4)


@needs_litert
def test_runtime_failure_mid_run_becomes_unavailable() -> None:
    with open_profiled_model(build_recipe("mlp", 0), backend="litert-capi") as model:
        model.warmup(1)

        def broken() -> None:
            raise litert_capi.LiteRtCallError("LiteRtRunCompiledModel", 3)

        model._session.invoke = broken  # type: ignore[method-assign]  # noqa: SLF001
        with pytest.raises(ProfilerUnavailable, match="litert-capi failed"):
            model.run(2)


def test_no_backend_raises_unavailable_with_every_reason(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    def missing() -> Path:
        raise litert_capi.LiteRtUnavailable("ai-edge-litert ships no libLiteRt.so")

    monkeypatch.setattr(litert_capi, "library_path", missing)
    monkeypatch.setattr(profiler, "_hook_version", lambda: None)
    with pytest.raises(ProfilerUnavailable) as info:
        profile_inferences(build_recipe("mlp", 0), iterations=1)
    message = str(info.value)
    assert "no per-operator profiler works here" in message
    assert "litert-capi: ai-edge-litert ships no libLiteRt.so" in message
    assert "tflite-runtime-hook: tflite-runtime is not installed" in message


def test_a_library_without_the_c_api_is_refused(tmp_path: Path) -> None:
    libc = ctypes.util.find_library("c")
    if libc is None:
        pytest.skip("no C library to load")
    with pytest.raises(litert_capi.LiteRtUnavailable, match="lacks"):
        litert_capi.load_library(Path(libc))
    with pytest.raises(litert_capi.LiteRtUnavailable, match="cannot load"):
        litert_capi.load_library(tmp_path / "libLiteRt.so")


def test_unknown_backend_name() -> None:
    with pytest.raises(ValueError, match="unknown profiler backend"):
        profile_inferences(build_recipe("mlp", 0), iterations=1, backend="perf")


@needs_litert
def test_unverified_versions_are_probed_in_a_child_process(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(litert_capi, "VERIFIED_VERSIONS", frozenset())
    monkeypatch.setattr(profiler, "_PROBED", {})
    run = profile_inferences(build_recipe("mlp", 0), iterations=2, backend="litert-capi",
                             measure_overhead=False)
    assert len(run) == 8
    probed = profiler._PROBED  # noqa: SLF001
    assert probed == {("litert-capi", litert_capi.litert_version()): None}


def test_a_crashing_probe_makes_the_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litert_capi, "litert_version", lambda: "9.9.9")
    monkeypatch.setattr(profiler, "_PROBED", {})
    monkeypatch.setattr(profiler, "_hook_version", lambda: None)

    def crashed(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, -11, "", "")

    monkeypatch.setattr(profiler.subprocess, "run", crashed)
    with pytest.raises(ProfilerUnavailable,
                       match=r"probe of litert-capi \(9\.9\.9\) exited with -11"):
        profile_inferences(build_recipe("mlp", 0), iterations=1)


def test_iteration_assignment_tolerates_truncated_timestamps() -> None:
    befores = np.array([0.0, 1.0, 2.0])
    afters = np.array([0.5, 1.5, 2.5])
    times = np.array([-1e-6, 0.25, 0.999999, 1.2, 1.5000001, 2.6, np.nan, -1.0])
    assert profiler._iteration_of(times, befores, afters).tolist() == [  # noqa: SLF001
        0, 0, 1, 1, 1, 2, -1, -1]


def test_pinning_dynamic_dimensions_checks_the_layout() -> None:
    blob = ctypes.create_string_buffer(512)
    header = np.array([1, 3, -1, 64, 3], "<i4").tobytes()  # float32, rank 3, dims [-1, 64, 3]
    ctypes.memmove(blob, header, len(header))
    assert litert_capi._pin_dims(blob, (1, 64, 3)) is True  # noqa: SLF001
    assert np.frombuffer(blob.raw[8:20], "<i4").tolist() == [1, 64, 3]
    assert litert_capi._pin_dims(blob, (1, 64, 3)) is False  # noqa: SLF001 - nothing left
    assert litert_capi._pin_dims(blob, (1, 32, 3)) is None  # noqa: SLF001 - not our tensor


def _hook_python() -> str | None:
    candidate = os.environ.get("JOULEFARM_TFLITE_RUNTIME_PYTHON",
                               "/tmp/jfprof/venv-tfl/bin/python")
    return candidate if candidate and Path(candidate).exists() else None


_HOOK_SCRIPT = """
import json, numpy as np
from joulefarm.tflite import RECIPES, read_layers
from agent.runtimes.profiler import profile_inferences
out = {}
for name in ("tiny_cnn", "mlp"):
    mb = RECIPES[name](0)
    run = profile_inferences(mb, iterations=4, backend="tflite-runtime-hook")
    it = run.iteration
    out[name] = {
        "backend": run.backend, "numpy": np.__version__,
        "nodes": [run.node_index[it == i].tolist() for i in range(run.iterations)],
        "layers": [x.index for x in read_layers(mb)],
        "inside": bool(((run.starts_s >= run.inference_starts_s[it] - 2.5e-6)
                        & (run.ends_s <= run.inference_ends_s[it] + 2.5e-6)).all()),
        "ordered": bool((run.ends_s >= run.starts_s).all()),
        "per_op_s": run.overhead.per_op_s,
    }
    x = profile_inferences(mb, iterations=2, backend="tflite-runtime-hook", use_xnnpack=True,
                           measure_overhead=False)
    out[name]["xnnpack"] = [bool((x.node_index == -1).all()), len(x.delegated_nodes)]
print(json.dumps(out))
"""


def test_tflite_runtime_hook_in_a_numpy1_environment() -> None:
    python = _hook_python()
    if python is None:
        pytest.skip("no interpreter with tflite-runtime and numpy<2 "
                    "(set JOULEFARM_TFLITE_RUNTIME_PYTHON)")
    done = subprocess.run([python, "-c", _HOOK_SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0 and "No module named 'tflite_runtime'" in done.stderr:
        pytest.skip("that interpreter has no tflite-runtime")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, r in result.items():
        assert r["backend"] == "tflite-runtime-hook" and r["numpy"].startswith("1."), name
        assert all(nodes == r["layers"] for nodes in r["nodes"]), name
        assert r["inside"] and r["ordered"], name
        assert r["per_op_s"] is not None, name
        assert r["xnnpack"] == [True, len(r["layers"])], name


