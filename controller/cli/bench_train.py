"""``joulefarm bench MODEL --mode train``: one training step, per layer, as rows.

Per layer: forward, backward (activation, input and weight gradients) and update energy and
latency per step, each the sum of that layer's op windows. Under them: ``model-wide`` (the
loss and what belongs to no layer), ``between ops`` (the step's energy and time outside every
op window: the runtime's work between ops and the loop's), ``step`` (the whole step as
measured) and ``additivity`` (the op windows' sum over the step, for energy and latency).

``--prefixes`` (``prefix_rows``): THOR's subtraction method beside the per-op events. The
model's first 1..n layers are each made trainable (MSE) and their steps measured; layer k's
energy is E(k) - E(k-1) (``agent.measure_prefixes``, ``joulefarm.subtraction``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.config.train_spec import (
    LOSSES,
    OPTIMIZERS,
    TrainSpec,
    has_train_signature,
    make_trainable,
)
from joulefarm.errors import InputError, ModelError

if TYPE_CHECKING:
    from agent.local import PrefixSplit, TrainResult

COLUMNS = ["layer", "op", "forward_uj", "forward_us", "backward_uj", "backward_us",
           "update_uj", "update_us", "total_uj", "total_us"]


def trainable(model_bytes: bytes, spec: TrainSpec | None) -> tuple[bytes, str]:
    """The model to measure and what was done to it: a model with a ``train`` signature as it
    is; an inference model made trainable as ``spec`` says (``--optimizer`` and the rest)."""
    if has_train_signature(model_bytes):
        if spec is not None:
            raise InputError("--optimizer: the model trains already (it has a train "
                             "signature); leave --optimizer out")
        return model_bytes, "train signature of the model"
    if spec is None:
        raise InputError("the model has no train signature: give --optimizer sgd|adam (and "
                         "--loss) to make it trainable, or a model made by "
                         "joulefarm.tflite.training")
    if spec.optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer: unknown optimizer {spec.optimizer!r} (known: "
                         f"{', '.join(OPTIMIZERS)})")
    if spec.loss not in LOSSES:
        raise InputError(f"--loss: unknown loss {spec.loss!r} (known: {', '.join(LOSSES)})")
    try:
        made = make_trainable(model_bytes, spec)
    except ModelError as e:
        raise InputError(f"the model cannot be made trainable: {e}") from e
    return made.content, f"made {made.made}"


def _row(layer: object, op: str, split: dict[str, tuple[float, float]] | None,
         energy_j: float, latency_s: float) -> list[object]:
    row: list[object] = [layer, op]
    for name in ("forward", "backward", "update"):
        if split is None:  # a total: no phases
            row += [None, None]
        else:
            energy, latency = split[name]
            row += [energy * 1e6, latency * 1e6]
    return [*row, energy_j * 1e6, latency_s * 1e6]


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole > 0 else float("nan")


def train_rows(done: TrainResult) -> tuple[list[list[object]], list[list[object]]]:
    """(per layer rows, totals rows) in ``COLUMNS``."""
    layers = sorted({r.layer for r in done.phases if r.layer is not None})
    rows = []
    for layer in layers:
        mine = [r for r in done.phases if r.layer == layer]
        rows.append(_row(layer, mine[0].op, done.split(layer), sum(r.energy_j for r in mine),
                         sum(r.latency_s for r in mine)))
    wide = [r for r in done.phases if r.layer is None]
    energy = sum(r.energy_j for r in done.phases)
    latency = done.attributed_latency_s
    whole = done.result.whole
    assert whole is not None
    totals: list[list[object]] = [
        _row("model-wide", "+".join(sorted({r.phase for r in wide})), done.split(None),
             sum(r.energy_j for r in wide), sum(r.latency_s for r in wide)),
        _row("between ops", "runtime and loop", None, whole.energy_j - energy,
             whole.latency_mean_s - latency),
        _row("step", f"{whole.iterations} steps", None, whole.energy_j, whole.latency_mean_s),
        ["additivity", "op windows / step", None, None, None, None, None, None,
         _ratio(energy, whole.energy_j), _ratio(latency, whole.latency_mean_s)],
    ]
    return rows, totals


PREFIX_COLUMNS = ["layer", "op", "events_uj", "subtraction_uj", "difference_pct", "vouched"]
"""``--prefixes``: per layer, the per-op events and THOR's subtraction, and whether the
method vouches for it (false: a prefix it needs ran only beside another process, flagged
``cpu_contended``); ``sim_truth_uj`` and ``subtraction_vs_truth_pct`` follow for a simulated
meter."""


def check_prefix_model(model_bytes: bytes, optimizer: str | None, loss: str,
                       explicit_loss: bool) -> None:
    """What ``--prefixes`` needs: an inference model (it cuts prefixes from its layers, and a
    trainable model's train signature cannot be cut), ``--optimizer``, and MSE (every prefix
    is trained with it)."""
    if has_train_signature(model_bytes):
        raise InputError("--prefixes cuts an inference model into its first 1..n layers; this "
                         "model is trainable already (it has a train signature): give the "
                         "inference model it was made from")
    if optimizer is None:
        raise InputError("--prefixes needs --optimizer sgd|adam (each prefix is made "
                         "trainable with it)")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer: unknown optimizer {optimizer!r} (known: "
                         f"{', '.join(OPTIMIZERS)})")
    if explicit_loss and loss != "mse":
        raise InputError(f"--loss {loss}: --prefixes trains every prefix with mse (its "
                         "output need not be a class vector); leave --loss out")


def _pct(value: float, reference: float | None) -> float | None:
    if reference is None or not reference > 0:
        return None
    return (value - reference) / reference * 100


def prefix_rows(split: PrefixSplit) -> tuple[list[str], list[list[object]], str]:
    """(columns, per layer rows, summary line) of a ``--prefixes`` run."""
    simulated = split.simulated
    columns = [*PREFIX_COLUMNS, *(["sim_truth_uj", "subtraction_vs_truth_pct"]
                                  if simulated else [])]
    rows: list[list[object]] = []
    for x in split.layers:
        row: list[object] = [x.layer, x.op, x.event_energy_j * 1e6,
                             x.subtraction_energy_j * 1e6,
                             _pct(x.subtraction_energy_j, x.event_energy_j), not x.contended]
        if simulated:
            row += [(x.true_energy_j or 0.0) * 1e6,
                    _pct(x.subtraction_energy_j, x.true_energy_j)]
        rows.append(row)
    events = split.agreement("events")
    summary = (f"step {split.step_energy_j * 1e6:.1f} uJ; median |subtraction - events| "
               f"{events.median_abs_relative:.1%} (layers within +/-10% hold "
               f"{events.within:.0%} of the step)")
    if simulated:
        truth = split.agreement("truth")
        summary += (f"; median |subtraction - truth| {truth.median_abs_relative:.1%} (within "
                    f"+/-10%: {truth.within:.0%})")
    summary += (f"; additivity (layers' events / step) {split.additivity:.3f}; "
                f"{len(split.full_runs)} round(s)")
    return columns, rows, summary
