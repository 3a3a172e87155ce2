"""Measure a model while the meter records, then turn the trace into energy.

A run, on the agent's clock (``layers`` mode; ``whole`` mode has one window for the whole model
looped for ``min_duration_s``, with every call's latency kept for percentiles):

    idle baseline | sync pattern (coded busy/idle) | quiet gap | layer 0 window | layer 1 ...
    | (with ``pairs``) pair 0+1 window | pair 1+2 ... | whole model (the additivity check)

Each layer's single-op sub-model is looped alone, fed exactly the inputs it sees inside the
real model, until its window lasts ``min_layer_duration_s`` and holds ``min_iterations`` calls,
so a window spans many meter samples even when one call is far shorter than a sample period.
With ``pairs``, each adjacent pair where the second layer reads the first's output is looped
the same way as one two-op sub-model: against the two layers alone it shows which pairs the
runtime fuses (nn-Meter's rule, ``joulefarm.results.check_pairs``).
The sync pattern gives the meter-to-agent clock offset (``joulefarm.align_offset``); the idle
segment gives the baseline; ``joulefarm.integrate_windows`` integrates every window.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import joulefarm
from agent.cancel import CHECK_INTERVAL_S, Cancel
from agent.host_lease import MAX_WAIT_S as MAX_LEASE_WAIT_S
from agent.host_lease import measuring_lease
from agent.meters.base import AnyTrace, Meter, Trace
from agent.runtimes.chain import LayerChain, LayerPairs, WholeModel, run_layers
from agent.runtimes.profiler import (
    ProfiledModel,
    ProfileRun,
    ProfilerUnavailable,
    open_profiled_model,
)
from agent.system import compare_conditions, read_conditions
from joulefarm.enums import Mode
from joulefarm.errors import InputError
from joulefarm.latency import LoopLatency, loop_latency
from joulefarm.results import (
    CPU_CONTENDED,
    FILE_SHAPES_DIFFER,
    MIN_USABLE_COVERAGE,
    NO_COST_FORMULA,
    NOT_ISOLATED,
    BenchmarkResult,
    DecimatedTrace,
    LayerRecord,
    LayerTable,
    MeasureSettings,
    PairRecord,
    Progress,
    WholeModelRecord,
    shape_text,
)
from joulefarm.tflite.inputs import InputPlan
from joulefarm.tflite.parse import LayerInfo
from joulefarm.traces.energy import window_energy

log = logging.getLogger(__name__)

# Busy/idle durations (ms) of the sync pattern: an irregular code, so that its
# autocorrelation has one clear peak and the offset cannot lock onto a wrong period.
SYNC_PATTERN_MS: tuple[tuple[float, float], ...] = (
    (6, 3), (2, 5), (4, 2), (1, 6), (5, 4), (3, 1), (7, 3), (2, 2),
)
# The aligner searches offsets within +/- this range (meter clock minus agent clock).
MAX_CLOCK_OFFSET_S = 0.05
# Quiet time after the sync pattern. The aligner fits the pattern over its span widened by the
# offset search range on both sides, so that whole stretch must hold nothing but the pattern
# and idle: the idle baseline covers the side before, this guard the side after.
SYNC_GUARD_S = MAX_CLOCK_OFFSET_S + 0.01
# Idle samples near the edges of the idle segment are dropped (alignment error, transients).
IDLE_EDGE_MARGIN_S = 0.01
# Idle time after the last layer (longer than any plausible residual clock error).
TAIL_S = 0.01
# Layers mode loops the whole model too, this many layer windows long (at least the minimum):
# sum of per-layer latency and energy vs the whole model shows what splitting changed.
ADDITIVITY_WINDOWS = 5
ADDITIVITY_MIN_S = 0.05
# A run whose layers' latencies add up to more than this many times the whole model's median
# call (or less than its inverse) measured something other than the model: flagged.
MAX_LAYER_SUM_RATIO = 3.0
# The decimated trace sent back with every result (min/max/mean per bucket).
MAX_TRACE_BUCKETS = 4000
# Thread switch interval while recording: a polled meter samples in a Python thread, which
# would otherwise get the GIL only every 5 ms while the main thread runs Python.
RECORDING_SWITCH_INTERVAL_S = 5e-4
# A window must span at least this many meter sample periods (slow meters need long layers).
MIN_WINDOW_PERIODS = 10
# Below this correlation the alignment is reported as weak.
MIN_ALIGNMENT_CORRELATION = 0.9

ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class LayerWindow:
    """When one layer ran (agent clock, seconds), how many calls, and their latency."""

    index: int
    start_s: float
    end_s: float
    iterations: int
    latency: LoopLatency


@dataclass(frozen=True)
class PairWindow:
    """When a pair of layers (chain positions ``first``, ``second``) ran as one sub-model."""

    first: int
    second: int
    start_s: float
    end_s: float
    iterations: int
    latency: LoopLatency


@dataclass(frozen=True)
class WholeWindow:
    """The whole model's timed loop: its window and every call's latency."""

    start_s: float
    end_s: float
    latencies_s: np.ndarray

    @property
    def iterations(self) -> int:
        return len(self.latencies_s)


@dataclass(frozen=True)
class RawRun:
    """Everything recorded in one run, before integration."""

    trace: AnyTrace
    idle_window: tuple[float, float]
    busy_starts: np.ndarray
    busy_ends: np.ndarray
    windows: tuple[LayerWindow, ...]
    started_unix_s: float
    finished_unix_s: float
    whole: WholeWindow | None = None
    pair_windows: tuple[PairWindow, ...] = ()
    on_cpu_share: float | None = None
    """The measuring thread's CPU time over the timed loop's wall time (one interpreter
    thread only; None otherwise): below ``MIN_ON_CPU_SHARE``, something else ran."""


MIN_ON_CPU_SHARE = 0.95
"""A single-threaded timed loop keeps its thread on the CPU (1.000 over five loops on an idle
2-core VM); with two busy processes beside it, 0.54-0.86. Below this share another process
took the CPU during the loop: its times are stretched and, on a real device, the meter also
read the other process's power."""


