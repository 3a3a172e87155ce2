"""Per-layer training energy by THOR's subtraction method, beside the per-op events.

``measure_prefixes`` makes the model's trainable prefixes (its first k layers, k = 1..n, MSE
loss: ``joulefarm.tflite.training.prefixes``), measures each one's training step with
``measure_train`` (each with its own meter from ``meter_factory``), and gives per layer:

- the subtraction method's energy and latency, E(k) - E(k-1) of the steps
  (``joulefarm.subtraction``): what a meter too slow for single ops can give;
- the per-op events' energy and latency, summed over the layer's phases, from the full
  model's run (prefix n *is* the full model with the same MSE loss, so its run serves both:
  one step for the subtraction's E(n), its op events for the reference);
- with a simulated meter, the simulator's truth of that layer's op windows, and the truth of
  the subtraction (the difference of the steps' true energies): the first says how far the
  subtraction is from the layer's own cost, the second how much of that is the meter's error
  rather than the method's.

The events' additivity (their per-layer sum over the full model's step) says how much of the
step the per-op attribution leaves outside every layer: the loss, the optimizer's per-step
work, the runtime between ops. The subtraction puts all of it somewhere (the differences add
up to E(n)); the events put it nowhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from agent.measure import ProgressFn
from agent.measure_train import TrainResult, measure_train
from agent.meters.base import Meter
from joulefarm import subtraction
from joulefarm.errors import InputError
from joulefarm.results import CPU_CONTENDED, MeasureSettings, Progress
from joulefarm.tflite.training import training_info
from joulefarm.tflite.training.optimizers import Optimizer
from joulefarm.tflite.training.prefixes import baseline_model, dead_layers, trainable_prefixes

MAX_ROUNDS = 100
MeterFactory = Callable[[int], Meter]
"""A fresh meter for prefix k (a simulated one may be seeded by k)."""


@dataclass(frozen=True)
class PrefixStep:
    """One prefix's training step, as measured."""

    k: int
    """The prefix's layers: the model's first k."""
    energy_j: float
    """Energy of the typical step: the loop's mean power times its median step latency, of
    the undisturbed round where it is least."""
    latency_s: float
    """Median step latency of that round."""
    steps: int
    """Steps over all rounds."""
    true_energy_j: float | None = None
    """The simulator's exact energy of the step (simulated meters only)."""
    dead: tuple[int, ...] = ()
    """Layers of the prefix with no path to its output (forward only there)."""
    runs: int = 1
    energy_sigma_j: float | None = None
    """Standard uncertainty of ``energy_j`` from the rounds' spread (None for one round)."""
    latency_sigma_s: float | None = None
    model_wide_energy_j: float = 0.0
    """Its op events of no layer (the loss, the optimizer's per-step work), per step: what
    the subtraction cannot separate from the layers, known here from the per-op events. Its
    change from prefix to prefix is the loss's share of a difference's error."""
    contended: bool = False
    """Every run of it was flagged ``cpu_contended`` (another process took the CPU): its
    step is stretched by an unknown amount. Runs that were not flagged are preferred: the
    step comes from them alone where there are any."""


@dataclass(frozen=True)
class PrefixLayer:
    """One layer's training energy per step, two ways (and the simulator's truth)."""

    layer: int
    op: str
    subtraction_energy_j: float
    subtraction_latency_s: float
    event_energy_j: float
    """The layer's op windows in the full model's step (forward, backward, update)."""
    event_latency_s: float
    true_energy_j: float | None = None
    """The simulator's exact energy of the layer's op windows in the full model's step."""
    subtraction_true_energy_j: float | None = None
    """The difference of the two prefixes' true step energies."""
    subtraction_sigma_j: float | None = None
    """Standard uncertainty of ``subtraction_energy_j`` (with several rounds)."""
    contended: bool = False
    """Prefix k or k - 1 ran only contended (``PrefixStep.contended``), or the full model
    did: this layer's subtraction and reference are not vouched for."""


