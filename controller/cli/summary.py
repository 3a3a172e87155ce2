"""The table a sweep ends with (``joulefarm demo``, ``sweep run``, ``sweep resume``).

By default it fits 80 columns: device, model, mode, latency and energy per inference, the
energy error against the simulator's truth, the additivity ratio and the flagged rows, with a
legend that says what each means. ``--wide`` prints every column.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli.console import OutputFormat, console, err_console, print_rows

if TYPE_CHECKING:
    from controller.farm.runner import RunReport

SUMMARY_SQL = """
WITH truth AS (
    SELECT run_id, sum(true_energy_j) AS true_j, count(*) FILTER (len(flags) > 0) AS flagged
    FROM layer_measurements GROUP BY run_id
    UNION ALL
    SELECT w.run_id, w.true_energy_j, CASE WHEN len(w.flags) > 0 THEN 1 ELSE 0 END
    FROM whole_measurements w JOIN runs USING (run_id) WHERE runs.mode = 'whole'
    UNION ALL
    SELECT run_id, sum(true_energy_j), 0 FROM phase_measurements GROUP BY run_id
)
SELECT r.device_name AS device,
       r.meter_kind || coalesce(':' || r.meter_profile, '') AS meter,
       CASE WHEN r.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
       r.model_name AS model,
       r.mode,
       r.layer_count AS layers,
       round(r.latency_s * 1e3, 3) AS latency_ms,
       round(r.energy_j * 1e3, 3) AS energy_mj,
       round(t.true_j * 1e3, 3) AS sim_truth_mj,
       round(100 * (r.energy_j - t.true_j) / t.true_j, 2) AS error_pct,
       round(a.latency_ratio, 3) AS layers_vs_whole,
       round(r.idle_power_w, 3) AS idle_w,
       t.flagged + CASE WHEN len(r.flags) > 0 THEN 1 ELSE 0 END AS flagged
FROM runs r JOIN truth t USING (run_id) LEFT JOIN additivity a USING (run_id)
WHERE r.sweep_id = ?
ORDER BY device, model, mode
"""

NARROW = {"device": "device", "model": "model", "mode": "mode", "latency_ms": "ms",
          "energy_mj": "mJ", "error_pct": "err %", "layers_vs_whole": "L/W", "flagged": "flags"}
"""The default summary's columns and their short headers: 80 columns hold the longest names."""

LEGEND = (
    "ms, mJ: latency and energy per inference (layers mode: summed over the layers, each "
    "looped alone; train mode: per training step, summed over its ops' windows)\n"
    "err % (error_pct): energy against the simulator's exact energy (simulated meters only; a "
    "real meter has no truth to compare with)\n"
    "L/W (layers_vs_whole): the layers' latencies summed / the whole model's median call, "
    "measured in the same run (1 = additive; below 1/3 or above 3 the run is flagged)\n"
    "flags (flagged): layer rows, and the run, carrying a quality flag (docs/flags.md; "
    "joulefarm query \"SELECT * FROM layer_energy WHERE NOT usable\")"
)


def print_summary(report: RunReport, database: Path, *, wide: bool = False) -> None:
    """Errors (each names its device), the sweep's table, its legend, where the results are."""
    for error in report.errors():
        err_console.print(error, markup=False, soft_wrap=True)
    from controller.store import query_readonly

    sweep_id = report.outcome.sweep_id
    columns, rows = query_readonly(database, SUMMARY_SQL, [sweep_id])
    if not wide:
        keep = [columns.index(c) for c in NARROW]
        columns, rows = list(NARROW.values()), [tuple(row[k] for k in keep) for row in rows]
    print_rows(columns, rows, OutputFormat.table, compact=not wide,
               title=f"sweep {sweep_id}: energy per inference")
    console.print(LEGEND, soft_wrap=not console.is_terminal)
    if not wide:
        console.print("more columns (meter, energy source, layers, the truth, idle power): "
                      "--wide")
    console.print(f"results: {database.resolve()}", soft_wrap=True)
