"""In-situ per-operator timing: run the whole model and get every operator's begin/end time on
the agent clock (``time.perf_counter()`` seconds), for every inference.

Two backends, tried in this order, neither compiles anything:

- ``"litert-capi"``: the LiteRT C API (``agent.runtimes.litert_capi``) of ai-edge-litert's
  ``libLiteRt.so``, or of the standalone one ``agent.runtimes.backend`` is configured with, a
  compiled
  model with the runtime's own profiler. Timestamps are ``CLOCK_MONOTONIC`` in whole
  microseconds, the clock ``perf_counter`` reads on Linux; the offset between the two is
  measured, not assumed, and every event is checked to lie inside the ``perf_counter`` bracket
  of its inference.
- ``"tflite-runtime-hook"``: a ctypes ``tflite::Profiler`` attached to a tflite-runtime
  interpreter (``agent.runtimes.tflite_hook``); needs numpy < 2. Its callbacks read
  ``perf_counter``.

Without XNNPACK every TFLite node gets one event per inference, with its node index and a
measured window. With XNNPACK the delegate fuses and re-partitions the graph and reports its own
operators with durations but no start times: those events get ``node_index == -1``, their
XNNPACK operator index in ``delegate_index``, and windows laid back to back from the start of
the delegate's (or the subgraph's) invocation, marked ``exact == False``. ``delegated_nodes``
lists the TFLite nodes they cover together.

    with open_profiled_model(model_bytes) as model:   # compile before the meter starts
        model.warmup(3)
        run = model.run(iterations=200)               # while the meter records
    arrays = run.as_arrays()                          # starts, ends, node_index, iteration

If no backend works, ``ProfilerUnavailable`` says why for each.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agent.cancel import CHECK_INTERVAL_S
from agent.runtimes import backend as runtime
from agent.runtimes import litert_capi
from agent.runtimes.chain import random_array
from joulefarm.errors import JoulefarmError, ModelError
from joulefarm.tflite.flatbuffer import (
    decode_name,
    numpy_dtype,
    op_name,
    per_tensor_quantization,
    shape_of,
    unpack_model,
)
from joulefarm.tflite.inputs import GivenShapes, InputPlan, resolve_input_shapes
from joulefarm.tflite.split import computed_shape_operands_of_model, with_static_shape_operands

BACKENDS = ("litert-capi", "tflite-runtime-hook")
"""Backends in order of preference."""

HOOK_VERIFIED_VERSIONS = frozenset({"2.14.0"})
"""tflite-runtime versions whose Profiler vtable layout was checked (2.14.0 is the last)."""

# Events may stick out of their perf_counter bracket by the timestamp truncation (1 us) plus
# the half-microsecond centring; anything beyond this means the clocks do not match.
BRACKET_TOLERANCE_S = 2.5e-6
# Events the LiteRT buffer keeps free when sizing a chunk of inferences (run bookkeeping).
_CAPACITY_MARGIN = 32
_PROBE_TIMEOUT_S = 120
_REPO = Path(__file__).resolve().parent.parent


class ProfilerUnavailable(JoulefarmError, RuntimeError):
    """No per-operator profiler can run here (or the one chosen failed its checks)."""

    exit_code = 2
    grpc_status = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class ProfilerOverhead:
    """What profiling costs. Seconds; ``None`` where not measured (``measure_overhead``).

    LiteRT's profiler costs little inside operator windows (a clock read at each end) but samples
    memory usage (rusage, mallinfo) at both ends of its per-inference events (Run, Invoke, buffer
    registration and sync), outside the operator windows: most of its cost is per inference.
    """

    ops_per_inference: float
    """Recorded operator events per inference."""
    gap_per_op_s: float
    """Median over inferences of (the subgraph's Invoke window minus the sum of its operator
    windows) per operator: interpreter dispatch plus profiler bookkeeping between ops."""
    run_overhead_s: float
    """Median over inferences of the perf_counter bracket minus the Invoke window: the call
    into the runtime, buffer registration and sync, the Python loop."""
    per_inference_s: float | None = None
    """Extra wall time per inference with the profiler recording versus attached but stopped
    (median of interleaved blocks; can come out slightly negative on a noisy host)."""
    per_op_s: float | None = None
    """``per_inference_s`` per operator event: an upper bound on the cost per operator."""
    profiled_latency_s: float | None = None
    """Median latency per inference with the profiler recording."""
    unprofiled_latency_s: float | None = None
    """Median latency per inference with the profiler stopped."""


@dataclass(frozen=True)
class ProfileRun:
    """Every operator event of ``iterations`` inferences, sorted by (iteration, start).

    Times are agent-clock seconds (``time.perf_counter()``). Arrays are parallel, one entry per
    event.
    """

    backend: str
    runtime: str
    iterations: int
    num_threads: int
    use_xnnpack: bool
    starts_s: np.ndarray
    ends_s: np.ndarray
    node_index: np.ndarray
    """TFLite node index (execution order; ``LayerInfo.index``), -1 for delegate operators."""
    iteration: np.ndarray
    subgraph: np.ndarray
    delegate_index: np.ndarray
    """The delegate's own operator index for delegate events, else -1."""
    op: np.ndarray
    """Op name: the builtin name (``"CONV_2D"``) or the delegate's (``"Fully Connected ..."``)."""
    exact: np.ndarray
    """True where begin and end were measured; False where the window was reconstructed from a
    duration alone (XNNPACK operators)."""
    inference_starts_s: np.ndarray
    """perf_counter just before each inference call (one entry per iteration)."""
    inference_ends_s: np.ndarray
    invoke_starts_s: np.ndarray
    """Start of the subgraph's Invoke as the profiler saw it (NaN if not reported)."""
    invoke_ends_s: np.ndarray
    node_ops: tuple[str, ...]
    """Op name of every node of subgraph 0, by node index (weight-preparing nodes included)."""
    delegated_nodes: tuple[int, ...]
    """Nodes of subgraph 0 with no event of their own: they ran inside a delegate."""
    clock: str
    clock_offset_s: float
    """Added to the profiler's clock to get perf_counter time."""
    resolution_s: float
    overhead: ProfilerOverhead
    dropped_events: int = 0
    """Events outside every inference's perf_counter bracket, left out (0 when clocks agree)."""
    notes: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.starts_s)

    @property
    def durations_s(self) -> np.ndarray:
        return self.ends_s - self.starts_s

    def as_arrays(self) -> dict[str, np.ndarray]:
        """``starts``, ``ends`` (float64 s), ``node_index``, ``iteration`` (int64): what
        ``joulefarm.integrate_windows`` and a per-op ``np.bincount`` need."""
        return {"starts": self.starts_s, "ends": self.ends_s, "node_index": self.node_index,
                "iteration": self.iteration}

    def mean_duration_by_node(self) -> dict[int, float]:
        """Mean window length per TFLite node over all iterations (delegate events left out)."""
        mask = self.node_index >= 0
        nodes = self.node_index[mask]
        out: dict[int, float] = {}
        for node in np.unique(nodes):
            out[int(node)] = float(self.durations_s[mask][nodes == node].mean())
        return out


