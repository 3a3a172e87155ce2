"""The litert-c runtime: models run through a standalone libLiteRt.so (the LiteRT C API), with
no Python TFLite runtime in the process, and give what the Python interpreter gives.

The library is the real one from the installed ai-edge-litert wheel, copied to a temporary
folder so that the runtime is shown to work from a file that is not inside the wheel.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.local import build_recipe
from agent.runtimes import backend as runtime
from agent.runtimes import litert_capi
from agent.runtimes.capi_interpreter import CApiInterpreter
from agent.runtimes.chain import LayerChain, WholeModel
from controller.farm.client import AgentClient
from joulefarm.errors import ModelError
from joulefarm.results import MeasureSettings
from joulefarm.tflite import RECIPES, FullyConnected, build_model, read_layers, split_model
from tests.helpers import REPO

TOKEN = "capi-t0ken"

try:
    WHEEL_LIB: Path | None = litert_capi.library_path()
except litert_capi.LiteRtUnavailable:
    WHEEL_LIB = None
pytestmark = pytest.mark.skipif(WHEEL_LIB is None, reason="ai-edge-litert's libLiteRt missing")


@pytest.fixture(scope="module")
def lib_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """libLiteRt.so copied out of the wheel: a standalone file, as on a device."""
    assert WHEEL_LIB is not None
    target = tmp_path_factory.mktemp("litert") / "libLiteRt.so"
    shutil.copyfile(WHEEL_LIB, target)
    return target


@pytest.fixture(autouse=True)
def default_runtime() -> Iterator[None]:
    """Every test leaves the process on the default runtime: other tests rely on it."""
    yield
    runtime.configure_runtime()


def _random(details: list[dict], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for d in details:
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            arrays.append(rng.standard_normal(d["shape"]).astype(dtype))
        else:
            info = np.iinfo(dtype)
            arrays.append(rng.integers(info.min, info.max, d["shape"], endpoint=True)
                          .astype(dtype))
    return arrays


def _run(interpreter: Any, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Set the inputs, invoke, return the outputs: either runtime's interpreter."""
    for detail, array in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], array)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def _same_details(python: list[dict], capi: list[dict]) -> None:
    assert len(python) == len(capi)
    for a, b in zip(python, capi, strict=True):
        assert (a["name"], a["index"], a["dtype"]) == (b["name"], b["index"], b["dtype"])
        assert a["quantization"] == b["quantization"]
        for key in ("shape", "shape_signature"):
            assert b[key].dtype == np.int32 and b[key].tolist() == a[key].tolist(), key


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_capi_interpreter_matches_the_python_interpreter(recipe: str, lib_copy: Path) -> None:
    model = build_recipe(recipe, 0)  # int8 recipes calibrate in the default runtime
    python = runtime.load_interpreter(model)
    inputs = [_random(python.get_input_details(), seed) for seed in (0, 1)]
    expected = [_run(python, x) for x in inputs]

    runtime.configure_runtime("litert-c", lib_copy)
    capi = runtime.load_interpreter(model)
    assert isinstance(capi, CApiInterpreter)
    _same_details(python.get_input_details(), capi.get_input_details())
    _same_details(python.get_output_details(), capi.get_output_details())
    for x, want in zip(inputs, expected, strict=True):
        got = _run(capi, x)
        for a, b in zip(got, want, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            assert np.array_equal(a, b), f"{recipe}: max diff {np.abs(a - b).max()}"
    # get_tensor hands out copies.
    index = capi.get_output_details()[0]["index"]
    capi.get_tensor(index)[...] = 0
    assert np.array_equal(capi.get_tensor(index), expected[-1][0])


def test_xnnpack_and_threads_reach_the_c_api(lib_copy: Path) -> None:
    model = build_recipe("tiny_cnn", 0)
    python = runtime.load_interpreter(model, use_xnnpack=True, num_threads=2)
    x = _random(python.get_input_details(), 3)
    (want,) = _run(python, x)
    runtime.configure_runtime("litert-c", lib_copy)
    (got,) = _run(runtime.load_interpreter(model, use_xnnpack=True, num_threads=2), x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("recipe", ["res_block", "concat_pad", "tiny_cnn_int8"])
def test_layer_chain_reproduces_the_whole_model(recipe: str, lib_copy: Path) -> None:
    model = build_recipe(recipe, 0)
    whole = WholeModel(model)  # the Python runtime: the reference
    inputs = whole.random_inputs(5)
    whole.set_inputs(inputs)
    whole.invoke()
    (expected,) = whole.outputs()

    runtime.configure_runtime("litert-c", lib_copy)
    chain = LayerChain(model)
    assert all(isinstance(it, CApiInterpreter) for it in chain.interpreters)
    assert len(chain) == len(read_layers(model))
    (got,) = chain.feed(inputs)
    assert np.array_equal(got, expected)
    # Each layer holds its inputs: re-running layers alone, in any order, changes nothing.
    for i in reversed(range(len(chain))):
        chain.invoke_layer(i)
    last = chain.interpreters[-1]
    assert np.array_equal(last.get_tensor(last.get_output_details()[0]["index"]), expected)


def test_resizing_inputs_recompiles_and_keeps_bound_invokers(lib_copy: Path) -> None:
    fc = build_model((1, 16), [FullyConnected(4)])
    model = build_recipe("tiny_cnn", 0)  # Flatten keeps the batch free: batch 3 runs
    batch = np.random.default_rng(7).standard_normal((3, 64, 64, 3)).astype(np.float32)
    reference = WholeModel(model)
    reference.set_inputs([batch])
    reference.invoke()
    (expected,) = reference.outputs()
    x16 = np.random.default_rng(8).standard_normal((5, 16)).astype(np.float32)
    python_fc = runtime.load_interpreter(fc, input_shapes=[(5, 16)])
    (expected_fc,) = _run(python_fc, [x16])

    runtime.configure_runtime("litert-c", lib_copy)
    pinned = runtime.load_interpreter(fc, input_shapes=[(5, 16)])
    assert pinned.get_output_details()[0]["shape"].tolist() == [5, 4]
    assert np.array_equal(_run(pinned, [x16])[0], expected_fc)

    whole = WholeModel(model)
    invoke = whole.invoke  # bound before the resize, as the measurement loop binds it
    whole.set_inputs([batch])
    assert whole.interpreter.get_input_details()[0]["shape"].tolist() == [3, 64, 64, 3]
    invoke()
    (got,) = whole.outputs()
    assert got.shape == (3, 10) and np.array_equal(got, expected)

    chain = LayerChain(model)
    assert np.array_equal(chain.run([batch])[0], expected)

    index = pinned.get_input_details()[0]["index"]
    with pytest.raises(ModelError, match=r"cannot resize \[5, 16\] to \[2, 16\] in strict mode"):
        pinned.resize_tensor_input(index, [2, 16], strict=True)
    pinned.resize_tensor_input(index, [2, 16])
    with pytest.raises(ModelError, match="call allocate_tensors"):
        pinned.set_tensor(index, x16[:2])


def test_misuse_is_a_clear_model_error(lib_copy: Path) -> None:
    model = build_recipe("mlp", 0)
    runtime.configure_runtime("litert-c", lib_copy)
    it = runtime.load_interpreter(model)
    (detail,) = it.get_input_details()
    with pytest.raises(ModelError, match="is float32, got float64"):
        it.set_tensor(detail["index"], np.zeros(detail["shape"], np.float64))
    with pytest.raises(ModelError, match=r"has shape \[16, 256\], got \[1, 256\]"):
        it.set_tensor(detail["index"], np.zeros((1, 256), np.float32))
    with pytest.raises(ModelError, match="tensor 1 is not a model input or output"):
        it.get_tensor(1)
    with pytest.raises(ModelError, match="not a TFLite model"):
        runtime.load_interpreter(b"\x00" * 64)
    invoke = it.invoke
    it.close()  # the runtime's objects are gone: nothing reaches them any more
    with pytest.raises(litert_capi.LiteRtCallError, match="LiteRtRunCompiledModel"):
        invoke()
    with pytest.raises(ModelError, match="closed"):
        it.get_tensor(it.get_output_details()[0]["index"])


def test_runtime_info_names_the_library_build(lib_copy: Path) -> None:
    digest = hashlib.sha256(lib_copy.read_bytes()).hexdigest()[:12]
    runtime.configure_runtime("litert-c", lib_copy, "2.3.0")
    assert runtime.runtime_info() == ("litert-c-api", f"2.3.0 sha256:{digest}")
    runtime.configure_runtime("auto", lib_copy)  # auto with a library: litert-c
    assert runtime.runtime_info() == ("litert-c-api", f"unknown sha256:{digest}")
    runtime.configure_runtime("litert-c")  # no path: the wheel's library
    assert runtime.runtime_info()[0] == "litert-c-api"
    runtime.configure_runtime("ai-edge-litert")
    assert runtime.runtime_info()[0] == "ai-edge-litert"
    runtime.configure_runtime()
    assert runtime.runtime_info()[0] in ("ai-edge-litert", "tflite-runtime")


def test_bad_configurations_name_the_path_or_option(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "libLiteRt.so"
    runtime.configure_runtime("litert-c", missing)
    with pytest.raises(ImportError, match=f"--litert-lib {missing}: no such file"):
        runtime.runtime_info()
    junk = tmp_path / "junk.so"
    junk.write_bytes(b"not a shared object")
    runtime.configure_runtime("litert-c", junk)
    with pytest.raises(ImportError, match=f"--litert-lib {junk}: not a usable LiteRT C API"):
        runtime.load_interpreter(build_recipe("mlp", 0))
    with pytest.raises(ValueError, match=r"unknown runtime 'tflite' \(known: auto, "
                                         r"ai-edge-litert, tflite-runtime, litert-c\)"):
        runtime.configure_runtime("tflite")
    with pytest.raises(ValueError, match="--litert-lib is for the litert-c runtime"):
        runtime.configure_runtime("ai-edge-litert", junk)


def test_a_python_runtime_that_is_missing_points_to_litert_c() -> None:
    try:
        import tflite_runtime  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tflite-runtime is installed here")
    runtime.configure_runtime("tflite-runtime")
    with pytest.raises(ImportError) as info:
        runtime.runtime_info()
    message = str(info.value)
    assert "--runtime litert-c --litert-lib PATH" in message
    assert runtime.LITERT_LIB_URL in message


def test_external_delegates_need_a_python_runtime(lib_copy: Path, tmp_path: Path) -> None:
    runtime.configure_runtime("litert-c", lib_copy)
    delegate = tmp_path / "libvendor_delegate.so"
    with pytest.raises(ModelError, match=f"external delegates need a Python runtime.*"
                                         f"cannot load {delegate}"):
        runtime.load_interpreter(build_recipe("mlp", 0), delegate_path=str(delegate))


@pytest.mark.slow
def test_basic_pitch_layers_match_and_dynamic_outputs_are_refused(nmp: bytes,
                                                                   lib_copy: Path) -> None:
    """Every layer of a real model that the C API can bind gives the Python runtime's numbers
    bit for bit; the ones whose output is a dynamic tensor (RESHAPE to a shape computed at run
    time) are refused at load, as is the whole model, instead of returning stale buffers."""
    chain = LayerChain(nmp)  # the Python runtime: the reference values of every tensor
    values = chain.tensor_values(chain.random_inputs(0))
    runtime.configure_runtime("litert-c", lib_copy)
    with pytest.raises(ModelError, match="dynamic tensors"):
        WholeModel(nmp)
    refused, compared = [], 0
    for part in split_model(nmp):
        try:
            it = runtime.load_interpreter(part.model_bytes)
        except ModelError as exc:
            assert "dynamic tensors" in str(exc)
            refused.append(part.op)
            continue
        details = it.get_input_details()
        for detail, t in zip(details, part.input_tensors, strict=True):
            if tuple(detail["shape"]) != values[t].shape:
                it.resize_tensor_input(detail["index"], list(values[t].shape))
        it.allocate_tensors()
        outputs = _run(it, [values[t] for t in part.input_tensors])
        for got, t in zip(outputs, part.output_tensors, strict=True):
            assert np.array_equal(got, values[t]), f"node {part.index} ({part.op})"
        compared += 1
    assert set(refused) == {"RESHAPE"} and len(refused) < 10
    assert compared == len(chain) - len(refused) > 200
    # A chain freezes those computed shapes at its first feed (the values this inference
    # computes), so on litert-c every layer runs, and gives the Python runtime's numbers.
    capi = LayerChain(nmp)
    assert sum(it is None for it in capi.interpreters) == len(refused)
    with pytest.raises(ModelError, match="call feed"):
        capi.invoke_layer([it is None for it in capi.interpreters].index(True))
    capi_values = capi.tensor_values(chain.random_inputs(0))
    assert capi_values.keys() == values.keys()
    for t, value in values.items():
        assert np.array_equal(capi_values[t], value), f"tensor {t}"
    for i in range(len(capi)):
        capi.invoke_layer(i)


CHILD = """
import json, sys
from agent.runtimes import backend as runtime
runtime.configure_runtime("litert-c", sys.argv[1], "child")
from agent.runtimes.chain import LayerChain
from joulefarm.tflite import RECIPES
from agent.runtimes.profiler import profile_inferences
model = RECIPES["res_block"](0)
chain = LayerChain(model)
(out,) = chain.run(chain.random_inputs(4))
run = profile_inferences(model, iterations=2, measure_overhead=False)
print(json.dumps({
    "runtime": runtime.runtime_info(), "output": out.tolist(),
    "profiler": [run.backend, run.runtime, len(run)],
    "modules": sorted(m for m in sys.modules if m.split(".")[0] == "ai_edge_litert"),
}))
"""


def test_a_process_on_litert_c_never_imports_ai_edge_litert(lib_copy: Path) -> None:
    model = build_recipe("res_block", 0)
    whole = WholeModel(model)
    whole.set_inputs(whole.random_inputs(4))
    whole.invoke()
    (expected,) = whole.outputs()
    done = subprocess.run([sys.executable, "-c", CHILD, str(lib_copy)], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["modules"] == []
    assert report["runtime"][0] == "litert-c-api"
    assert report["runtime"][1].startswith("child sha256:")
    # Layer by layer through the standalone library alone: the Python runtime's numbers.
    assert np.array_equal(np.asarray(report["output"], np.float32), expected)
    # The in-situ profiler used the configured library and says so.
    backend, label, events = report["profiler"]
    assert backend == "litert-capi" and str(lib_copy) in label and "ai-edge-litert" not in label
    assert events == 2 * len(read_layers(model))


def _mapped_files(pid: int) -> set[str]:
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split(maxsplit=5)[5].strip() for line in maps
                if len(line.split(maxsplit=5)) == 6}


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_agent_serves_benchmarks_on_litert_c(lib_copy: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    cmd = [sys.executable, "-m", "agent", "serve", "--name", "capi", "--platform", "sim",
           "--meter", "sim", "--profile", "rpi4", "--token-file", str(token_file),
           "--cache-dir", str(tmp_path / "cache"), "--exit-with-parent", str(os.getpid()),
           "--runtime", "litert-c", "--litert-lib", str(lib_copy), "--litert-version", "2.3.0"]
    with (tmp_path / "agent.log").open("w") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, (tmp_path / "agent.log").read_text()[-3000:]
        port = json.loads(line)["port"]
        model = build_recipe("tiny_cnn", 0)
        fast = MeasureSettings(min_layer_duration_s=0.005, min_iterations=2,
                               idle_duration_s=0.06, min_duration_s=0.1)
        with AgentClient("capi", f"127.0.0.1:{port}", TOKEN) as client:
            facts = client.facts()
            sha = client.upload("tiny_cnn", model)
            results = {mode: client.run_benchmark(sha, replace(fast, mode=mode), timeout_s=120)
                       for mode in ("layers", "whole", "insitu")}
        digest = hashlib.sha256(lib_copy.read_bytes()).hexdigest()[:12]
        assert (facts.runtime_name, facts.runtime_version) == ("litert-c-api",
                                                               f"2.3.0 sha256:{digest}")
        layers = results["layers"]
        assert layers.runtime_name == "litert-c-api"
        assert len(layers.layers) == len(read_layers(model))
        assert all(layer.iterations >= 2 and layer.samples > 0 for layer in layers.layers)
        assert results["whole"].whole is not None and results["whole"].whole.iterations >= 2
        # In situ: LiteRT's profiler, in the agent, on the configured library.
        assert results["insitu"].runtime_name == "litert-c-api (litert-capi)"
        assert len(results["insitu"].layers) == len(read_layers(model))
        # The agent ran everything on the copy; the wheel's library was never loaded, which
        # importing ai_edge_litert always does.
        mapped = _mapped_files(process.pid)
        assert str(lib_copy) in mapped
        assert not [f for f in mapped if f"{os.sep}ai_edge_litert{os.sep}" in f]
    finally:
        process.terminate()
        process.wait(30)
        if process.stdout:
            process.stdout.close()


def test_agent_refuses_a_bad_library_in_one_line(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    missing = tmp_path / "lib" / "libLiteRt.so"
    done = subprocess.run([sys.executable, "-m", "agent", "serve", "--name", "a",
                           "--token-file", str(token_file), "--runtime", "litert-c",
                           "--litert-lib", str(missing)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"error: --litert-lib {missing}: no such file; download one "
                                   f"from {runtime.LITERT_LIB_URL}")