def contention_flags(on_cpu_share: float | None) -> tuple[str, ...]:
    return ((CPU_CONTENDED,) if on_cpu_share is not None and on_cpu_share < MIN_ON_CPU_SHARE
            else ())


def _spin_until(deadline: float) -> None:
    # A busy loop, not sleep: the sync pattern must draw power while "busy".
    while time.perf_counter() < deadline:
        pass


def _sleep_until(deadline: float, cancel: Cancel | None = None) -> None:
    remaining = deadline - time.perf_counter()
    if cancel is not None:
        cancel.sleep(remaining)
    elif remaining > 0:
        time.sleep(remaining)


def _abandon(meter: Meter) -> None:
    """Stop a meter whose recording will not be used (the run failed or was cancelled), so no
    sampler thread or meter process outlives the benchmark."""
    try:
        meter.stop()
    except Exception:  # the run's own error is the one to report
        log.warning("stopping the meter of an abandoned run failed", exc_info=True)


def run_sync_pattern(meter: Meter) -> tuple[np.ndarray, np.ndarray]:
    """Emit the coded busy/idle sequence; return the busy intervals as actually executed."""
    starts, ends = [], []
    for busy_ms, idle_ms in SYNC_PATTERN_MS:
        t0 = time.perf_counter()
        _spin_until(t0 + busy_ms / 1000)
        t1 = time.perf_counter()
        meter.note_activity("busy", t0, t1)
        _sleep_until(t1 + idle_ms / 1000)
        t2 = time.perf_counter()
        meter.note_activity("idle", t1, t2)
        starts.append(t0)
        ends.append(t1)
    return np.asarray(starts), np.asarray(ends)


def _layer_bytes(chain: LayerChain, i: int) -> int:
    info = chain.layers[i]
    return int(info.act_in_bytes + info.act_out_bytes + info.param_bytes)


def additivity_duration_s(settings: MeasureSettings) -> float:
    """How long layers mode loops the whole model for the additivity check."""
    return max(ADDITIVITY_WINDOWS * settings.min_layer_duration_s, ADDITIVITY_MIN_S)


def _warm_up(invoke: Callable[[], None], iterations: int, cancel: Cancel) -> None:
    for _ in range(iterations):
        cancel.check()
        invoke()


def _next_look(now: float, count: int, deadline: float, min_iterations: int, cancel: Cancel
               ) -> float | None:
    """The rare branch of a timed loop: None when the loop is done, else the time at which to
    look again. Before the deadline that is at most ``CHECK_INTERVAL_S`` away (so a cancel is
    seen); past it and short of ``min_iterations``, the next call (the count is exact), with
    the cancel flag still looked at, as it costs no more than the comparison."""
    if now >= deadline:
        if count >= min_iterations:
            return None
        cancel.check()
        return now
    cancel.check()
    return min(deadline, now + CHECK_INTERVAL_S)


def _loop_window(invoke: Callable[[], None], macs: int, bytes_moved: int, meter: Meter,
                 settings: MeasureSettings, cancel: Cancel, op: str = ""
                 ) -> tuple[float, float, int, LoopLatency]:
    """Warm up, then loop ``invoke`` for ``min_layer_duration_s`` and ``min_iterations`` calls;
    the meter is told what ran. Returns the window (agent clock), the call count and the
    per-call latency by batches (``joulefarm.latency``)."""
    _warm_up(invoke, settings.warmup_iterations, cancel)
    count = 0
    ends: list[float] = []
    stamp = ends.append
    clock = time.perf_counter
    start = clock()
    deadline = start + settings.min_layer_duration_s
    look = min(deadline, start + CHECK_INTERVAL_S)
    # The hot loop: a bare invoke, a clock read, an append and one comparison per call.
    while True:
        invoke()
        now = clock()
        stamp(now)
        count += 1
        if now >= look:
            again = _next_look(now, count, deadline, settings.min_iterations, cancel)
            if again is None:
                break
            look = again
    meter.note_activity("layer", start, now, macs=macs * count, bytes_moved=bytes_moved * count,
                        op=op)
    return start, now, count, loop_latency(start, ends)


def record_layers(
    chain: LayerChain,
    meter: Meter,
    settings: MeasureSettings,
    progress: ProgressFn | None = None,
    whole_model: WholeModel | None = None,
    pairs: LayerPairs | None = None,
    cancel: Cancel | None = None,
) -> RawRun:
    """Run the idle baseline, the sync pattern and every layer while ``meter`` records; then,
    given ``pairs``, every pair of layers; given ``whole_model``, the unsplit model (the
    additivity check)."""
    cancel = cancel or Cancel()
    values = chain.tensor_values(chain.random_inputs(settings.seed))  # feeds every layer
    if pairs is not None:
        pairs.feed(values)
    started_unix = time.time()
    idle_window, busy_starts, busy_ends = _prelude(meter, settings, cancel)
    try:
        return _record_layer_windows(chain, meter, settings, progress, whole_model, pairs,
                                     cancel, started_unix, idle_window, busy_starts, busy_ends)
    except BaseException:
        _abandon(meter)
        raise