@dataclass
class _Events:
    """Decoded events of one recording, in recording order. NaN start = not reported."""

    event_type: np.ndarray
    start_s: np.ndarray
    duration_s: np.ndarray
    metadata1: np.ndarray
    metadata2: np.ndarray
    tag: np.ndarray


class _Session(Protocol):
    backend: str
    runtime: str
    capacity: int | None
    clock: str
    clock_offset_s: float
    resolution_s: float

    def invoke(self) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def take(self) -> Any: ...
    def decode(self, raw: Any, n_nodes: int) -> _Events: ...
    def outputs(self) -> list[np.ndarray]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class _TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    quantization: tuple[float, int] | None


@dataclass(frozen=True)
class _ModelFacts:
    node_ops: tuple[str, ...]
    inputs: tuple[_TensorSpec, ...]
    outputs: tuple[_TensorSpec, ...]
    resized: bool = False
    """The inputs run at other shapes than the file's: the outputs' shapes in ``outputs`` are
    the file's, not theirs; the runtime computes them."""


def _model_facts(model_bytes: bytes) -> _ModelFacts:
    model = unpack_model(model_bytes)
    if not model.subgraphs:
        raise ModelError("model has no subgraph")
    graph = model.subgraphs[0]
    tensors = graph.tensors or []

    def spec(t: int) -> _TensorSpec:
        tensor = tensors[t]
        dtype = numpy_dtype(tensor.type)
        if dtype is None:
            raise ModelError(f"tensor {t} has an unsupported type ({tensor.type})")
        quant = per_tensor_quantization(tensor)
        # Dynamic dimensions (-1 in the signature) are 1 in the static shape: run that shape.
        shape = tuple(max(int(d), 1) for d in shape_of(tensor))
        return _TensorSpec(decode_name(tensor.name), shape, dtype, quant)

    ops = tuple(op_name(model, op) for op in graph.operators or [])
    return _ModelFacts(ops, tuple(spec(int(t)) for t in graph.inputs or []),
                       tuple(spec(int(t)) for t in graph.outputs or []))


def _at_shapes(facts: _ModelFacts, plan: InputPlan) -> _ModelFacts:
    """``facts`` with the inputs at the shapes of ``plan``
    (``joulefarm.tflite.inputs.resolve_input_shapes``)."""
    if len(plan.shapes) != len(facts.inputs):
        raise ModelError(f"model has {len(facts.inputs)} inputs, the input shapes are for "
                         f"{len(plan.shapes)}")
    inputs = tuple(replace(spec, shape=shape)
                   for spec, shape in zip(facts.inputs, plan.shapes, strict=True))
    return replace(facts, inputs=inputs, resized=plan.resized)


def _random_inputs(facts: _ModelFacts, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_array(s.shape, s.dtype, rng, s.quantization) for s in facts.inputs]


def _match(names: Sequence[str], specs: Sequence[_TensorSpec]) -> list[int]:
    """For each runtime tensor (by name), the index of the model tensor it is
    (``litert_capi.match_slots``)."""
    try:
        return litert_capi.match_slots(names, [s.name for s in specs])
    except ValueError as exc:
        raise ProfilerUnavailable(str(exc)) from exc


def _litert_source() -> tuple[Path | None, str | None, str]:
    """(library, version, runtime label) for the litert-capi backend: the standalone
    ``libLiteRt.so`` the runtime was configured with (``agent.runtimes.backend.configure_runtime``),
    else the one in the ai-edge-litert wheel (library None)."""
    path = runtime.configured_litert_lib()
    if path is None:
        version = litert_capi.litert_version()
        return None, version, f"ai-edge-litert {version} (LiteRT C API)"
    name, version = runtime.runtime_info()  # raises ImportError if the file will not load
    return path, version, f"{name} {version} (LiteRT C API, {path})"


