"""THOR's subtraction method on stored runs: a sweep of a suite with ``[train] prefixes = true``.

Such a sweep measures, beside each model's training step, the steps of its trainable prefixes
``NAME/prefix-0`` (no layer: the step's fixed work) .. ``NAME/prefix-N`` (every layer, MSE)
on every device, ``repetitions`` times. Per device and model, each prefix's step is its least
disturbed repetition's (the cheapest typical step among those not flagged ``cpu_contended``,
as ``agent.measure_prefixes`` takes its rounds'), and layer k's energy is E(k) - E(k-1)
(``joulefarm.subtraction``): what a meter too slow for single ops gives per layer. Beside it,
the per-op events of prefix N's run (the same model and loss) and, on a simulator, its truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from controller.config.train_spec import PREFIX_SEPARATOR
from controller.results_frames import Results
from joulefarm import subtraction
from joulefarm.results import CPU_CONTENDED

SPLIT_SCHEMA = {
    "sweep_id": pl.String(), "device_name": pl.String(), "model_name": pl.String(),
    "layer_index": pl.Int32(), "op": pl.String(), "subtraction_energy_j": pl.Float64(),
    "subtraction_sigma_j": pl.Float64(), "events_energy_j": pl.Float64(),
    "true_energy_j": pl.Float64(), "vouched": pl.Boolean(), "simulated": pl.Boolean(),
}


def _prefix_of(name: str) -> tuple[str, int] | None:
    base, _, k = name.rpartition(PREFIX_SEPARATOR)
    return (base, int(k)) if base and k.isdigit() else None


def prefix_splits(results: Results, sweeps: Sequence[str] | None = None) -> pl.DataFrame:
    """One row per (sweep, device, model, layer) of the prefix runs of ``sweeps`` (or all):
    the subtraction's energy per training step with its uncertainty (from the repetitions'
    spread), the events' and the truth's, and whether the method vouches for it (its two
    prefixes each had a repetition no other process disturbed). Columns: ``SPLIT_SCHEMA``.
    A model whose prefixes are not all stored (a failed job) has no rows."""
    runs = results.runs(sweeps).filter(
        (pl.col("mode") == "train") & pl.col("model_name").str.contains(PREFIX_SEPARATOR,
                                                                        literal=True))
    if runs.height == 0:
        return pl.DataFrame(schema=SPLIT_SCHEMA)
    whole = results.whole(sweeps).select("run_id", "energy_j", "latency_p50_s",
                                         "latency_mean_s", "true_energy_j")
    runs = runs.select("run_id", "sweep_id", "device_name", "model_name", "flags",
                       "simulated").join(whole, on="run_id")
    phases = results.phases(sweeps)
    steps: dict[tuple[str, str, str], dict[int, list[dict[str, Any]]]] = {}
    for row in runs.iter_rows(named=True):
        parsed = _prefix_of(str(row["model_name"]))
        if parsed is None:
            continue
        base, k = parsed
        row["typical_j"] = subtraction.typical_step(row["energy_j"], row["latency_p50_s"],
                                                    row["latency_mean_s"])
        key = (str(row["sweep_id"]), str(row["device_name"]), base)
        steps.setdefault(key, {}).setdefault(k, []).append(row)
    out = []
    for (sweep, device, base), by_k in sorted(steps.items()):
        n = max(by_k)
        if sorted(by_k) != list(range(n + 1)) or n == 0:
            continue
        chosen, clean, spread = {}, {}, {}
        for k, rows in by_k.items():
            undisturbed = [r for r in rows if CPU_CONTENDED not in (r["flags"] or [])]
            pool = undisturbed or rows
            chosen[k] = min(pool, key=lambda r: float(r["typical_j"]))
            clean[k] = bool(undisturbed)
            spread[k] = subtraction.median_sigma([float(r["typical_j"]) for r in pool])
        known = all(spread[k] is not None for k in range(n + 1))
        energy = subtraction.differences(
            [float(chosen[k]["typical_j"]) for k in range(1, n + 1)],
            [spread[k] or 0.0 for k in range(1, n + 1)] if known else None,
            base=float(chosen[0]["typical_j"]),
            base_sigma=(spread[0] or 0.0) if known else 0.0)
        full = chosen[n]
        scale = (float(full["typical_j"]) / float(full["energy_j"])
                 if full["energy_j"] else 1.0)
        mine = phases.filter((pl.col("run_id") == full["run_id"])
                             & pl.col("layer_index").is_not_null())
        per_layer = mine.group_by("layer_index").agg(
            pl.col("op").first(), pl.col("energy_j").sum(),
            pl.col("true_energy_j").sum().alias("truth"))
        layers = {int(r["layer_index"]): r for r in per_layer.iter_rows(named=True)}
        simulated = bool(full["simulated"])
        for i, difference in enumerate(energy):
            layer = layers.get(i)
            out.append({
                "sweep_id": sweep, "device_name": device, "model_name": base,
                "layer_index": i, "op": layer["op"] if layer else "",
                "subtraction_energy_j": difference.value,
                "subtraction_sigma_j": difference.sigma,
                "events_energy_j": scale * layer["energy_j"] if layer else None,
                "true_energy_j": scale * layer["truth"] if layer and simulated else None,
                "vouched": clean[i] and clean[i + 1], "simulated": simulated})
    return pl.DataFrame(out, schema=SPLIT_SCHEMA)
