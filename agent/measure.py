"""Measure a model layer by layer while the meter records, then turn the trace into energy.

The run, on the agent's clock:

    idle baseline | sync pattern (coded busy/idle) | quiet gap | layer 0 window | layer 1 ...

Each layer's single-op sub-model is looped alone, fed exactly the inputs it sees inside the
real model, until its window lasts ``min_layer_duration_s`` and holds ``min_iterations`` calls,
so a window spans many meter samples even when one call is far shorter than a sample period.
The sync pattern gives the meter-to-agent clock offset (``joulefarm.align_offset``); the idle
segment gives the baseline; ``joulefarm.integrate_windows`` integrates every window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import joulefarm
from agent.meters.base import Meter, Trace
from agent.models.chain import LayerChain
from agent.results import BenchmarkResult, LayerRecord, MeasureSettings, Progress

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
# Below this correlation the alignment is reported as weak.
MIN_ALIGNMENT_CORRELATION = 0.9

ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class LayerWindow:
    """When one layer ran (agent clock, seconds) and what work it did per call."""

    index: int
    start_s: float
    end_s: float
    iterations: int


@dataclass(frozen=True)
class RawRun:
    """Everything recorded in one run, before integration."""

    trace: Trace
    idle_window: tuple[float, float]
    busy_starts: np.ndarray
    busy_ends: np.ndarray
    windows: tuple[LayerWindow, ...]
    started_unix_s: float
    finished_unix_s: float


def _spin_until(deadline: float) -> None:
    # A busy loop, not sleep: the sync pattern must draw power while "busy".
    while time.perf_counter() < deadline:
        pass


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


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


def record_layers(
    chain: LayerChain,
    meter: Meter,
    settings: MeasureSettings,
    progress: ProgressFn | None = None,
) -> RawRun:
    """Run the idle baseline, the sync pattern and every layer while ``meter`` records."""
    chain.feed(chain.random_inputs(settings.seed))
    n = len(chain.layers)
    started_unix = time.time()
    meter.start()
    t_idle0 = time.perf_counter()
    _sleep_until(t_idle0 + settings.idle_duration_s)
    t_idle1 = time.perf_counter()
    meter.note_activity("idle", t_idle0, t_idle1)
    busy_starts, busy_ends = run_sync_pattern(meter)
    t_guard = time.perf_counter()
    _sleep_until(t_guard + SYNC_GUARD_S)
    meter.note_activity("idle", t_guard, time.perf_counter())

    windows = []
    for i in range(n):
        if progress:
            progress(Progress("layers", i, n, f"layer {i} {chain.layers[i].op}"))
        invoke = chain.invokers[i]  # the interpreter's bound invoke: no lookup per call
        for _ in range(settings.warmup_iterations):
            invoke()
        count = 0
        start = time.perf_counter()
        deadline = start + settings.min_layer_duration_s
        # The hot loop: a bare invoke and a clock read per call.
        while True:
            invoke()
            count += 1
            now = time.perf_counter()
            if count >= settings.min_iterations and now >= deadline:
                break
        end = now
        meter.note_activity("layer", start, end, macs=chain.layers[i].macs * count,
                            bytes_moved=_layer_bytes(chain, i) * count)
        windows.append(LayerWindow(i, start, end, count))
    # A short idle tail, so the last window ends well inside the trace.
    t_tail = time.perf_counter()
    _sleep_until(t_tail + TAIL_S)
    meter.note_activity("idle", t_tail, time.perf_counter())
    trace = meter.stop()
    if progress:
        progress(Progress("layers", n, n, "integrating"))
    return RawRun(trace, (t_idle0, t_idle1), busy_starts, busy_ends, tuple(windows),
                  started_unix, time.time())


def _shape_text(shapes: tuple[tuple[int, ...], ...]) -> str:
    return ",".join("x".join(str(d) for d in s) for s in shapes)


def integrate_run(
    raw: RawRun, chain: LayerChain, meter: Meter, settings: MeasureSettings, model_sha256: str,
    runtime: tuple[str, str],
) -> BenchmarkResult:
    """Align the trace to the agent clock and integrate every layer window with rust_core."""
    trace = raw.trace
    fs = trace.sample_rate_hz
    run_flags: list[str] = []
    alignment = joulefarm.align_offset(
        trace.power_w, fs, raw.busy_starts, raw.busy_ends, t0=trace.t0_s,
        max_offset_s=MAX_CLOCK_OFFSET_S,
    )
    offset = float(alignment["offset_s"])
    correlation = float(alignment["correlation"])
    if not correlation >= MIN_ALIGNMENT_CORRELATION:
        run_flags.append("alignment_weak")

    idle_start = raw.idle_window[0] + IDLE_EDGE_MARGIN_S
    idle_end = raw.idle_window[1] - IDLE_EDGE_MARGIN_S
    idle_w = float(joulefarm.idle_power(
        trace.power_w, fs, np.array([idle_start]), np.array([idle_end]), t0=trace.t0_s,
        offset_s=offset,
    ))
    if not np.isfinite(idle_w):
        run_flags.append("no_idle_baseline")

    starts = np.array([w.start_s for w in raw.windows], dtype=np.float64)
    ends = np.array([w.end_s for w in raw.windows], dtype=np.float64)
    stats = joulefarm.integrate_windows(trace.power_w, fs, starts, ends, t0=trace.t0_s,
                                        offset_s=offset)
    truth = getattr(meter, "true_energy_j", None) if meter.description.simulated else None
    layers = []
    for k, w in enumerate(raw.windows):
        info = chain.layers[w.index]
        duration = w.end_s - w.start_s
        energy = float(stats["energy_j"][k])
        layers.append(LayerRecord(
            index=info.index,
            op=info.op,
            macs=int(info.macs),
            param_bytes=int(info.param_bytes),
            act_in_bytes=int(info.act_in_bytes),
            act_out_bytes=int(info.act_out_bytes),
            input_shapes=_shape_text(info.input_shapes),
            output_shapes=_shape_text(info.output_shapes),
            iterations=w.iterations,
            window_start_s=w.start_s,
            window_end_s=w.end_s,
            latency_s=duration / w.iterations,
            energy_j=energy / w.iterations,
            active_energy_j=(energy - idle_w * duration) / w.iterations,
            mean_power_w=float(stats["mean_power_w"][k]),
            samples=int(stats["samples"][k]),
            coverage=float(stats["coverage"][k]),
            flags=tuple(joulefarm.flag_names(int(stats["flags"][k]))),
            true_energy_j=truth(w.start_s, w.end_s) / w.iterations if truth else None,
        ))
    return BenchmarkResult(
        model_sha256=model_sha256,
        mode=settings.mode,
        meter=meter.description,
        runtime_name=runtime[0],
        runtime_version=runtime[1],
        num_threads=settings.num_threads,
        idle_power_w=idle_w,
        clock_offset_s=offset,
        alignment_correlation=correlation,
        started_unix_s=raw.started_unix_s,
        finished_unix_s=raw.finished_unix_s,
        layers=tuple(layers),
        flags=tuple(run_flags),
        true_clock_offset_s=getattr(meter, "clock_offset_s", None)
        if meter.description.simulated else None,
    )


def measure_layers(
    model_bytes: bytes,
    model_sha256: str,
    meter: Meter,
    settings: MeasureSettings,
    runtime: tuple[str, str],
    progress: ProgressFn | None = None,
) -> BenchmarkResult:
    """The whole layer-mode benchmark of one model on this device."""
    if progress:
        progress(Progress("prepare", 0, 1, "splitting the model into layers"))
    chain = LayerChain(model_bytes, num_threads=settings.num_threads)
    raw = record_layers(chain, meter, settings, progress)
    return integrate_run(raw, chain, meter, settings, model_sha256, runtime)
