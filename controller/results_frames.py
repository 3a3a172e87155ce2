"""The results as polars DataFrames, for notebooks, reports and ``joulefarm compare``.

``open_results(db)`` gives a ``Results`` whose methods each return one frame: ``sweeps``,
``runs``, ``layers``, ``whole``, ``phases`` (training steps), ``change_points`` and
``series_changes``. Every method's
docstring lists its columns and their units; docs/results-api.md shows them in use.

Read-only, and never held open: each call opens the database read-only, reads, and closes it
(``controller.database.read_only``), because DuckDB lets no process write a file that another
holds open, and a notebook left open overnight must not stop the night's sweep. While a sweep
writes, a call waits for it to let go of the file (at most ``READ_WAIT_S``).

Every frame says whether its energies were simulated or measured (``simulated``, or counts of
each for sweeps), so a simulated energy is never mistaken for a measured one. Times are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import duckdb
import polars as pl

from controller.database import READ_WAIT_S, DatabaseBusy, read_only
from controller.series import with_series
from controller.store import StoreError, StoreInputError
from joulefarm.results import UNUSABLE_FLAGS

# The change_points table (store.py, migration 6), column by column: also the schema of the
# frames that `joulefarm compare` and `detect_changes` build, so the two never part.
CHANGE_POINT_SCHEMA: dict[str, pl.DataType] = {
    "series_id": pl.String(), "device_name": pl.String(), "device_fingerprint": pl.String(),
    "model_name": pl.String(), "model_sha256": pl.String(), "settings": pl.String(),
    "runtime_name": pl.String(), "runtime_version": pl.String(), "meter_kind": pl.String(),
    "simulated": pl.Boolean(), "metric": pl.String(), "scope": pl.String(),
    "layer_index": pl.Int32(), "op": pl.String(), "before_sweep": pl.String(),
    "after_sweep": pl.String(), "before_value": pl.Float64(), "after_value": pl.Float64(),
    "ratio": pl.Float64(), "ratio_low": pl.Float64(), "ratio_high": pl.Float64(),
    "direction": pl.String(), "p_value": pl.Float64(), "evidence": pl.String(),
    "n_before": pl.Int32(), "n_after": pl.Int32(), "layers": pl.List(pl.Int32()),
    "layer_ops": pl.List(pl.String()), "layer_shares": pl.List(pl.Float64()),
    "alpha": pl.Float64(), "threshold": pl.Float64(),
    "detected_at": pl.Datetime("us", "UTC"),
}
SERIES_CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "device_name": pl.String(), "model_name": pl.String(), "field": pl.String(),
    "before_value": pl.String(), "after_value": pl.String(), "before_series": pl.String(),
    "after_series": pl.String(), "before_sweep": pl.String(), "after_sweep": pl.String(),
    "detected_at": pl.Datetime("us", "UTC"),
}

_SWEEPS_SQL = """
SELECT s.sweep_id, s.suite, s.status, s.started_at, s.finished_at, s.joulefarm_version,
       s.git_revision, count(r.run_id)::INTEGER AS runs,
       (count(*) FILTER (r.simulated))::INTEGER AS simulated_runs,
       (count(*) FILTER (NOT r.simulated))::INTEGER AS measured_runs
FROM sweeps s LEFT JOIN runs r USING (sweep_id)
GROUP BY ALL ORDER BY s.started_at, s.sweep_id
"""
_RUNS_SQL = """
SELECT r.sweep_id, s.started_at AS sweep_started_at, r.run_id, r.job_id, r.device_name,
       r.device_fingerprint, r.model_name, r.model_sha256, r.mode, j.config,
       TRY_CAST(j.config->>'seed' AS BIGINT) AS seed,
       TRY_CAST(j.config->>'repetition' AS INTEGER) AS repetition,
       r.runtime_name, r.runtime_version, r.num_threads, r.meter_kind, r.meter_profile,
       r.simulated, r.latency_s, r.energy_j, r.energy_j / nullif(r.latency_s, 0) AS power_w,
       r.idle_power_w, r.layer_count, r.started_at, r.finished_at, r.flags,
       NOT list_has_any(coalesce(r.flags, []), $unusable) AS usable, r.clock_offset_s,
       r.trace_path