def _record_layer_windows(
    chain: LayerChain, meter: Meter, settings: MeasureSettings, progress: ProgressFn | None,
    whole_model: WholeModel | None, pairs: LayerPairs | None, cancel: Cancel,
    started_unix: float, idle_window: tuple[float, float], busy_starts: np.ndarray,
    busy_ends: np.ndarray,
) -> RawRun:
    """``record_layers`` once the meter records: every window, then the tail."""
    n = len(chain.layers)
    total = n + (len(pairs) if pairs is not None else 0)
    windows = []
    for i in range(n):
        if i in chain.not_isolated:  # recorded as such (integrate_run); the rest is measured
            if progress:
                progress(Progress("layers", i, total, chain.not_isolated[i][:300]))
            continue
        if progress:
            progress(Progress("layers", i, total, f"layer {i} {chain.layers[i].op}"))
        # The interpreter's bound invoke: no lookup per call.
        start, end, count, latency = _loop_window(chain.invokers[i], chain.layers[i].macs or 0,
                                                  _layer_bytes(chain, i), meter, settings,
                                                  cancel, chain.layers[i].op)
        windows.append(LayerWindow(i, start, end, count, latency))
    pair_windows = []
    pair_invokers = pairs.invokers if pairs is not None else []
    for k, (a, b) in enumerate(pairs.positions if pairs is not None else ()):
        if pairs is not None and (k in pairs.not_isolated or a in chain.not_isolated
                                  or b in chain.not_isolated):
            continue
        if progress:
            progress(Progress("layers", n + k, total,
                              f"pair {a}+{b} {chain.layers[a].op}+{chain.layers[b].op}"))
        start, end, count, latency = _loop_window(
            pair_invokers[k], (chain.layers[a].macs or 0) + (chain.layers[b].macs or 0),
            _layer_bytes(chain, a) + _layer_bytes(chain, b), meter, settings, cancel,
            f"{chain.layers[a].op}+{chain.layers[b].op}")
        pair_windows.append(PairWindow(a, b, start, end, count, latency))
    whole = None
    if whole_model is not None:
        # The unsplit model in the same trace: the additivity check (sum of layers vs whole).
        if progress:
            progress(Progress("layers", total, total, "whole model, for the additivity check"))
        whole_model.set_inputs(chain.random_inputs(settings.seed))
        _warm_up(whole_model.interpreter.invoke, settings.warmup_iterations, cancel)
        layers = chain.layers
        whole = loop_whole(whole_model, sum(x.macs or 0 for x in layers),
                           sum(x.act_in_bytes + x.act_out_bytes + x.param_bytes for x in layers),
                           meter, additivity_duration_s(settings), settings.min_iterations,
                           cancel)
    trace = _tail_and_stop(meter)
    if progress:
        progress(Progress("layers", total, total, "integrating"))
    return RawRun(trace, idle_window, busy_starts, busy_ends, tuple(windows),
                  started_unix, time.time(), whole=whole, pair_windows=tuple(pair_windows))


def _prelude(meter: Meter, settings: MeasureSettings, cancel: Cancel | None = None
             ) -> tuple[tuple[float, float], np.ndarray, np.ndarray]:
    """Start the meter; idle baseline, sync pattern, quiet guard. Returns the idle window and
    the busy intervals of the pattern. A cancel during the idle wait stops the meter."""
    meter.start()
    t_idle0 = time.perf_counter()
    try:
        _sleep_until(t_idle0 + settings.idle_duration_s, cancel)
    except BaseException:
        _abandon(meter)
        raise
    t_idle1 = time.perf_counter()
    meter.note_activity("idle", t_idle0, t_idle1)
    busy_starts, busy_ends = run_sync_pattern(meter)
    t_guard = time.perf_counter()
    _sleep_until(t_guard + SYNC_GUARD_S)
    meter.note_activity("idle", t_guard, time.perf_counter())
    return (t_idle0, t_idle1), busy_starts, busy_ends


def _tail_and_stop(meter: Meter) -> AnyTrace:
    """A short idle tail, so the last window ends well inside the trace; then stop."""
    t_tail = time.perf_counter()
    _sleep_until(t_tail + TAIL_S)
    meter.note_activity("idle", t_tail, time.perf_counter())
    return meter.stop()


def loop_whole(model: WholeModel, macs: int, bytes_moved: int, meter: Meter,
               min_duration_s: float, min_iterations: int, cancel: Cancel) -> WholeWindow:
    """The whole model looped for ``min_duration_s`` (and ``min_iterations`` calls), every
    call's latency kept; the meter is told what ran."""
    invoke = model.interpreter.invoke
    latencies = []
    clock = time.perf_counter
    start = clock()
    deadline = start + min_duration_s
    look = min(deadline, start + CHECK_INTERVAL_S)
    before = start
    while True:
        invoke()
        after = clock()
        latencies.append(after - before)
        before = after
        if after >= look:
            again = _next_look(after, len(latencies), deadline, min_iterations, cancel)
            if again is None:
                break
            look = again
    n = len(latencies)
    meter.note_activity("layer", start, after, macs=macs * n, bytes_moved=bytes_moved * n)
    return WholeWindow(start, after, np.asarray(latencies))