def _monotonic_offset(clock_id: int) -> float:
    """perf_counter minus ``clock_id``, from the tightest of a few back-to-back readings."""
    best_width, offset = math.inf, 0.0
    for _ in range(25):
        a = time.perf_counter()
        m = time.clock_gettime(clock_id)
        b = time.perf_counter()
        if b - a < best_width:
            best_width, offset = b - a, (a + b) / 2 - m
    return offset


class _LiteRtSession:
    backend = "litert-capi"
    capacity: int | None = litert_capi.PROFILER_CAPACITY
    resolution_s = 1e-6

    def __init__(self, model_bytes: bytes, facts: _ModelFacts, inputs: list[np.ndarray], *,
                 num_threads: int, use_xnnpack: bool) -> None:
        path, _, self.runtime = _litert_source()
        lib = litert_capi.load_library(path)
        self._facts = facts
        # Inputs sized anew (the shape rule has checked them against the signature; the
        # runtime may report the file's placeholder dimensions rather than -1, so the resize
        # is not strict): the outputs take the shapes the runtime computes for them.
        self._model = litert_capi.CompiledModel(
            lib, model_bytes, num_threads=num_threads, use_xnnpack=use_xnnpack, profile=True,
            input_shapes=[(t.name, t.shape) for t in facts.inputs],
            output_shapes=[] if facts.resized else [(t.name, t.shape) for t in facts.outputs],
            strict_shapes=not facts.resized)
        try:
            self._in_order = _match(self._model.input_names, facts.inputs)
            self._out_order = _match(self._model.output_names, facts.outputs)
            for slot, model_input in enumerate(self._in_order):
                self._model.write_input(slot, inputs[model_input])
            # Two inferences now, so a model this backend cannot run falls through to the next
            # backend. Two: outputs that turn into dynamic tensors during the first inference
            # (a RESHAPE to a computed shape) cannot be bound by the C API from the second on.
            for _ in range(2):
                try:
                    self._model.run()
                except litert_capi.LiteRtCallError as exc:
                    raise litert_capi.LiteRtCallError(
                        exc.function, exc.status, "the model does not run in the C API; LiteRT "
                        "logs why on stderr (outputs that are dynamic tensors, for one, cannot "
                        "be bound)") from exc
        except BaseException:
            self._model.close()
            raise
        # NowMicros: CLOCK_MONOTONIC_RAW on Apple, CLOCK_MONOTONIC elsewhere (tflite time.cc).
        raw = sys.platform == "darwin"
        clock_id = time.CLOCK_MONOTONIC_RAW if raw else time.CLOCK_MONOTONIC
        self.clock = ("CLOCK_MONOTONIC_RAW" if raw else "CLOCK_MONOTONIC") + (
            ", whole microseconds (tflite::profiling::time::NowMicros)")
        self.clock_offset_s = _monotonic_offset(clock_id)
        self.invoke = self._model.run
        self._tags: dict[int, str] = {}

    def start(self) -> None:
        self._model.start_profiler()

    def stop(self) -> None:
        self._model.stop_profiler()

    def take(self) -> np.ndarray:
        return self._model.read_events()

    def decode(self, raw: np.ndarray, n_nodes: int) -> _Events:
        types = raw["event_type"].astype(np.int64)
        if not np.isin(types, list(litert_capi.KNOWN_EVENT_TYPES)).all():
            raise ProfilerUnavailable(
                "LiteRT profiler events do not have the expected layout (unknown event types); "
                f"{self.runtime} may be incompatible with agent.runtimes.litert_capi")
        ops = types == litert_capi.EVENT_OPERATOR_INVOKE
        node = raw["metadata1"][ops]
        if ops.any() and ((node < 0).any() or (node > max(n_nodes, 1) * 4 + 16).any()
                          or (raw["start_us"][ops] == 0).any()):
            raise ProfilerUnavailable(
                "LiteRT profiler events do not have the expected layout (node indices or "
                f"timestamps out of range); {self.runtime} may be incompatible")
        # Telemetry events carry no time; the rest are checked above, so tags may be read.
        keep = types <= litert_capi.EVENT_GENERAL_RUNTIME_INSTRUMENTATION
        raw = raw[keep]
        start_us = raw["start_us"].astype(np.float64)
        # Both ends are truncated to whole microseconds: centre them (+0.5 us) so the window
        # is unbiased; a start of 0 means none was reported (XNNPACK's AddEvent).
        start = np.where(raw["start_us"] > 0,
                         start_us * 1e-6 + 0.5e-6 + self.clock_offset_s, np.nan)
        tags = np.array([self._tag(int(a)) for a in raw["tag"]], dtype=object)
        return _Events(raw["event_type"].astype(np.int64), start,
                       raw["elapsed_us"].astype(np.float64) * 1e-6,
                       raw["metadata1"].astype(np.int64), raw["metadata2"].astype(np.int64),
                       tags)

    def _tag(self, address: int) -> str:
        text = self._tags.get(address)
        if text is None:
            text = self._tags[address] = litert_capi.CompiledModel.tag(address)
        return text

    def outputs(self) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(self._facts.outputs)
        for slot, model_output in enumerate(self._out_order):
            spec = self._facts.outputs[model_output]
            shape = self._model.output_shapes[slot] if self._facts.resized else spec.shape
            out[model_output] = self._model.read_output(slot, spec.dtype, shape)
        return [o for o in out if o is not None]

    def close(self) -> None:
        self._model.close()