FROM runs r JOIN sweeps s USING (sweep_id) LEFT JOIN jobs j ON j.job_id = r.job_id
WHERE $all OR list_contains($sweeps, r.sweep_id)
ORDER BY s.started_at, r.device_name, r.model_name, repetition, r.run_id
"""
_LAYERS_SQL = """
SELECT l.run_id, l.layer_index, l.op, l.macs, l.latency_s, l.latency_low_s, l.latency_high_s,
       l.energy_j, l.energy_err_j, l.energy_j / nullif(l.latency_s, 0) AS power_w,
       l.active_energy_j, l.coverage, l.iterations, l.samples, l.flags,
       NOT list_has_any(list_concat(coalesce(l.flags, []), coalesce(r.flags, [])), $unusable)
           AS usable,
       l.true_energy_j, l.meter_kind, l.simulated, l.window_start_s, l.window_end_s
FROM layer_measurements l JOIN runs r USING (run_id)
WHERE $all OR list_contains($sweeps, r.sweep_id)
ORDER BY l.run_id, l.layer_index
"""
_WHOLE_SQL = """
SELECT w.run_id, w.iterations, w.latency_mean_s, w.latency_p50_s, w.latency_p90_s,
       w.latency_p99_s, w.energy_j, w.active_energy_j, w.mean_power_w, w.coverage, w.flags,
       NOT list_has_any(list_concat(coalesce(w.flags, []), coalesce(r.flags, [])), $unusable)
           AS usable,
       w.true_energy_j, w.meter_kind, w.simulated
FROM whole_measurements w JOIN runs r USING (run_id)
WHERE $all OR list_contains($sweeps, r.sweep_id)
ORDER BY w.run_id
"""
_PHASES_SQL = """
SELECT p.run_id, p.layer_index, p.op, p.phase,
       CASE WHEN p.phase = 'forward' THEN 'forward' WHEN p.phase LIKE 'backward-%' THEN 'backward'
            WHEN p.phase = 'update' THEN 'update' ELSE 'other' END AS part,
       p.ops, p.events, p.latency_s, p.energy_j, p.energy_j / p.latency_s AS power_w,
       p.true_energy_j, p.meter_kind, p.simulated
