"""``joulefarm bench MODEL --mode train``: one training step, per layer, as rows.

Per layer: forward, backward (activation, input and weight gradients) and update energy and
latency per step, each the sum of that layer's op windows. Under them: ``model-wide`` (the
loss and what belongs to no layer), ``between ops`` (the step's energy and time outside every
op window: the runtime's work between ops and the loop's), ``step`` (the whole step as
measured) and ``additivity`` (the op windows' sum over the step, for energy and latency).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from joulefarm.errors import InputError
from joulefarm.tflite.flatbuffer import decode_name, unpack_model

if TYPE_CHECKING:
    from agent.local import TrainResult

OPTIMIZERS = ("sgd", "adam")
LOSSES = ("mse", "softmax_cross_entropy")
COLUMNS = ["layer", "op", "forward_uj", "forward_us", "backward_uj", "backward_us",
           "update_uj", "update_us", "total_uj", "total_us"]


def has_train_signature(model_bytes: bytes) -> bool:
    model = unpack_model(model_bytes)
    return any(decode_name(s.signatureKey) == "train" for s in model.signatureDefs or [])


def trainable(model_bytes: bytes, optimizer: str | None, loss: str) -> tuple[bytes, str]:
    """The model to measure and what was done to it: a model with a ``train`` signature as it
    is; an inference model made trainable with ``optimizer`` and ``loss``."""
    if has_train_signature(model_bytes):
        if optimizer is not None:
            raise InputError("--optimizer: the model trains already (it has a train "
                             "signature); leave --optimizer out")
        return model_bytes, "train signature of the model"
    if optimizer is None:
        raise InputError("the model has no train signature: give --optimizer sgd|adam (and "
                         "--loss) to make it trainable, or a model made by "
                         "joulefarm.tflite.training")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer: unknown optimizer {optimizer!r} (known: "
                         f"{', '.join(OPTIMIZERS)})")
    if loss not in LOSSES:
        raise InputError(f"--loss: unknown loss {loss!r} (known: {', '.join(LOSSES)})")
    from joulefarm.tflite.training import trainable_from_model

    try:
        made = trainable_from_model(model_bytes, loss=loss, optimizer=optimizer)
    except ValueError as e:
        raise InputError(f"the model cannot be made trainable: {e}") from e
    return made, f"made trainable: {optimizer}, {loss}"


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