@dataclass(frozen=True)
class PrefixSplit:
    """The subtraction method against the per-op events, for one model."""

    layers: tuple[PrefixLayer, ...]
    prefixes: tuple[PrefixStep, ...]
    full_runs: tuple[TrainResult, ...]
    """The full model's (prefix n's) runs, one a round; the events are those of the run
    E(n) comes from."""
    baseline: PrefixStep | None = None
    """Prefix 0 (``prefixes.baseline_model``): the step's fixed work, E(0)."""

    @property
    def full(self) -> TrainResult:
        """The full model's last run."""
        return self.full_runs[-1]

    @property
    def step_energy_j(self) -> float:
        """The full model's step energy, E(n)."""
        return self.prefixes[-1].energy_j

    @property
    def simulated(self) -> bool:
        return self.full.result.meter.simulated

    @property
    def additivity(self) -> float:
        """Sum of the per-layer event energies over the full model's step energy."""
        return subtraction.additivity([x.event_energy_j for x in self.layers],
                                      self.step_energy_j)

    def agreement(self, reference: str = "events", *, tolerance: float = 0.1
                  ) -> subtraction.Agreement:
        """The subtraction's per-layer energies against ``reference``: ``"events"`` (per-op
        events) or ``"truth"`` (the simulator's, simulated meters only), per mean step as
        measured; shares are of the step's energy, E(n)."""
        if reference == "events":
            ref = [x.event_energy_j for x in self.layers]
        elif reference == "truth":
            if not self.simulated:
                raise ValueError("no truth: the meter is not simulated")
            ref = [x.true_energy_j or 0.0 for x in self.layers]
        else:
            raise ValueError(f"reference must be 'events' or 'truth', got {reference!r}")
        return subtraction.agreement([x.subtraction_energy_j for x in self.layers], ref,
                                     tolerance=tolerance, total=self.step_energy_j)


def _is_contended(done: TrainResult) -> bool:
    return CPU_CONTENDED in done.result.flags


def _uncontended(runs: list[TrainResult]) -> tuple[list[TrainResult], bool]:
    """The runs no other process disturbed, if any (else all, and True)."""
    clean = [done for done in runs if not _is_contended(done)]
    return (clean, False) if clean else (runs, True)


def _typical_energy(done: TrainResult) -> float:
    """The loop's mean power over its median step (``subtraction.typical_step``)."""
    w = done.result.whole
    if w is None:
        return float("inf")
    return subtraction.typical_step(w.energy_j, w.latency_p50_s, w.latency_mean_s)


def _least_disturbed(runs: list[TrainResult]) -> TrainResult:
    return min(runs, key=_typical_energy)


def _step(k: int, all_runs: list[TrainResult], dead: tuple[int, ...]) -> PrefixStep:
    runs, contended = _uncontended(all_runs)
    wholes = [done.result.whole for done in runs]
    if any(w is None for w in wholes):
        raise RuntimeError(f"prefix {k}: a run has no step")
    # The typical step: the loop's mean power over its median step (subtraction.typical_step).
    present = [w for w in wholes if w is not None]
    energy = [subtraction.typical_step(w.energy_j, w.latency_p50_s, w.latency_mean_s)
              for w in present]
    latency = [w.latency_p50_s for w in present]
    truth = [subtraction.typical_step(w.true_energy_j, w.latency_p50_s, w.latency_mean_s)
             if w.true_energy_j is not None else None for w in present]
    wide = [sum(r.energy_j for r in done.phases if r.layer is None) for done in runs]
    # Of the rounds, the least disturbed: whatever else the machine does (another process on
    # the other core, a sibling hyperthread, the hypervisor) only ever stretches a step, so
    # the cheapest round is the closest to the step alone (timeit's rule). One run in five
    # or so had its step 1.3 to 1.5 times the others' here without the thread ever leaving
    # the CPU; the median of three rounds or a difference within one round let it through.
    best = int(np.argmin(energy))
    return PrefixStep(k, energy[best], latency[best],
                      sum(w.iterations for w in wholes if w is not None), truth[best], dead,
                      len(runs), subtraction.median_sigma(energy),
                      subtraction.median_sigma(latency), wide[best], contended)


