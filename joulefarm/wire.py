"""The one place where protobuf messages and agent dataclasses meet (both directions)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import MISSING, fields

import numpy as np

from joulefarm.enums import Mode
from joulefarm.results import (
    LAYER_NUMERIC,
    LAYER_TEXT,
    BenchmarkResult,
    DecimatedTrace,
    DeviceFacts,
    LayerRecord,
    LayerTable,
    MeasureSettings,
    MeterDescription,
    PairRecord,
    PhaseRecord,
    Progress,
    WholeModelRecord,
)
from protos.joulefarm.v1 import agent_pb2 as pb

UPLOAD_CHUNK_BYTES = 1024 * 1024
"""Bytes of model in each ``UploadModelChunk``: uploads never need a large message."""
MAX_REQUEST_BYTES = 2 * UPLOAD_CHUNK_BYTES
"""Largest message an agent receives (a chunk, or a benchmark request): a caller without the
token can make it buffer no more than this per call."""
MAX_RESULT_BYTES = 256 * 1024 * 1024
"""Largest message an agent sends and the controller receives: a result of 100,000 layers
(its per-layer columns and decimated trace) fits many times over."""
MAX_NAME_CHARS = 512
"""Longest model name an agent accepts in an upload."""
_LOGGED_NAME_CHARS = 120


def loggable(name: str) -> str:
    """``name`` as it may appear in a log line: control characters escaped (a newline in a
    model name could forge a log line), and cut to a readable length."""
    cut = name if len(name) <= _LOGGED_NAME_CHARS else name[:_LOGGED_NAME_CHARS] + "..."
    return cut.encode("unicode_escape").decode("ascii") if not cut.isprintable() else cut


_MODE_TO_PROTO = {Mode.LAYERS.value: pb.MEASURE_MODE_LAYERS,
                  Mode.WHOLE.value: pb.MEASURE_MODE_WHOLE,
                  Mode.INSITU.value: pb.MEASURE_MODE_INSITU,
                  Mode.TRAIN.value: pb.MEASURE_MODE_TRAIN}
_MODE_FROM_PROTO = {v: k for k, v in _MODE_TO_PROTO.items()}


def mode_to_proto(mode: str) -> pb.MeasureMode:
    try:
        return _MODE_TO_PROTO[mode]
    except KeyError:
        known = ", ".join(_MODE_TO_PROTO)
        raise ValueError(f"unknown measuring mode {mode!r} (known: {known})") from None


def mode_from_proto(value: pb.MeasureMode) -> str:
    try:
        return _MODE_FROM_PROTO[value]
    except KeyError:
        raise ValueError(f"unsupported measuring mode {value}") from None


def meter_to_proto(m: MeterDescription) -> pb.MeterInfo:
    return pb.MeterInfo(kind=m.kind, simulated=m.simulated, sample_rate_hz=m.sample_rate_hz,
                        profile=m.profile, description=m.description)


def meter_from_proto(m: pb.MeterInfo) -> MeterDescription:
    return MeterDescription(kind=m.kind, simulated=m.simulated, sample_rate_hz=m.sample_rate_hz,
                            profile=m.profile, description=m.description)


def facts_to_proto(f: DeviceFacts) -> pb.DeviceFacts:
    return pb.DeviceFacts(
        device_name=f.device_name, platform=f.platform, machine=f.machine,
        cpu_model=f.cpu_model, cpu_count=f.cpu_count, memory_bytes=f.memory_bytes, os=f.os,
        kernel=f.kernel, python_version=f.python_version, runtime_name=f.runtime_name,
        runtime_version=f.runtime_version, agent_version=f.agent_version,
        rust_core_profile=f.rust_core_profile, meters=[meter_to_proto(m) for m in f.meters],
        fingerprint=f.fingerprint, cpu_max_khz=f.cpu_max_khz, governors=list(f.governors),
        thermal_zones=list(f.thermal_zones),
    )


def facts_from_proto(f: pb.DeviceFacts) -> DeviceFacts:
    return DeviceFacts(
        device_name=f.device_name, platform=f.platform, machine=f.machine,
        cpu_model=f.cpu_model, cpu_count=f.cpu_count, memory_bytes=f.memory_bytes, os=f.os,
        kernel=f.kernel, python_version=f.python_version, runtime_name=f.runtime_name,
        runtime_version=f.runtime_version, agent_version=f.agent_version,
        rust_core_profile=f.rust_core_profile,
        meters=tuple(meter_from_proto(m) for m in f.meters), fingerprint=f.fingerprint,
        cpu_max_khz=f.cpu_max_khz, governors=tuple(f.governors),
        thermal_zones=tuple(f.thermal_zones),
    )


def settings_to_proto(model_sha256: str, s: MeasureSettings) -> pb.RunBenchmarkRequest:
    return pb.RunBenchmarkRequest(
        model_sha256=model_sha256, mode=mode_to_proto(s.mode), num_threads=s.num_threads,
        warmup_iterations=s.warmup_iterations, min_layer_duration_s=s.min_layer_duration_s,
        min_iterations=s.min_iterations, idle_duration_s=s.idle_duration_s, seed=s.seed,
        min_duration_s=s.min_duration_s, use_xnnpack=s.use_xnnpack, delegate_path=s.delegate_path,
        pairs=s.pairs,
        input_shapes=[pb.InputShape(input=key, dims=list(shape)) for key, shape in s.input_shapes],
    )


def settings_from_proto(r: pb.RunBenchmarkRequest) -> MeasureSettings:
    """Unset (zero) fields take the defaults of MeasureSettings."""
    d = MeasureSettings()
    return MeasureSettings(
        mode=mode_from_proto(r.mode) if r.mode else d.mode,
        num_threads=r.num_threads or d.num_threads,
        warmup_iterations=r.warmup_iterations or d.warmup_iterations,
        min_layer_duration_s=r.min_layer_duration_s or d.min_layer_duration_s,
        min_iterations=r.min_iterations or d.min_iterations,
        idle_duration_s=r.idle_duration_s or d.idle_duration_s,
        seed=r.seed,
        min_duration_s=r.min_duration_s or d.min_duration_s,
        use_xnnpack=r.use_xnnpack,
        delegate_path=r.delegate_path,
        pairs=r.pairs,
        input_shapes=tuple((x.input, tuple(x.dims)) for x in r.input_shapes),
    )


def progress_to_proto(p: Progress) -> pb.RunBenchmarkResponse:
    return pb.RunBenchmarkResponse(
        progress=pb.Progress(stage=p.stage, done=p.done, total=p.total, message=p.message))


def progress_from_proto(p: pb.Progress) -> Progress:
    return Progress(stage=p.stage, done=p.done, total=p.total, message=p.message)


def layers_to_proto(table: LayerTable) -> pb.LayerColumns:
    c = table.columns
    msg = pb.LayerColumns(**{k: c[k].tolist() for k in LAYER_NUMERIC},
                          **{k: c[k] for k in LAYER_TEXT})
    msg.flags.extend(";".join(f) for f in c["flags"])
    return msg


def layers_from_proto(m: pb.LayerColumns) -> LayerTable:
    n = len(m.index)
    columns: dict[str, object] = {k: _column_or_default(getattr(m, k), n, k)
                                  for k in LAYER_NUMERIC}
    columns.update({k: list(getattr(m, k)) for k in LAYER_TEXT})
    columns["flags"] = [tuple(f.split(";")) if f else () for f in m.flags]
    return LayerTable(columns)


def _column_or_default(values: Sequence[float], n: int, name: str) -> np.ndarray:
    """A column as sent; one an older agent did not send (empty while the table has rows) is
    its field's default (NaN, 0), so the controller still reads that agent's results."""
    if len(values) == 0 and n > 0 and name in _LAYER_DEFAULTS:
        return np.full(n, _LAYER_DEFAULTS[name], dtype=LAYER_NUMERIC[name])
    return np.asarray(values)


_LAYER_DEFAULTS = {f.name: f.default for f in fields(LayerRecord)
                   if f.default is not MISSING and f.name in LAYER_NUMERIC}

_PAIR_NUMBERS = ("first_index", "second_index", "iterations", "latency_s", "energy_j",
                 "mean_power_w")


def pairs_to_proto(pairs: tuple[PairRecord, ...]) -> pb.PairColumns:
    msg = pb.PairColumns(**{k: [getattr(p, k) for p in pairs]
                            for k in (*_PAIR_NUMBERS, "latency_low_s", "latency_high_s")},
                         ops=[p.ops for p in pairs])
    msg.flags.extend(";".join(p.flags) for p in pairs)
    msg.true_energy_j.extend(float("nan") if p.true_energy_j is None else p.true_energy_j
                             for p in pairs)
    return msg


def pairs_from_proto(m: pb.PairColumns) -> tuple[PairRecord, ...]:
    return tuple(
        PairRecord(**{k: getattr(m, k)[i] for k in _PAIR_NUMBERS}, ops=m.ops[i],
                   flags=tuple(m.flags[i].split(";")) if m.flags[i] else (),
                   true_energy_j=None if np.isnan(m.true_energy_j[i]) else m.true_energy_j[i],
                   # An older agent sends no interval: unmeasured.
                   latency_low_s=m.latency_low_s[i] if len(m.latency_low_s) else math.nan,
                   latency_high_s=m.latency_high_s[i] if len(m.latency_high_s) else math.nan)
        for i in range(len(m.first_index)))


def phases_to_proto(phases: tuple[PhaseRecord, ...]) -> pb.PhaseColumns:
    return pb.PhaseColumns(
        layer=[-1 if p.layer is None else p.layer for p in phases], op=[p.op for p in phases],
        phase=[p.phase for p in phases], ops=[p.ops for p in phases],
        events=[p.events for p in phases], latency_s=[p.latency_s for p in phases],
        energy_j=[p.energy_j for p in phases],
        true_energy_j=[math.nan if p.true_energy_j is None else p.true_energy_j
                       for p in phases])


def phases_from_proto(m: pb.PhaseColumns) -> tuple[PhaseRecord, ...]:
    n = len(m.layer)
    lengths = {len(getattr(m, k)) for k in ("op", "phase", "ops", "events", "latency_s",
                                             "energy_j", "true_energy_j")}
    if lengths - {n}:
        raise ValueError(f"phase columns of different lengths ({n} layers, {sorted(lengths)})")
    return tuple(
        PhaseRecord(layer=None if m.layer[i] < 0 else m.layer[i], op=m.op[i], phase=m.phase[i],
                    ops=m.ops[i], events=m.events[i], latency_s=m.latency_s[i],
                    energy_j=m.energy_j[i],
                    true_energy_j=None if math.isnan(m.true_energy_j[i])
                    else m.true_energy_j[i])
        for i in range(n))


_WHOLE_FIELDS = ("iterations", "window_start_s", "window_end_s", "latency_mean_s",
                 "latency_p50_s", "latency_p90_s", "latency_p99_s", "energy_j",
                 "active_energy_j", "mean_power_w", "samples", "coverage")


def whole_to_proto(w: WholeModelRecord) -> pb.WholeModelResult:
    msg = pb.WholeModelResult(**{k: getattr(w, k) for k in _WHOLE_FIELDS}, flags=list(w.flags))
    if w.true_energy_j is not None:
        msg.true_energy_j = w.true_energy_j
    return msg


def whole_from_proto(m: pb.WholeModelResult) -> WholeModelRecord:
    return WholeModelRecord(
        **{k: getattr(m, k) for k in _WHOLE_FIELDS}, flags=tuple(m.flags),
        true_energy_j=m.true_energy_j if m.HasField("true_energy_j") else None)


def trace_to_proto(t: DecimatedTrace) -> pb.DecimatedTrace:
    return pb.DecimatedTrace(clock=t.clock, t0_s=t.t0_s, bucket_s=t.bucket_s,
                             min_w=t.min_w.tolist(), max_w=t.max_w.tolist(),
                             mean_w=t.mean_w.tolist(), raw_samples=t.raw_samples)


def trace_from_proto(m: pb.DecimatedTrace) -> DecimatedTrace:
    return DecimatedTrace(clock=m.clock, t0_s=m.t0_s, bucket_s=m.bucket_s,
                          min_w=np.asarray(m.min_w, dtype=np.float32),
                          max_w=np.asarray(m.max_w, dtype=np.float32),
                          mean_w=np.asarray(m.mean_w, dtype=np.float32),
                          raw_samples=m.raw_samples)


def result_to_proto(r: BenchmarkResult) -> pb.RunBenchmarkResponse:
    msg = pb.BenchmarkResult(
        model_sha256=r.model_sha256, mode=mode_to_proto(r.mode), meter=meter_to_proto(r.meter),
        runtime_name=r.runtime_name, runtime_version=r.runtime_version,
        num_threads=r.num_threads, idle_power_w=r.idle_power_w,
        clock_offset_s=r.clock_offset_s, alignment_correlation=r.alignment_correlation,
        started_unix_s=r.started_unix_s, finished_unix_s=r.finished_unix_s,
        layers=layers_to_proto(r.layers), flags=list(r.flags),
        conditions_before=r.conditions_before, conditions_after=r.conditions_after,
    )
    if r.pairs:
        msg.pairs.CopyFrom(pairs_to_proto(r.pairs))
    if r.phases:
        msg.phases.CopyFrom(phases_to_proto(r.phases))
    if r.true_clock_offset_s is not None:
        msg.true_clock_offset_s = r.true_clock_offset_s
    if r.whole is not None:
        msg.whole.CopyFrom(whole_to_proto(r.whole))
    if r.trace is not None:
        msg.trace.CopyFrom(trace_to_proto(r.trace))
    return pb.RunBenchmarkResponse(result=msg)


def result_from_proto(m: pb.BenchmarkResult) -> BenchmarkResult:
    return BenchmarkResult(
        model_sha256=m.model_sha256, mode=mode_from_proto(m.mode),
        meter=meter_from_proto(m.meter), runtime_name=m.runtime_name,
        runtime_version=m.runtime_version, num_threads=m.num_threads,
        idle_power_w=m.idle_power_w, clock_offset_s=m.clock_offset_s,
        alignment_correlation=m.alignment_correlation, started_unix_s=m.started_unix_s,
        finished_unix_s=m.finished_unix_s, layers=layers_from_proto(m.layers),
        flags=tuple(m.flags),
        true_clock_offset_s=m.true_clock_offset_s if m.HasField("true_clock_offset_s") else None,
        whole=whole_from_proto(m.whole) if m.HasField("whole") else None,
        conditions_before=dict(m.conditions_before), conditions_after=dict(m.conditions_after),
        trace=trace_from_proto(m.trace) if m.HasField("trace") else None,
        pairs=pairs_from_proto(m.pairs), phases=phases_from_proto(m.phases),
    )