class _HookSession:
    backend = "tflite-runtime-hook"
    capacity: int | None = None
    clock = "time.perf_counter(), read in the profiler callbacks"
    clock_offset_s = 0.0

    def __init__(self, model_bytes: bytes, facts: _ModelFacts, inputs: list[np.ndarray], *,
                 num_threads: int, use_xnnpack: bool) -> None:
        from agent.runtimes import tflite_hook

        self._hooked = tflite_hook.HookedInterpreter(model_bytes, num_threads=num_threads,
                                                     use_xnnpack=use_xnnpack)
        interpreter = self._hooked.interpreter
        import importlib.metadata

        self.runtime = f"tflite-runtime {importlib.metadata.version('tflite-runtime')}"
        self.resolution_s = time.get_clock_info("perf_counter").resolution
        details = interpreter.get_input_details()
        order = _match([d["name"] for d in details], facts.inputs)
        resize = [(d["index"], inputs[k].shape) for d, k in zip(details, order, strict=True)
                  if tuple(int(x) for x in d["shape"]) != inputs[k].shape]
        try:
            for index, shape in resize:
                interpreter.resize_tensor_input(index, list(shape), strict=False)
            if resize:  # the profiler is attached already: allocating again keeps it
                interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            self._hooked.close()
            raise ModelError(f"the runtime could not allocate the model's tensors for input "
                             f"shapes {[list(s) for _, s in resize]}: "
                             f"{' '.join(str(exc).split())}") from exc
        for detail, model_input in zip(details, order, strict=True):
            interpreter.set_tensor(detail["index"], inputs[model_input])
        self._output_details = interpreter.get_output_details()
        self._out_order = _match([d["name"] for d in self._output_details], facts.outputs)
        self.invoke = interpreter.invoke
        self._recorder = self._hooked.recorder
        try:
            self.invoke()  # fail here, not in the middle of a measurement
        except BaseException:
            self._hooked.close()
            raise

    def start(self) -> None:
        self._recorder.take()
        self._recorder.enabled = True

    def stop(self) -> None:
        self._recorder.enabled = False

    def take(self) -> list[list[Any]]:
        return self._recorder.take()

    def decode(self, raw: list[list[Any]], n_nodes: int) -> _Events:
        n = len(raw)
        types = np.array([r[0] for r in raw], np.int64).reshape(n)
        start = np.array([r[1] for r in raw], np.float64).reshape(n)
        end = np.array([r[2] for r in raw], np.float64).reshape(n)
        metric = np.array([np.nan if r[6] is None else r[6] * 1e-6 for r in raw],
                          np.float64).reshape(n)
        duration = np.where(np.isnan(start), metric, end - start)
        tags = np.array([(r[5] or b"").decode("utf-8", "replace") for r in raw], dtype=object)
        return _Events(types, start, duration,
                       np.array([r[3] for r in raw], np.int64).reshape(n),
                       np.array([r[4] for r in raw], np.int64).reshape(n), tags)

    def outputs(self) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(self._output_details)
        for detail, model_output in zip(self._output_details, self._out_order, strict=True):
            out[model_output] = self._hooked.interpreter.get_tensor(detail["index"])
        return [o for o in out if o is not None]

    def close(self) -> None:
        self._hooked.close()


_PROBED: dict[tuple[str, str | None], str | None] = {}


def _hook_version() -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version("tflite-runtime")
    except importlib.metadata.PackageNotFoundError:
        return None


def _needs_probe(backend: str) -> tuple[bool, str | None]:
    if backend == "litert-capi":
        path, version, _ = _litert_source()
        # A standalone library is probed whatever its label says: the label is not checked.
        return path is not None or version not in litert_capi.VERIFIED_VERSIONS, version
    version = _hook_version()
    return version not in HOOK_VERIFIED_VERSIONS, version