FROM phase_measurements p JOIN runs r USING (run_id)
WHERE $all OR list_contains($sweeps, r.sweep_id)
ORDER BY p.run_id, p.layer_index NULLS LAST, p.phase
"""
# What the layer and whole frames take from their run, to be read without a join.
_RUN_KEYS = ("sweep_id", "series_id", "device_name", "model_name", "mode", "repetition")


class Results:
    """Read-only frames over one results database (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _frame(self, sql: str, params: Mapping[str, object] | None = None) -> pl.DataFrame:
        try:
            with read_only(self.path) as con:
                try:
                    table = con.sql(sql, params=dict(params or {})).to_arrow_table()
                except duckdb.Error as e:
                    raise StoreError(f"{self.path}: cannot read the results: {e}") from e
        except DatabaseBusy as e:
            raise StoreError(f"{self.path}: a process kept the database open for writing for "
                             f"{READ_WAIT_S:g} s: {e}") from e
        except duckdb.Error as e:
            raise StoreError(f"{self.path}: cannot open read-only: {e}") from e
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)  # a table, not a single column
        return _utc(frame)

    def _has_table(self, name: str) -> bool:
        found = self._frame("SELECT count(*) AS n FROM information_schema.tables "
                            "WHERE table_name = $name", {"name": name})
        return bool(found["n"][0])

    @staticmethod
    def _which(sweeps: Sequence[str] | None) -> dict[str, object]:
        return {"all": sweeps is None, "sweeps": list(sweeps or []),
                "unusable": list(UNUSABLE_FLAGS)}

    def sweeps(self) -> pl.DataFrame:
        """One row per sweep (a night), oldest first.

        sweep_id, suite, status (running | done | partial | failed | interrupted),
        started_at / finished_at (UTC), joulefarm_version, git_revision, runs (runs stored),
        simulated_runs / measured_runs (how many of them a simulated or a real meter measured).
        """
        return self._frame(_SWEEPS_SQL)

    def runs(self, sweeps: Sequence[str] | None = None) -> pl.DataFrame:
        """One row per run (one job: a device, a model, a configuration, a repetition), of the
        given sweeps or all, oldest sweep first.

        Keys: sweep_id, sweep_started_at (UTC), run_id, job_id, series_id (the measurement
        series, controller.series), device_name, device_fingerprint, model_name, model_sha256,
        mode (layers | whole | insitu | train), config (the job's JSON), settings (config
        without seed and repetition: canonical JSON), seed, repetition (0, 1, ... within a
        configuration), runtime_name, runtime_version, num_threads, meter_kind, meter_profile,
        simulated (the energies are a simulator's, not a meter's).

        Values, per inference (train: per training step): latency_s (seconds; layers and
        insitu modes: the layers' sum; train: the op windows' sum; whole: the mean call),
        energy_j (joules, idle included; the layers' or op windows' sum likewise),
        power_w (watts: energy_j / latency_s), idle_power_w (watts), layer_count; started_at,
        finished_at (UTC), flags (docs/flags.md), usable (no flag of the run makes it
        unusable: joulefarm.results.UNUSABLE_FLAGS), clock_offset_s (seconds: the meter's
        clock minus the agent's), trace_path (the run's decimated power trace, Parquet,
        relative to the database's folder; NULL: none stored).
        """
        runs = self._frame(_RUNS_SQL, self._which(sweeps))
        return with_series(runs).select(_RUNS_COLUMNS)

    def layers(self, sweeps: Sequence[str] | None = None) -> pl.DataFrame:
        """One row per measured layer of each run of the given sweeps (or all).

        Keys: sweep_id, series_id, run_id, device_name, model_name, mode, repetition,
        layer_index (the TFLite node index), op, macs (NULL: no cost formula).

        Values, per call: latency_s (seconds, the median over batches of calls) with its 95%
        confidence interval latency_low_s .. latency_high_s; energy_j (joules, idle included)
        with energy_err_j (joules, the half-width of its stated uncertainty); power_w (watts:
        energy_j / latency_s); active_energy_j (joules above idle); coverage (the share of the
        window that meter samples covered), iterations, samples, flags, usable (no flag of the
        layer or its run makes it unusable), true_energy_j (joules: the simulator's exact
        energy; NULL for a real meter), meter_kind, simulated; window_start_s, window_end_s
        (when the layer's calls ran: seconds on the agent's clock, the runs' trace_path traces
        map to it with clock_offset_s).
        """
        layers = self._frame(_LAYERS_SQL, self._which(sweeps))
        return self._with_run_keys(layers, sweeps)

    def whole(self, sweeps: Sequence[str] | None = None) -> pl.DataFrame:
        """One row per run that looped the unsplit model (whole mode, and layers mode's
        additivity check), of the given sweeps or all.

        Keys: sweep_id, series_id, run_id, device_name, model_name, mode, repetition.
        Values, per call: iterations, latency_mean_s, latency_p50_s, latency_p90_s,
        latency_p99_s (seconds), energy_j, active_energy_j (joules), mean_power_w (watts),
        coverage, flags, usable, true_energy_j (joules, simulated meters only), meter_kind,
        simulated.
        """
        whole = self._frame(_WHOLE_SQL, self._which(sweeps))
        return self._with_run_keys(whole, sweeps)

    def phases(self, sweeps: Sequence[str] | None = None) -> pl.DataFrame:
        """Train-mode runs: one row per layer and phase of the training step, of the given
        sweeps or all (the step itself is the run's ``whole`` row).

        Keys: sweep_id, series_id, run_id, device_name, model_name, mode (train), repetition,
        layer_index (the layer of the model the trainable model was made from; NULL for
        model-wide work such as the loss), op, phase (forward, loss, backward-activation,
        backward-input, backward-weights, update, ...), part (forward | backward | update |
        other).
        Values, per training step: ops (ops of the train subgraph in this row), events
        (profiler events over the run), latency_s (seconds: the sum of their windows),
        energy_j (joules in those windows, idle included), power_w (watts), true_energy_j
        (joules, simulated meters only), meter_kind, simulated.
        """
        if not self._has_table("phase_measurements"):  # a database no writer has migrated yet
            return pl.DataFrame()
        phases = self._frame(_PHASES_SQL, {"all": sweeps is None, "sweeps": list(sweeps or [])})
        return self._with_run_keys(phases, sweeps)

    def _with_run_keys(self, frame: pl.DataFrame, sweeps: Sequence[str] | None
                       ) -> pl.DataFrame:
        keys = self.runs(sweeps).select(["run_id", *_RUN_KEYS])
        joined = frame.join(keys, on="run_id", how="left")
        return joined.select([*_RUN_KEYS, *frame.columns])

    def change_points(self, sweeps: Sequence[str] | None = None) -> pl.DataFrame:
        """The change points recorded after the given sweeps (``after_sweep``), or all: one row
        per metric and scope (the whole model, or one layer) of a series that moved between
        two nights by at least ``threshold``, significant at false-alarm rate ``alpha``.

        Series key: series_id, device_name, device_fingerprint, model_name, model_sha256,
        settings, runtime_name, runtime_version, meter_kind, simulated.
        What moved: metric (energy_j in joules, latency_s in seconds, power_w in watts, all per
        inference or per call), scope (whole | layer), layer_index and op (layer rows),
        before_sweep, after_sweep, before_value / after_value (the metric's unit: the geometric
        mean over each night's repetitions), ratio (after / before) with its 1 - alpha
        confidence interval ratio_low .. ratio_high, direction (regression: more energy, time
        or power; improvement: less), p_value (Holm-adjusted over the series), evidence
        (repetitions: Welch's test over the repetitions; stated_uncertainty: fewer than 3
        repetitions, the measurements' own uncertainty), n_before, n_after (repetitions).
        Whole rows: layers, layer_ops, layer_shares (the layers whose own change is
        significant, largest contribution first, and each one's share of the whole's change).
        alpha, threshold, detected_at (UTC). See controller.shifts for the statistics.
        """
        if not self._has_table("change_points"):  # a database no writer has migrated yet
            return pl.DataFrame(schema=CHANGE_POINT_SCHEMA)
        return self._frame(
            "SELECT * FROM change_points WHERE $all OR list_contains($sweeps, after_sweep) "
            "ORDER BY detected_at, after_sweep, device_name, model_name, metric, scope, "
            "layer_index", {"all": sweeps is None, "sweeps": list(sweeps or [])})

    def series_changes(self, sweeps: Sequence[str] | None = None) -> pl.DataFrame:
        """Series key fields that changed between two nights (a new runtime version, another
        model file, other settings), recorded after the given sweeps or all: device_name,
        model_name, field (a series field, or settings.KEY), before_value, after_value,
        before_series, after_series, before_sweep, after_sweep, detected_at (UTC)."""
        if not self._has_table("series_changes"):
            return pl.DataFrame(schema=SERIES_CHANGE_SCHEMA)
        return self._frame(
            "SELECT * FROM series_changes WHERE $all OR list_contains($sweeps, after_sweep) "
            "ORDER BY detected_at, after_sweep, device_name, model_name, field",
            {"all": sweeps is None, "sweeps": list(sweeps or [])})

    def model_contents(self, sha256s: Sequence[str]) -> dict[str, bytes]:
        """The stored bytes of those of these models that have them, by sha256 (what an
        estimator predicts from; a sweep stores every model it measured)."""
        found = self._frame("SELECT sha256, content FROM model_contents "
                            "WHERE list_contains($shas, sha256)", {"shas": list(sha256s)})
        return {str(sha): bytes(content) for sha, content in found.iter_rows()}

    def resolve_sweep(self, ref: str) -> str:
        """A sweep id, or a date ``YYYY-MM-DD``: the last sweep started that day (local
        time). ``StoreInputError`` when there is none."""
        sweeps = self._frame("SELECT sweep_id, started_at FROM sweeps ORDER BY started_at")
        if ref in sweeps["sweep_id"].to_list():
            return ref
        try:
            day = date.fromisoformat(ref)
        except ValueError:
            raise StoreInputError(f"{self.path}: no sweep {ref!r} (give a sweep id from "
                                  "`joulefarm sweep status`, or a date YYYY-MM-DD)") from None
        same_day = [s for s, t in sweeps.iter_rows() if t.astimezone().date() == day]
        if not same_day:
            raise StoreInputError(f"{self.path}: no sweep started on {day} (local time)")
        return str(same_day[-1])


_RUNS_COLUMNS = (
    "sweep_id", "sweep_started_at", "run_id", "job_id", "series_id", "device_name",
    "device_fingerprint", "model_name", "model_sha256", "mode", "config", "settings", "seed",
    "repetition", "runtime_name", "runtime_version", "num_threads", "meter_kind",
    "meter_profile", "simulated", "latency_s", "energy_j", "power_w", "idle_power_w",
    "layer_count", "started_at", "finished_at", "flags", "usable", "clock_offset_s",
    "trace_path",
)


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Time stamps in UTC, whatever DuckDB's time zone setting."""
    zoned = [name for name, dtype in frame.schema.items()
             if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None]
    return frame.with_columns([pl.col(c).dt.convert_time_zone("UTC") for c in zoned])


def open_results(db: str | Path) -> Results:
    """The results database at ``db``, read-only; ``StoreInputError`` when there is none."""
    path = Path(db)
    if not path.exists():
        raise StoreInputError(f"{path}: no results database here (run `joulefarm demo` first, "
                              "or pass --db)")
    return Results(path)


__all__ = ["CHANGE_POINT_SCHEMA", "SERIES_CHANGE_SCHEMA", "Results", "open_results"]
