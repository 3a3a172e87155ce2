"""Train mode: the energy of one on-device training step, per layer and phase.

A trainable model (``joulefarm.tflite.training``) has a ``train`` signature whose every op is
tagged with its layer and phase (forward, loss, backward-activation, backward-input,
backward-weights, update, ...). The run is the in-situ one (``agent.measure.record_insitu``)
on that signature: idle baseline, sync pattern, warm-up steps, then the step looped on one
fixed seeded batch for ``min_duration_s`` and ``min_iterations`` steps with the per-op
profiler on. The step's energy and latency come from the whole loop's window (as whole mode's
energy per inference); each op event's energy from its own window, summed per (layer, phase).

The (layer, phase) rows are ``BenchmarkResult.phases``: sent by the agent (``PhaseColumns``)
and stored in ``phase_measurements``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from agent.cancel import Cancel
from agent.host_lease import MAX_WAIT_S as MAX_LEASE_WAIT_S
from agent.measure import (
    ProgressFn,
    RawRun,
    WholeWindow,
    align_and_baseline,
    benchmark_result,
    integrate,
    measured_under_lease,
    record_insitu,
    whole_record,
)
from agent.meters.base import Meter
from agent.runtimes.profiler import ProfileRun, open_profiled_model
from agent.runtimes.train_step import TrainStep, train_step
from joulefarm.enums import Mode
from joulefarm.errors import InputError
from joulefarm.results import TRAIN_PHASE_GROUPS, BenchmarkResult, MeasureSettings, PhaseRecord
from joulefarm.tflite.parse import read_layers


@dataclass(frozen=True)
class TrainResult:
    """A train-mode run: ``result.whole`` is the step (energy and latency per training step,
    ``iterations`` steps), ``result.phases`` the per (layer, phase) rows."""

    result: BenchmarkResult

    @property
    def phases(self) -> tuple[PhaseRecord, ...]:
        return self.result.phases

    @property
    def train_ops(self) -> int:
        """Ops of the train subgraph; every one is counted in one row's ``ops``."""
        return sum(r.ops for r in self.phases)

    @property
    def attributed_latency_s(self) -> float:
        """Sum of every op window per step: against ``result.whole.latency_mean_s`` it is the
        additivity check (the rest is the runtime's work between ops and the loop's)."""
        return sum(r.latency_s for r in self.phases)

    def split(self, layer: int | None) -> dict[str, tuple[float, float]]:
        """(energy J, latency s) per step of ``layer``'s forward, backward and update."""
        return {name: (sum(r.energy_j for r in self.phases
                           if r.layer == layer and r.phase in phases),
                       sum(r.latency_s for r in self.phases
                           if r.layer == layer and r.phase in phases))
                for name, phases in TRAIN_PHASE_GROUPS.items()}


def phase_records(raw: RawRun, run: ProfileRun, step: TrainStep, meter: Meter, offset_s: float
                  ) -> tuple[PhaseRecord, ...]:
    """Every op event of the train subgraph integrated, then summed per (layer, op, phase)
    (``TrainStep.tags``) and divided by the steps."""
    tags = step.tags
    main = (run.subgraph == 0) & (run.node_index >= 0)
    starts, ends, nodes = run.starts_s[main], run.ends_s[main], run.node_index[main]
    if len(nodes) and int(nodes.max()) >= len(tags):
        raise RuntimeError(f"the profiler reported node {int(nodes.max())} of a train subgraph "
                           f"of {len(tags)} ops")
    energy = np.nan_to_num(np.asarray(integrate(raw, offset_s, starts, ends)["energy_j"],
                                      dtype=np.float64))
    many_truths = getattr(meter, "true_energies_j", None) if meter.description.simulated else None
    truth = np.asarray(many_truths(starts, ends)) if many_truths else None
    keys = sorted(set(tags), key=lambda k: (-1 if k[0] is None else k[0], k[1], k[2]))
    group = {key: k for k, key in enumerate(keys)}
    of_node = np.array([group[tag] for tag in tags], np.int64)
    event_group = of_node[nodes]
    size = len(keys)
    steps = max(run.iterations, 1)
    energy_sum = np.bincount(event_group, weights=energy, minlength=size)
    time_sum = np.bincount(event_group, weights=ends - starts, minlength=size)
    truth_sum = (np.bincount(event_group, weights=truth, minlength=size)
                 if truth is not None else None)
    op_count = np.bincount(of_node, minlength=size)
    event_count = np.bincount(event_group, minlength=size)
    return tuple(
        PhaseRecord(layer=layer, op=op, phase=phase, ops=int(op_count[k]),
                    events=int(event_count[k]), latency_s=float(time_sum[k]) / steps,
                    energy_j=float(energy_sum[k]) / steps,
                    true_energy_j=(float(truth_sum[k]) / steps if truth_sum is not None
                                   else None))
        for k, (layer, op, phase) in enumerate(keys))


def _measure_step(step: TrainStep, model_sha256: str, meter: Meter, settings: MeasureSettings,
                  runtime: tuple[str, str], progress: ProgressFn | None, cancel: Cancel
                  ) -> TrainResult:
    layers = read_layers(step.model_bytes)  # op features of the train subgraph, for the meter
    with open_profiled_model(step.model_bytes, num_threads=settings.num_threads,
                             use_xnnpack=False, inputs=step.inputs) as model:
        raw, run = record_insitu(model, layers, meter, settings, progress, cancel)
    # The step loop as whole mode's window: energy and latency per step.
    whole = WholeWindow(float(run.inference_starts_s[0]), float(run.inference_ends_s[-1]),
                        run.inference_ends_s - run.inference_starts_s)
    raw = replace(raw, whole=whole)
    fit = align_and_baseline(raw)
    record = whole_record(raw, fit, meter, settings, settings.min_duration_s)
    phases = phase_records(raw, run, step, meter, fit.offset_s)
    result = benchmark_result(raw, meter, settings, model_sha256,
                              (f"{runtime[0]} ({run.backend})", runtime[1]), fit, whole=record)
    return TrainResult(replace(result, phases=phases))


def measure_train(
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
) -> TrainResult:
    """Measure one training step of a trainable model (``settings.mode`` must be ``train``),
    as ``agent.measure.measure`` measures the other modes: under the host's lease, with the
    CPU conditions read before and after. ``ModelError`` for a model without a ``train``
    signature (or whose train ops are not all builtin), ``InputError`` for XNNPACK or a
    delegate (they fuse the ops that per-op attribution needs one by one)."""
    if settings.mode != Mode.TRAIN:
        raise InputError(f"measure_train measures mode train, not {settings.mode!r}")
    if settings.use_xnnpack or settings.delegate_path:
        raise InputError("train mode attributes every builtin op: XNNPACK and external "
                         "delegates fuse them; run it without")
    step = train_step(model_bytes, settings.seed)  # refuses a model it cannot train
    stop = cancel or Cancel()
    measured: list[TrainResult] = []  # the run's rows, beside the result the lease returns

    def run(fitted: MeasureSettings) -> BenchmarkResult:
        done = _measure_step(step, model_sha256, meter, fitted, runtime, progress, stop)
        measured.append(done)
        return done.result

    result = measured_under_lease(run, meter, settings, progress, sysfs_root, host_lock,
                                  lease_wait_s, stop)
    return TrainResult(replace(result, phases=measured[-1].phases))