def record_whole(
    model: WholeModel, macs: int, bytes_moved: int, meter: Meter, settings: MeasureSettings,
    progress: ProgressFn | None = None, cancel: Cancel | None = None,
) -> RawRun:
    """Idle baseline, sync pattern, then the whole model looped for ``min_duration_s``."""
    cancel = cancel or Cancel()
    model.set_inputs(model.random_inputs(settings.seed))
    _warm_up(model.interpreter.invoke, settings.warmup_iterations, cancel)
    started_unix = time.time()
    idle_window, busy_starts, busy_ends = _prelude(meter, settings, cancel)
    try:
        if progress:
            progress(Progress("whole", 0, 1, f"looping for {settings.min_duration_s:g} s"))
        whole = loop_whole(model, macs, bytes_moved, meter, settings.min_duration_s,
                           settings.min_iterations, cancel)
    except BaseException:
        _abandon(meter)
        raise
    trace = _tail_and_stop(meter)
    if progress:
        progress(Progress("whole", 1, 1, "integrating"))
    return RawRun(trace, idle_window, busy_starts, busy_ends, (), started_unix, time.time(),
                  whole=whole)


@dataclass(frozen=True)
class Alignment:
    offset_s: float
    correlation: float
    idle_power_w: float
    flags: tuple[str, ...]


def integrate(raw: RawRun, offset_s: float, starts: np.ndarray, ends: np.ndarray
              ) -> dict[str, np.ndarray]:
    """Per-window energy of the run's trace (``joulefarm.traces.window_energy``): a trace on the
    meter's clock is mapped through ``offset_s``; a polled or counter trace is already on the
    agent clock."""
    offset = offset_s if raw.trace.clock == "meter" else 0.0
    return window_energy(raw.trace, starts, ends, offset_s=offset)


def align_and_baseline(raw: RawRun) -> Alignment:
    """Meter clock offset from the sync pattern (meter-clock traces only), then the idle
    baseline power. The trace's own quality flags become run flags."""
    trace = raw.trace
    flags: list[str] = list(trace.flags)
    if trace.clock == "meter":
        # Meter.stop(): a trace on the meter's own clock is a uniform Trace.
        assert isinstance(trace, Trace), f"a meter-clock {type(trace).__name__}"
        fit = joulefarm.align_offset(
            trace.power_w, trace.sample_rate_hz, raw.busy_starts, raw.busy_ends,
            t0=trace.t0_s, max_offset_s=MAX_CLOCK_OFFSET_S,
        )
        offset, correlation = float(fit["offset_s"]), float(fit["correlation"])
        if not correlation >= MIN_ALIGNMENT_CORRELATION:
            flags.append("alignment_weak")
    else:
        offset, correlation = 0.0, float("nan")  # stamped on the agent clock at read time
    idle = integrate(raw, offset, np.array([raw.idle_window[0] + IDLE_EDGE_MARGIN_S]),
                     np.array([raw.idle_window[1] - IDLE_EDGE_MARGIN_S]))
    idle_w = float(idle["mean_power_w"][0])
    if not np.isfinite(idle_w):
        flags.append("no_idle_baseline")
    return Alignment(offset, correlation, idle_w, tuple(dict.fromkeys(flags)))


def decimate_trace(trace: AnyTrace) -> DecimatedTrace | None:
    """The run's trace as at most ``MAX_TRACE_BUCKETS`` min/max/mean buckets (rust_core)."""
    uniform: Trace
    if isinstance(trace, Trace):
        uniform = trace
    else:
        ts = trace.to_timestamped()
        if len(ts.t_s) < 2:
            return None
        rate = getattr(ts, "target_rate_hz", None) or (len(ts.t_s) - 1) / (ts.t_s[-1] - ts.t_s[0])
        uniform = ts.to_uniform(rate)
    n = len(uniform.power_w)
    if n == 0:
        return None
    factor = max(1, math.ceil(n / MAX_TRACE_BUCKETS))
    d = joulefarm.decimate_minmax(uniform.power_w, factor)
    return DecimatedTrace(
        clock=trace.clock, t0_s=float(uniform.t0_s), bucket_s=factor / uniform.sample_rate_hz,
        min_w=d["min"].astype(np.float32), max_w=d["max"].astype(np.float32),
        mean_w=d["mean"].astype(np.float32), raw_samples=n)


def _truth(meter: Meter) -> Callable[[float, float], float] | None:
    """The simulator's exact energy function; None for a real meter."""
    return getattr(meter, "true_energy_j", None) if meter.description.simulated else None


def benchmark_result(raw: RawRun, meter: Meter, settings: MeasureSettings, model_sha256: str,
                     runtime: tuple[str, str], fit: Alignment,
                     layers: tuple[LayerRecord, ...] = (),
                     whole: WholeModelRecord | None = None, pairs: tuple[PairRecord, ...] = ()
                     ) -> BenchmarkResult:
    """The result of a run from its recording, alignment and records."""
    return BenchmarkResult(
        model_sha256=model_sha256,
        mode=settings.mode,
        meter=meter.description,
        runtime_name=runtime[0],
        runtime_version=runtime[1],
        num_threads=settings.num_threads,
        idle_power_w=fit.idle_power_w,
        clock_offset_s=fit.offset_s,
        alignment_correlation=fit.correlation,
        started_unix_s=raw.started_unix_s,
        finished_unix_s=raw.finished_unix_s,
        layers=LayerTable.from_records(layers),
        flags=(*fit.flags, *contention_flags(raw.on_cpu_share)),
        true_clock_offset_s=getattr(meter, "clock_offset_s", None)
        if meter.description.simulated else None,
        whole=whole,
        trace=decimate_trace(raw.trace),
        pairs=pairs,
    )