def _probe_in_child(backend: str, version: str | None) -> None:
    """Run a tiny profile in a child process first: an ABI mismatch there crashes the child,
    not the agent. The verdict is cached per backend and version."""
    key = (backend, version)
    if key not in _PROBED:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(_REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
        code = f"import agent.runtimes.profiler as p; p._probe({backend!r})"
        path = runtime.configured_litert_lib()
        if backend == "litert-capi" and path is not None:  # the child probes the same library
            code = (f"import agent.runtimes.backend as r; "
                    f"r.configure_runtime({runtime.LITERT_C!r}, "
                    f"{str(path)!r}); {code}")
        try:
            done = subprocess.run(
                [sys.executable, "-c", code],
                cwd=_REPO, env=env, capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _PROBED[key] = f"probe process failed: {exc}"
        else:
            if done.returncode == 0:
                _PROBED[key] = None
            else:
                tail = " ".join((done.stderr or "").strip().splitlines()[-1:])
                _PROBED[key] = (f"probe of {backend} ({version}) exited with {done.returncode}"
                                + (f": {tail}" if tail else ""))
    reason = _PROBED[key]
    if reason is not None:
        raise ProfilerUnavailable(reason)


def _probe(backend: str) -> None:
    """Entry point of the child process ``_probe_in_child`` starts."""
    from joulefarm.tflite.builder import Conv2D, Flatten, FullyConnected, build_model

    model = build_model((1, 8, 8, 2), [Conv2D(4), Flatten(), FullyConnected(3)], seed=0)
    run = profile_inferences(model, iterations=2, backend=backend, measure_overhead=False,
                             _probe_first=False)
    assert len(run) == 2 * 3, len(run)


def _open_session(model_bytes: bytes, facts: _ModelFacts, inputs: list[np.ndarray],
                  backend: str | None, num_threads: int, use_xnnpack: bool,
                  probe_first: bool) -> _Session:
    wanted = BACKENDS if backend is None else (backend,)
    unknown = [b for b in wanted if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown profiler backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
    reasons = []
    for name in wanted:
        try:
            if probe_first:
                needs, version = _needs_probe(name)
                if version is None:
                    raise ProfilerUnavailable(("ai-edge-litert" if name == "litert-capi" else
                                               "tflite-runtime") + " is not installed")
                if needs:
                    _probe_in_child(name, version)
            cls = _LiteRtSession if name == "litert-capi" else _HookSession
            return cls(model_bytes, facts, inputs, num_threads=num_threads,
                       use_xnnpack=use_xnnpack)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is a reason to try the next
            reasons.append(f"{name}: {' '.join(str(exc).split())}")
    raise ProfilerUnavailable("no per-operator profiler works here: " + "; ".join(reasons))


class ProfiledModel:
    """A model loaded in a profiling backend, ready to run inferences on fixed random inputs.

    Create it with ``open_profiled_model`` before the meter starts (loading and compiling cost
    time and power that belong to no operator); ``warmup`` then ``run`` while it records.
    """

    def __init__(self, session: _Session, facts: _ModelFacts, *, num_threads: int,
                 use_xnnpack: bool, input_plan: InputPlan | None = None) -> None:
        self._session = session
        self._facts = facts
        self.input_plan = input_plan
        """The shape each input runs at (``joulefarm.tflite.inputs.resolve_input_shapes``)."""
        self.num_threads = num_threads
        self.use_xnnpack = use_xnnpack
        self.backend = session.backend
        self.runtime = session.runtime
        self._chunk: int | None = None
        self._latency_s = 0.0
        self._ops_per_inference = 0.0
        self._on_off: tuple[float, float] | None = None

    @property
    def node_ops(self) -> tuple[str, ...]:
        return self._facts.node_ops

    def outputs(self) -> list[np.ndarray]:
        """Copies of the model outputs after the last inference, in model output order."""
        return self._session.outputs()

    def _guarded(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        # A failing runtime call mid-measurement is this backend failing: say so in one type.
        try:
            return method(*args, **kwargs)
        except ProfilerUnavailable:
            raise
        except RuntimeError as exc:  # LiteRtCallError, the interpreter's own errors
            raise ProfilerUnavailable(f"{self.backend} failed: {' '.join(str(exc).split())}"
                                      ) from exc

    def warmup(self, iterations: int = 3) -> None:
        """Run ``iterations`` (at least 1) inferences recorded, to warm caches and check the
        profiler: its events must fall inside each inference's perf_counter bracket (else the
        clocks disagree) and one inference must fit the event buffer. Raises
        ``ProfilerUnavailable`` when a check fails."""
        self._guarded(self._warmup, iterations)

    def run(self, iterations: int, *, min_duration_s: float = 0.0,
            check: Callable[[], None] = lambda: None) -> ProfileRun:
        """Run at least ``iterations`` inferences, and for at least ``min_duration_s``, with the
        profiler recording; the buffer is read and restarted between chunks of inferences that
        fit it. Returns every operator event mapped to the agent clock. ``check`` is called
        every ``CHECK_INTERVAL_S`` between inferences; it may raise to give up (a cancel)."""
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        result: ProfileRun = self._guarded(self._run, iterations, min_duration_s, check)
        return result

    def measure_overhead(self, blocks: int = 6, block_s: float = 0.005) -> ProfilerOverhead:
        """Time interleaved blocks of inferences (of about ``block_s``) with the profiler
        recording and stopped; the difference is the profiler's cost. Later ``run`` results
        carry it in ``overhead``."""
        result: ProfilerOverhead = self._guarded(self._measure_overhead, blocks, block_s)
        return result

    def _warmup(self, iterations: int) -> None:
        iterations = max(1, int(iterations))
        s = self._session
        befores, afters = [], []
        s.start()
        for _ in range(iterations):
            befores.append(time.perf_counter())
            s.invoke()
            afters.append(time.perf_counter())
        s.stop()
        raw = s.take()
        count = len(raw)
        if s.capacity is not None and count >= s.capacity:
            raise ProfilerUnavailable(f"{iterations} inferences overflow the profiler buffer "
                                      f"({s.capacity} events); warm up with fewer")
        events = s.decode(raw, len(self._facts.node_ops))
        run = self._assemble([events], np.asarray(befores), np.asarray(afters), None)
        if not len(run):
            raise ProfilerUnavailable(f"{self.backend} recorded no operator events")
        outside = int(_outside_bracket(run).sum()) + run.dropped_events
        if outside:
            raise ProfilerUnavailable(
                f"{outside} of {len(run) + run.dropped_events} {self.backend} events fall "
                "outside their "
                f"inference's perf_counter bracket: the profiler clock ({s.clock}) does not "
                "match perf_counter here")
        per_inference = math.ceil(count / iterations) + 1
        if s.capacity is not None:
            room = s.capacity - _CAPACITY_MARGIN
            if per_inference > room:
                raise ProfilerUnavailable(f"one inference records {per_inference} events, more "
                                          f"than the profiler buffer holds ({s.capacity})")
            self._chunk = max(1, room // per_inference)
        else:
            self._chunk = 1 << 30
        self._latency_s = float(np.median(np.asarray(afters) - np.asarray(befores)))
        self._ops_per_inference = len(run) / iterations

    def _run(self, iterations: int, min_duration_s: float, check: Callable[[], None]
             ) -> ProfileRun:
        if self._chunk is None:
            self._warmup(1)
        assert self._chunk is not None
        s = self._session
        invoke = s.invoke
        clock = time.perf_counter
        chunk = self._chunk
        befores: list[float] = []
        afters: list[float] = []
        raws = []
        in_chunk = 0
        s.start()
        t0 = clock()
        # From the first inference's start: the inferences span at least min_duration_s, however
        # long starting the profiler took (or a preemption there).
        deadline = t0 + min_duration_s
        look = t0 + CHECK_INTERVAL_S
        while True:
            invoke()
            t1 = clock()
            befores.append(t0)
            afters.append(t1)
            in_chunk += 1
            if t1 >= look:
                look = t1 + CHECK_INTERVAL_S
                try:
                    check()
                except BaseException:
                    s.stop()  # the profiler is left as warmup found it
                    raise
            done = len(befores) >= iterations and t1 >= deadline
            if done or in_chunk >= chunk:
                s.stop()
                raws.append(s.take())  # decoded after the loop: keep the gap short
                if done:
                    break
                s.start()
                in_chunk = 0
            t0 = clock()
        if s.capacity is not None and any(len(r) >= s.capacity for r in raws):
            raise ProfilerUnavailable("the profiler buffer overflowed during the run")
        n_nodes = len(self._facts.node_ops)
        events = [s.decode(r, n_nodes) for r in raws]
        return self._assemble(events, np.asarray(befores), np.asarray(afters), self._on_off)

    def _measure_overhead(self, blocks: int, block_s: float) -> ProfilerOverhead:
        if self._chunk is None:
            self._warmup(1)
        assert self._chunk is not None
        s = self._session
        per_block = int(min(self._chunk, max(3, math.ceil(block_s / max(self._latency_s,
                                                                         1e-7)))))
        on: list[float] = []
        off: list[float] = []
        clock = time.perf_counter
        for b in range(max(2, blocks)):
            for recording in ((True, False) if b % 2 == 0 else (False, True)):
                if recording:
                    s.start()
                t0 = clock()
                for _ in range(per_block):
                    s.invoke()
                t1 = clock()
                if recording:
                    s.stop()
                    s.take()
                (on if recording else off).append((t1 - t0) / per_block)
        on_s, off_s = float(np.median(on)), float(np.median(off))
        self._on_off = (on_s, off_s)
        return _overhead_numbers(self._ops_per_inference, math.nan, math.nan, self._on_off)

    def _assemble(self, chunks: list[_Events], befores: np.ndarray, afters: np.ndarray,
                  on_off: tuple[float, float] | None) -> ProfileRun:
        s = self._session
        n_nodes = len(self._facts.node_ops)
        cols: dict[str, list[np.ndarray]] = {k: [] for k in (
            "start", "end", "node", "iteration", "subgraph", "delegate", "op", "exact")}
        invoke_start = np.full(len(befores), np.nan)
        invoke_end = np.full(len(befores), np.nan)
        for ev in chunks:
            _collect(ev, befores, afters, n_nodes, cols, invoke_start, invoke_end)
        if cols["start"]:
            arrays = {k: np.concatenate(v) for k, v in cols.items()}
        else:
            arrays = {k: np.zeros(0, np.float64 if k in ("start", "end") else
                                  bool if k == "exact" else object if k == "op" else np.int64)
                      for k in cols}
        stray = int((arrays["iteration"] < 0).sum())
        order = np.lexsort((arrays["start"], arrays["iteration"]))
        order = order[arrays["iteration"][order] >= 0]  # events outside every bracket: dropped
        a = {k: v[order] for k, v in arrays.items()}
        seen = set(int(n) for n in a["node"][(a["node"] >= 0) & (a["subgraph"] == 0)])
        has_delegate = bool((a["node"] < 0).any())
        delegated = tuple(n for n in range(n_nodes) if n not in seen) if has_delegate else ()
        notes = []
        missing = [n for n in range(n_nodes) if n not in seen]
        if missing and not has_delegate and len(a["start"]):
            notes.append(f"nodes without events: {missing}")
        if has_delegate:
            notes.append("delegate operators have reconstructed windows (durations laid back to "
                         "back from the delegate's invocation); node_index -1, see "
                         "delegated_nodes")
        if stray:
            notes.append(f"{stray} events outside every inference bracket were dropped")
        overhead = _overhead(a, invoke_start, invoke_end, befores, afters, len(befores),
                             on_off)
        return ProfileRun(
            backend=s.backend, runtime=s.runtime, iterations=len(befores),
            num_threads=self.num_threads, use_xnnpack=self.use_xnnpack,
            starts_s=a["start"], ends_s=a["end"], node_index=a["node"],
            iteration=a["iteration"], subgraph=a["subgraph"], delegate_index=a["delegate"],
            op=a["op"].astype(str) if len(a["op"]) else np.zeros(0, str), exact=a["exact"],
            inference_starts_s=befores, inference_ends_s=afters,
            invoke_starts_s=invoke_start, invoke_ends_s=invoke_end,
            node_ops=self._facts.node_ops, delegated_nodes=delegated, clock=s.clock,
            clock_offset_s=s.clock_offset_s, resolution_s=s.resolution_s, overhead=overhead,
            dropped_events=stray, notes=tuple(notes))

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ProfiledModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _iteration_of(times: np.ndarray, befores: np.ndarray, afters: np.ndarray) -> np.ndarray:
    """The inference whose bracket holds each time (an event's midpoint); -1 for NaN or times
    before the first bracket. A time just before a bracket (timestamp truncation) joins it."""
    n = len(befores)
    if n == 0:
        return np.full(len(times), -1, np.int64)
    safe = np.where(np.isnan(times), -np.inf, times)
    index = np.searchsorted(befores, safe, side="right") - 1
    following = np.minimum(index + 1, n - 1)
    move = ((index + 1 < n) & (safe > afters[np.maximum(index, 0)])
            & (safe >= befores[following] - BRACKET_TOLERANCE_S))
    index = np.where(move, index + 1, index)
    index = np.where((index < 0) & (safe >= befores[0] - BRACKET_TOLERANCE_S), 0, index)
    return np.where(np.isnan(times), -1, index).astype(np.int64)


def _collect(ev: _Events, befores: np.ndarray, afters: np.ndarray, n_nodes: int,
             cols: dict[str, list[np.ndarray]], invoke_start: np.ndarray,
             invoke_end: np.ndarray) -> None:
    """Pick the operator events of one recording, give each an iteration and a window."""
    t = ev.event_type
    known = ~np.isnan(ev.start_s)
    subgraph_invoke = (t == litert_capi.EVENT_DEFAULT) & (ev.tag == "Invoke") & known
    op_event = t == litert_capi.EVENT_OPERATOR_INVOKE
    # A node index past the model's nodes in subgraph 0 is a delegate kernel the runtime added:
    # its window contains the delegate's own operators, so it anchors them and is no operator.
    kernel = op_event & (ev.metadata2 == 0) & (ev.metadata1 >= n_nodes) & known
    builtin = op_event & ~kernel
    delegate = np.isin(t, (litert_capi.EVENT_DELEGATE_OPERATOR_INVOKE,
                           litert_capi.EVENT_DELEGATE_PROFILED_OPERATOR_INVOKE))

    main_invoke = np.flatnonzero(subgraph_invoke & (ev.metadata2 == 0))
    if len(main_invoke):
        mid = ev.start_s[main_invoke] + ev.duration_s[main_invoke] / 2
        it = _iteration_of(mid, befores, afters)
        ok = it >= 0
        for i, e in zip(it[ok], main_invoke[ok], strict=True):
            if np.isnan(invoke_start[i]):  # the first Invoke of subgraph 0 in the inference
                invoke_start[i] = ev.start_s[e]
                invoke_end[i] = ev.start_s[e] + ev.duration_s[e]

    start = ev.start_s.copy()
    end = ev.start_s + ev.duration_s
    exact = known.copy()
    # Reconstruct delegate operators without a start: back to back from their anchor, the most
    # recent delegate kernel or subgraph Invoke begun before them in recording order.
    anchors = kernel | subgraph_invoke
    cursor, current = math.nan, -1
    for e in np.flatnonzero((delegate & ~known) | anchors):
        if anchors[e]:
            current, cursor = int(e), ev.start_s[e]
            continue
        if current < 0:
            continue
        start[e] = cursor
        cursor = cursor + ev.duration_s[e]
        end[e] = cursor
    picked = (builtin | delegate) & ~np.isnan(start)
    idx = np.flatnonzero(picked)
    cols["start"].append(start[idx])
    cols["end"].append(end[idx])
    cols["node"].append(np.where(builtin[idx], ev.metadata1[idx], -1))
    cols["iteration"].append(_iteration_of((start[idx] + end[idx]) / 2, befores, afters))
    cols["subgraph"].append(ev.metadata2[idx])
    cols["delegate"].append(np.where(delegate[idx], ev.metadata1[idx], -1))
    cols["op"].append(ev.tag[idx])
    cols["exact"].append(exact[idx])


def _outside_bracket(run: ProfileRun) -> np.ndarray:
    """Events whose measured window is not inside the perf_counter bracket of its inference."""
    it = run.iteration
    bad = np.zeros(len(it), bool)
    ok = run.exact
    lo = run.inference_starts_s[it[ok]] - BRACKET_TOLERANCE_S
    hi = run.inference_ends_s[it[ok]] + BRACKET_TOLERANCE_S
    bad[ok] = (run.starts_s[ok] < lo) | (run.ends_s[ok] > hi)
    return bad


def _overhead(a: dict[str, np.ndarray], invoke_start: np.ndarray, invoke_end: np.ndarray,
              befores: np.ndarray, afters: np.ndarray, n: int,
              on_off: tuple[float, float] | None) -> ProfilerOverhead:
    ops = len(a["start"]) / max(n, 1)
    gap = run_cost = math.nan
    invoke = invoke_end - invoke_start
    valid = ~np.isnan(invoke)
    if valid.any() and ops > 0:
        busy = np.bincount(a["iteration"][a["iteration"] >= 0],
                           weights=(a["end"] - a["start"])[a["iteration"] >= 0], minlength=n)[:n]
        gap = float(np.median((invoke[valid] - busy[valid]) / ops))
        run_cost = float(np.median((afters - befores)[valid] - invoke[valid]))
    return _overhead_numbers(ops, gap, run_cost, on_off)


def _overhead_numbers(ops: float, gap: float, run_cost: float,
                      on_off: tuple[float, float] | None) -> ProfilerOverhead:
    if on_off is None:
        return ProfilerOverhead(ops, gap, run_cost)
    on_s, off_s = on_off
    per_inference = on_s - off_s
    return ProfilerOverhead(ops, gap, run_cost, per_inference, per_inference / max(ops, 1.0),
                            on_s, off_s)


def _static_outputs(model_bytes: bytes, inputs: list[np.ndarray], num_threads: int) -> bytes:
    """The model with its computed shape operands read from constants holding what one
    inference on ``inputs`` computes (``split.with_static_shape_operands``): a Keras model with a
    dynamic batch reshapes to SHAPE -> STRIDED_SLICE -> PACK, which makes its outputs dynamic
    tensors that the LiteRT C API cannot bind. Node for node the same work; the model as it is
    where it has no such operand, or where no Python runtime can compute them (litert-c)."""
    computed = computed_shape_operands_of_model(model_bytes)
    if not computed:
        return model_bytes
    try:
        whole = runtime.load_interpreter(model_bytes, num_threads=num_threads,
                                         preserve_all_tensors=True,
                                         input_shapes=[a.shape for a in inputs])
        for detail, array in zip(whole.get_input_details(), inputs, strict=True):
            whole.set_tensor(detail["index"], array)
        whole.invoke()
        values = {t: whole.get_tensor(t) for t in computed}
    except (ModelError, RuntimeError, ValueError):
        return model_bytes
    return with_static_shape_operands(model_bytes, values)


def open_profiled_model(model_bytes: bytes, *, num_threads: int = 1, use_xnnpack: bool = False,
                        seed: int = 0, backend: str | None = None,
                        input_shapes: GivenShapes | None = None,
                        inputs: Sequence[np.ndarray] | None = None,
                        _probe_first: bool = True) -> ProfiledModel:
    """Load ``model_bytes`` in the first backend that works (or ``backend``), with seeded random
    inputs (``agent.runtimes.chain.random_array``, as ``WholeModel.random_inputs(seed)``) of the
    shapes ``joulefarm.tflite.inputs.resolve_input_shapes`` gives for ``input_shapes`` (by input
    name or position), as ``WholeModel``'s; or with ``inputs`` (model input order, at those
    shapes), for inputs whose values matter (a training step's targets).

    Raises ``ProfilerUnavailable`` (with every backend's reason) when none works, ``InputError``
    for an input that needs a shape and has none, and ``ModelError`` for models that cannot be
    read.
    """
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    plan = resolve_input_shapes(bytes(model_bytes), input_shapes)
    facts = _at_shapes(_model_facts(model_bytes), plan)
    if inputs is None:
        arrays = _random_inputs(facts, seed)
    else:
        expected = [spec.shape for spec in facts.inputs]
        shapes = [np.shape(a) for a in inputs]
        if shapes != expected:
            raise ModelError(f"inputs of shapes {shapes} for a model that runs {expected}")
        arrays = [np.asarray(a, spec.dtype) for a, spec in zip(inputs, facts.inputs, strict=True)]
    session = _open_session(_static_outputs(bytes(model_bytes), arrays, num_threads), facts,
                            arrays, backend, num_threads, use_xnnpack, _probe_first)
    return ProfiledModel(session, facts, num_threads=num_threads, use_xnnpack=use_xnnpack,
                         input_plan=plan)


def profile_inferences(model_bytes: bytes, *, iterations: int, num_threads: int = 1,
                       use_xnnpack: bool = False, seed: int = 0, backend: str | None = None,
                       warmup: int = 3, measure_overhead: bool = True,
                       input_shapes: GivenShapes | None = None,
                       _probe_first: bool = True) -> ProfileRun:
    """Load, warm up, optionally measure the profiler's own cost, then run ``iterations``
    profiled inferences; see ``ProfileRun``. Raises ``ProfilerUnavailable`` if no backend
    works."""
    with open_profiled_model(model_bytes, num_threads=num_threads, use_xnnpack=use_xnnpack,
                             seed=seed, backend=backend, input_shapes=input_shapes,
                             _probe_first=_probe_first) as model:
        model.warmup(warmup)
        if measure_overhead:
            model.measure_overhead()
        return model.run(iterations)


__all__ = [
    "BACKENDS",
    "ProfileRun",
    "ProfiledModel",
    "ProfilerOverhead",
    "ProfilerUnavailable",
    "open_profiled_model",
    "profile_inferences",
]