def split_layers(prefixes: tuple[PrefixStep, ...], full: list[TrainResult],
                 ops: tuple[str, ...], baseline: PrefixStep | None = None
                 ) -> tuple[PrefixLayer, ...]:
    """Per layer: the subtraction from ``prefixes`` (E(1)..E(n)) less ``baseline`` (E(0),
    the step with no layer; taken as 0 without it), the events and truth from the phases of
    ``full`` (the full model's runs: the one E(n) comes from, per typical step as E(n) is:
    the events are per mean step, which a few stretched steps lengthen). ``ops``: each
    layer's op."""
    steps = (baseline, *prefixes) if baseline is not None else prefixes
    sigmas = [p.energy_sigma_j for p in steps]
    known = not any(s is None for s in sigmas)
    energy = subtraction.differences(
        [p.energy_j for p in prefixes],
        [s or 0.0 for s in sigmas[-len(prefixes):]] if known else None,
        base=baseline.energy_j if baseline else 0.0,
        base_sigma=(baseline.energy_sigma_j or 0.0) if baseline and known else 0.0)
    latency = subtraction.differences([p.latency_s for p in prefixes],
                                      base=baseline.latency_s if baseline else 0.0)
    simulated = full[0].result.meter.simulated
    truth = (subtraction.differences([p.true_energy_j or 0.0 for p in prefixes],
                                     base=(baseline.true_energy_j or 0.0) if baseline else 0.0)
             if simulated else None)
    best = _least_disturbed(_uncontended(full)[0])
    w = best.result.whole
    scale = _typical_energy(best) / w.energy_j if w is not None and w.energy_j > 0 else 1.0
    out = []
    for i, op in enumerate(ops):
        rows = [r for r in best.phases if r.layer == i]
        out.append(PrefixLayer(
            layer=i, op=op, subtraction_energy_j=energy[i].value,
            subtraction_latency_s=latency[i].value,
            event_energy_j=scale * sum(r.energy_j for r in rows),
            event_latency_s=scale * sum(r.latency_s for r in rows),
            true_energy_j=(scale * sum(r.true_energy_j or 0.0 for r in rows)
                           if simulated else None),
            subtraction_true_energy_j=truth[i].value if truth is not None else None,
            subtraction_sigma_j=energy[i].sigma,
            contended=(prefixes[i].contended
                       or (steps[i].contended if baseline is not None or i > 0 else False))))
    return tuple(out)


def measure_prefixes(inference_model_bytes: bytes, meter_factory: MeterFactory,
                     settings: MeasureSettings, runtime: tuple[str, str], *,
                     optimizer: str | Optimizer, trainable: Collection[int] | None = None,
                     progress: ProgressFn | None = None, rounds: int = 1) -> PrefixSplit:
    """Measure the training step of each trainable prefix of an inference model (one
    subgraph, one input, one float32 output) and split it per layer by subtraction, beside
    the per-op events of the full model's step. ``settings.mode`` must be ``train``; each
    prefix is measured with those settings under the host's lease, as ``measure_train``
    does.

    ``rounds``: how many times each prefix is measured. The rounds interleave (k = 1..n,
    then n..1, ...), so a slow change of the machine (its clock, another process's load)
    reaches every prefix alike; each prefix's step is its least disturbed round's
    (``_step``), with the rounds' spread as its uncertainty. A difference of two separate
    runs is as noisy as the runs, so one round leaves a layer small beside the step at the
    mercy of run-to-run changes.

    ``progress`` hears ``Progress("prefix", runs done, runs in all, ...)`` before each run,
    then ``measure_train``'s own progress."""
    if settings.mode != "train":
        raise InputError(f"measure_prefixes measures mode train, not {settings.mode!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 1 <= rounds <= MAX_ROUNDS:
        raise InputError(f"rounds must be an integer in 1..{MAX_ROUNDS}, got {rounds!r}")
    prefixes_made = trainable_prefixes(inference_model_bytes, optimizer=optimizer,
                                       trainable=trainable)
    n = len(prefixes_made)
    # Prefix 0 first in a round: the step's fixed work, E(0).
    models = [(0, baseline_model(inference_model_bytes, optimizer=optimizer)), *prefixes_made]
    runs: dict[int, list[TrainResult]] = {k: [] for k, _ in models}
    shas = {k: hashlib.sha256(model).hexdigest() for k, model in models}
    done = 0
    for r in range(rounds):
        for k, model in models if r % 2 == 0 else models[::-1]:
            if progress is not None:
                progress(Progress("prefix", done, len(models) * rounds,
                                  f"prefix {k}/{n}" + (f", round {r + 1}/{rounds}"
                                                       if rounds > 1 else "")))
            runs[k].append(measure_train(model, shas[k], meter_factory(k), settings, runtime,
                                         progress))
            done += 1
    baseline = _step(0, runs[0], ())
    prefixes = tuple(_step(k, runs[k], dead_layers(inference_model_bytes, k))
                     for k, _ in prefixes_made)
    ops = training_info(models[-1][1]).layers
    return PrefixSplit(split_layers(prefixes, runs[n], ops, baseline), prefixes,
                       tuple(runs[n]), baseline)