def integrate_run(
    raw: RawRun, chain: LayerChain, meter: Meter, settings: MeasureSettings, model_sha256: str,
    runtime: tuple[str, str],
) -> BenchmarkResult:
    """Align the trace to the agent clock and integrate every layer window with rust_core."""
    fit = align_and_baseline(raw)
    offset, idle_w = fit.offset_s, fit.idle_power_w
    starts = np.array([w.start_s for w in raw.windows], dtype=np.float64)
    ends = np.array([w.end_s for w in raw.windows], dtype=np.float64)
    stats = integrate(raw, offset, starts, ends)
    truth = _truth(meter)
    layers = []
    for k, w in enumerate(raw.windows):
        info = chain.layers[w.index]
        lat = w.latency
        power = float(stats["mean_power_w"][k])
        coverage = float(stats["coverage"][k])
        # Energy per call: the window's mean power over one typical call. Mean power is taken
        # over the covered part of the window (the rest is filled at it) and over the whole
        # window's calls, so neither a late meter read nor one interruption scales it.
        energy = power * lat.median_s
        flags = list(joulefarm.flag_names(int(stats["flags"][k]))) + list(lat.flags)
        if coverage < MIN_USABLE_COVERAGE:
            flags.append("low_coverage")
        if info.macs is None:
            flags.append(NO_COST_FORMULA)
        if info.file_shapes_differ:
            flags.append(FILE_SHAPES_DIFFER)
        layers.append(LayerRecord(
            index=info.index,
            op=info.op,
            macs=info.macs,
            param_bytes=int(info.param_bytes),
            act_in_bytes=int(info.act_in_bytes),
            act_out_bytes=int(info.act_out_bytes),
            input_shapes=shape_text(info.input_shapes),
            output_shapes=shape_text(info.output_shapes),
            iterations=w.iterations,
            window_start_s=w.start_s,
            window_end_s=w.end_s,
            latency_s=lat.median_s,
            energy_j=energy,
            active_energy_j=(power - idle_w) * lat.median_s,
            mean_power_w=power,
            samples=int(stats["samples"][k]),
            coverage=coverage,
            flags=tuple(flags),
            true_energy_j=(truth(w.start_s, w.end_s) / (w.end_s - w.start_s) * lat.median_s
                           if truth else None),
            latency_window_s=lat.window_s,
            latency_low_s=lat.low_s,
            latency_high_s=lat.high_s,
            batches=lat.batches,
            energy_err_j=energy_uncertainty_j(power, lat, coverage),
        ))
    layers = _with_not_isolated(layers, chain)
    whole = None
    if raw.whole is not None:
        whole = whole_record(raw, fit, meter, settings, additivity_duration_s(settings))
        ratio = sum(x.latency_s for x in layers) / whole.latency_p50_s
        # With a layer not measured (not_isolated) the sum is partial: no check to make.
        if not chain.not_isolated and not 1 / MAX_LAYER_SUM_RATIO <= ratio <= MAX_LAYER_SUM_RATIO:
            fit = replace(fit, flags=(*fit.flags, "implausible_layer_sum"))
    return benchmark_result(raw, meter, settings, model_sha256, runtime, fit,
                            layers=tuple(layers), whole=whole,
                            pairs=pair_records(raw, chain, fit, meter))


def _with_not_isolated(layers: list[LayerRecord], chain: LayerChain) -> list[LayerRecord]:
    """The measured layers and, in chain order among them, a row for each layer that cannot
    run on its own: named (index, op, features), nothing measured (NaN), flagged
    ``not_isolated`` (the reason is in the agent's log and its progress)."""
    if not chain.not_isolated:
        return layers
    by_index = {x.index: x for x in layers}
    rows = []
    for position, info in enumerate(chain.layers):
        if info.index in by_index:
            rows.append(by_index[info.index])
        elif position in chain.not_isolated:
            log.warning("%s", chain.not_isolated[position])
            nan = math.nan
            flags = (NOT_ISOLATED, NO_COST_FORMULA) if info.macs is None else (NOT_ISOLATED,)
            rows.append(LayerRecord(
                index=info.index, op=info.op, macs=info.macs,
                param_bytes=int(info.param_bytes), act_in_bytes=int(info.act_in_bytes),
                act_out_bytes=int(info.act_out_bytes), input_shapes=shape_text(info.input_shapes),
                output_shapes=shape_text(info.output_shapes), iterations=0, window_start_s=nan,
                window_end_s=nan, latency_s=nan, energy_j=nan, active_energy_j=nan,
                mean_power_w=nan, samples=0, coverage=0.0, flags=flags))
    return rows


def energy_uncertainty_j(power_w: float, latency: LoopLatency, coverage: float) -> float:
    """Half-width of a layer's stated energy uncertainty per call: the latency interval's
    half-width at the window's power, plus the uncovered share of the window taken as wholly
    unknown (it was filled at the covered part's mean power)."""
    spread = power_w * (latency.high_s - latency.low_s) / 2
    return float(spread + (1 - coverage) * power_w * latency.median_s)


def pair_records(raw: RawRun, chain: LayerChain, fit: Alignment, meter: Meter
                 ) -> tuple[PairRecord, ...]:
    """Energy and latency per call of every pair window."""
    if not raw.pair_windows:
        return ()
    starts = np.array([w.start_s for w in raw.pair_windows], dtype=np.float64)
    ends = np.array([w.end_s for w in raw.pair_windows], dtype=np.float64)
    stats = integrate(raw, fit.offset_s, starts, ends)
    truth = _truth(meter)
    records = []
    for k, w in enumerate(raw.pair_windows):
        a, b = chain.layers[w.first], chain.layers[w.second]
        lat, power = w.latency, float(stats["mean_power_w"][k])
        records.append(PairRecord(
            first_index=a.index, second_index=b.index, ops=f"{a.op}+{b.op}",
            iterations=w.iterations, latency_s=lat.median_s,
            energy_j=power * lat.median_s, mean_power_w=power,
            flags=tuple(joulefarm.flag_names(int(stats["flags"][k]))) + lat.flags,
            true_energy_j=(truth(w.start_s, w.end_s) / (w.end_s - w.start_s) * lat.median_s
                           if truth else None),
            latency_low_s=lat.low_s, latency_high_s=lat.high_s))
    return tuple(records)


def whole_record(raw: RawRun, fit: Alignment, meter: Meter, settings: MeasureSettings,
                 min_duration_s: float) -> WholeModelRecord:
    """Energy per inference over the whole-model window; latency percentiles of every call."""
    assert raw.whole is not None
    w = raw.whole
    stats = integrate(raw, fit.offset_s, np.array([w.start_s]), np.array([w.end_s]))
    n = w.iterations
    duration = w.end_s - w.start_s
    power, coverage = float(stats["mean_power_w"][0]), float(stats["coverage"][0])
    # Over the whole window at the covered part's mean power: a late meter read leaves a part
    # uncovered, which would otherwise read as energy not spent.
    energy = power * duration
    p50, p90, p99 = np.percentile(w.latencies_s, [50, 90, 99])
    truth = _truth(meter)
    flags = list(joulefarm.flag_names(int(stats["flags"][0])))
    if coverage < MIN_USABLE_COVERAGE:
        flags.append("low_coverage")
    if duration < min_duration_s:
        flags.append("min_duration_not_met")
    if n < settings.min_iterations:
        flags.append("min_iterations_not_met")
    return WholeModelRecord(
        iterations=n, window_start_s=w.start_s, window_end_s=w.end_s,
        latency_mean_s=duration / n, latency_p50_s=float(p50), latency_p90_s=float(p90),
        latency_p99_s=float(p99), energy_j=energy / n,
        active_energy_j=(energy - fit.idle_power_w * duration) / n,
        mean_power_w=power, samples=int(stats["samples"][0]),
        coverage=coverage, flags=tuple(flags),
        true_energy_j=truth(w.start_s, w.end_s) / n if truth else None)


def integrate_whole(raw: RawRun, meter: Meter, settings: MeasureSettings, model_sha256: str,
                    runtime: tuple[str, str]) -> BenchmarkResult:
    """The whole-mode result: one window, energy per inference, latency percentiles."""
    fit = align_and_baseline(raw)
    record = whole_record(raw, fit, meter, settings, settings.min_duration_s)
    return benchmark_result(raw, meter, settings, model_sha256, runtime, fit, whole=record)


def runtime_options(settings: MeasureSettings) -> dict[str, Any]:
    """How the interpreters of a run are configured (threads, XNNPACK, external delegate) and
    the shapes given for the model's inputs (``joulefarm.tflite.inputs.resolve_input_shapes``
    sizes them, in every runtime)."""
    return {"num_threads": settings.num_threads, "use_xnnpack": settings.use_xnnpack,
            "delegate_path": settings.delegate_path or None,
            "input_shapes": settings.input_shapes}


def _input_flags(result: BenchmarkResult, plan: InputPlan | None) -> BenchmarkResult:
    """The run flag ``batch_defaulted`` when an input's dynamic batch, given no shape, ran at
    1 (the input shape rule)."""
    if plan is None or not plan.batch_defaulted:
        return result
    return replace(result, flags=tuple(dict.fromkeys((*result.flags, "batch_defaulted"))))


def measure_layers(
    model_bytes: bytes,
    model_sha256: str,
    meter: Meter,
    settings: MeasureSettings,
    runtime: tuple[str, str],
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> BenchmarkResult:
    """The whole layer-mode benchmark of one model on this device."""
    if progress:
        progress(Progress("prepare", 0, 0, "splitting the model into layers"))

    stop = cancel or Cancel()

    def loading(k: int, n: int) -> None:
        stop.check()
        if progress:
            progress(Progress("prepare", k, n, "loading the layers' interpreters"))

    chain = LayerChain(model_bytes, **runtime_options(settings), on_load=loading,
                       check=stop.check)
    # Loaded before the meter starts, like the layers: only invokes run inside the trace.
    pairs = LayerPairs(chain, check=stop.check) if settings.pairs else None
    whole_model = WholeModel(model_bytes, **runtime_options(settings))
    raw = record_layers(chain, meter, settings, progress, whole_model, pairs, stop)
    return _input_flags(integrate_run(raw, chain, meter, settings, model_sha256, runtime),
                        chain.input_plan)


def measure_whole(
    model_bytes: bytes,
    model_sha256: str,
    meter: Meter,
    settings: MeasureSettings,
    runtime: tuple[str, str],
    progress: ProgressFn | None = None,
    cancel: Cancel | None = None,
) -> BenchmarkResult:
    """The whole-model benchmark (MLPerf style): warm-up, timed loop, energy per inference."""
    model = WholeModel(model_bytes, **runtime_options(settings))
    layers = model.run_layers(settings.seed)  # at the shapes the inputs run at
    macs = sum(x.macs or 0 for x in layers)
    moved = sum(x.act_in_bytes + x.act_out_bytes + x.param_bytes for x in layers)
    raw = record_whole(model, macs, moved, meter, settings, progress, cancel)
    return _input_flags(integrate_whole(raw, meter, settings, model_sha256, runtime),
                        model.input_plan)


def record_insitu(model: ProfiledModel, layers: list[LayerInfo], meter: Meter,
                  settings: MeasureSettings, progress: ProgressFn | None = None,
                  cancel: Cancel | None = None) -> tuple[RawRun, ProfileRun]:
    """Idle baseline, sync pattern, then the whole model looped with the per-op profiler on."""
    cancel = cancel or Cancel()
    model.warmup(settings.warmup_iterations)  # checks the profiler's clock mapping
    model.measure_overhead()                  # before the meter starts; lands in run.overhead
    started_unix = time.time()
    idle_window, busy_starts, busy_ends = _prelude(meter, settings, cancel)
    try:
        if progress:
            progress(Progress("insitu", 0, 1, f"looping for {settings.min_duration_s:g} s"))
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        run = model.run(settings.min_iterations, min_duration_s=settings.min_duration_s,
                        check=cancel.check)
        wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    except BaseException:
        _abandon(meter)
        raise
    # With more interpreter threads the work is not this thread's alone: no share.
    on_cpu = cpu / wall if settings.num_threads == 1 and wall > 0 else None
    by_node = {x.index: x for x in layers}
    # Ops of control-flow bodies (other subgraphs) run inside their parent op's window.
    main = run.subgraph == 0
    for start, end, node in zip(run.starts_s[main].tolist(), run.ends_s[main].tolist(),
                                run.node_index[main].tolist(), strict=True):
        info = by_node.get(node)  # the simulator needs to know what ran when
        meter.note_activity("layer", start, end, macs=(info.macs or 0) if info else 0,
                            bytes_moved=(info.act_in_bytes + info.act_out_bytes
                                         + info.param_bytes) if info else 0,
                            op=info.op if info else "")
    trace = _tail_and_stop(meter)
    if progress:
        progress(Progress("insitu", 1, 1, "integrating"))
    return RawRun(trace, idle_window, busy_starts, busy_ends, (), started_unix, time.time(),
                  on_cpu_share=on_cpu), run


def integrate_insitu(raw: RawRun, run: ProfileRun, layers: list[LayerInfo], meter: Meter,
                     settings: MeasureSettings, model_sha256: str, runtime: tuple[str, str]
                     ) -> BenchmarkResult:
    """Integrate every (op, iteration) window with rust_core, then average per node."""
    fit = align_and_baseline(raw)
    # XNNPACK's fused operators have no TFLite node; the ops of control-flow bodies (other
    # subgraphs) ran inside their parent op's window, which already counts them.
    mapped = (run.node_index >= 0) & (run.subgraph == 0)
    starts, ends, nodes = run.starts_s[mapped], run.ends_s[mapped], run.node_index[mapped]
    stats = integrate(raw, fit.offset_s, starts, ends)
    energy = np.asarray(stats["energy_j"], dtype=np.float64)
    samples = np.asarray(stats["samples"])
    coverage = np.asarray(stats["coverage"], dtype=np.float64)
    window_flags, durations = np.asarray(stats["flags"]), ends - starts
    many_truths = getattr(meter, "true_energies_j", None) if meter.description.simulated else None
    truth = many_truths(starts, ends) if many_truths else None
    # One pass over the windows grouped by node (sorted once), not one mask per layer: a run
    # has layers x iterations windows, and per-layer masks made this quadratic.
    order = np.argsort(nodes, kind="stable")
    sorted_nodes = nodes[order]
    group_starts = np.searchsorted(sorted_nodes, [x.index for x in layers], side="left")
    group_ends = np.searchsorted(sorted_nodes, [x.index for x in layers], side="right")
    records = []
    for info, lo, hi in zip(layers, group_starts.tolist(), group_ends.tolist(), strict=True):
        k = hi - lo
        if k == 0:  # folded weight-preparing nodes get no record
            continue
        sel = order[lo:hi]
        e, d = float(np.nansum(energy[sel])), float(durations[sel].sum())
        flags = {n for f in np.unique(window_flags[sel]) for n in joulefarm.flag_names(int(f))}
        if np.median(durations[sel]) < 2 * run.resolution_s:
            flags.add("below_timer_resolution")
        if info.macs is None:
            flags.add(NO_COST_FORMULA)
        if info.file_shapes_differ:
            flags.add(FILE_SHAPES_DIFFER)
        true_j = float(truth[sel].sum()) / k if truth is not None else None
        records.append(LayerRecord(
            index=info.index, op=info.op, macs=info.macs,
            param_bytes=int(info.param_bytes), act_in_bytes=int(info.act_in_bytes),
            act_out_bytes=int(info.act_out_bytes), input_shapes=shape_text(info.input_shapes),
            output_shapes=shape_text(info.output_shapes), iterations=k,
            window_start_s=float(starts[sel].min()), window_end_s=float(ends[sel].max()),
            latency_s=d / k, energy_j=e / k, active_energy_j=(e - fit.idle_power_w * d) / k,
            mean_power_w=e / d if d > 0 else float("nan"), samples=int(samples[sel].sum()),
            coverage=(float(np.average(coverage[sel], weights=durations[sel])) if d > 0
                      else float(coverage[sel].mean())),
            flags=tuple(sorted(flags)), true_energy_j=true_j))
    result = benchmark_result(raw, meter, settings, model_sha256, runtime, fit,
                              layers=tuple(records))
    extra = ("delegate_ops_unmapped",) if ((run.node_index < 0) & (run.subgraph == 0)).any() \
        else ()
    return replace(result, flags=tuple(dict.fromkeys(result.flags + extra)))


def measure_insitu(model_bytes: bytes, model_sha256: str, meter: Meter,
                   settings: MeasureSettings, runtime: tuple[str, str],
                   progress: ProgressFn | None = None, cancel: Cancel | None = None
                   ) -> BenchmarkResult:
    """The whole model in situ: per-op windows from the runtime's profiler, energy per op.
    Raises ProfilerUnavailable (before the meter starts) when no profiler works here."""
    if settings.delegate_path:
        raise ProfilerUnavailable("in-situ profiling with an external delegate is not supported; "
                                  "use --mode layers or whole")
    # Each layer's features at the shapes the inputs run at (the file's, unless resized).
    layers = run_layers(model_bytes, seed=settings.seed, **runtime_options(settings))
    if progress:
        progress(Progress("prepare", 0, 1, "loading the model in the profiler"))
    with open_profiled_model(model_bytes, num_threads=settings.num_threads,
                             use_xnnpack=settings.use_xnnpack, seed=settings.seed,
                             input_shapes=settings.input_shapes) as model:
        raw, run = record_insitu(model, layers, meter, settings, progress, cancel)
    result = integrate_insitu(raw, run, layers, meter, settings, model_sha256,
                              (f"{runtime[0]} ({run.backend})", runtime[1]))
    return _input_flags(result, model.input_plan)


def fit_to_meter(settings: MeasureSettings, sample_rate_hz: float) -> MeasureSettings:
    """Stretch windows that would be too short for the meter: every window (each layer, the
    idle baseline, the whole-model loop) spans at least ``MIN_WINDOW_PERIODS`` samples."""
    if not sample_rate_hz > 0:
        return settings
    floor = MIN_WINDOW_PERIODS / sample_rate_hz
    return replace(settings,
                   min_layer_duration_s=max(settings.min_layer_duration_s, floor),
                   idle_duration_s=max(settings.idle_duration_s, floor + 2 * IDLE_EDGE_MARGIN_S),
                   min_duration_s=max(settings.min_duration_s, floor))


def measure(
    model_bytes: bytes,
    model_sha256: str,
    meter: Meter,
    settings: MeasureSettings,
    runtime: tuple[str, str],
    progress: ProgressFn | None = None,
    sysfs_root: Path = Path("/"),
    host_lock: Path | None = None,
    lease_wait_s: float = MAX_LEASE_WAIT_S,
    cancel: Cancel | None = None,
) -> BenchmarkResult:
    """Run ``settings.mode``, with CPU clocks and temperatures read before and after: a run
    that throttled is flagged, never silently averaged in. The whole run holds the host's
    measuring lease (``agent.host_lease``, ``host_lock``): no other agent on this machine
    measures, or prepares a model, meanwhile. Setting ``cancel`` stops it within about a
    second (``agent.cancel``), with ``Cancelled``. Train mode is
    ``agent.measure_train.measure_train``'s result (its rows in ``phases``)."""
    cancel = cancel or Cancel()
    modes = {Mode.WHOLE: measure_whole, Mode.LAYERS: measure_layers, Mode.INSITU: measure_insitu}
    if settings.mode == Mode.TRAIN:
        # Imported here: measure_train builds on this module's recording functions.
        from agent.measure_train import measure_train

        return measure_train(model_bytes, model_sha256, meter, settings, runtime, progress,
                             sysfs_root, host_lock, lease_wait_s, cancel).result
    if settings.mode not in Mode.values():
        raise InputError(f"unknown measuring mode {settings.mode!r} (known: "
                         f"{', '.join(Mode.values())})")
    run = modes[Mode(settings.mode)]

    def one_run(fitted: MeasureSettings) -> BenchmarkResult:
        return run(model_bytes, model_sha256, meter, fitted, runtime, progress, cancel)

    return measured_under_lease(one_run, meter, settings, progress, sysfs_root, host_lock,
                                lease_wait_s, cancel)


def measured_under_lease(
    run: Callable[[MeasureSettings], BenchmarkResult], meter: Meter, settings: MeasureSettings,
    progress: ProgressFn | None, sysfs_root: Path, host_lock: Path | None, lease_wait_s: float,
    cancel: Cancel,
) -> BenchmarkResult:
    """``run(settings fitted to the meter)`` under the host's measuring lease, the thread
    switch interval shortened while it records, CPU conditions read before and after and
    compared (``measure``)."""
    settings = fit_to_meter(settings, meter.description.sample_rate_hz)

    def waiting(waited_s: float) -> None:
        cancel.check()
        if progress:
            progress(Progress("waiting", 0, 0, "another agent on this host is measuring; "
                                               f"waiting for it ({waited_s:.0f} s)"))

    with measuring_lease(host_lock, wait_s=lease_wait_s, on_wait=waiting,
                         check=cancel.check) as contended:
        before = read_conditions(sysfs_root)
        switch = sys.getswitchinterval()
        sys.setswitchinterval(RECORDING_SWITCH_INTERVAL_S)
        try:
            result = run(settings)
        finally:
            sys.setswitchinterval(switch)
        after = read_conditions(sysfs_root)
    extra = ("host_contended",) if contended else ()
    flags = tuple(dict.fromkeys(result.flags + compare_conditions(before, after) + extra))
    return replace(result, flags=flags, conditions_before=before.as_dict(),
                   conditions_after=after.as_dict())
