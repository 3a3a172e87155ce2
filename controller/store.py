"""Results in DuckDB: schema, versioned migrations, and atomic bulk ingest through Arrow.

Every measurement row carries the meter that produced it and whether it was simulated, so a
simulated energy can never be mistaken for a measured one. A run's rows are written in one
transaction: a failure leaves nothing half-stored.
"""

from __future__ import annotations

import errno
import json
import math
import os
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from controller.database import READ_WAIT_S, DatabaseBusy, WriterConnection, read_only
from joulefarm.errors import JoulefarmError
from joulefarm.results import (
    LAYER_COLUMNS,
    NO_COST_FORMULA,
    BenchmarkResult,
    DeviceFacts,
    PairRecord,
    shape_text,
)
from joulefarm.tflite.parse import LayerInfo

DEFAULT_DB_ENV = "JOULEFARM_DB"
DEFAULT_DB_NAME = "joulefarm.duckdb"


def default_db_path() -> Path:
    """``$JOULEFARM_DB`` if set, else ``./joulefarm.duckdb``."""
    return Path(os.environ.get(DEFAULT_DB_ENV, DEFAULT_DB_NAME))


class StoreError(JoulefarmError):
    """The database cannot be opened or does not hold what was asked for."""


class StoreInputError(StoreError):
    """What was asked of the database cannot be answered: no database at the path, an unknown
    sweep id, a query that does not parse or names what does not exist."""

    exit_code = 2
    grpc_status = "INVALID_ARGUMENT"


class DuplicateRunError(StoreError):
    """A job's results were already stored; the second copy was refused."""


class StoreWriteError(StoreError):
    """The machine could not write the database or a file beside it (a full disk, a read-only
    or failing file system): nothing more can be stored until that is fixed, so a sweep stops
    rather than fail every job that remains."""


# Each migration moves the schema from version N-1 to N. Never edit one that has shipped:
# add the next.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
    CREATE TABLE devices (
        name VARCHAR NOT NULL,
        fingerprint VARCHAR NOT NULL,
        platform VARCHAR NOT NULL,
        address VARCHAR,
        tags VARCHAR[],
        machine VARCHAR,
        cpu_model VARCHAR,
        cpu_count INTEGER,
        memory_bytes BIGINT,
        os VARCHAR,
        kernel VARCHAR,
        python_version VARCHAR,
        runtime_name VARCHAR,
        runtime_version VARCHAR,
        agent_version VARCHAR,
        rust_core_profile VARCHAR,
        meter_kind VARCHAR,
        meter_profile VARCHAR,
        meter_simulated BOOLEAN NOT NULL,
        cpu_max_khz BIGINT,
        governors VARCHAR[],
        facts JSON,
        first_seen TIMESTAMPTZ NOT NULL,
        last_seen TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (name, fingerprint)
    );
    CREATE TABLE sweeps (
        sweep_id VARCHAR PRIMARY KEY,
        suite VARCHAR NOT NULL,
        suite_file VARCHAR,
        devices_file VARCHAR,
        status VARCHAR NOT NULL,          -- running | done | partial | failed
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        joulefarm_version VARCHAR,
        git_revision VARCHAR,
        rust_core_profile VARCHAR
    );
    CREATE TABLE models (
        sha256 VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        source VARCHAR,                   -- e.g. "recipe:tiny_cnn seed=0" or a file path
        size_bytes BIGINT,
        layer_count INTEGER
    );
    -- Static features of every layer of every model (from the model toolkit): what estimators
    -- learn from, available before anything is measured.
    CREATE TABLE model_layers (
        model_sha256 VARCHAR NOT NULL,
        layer_index INTEGER NOT NULL,
        op VARCHAR NOT NULL,
        input_shapes VARCHAR,
        output_shapes VARCHAR,
        dtype VARCHAR,
        kernel INTEGER[],
        stride INTEGER[],
        padding VARCHAR,
        activation VARCHAR,
        macs BIGINT,
        param_bytes BIGINT,
        act_in_bytes BIGINT,
        act_out_bytes BIGINT,
        PRIMARY KEY (model_sha256, layer_index)
    );
    CREATE TABLE jobs (
        job_id VARCHAR PRIMARY KEY,
        sweep_id VARCHAR NOT NULL,
        device_name VARCHAR NOT NULL,
        model_name VARCHAR NOT NULL,
        model_sha256 VARCHAR,
        config JSON,                      -- measuring settings of this job (suite x matrix)
        status VARCHAR NOT NULL,          -- pending | running | done | failed | unreachable
        attempts INTEGER NOT NULL DEFAULT 0,
        error VARCHAR,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ
    );
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY,
        job_id VARCHAR NOT NULL UNIQUE,   -- a job's results are stored exactly once
        sweep_id VARCHAR NOT NULL,
        device_name VARCHAR NOT NULL,
        device_fingerprint VARCHAR NOT NULL,
        model_name VARCHAR NOT NULL,
        model_sha256 VARCHAR NOT NULL,
        mode VARCHAR NOT NULL,
        meter_kind VARCHAR NOT NULL,
        meter_profile VARCHAR,
        simulated BOOLEAN NOT NULL,
        sample_rate_hz DOUBLE,
        runtime_name VARCHAR,
        runtime_version VARCHAR,
        num_threads INTEGER,
        idle_power_w DOUBLE,
        clock_offset_s DOUBLE,
        alignment_correlation DOUBLE,
        true_clock_offset_s DOUBLE,
        started_at TIMESTAMPTZ,
        finished_at TIMESTAMPTZ,
        flags VARCHAR[],
        trace_path VARCHAR,               -- decimated trace (Parquet), relative to the database
        conditions_before JSON,           -- CPU clocks (kHz), temperatures (°C) before the run
        conditions_after JSON,
        layer_count INTEGER,
        latency_s DOUBLE,                 -- layers/insitu: sum over layers; whole: mean per call
        energy_j DOUBLE                   -- per inference (layers/insitu: summed over layers)
    );
    CREATE TABLE whole_measurements (
        run_id VARCHAR PRIMARY KEY,
        iterations INTEGER,
        window_start_s DOUBLE,
        window_end_s DOUBLE,
        latency_mean_s DOUBLE,
        latency_p50_s DOUBLE,
        latency_p90_s DOUBLE,
        latency_p99_s DOUBLE,
        energy_j DOUBLE,
        active_energy_j DOUBLE,
        mean_power_w DOUBLE,
        samples BIGINT,
        coverage DOUBLE,
        flags VARCHAR[],
        true_energy_j DOUBLE,
        meter_kind VARCHAR NOT NULL,
        simulated BOOLEAN NOT NULL
    );
    CREATE TABLE layer_measurements (
        run_id VARCHAR NOT NULL,
        layer_index INTEGER NOT NULL,
        op VARCHAR NOT NULL,
        macs BIGINT,
        param_bytes BIGINT,
        act_in_bytes BIGINT,
        act_out_bytes BIGINT,
        input_shapes VARCHAR,
        output_shapes VARCHAR,
        iterations INTEGER,
        window_start_s DOUBLE,
        window_end_s DOUBLE,
        latency_s DOUBLE,
        energy_j DOUBLE,
        active_energy_j DOUBLE,
        mean_power_w DOUBLE,
        samples BIGINT,
        coverage DOUBLE,
        flags VARCHAR[],
        true_energy_j DOUBLE,
        meter_kind VARCHAR NOT NULL,
        simulated BOOLEAN NOT NULL
        -- (run_id, layer_index) is unique: checked before insert rather than by an index,
        -- which would cost a third of the ingest rate.
    );
    -- Layers mode with pairs: each adjacent pair of layers, the second reading the first's
    -- output, looped as one sub-model. Indices are node indices, as layer_measurements'.
    CREATE TABLE pair_measurements (
        run_id VARCHAR NOT NULL,
        first_index INTEGER NOT NULL,
        second_index INTEGER NOT NULL,
        ops VARCHAR NOT NULL,             -- "FIRST_OP+SECOND_OP"
        latency_s DOUBLE,                 -- per call
        energy_j DOUBLE,                  -- per call, idle included
        mean_power_w DOUBLE,
        iterations INTEGER,
        flags VARCHAR[],
        true_energy_j DOUBLE,
        meter_kind VARCHAR NOT NULL,
        simulated BOOLEAN NOT NULL,
        PRIMARY KEY (run_id, first_index, second_index)
    );
    -- Layers mode also loops the unsplit model: how far the sum of the parts is from the whole.
    CREATE VIEW additivity AS
    SELECT r.run_id, r.sweep_id, r.device_name, r.model_name, r.mode,
           r.latency_s AS layers_latency_s, w.latency_mean_s AS whole_latency_s,
           r.latency_s / w.latency_mean_s AS latency_ratio,
           r.energy_j AS layers_energy_j, w.energy_j AS whole_energy_j,
           r.energy_j / w.energy_j AS energy_ratio, r.simulated
    FROM runs r JOIN whole_measurements w USING (run_id)
    WHERE r.mode <> 'whole';
    -- One row per layer with its device and model: what most queries want.
    CREATE VIEW layer_energy AS
    SELECT r.sweep_id, r.device_name, r.model_name, l.layer_index, l.op, l.macs,
           l.latency_s, l.energy_j, l.active_energy_j, l.mean_power_w, l.flags,
           l.meter_kind, l.simulated,
           CASE WHEN l.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
           r.run_id
    FROM layer_measurements l JOIN runs r USING (run_id);
    -- Each measured pair against its two layers alone. fused is nn-Meter's rule:
    -- lat(a) + lat(b) - lat(ab) > 0.5 * min(lat(a), lat(b)) (joulefarm.results.FUSED_SAVING_SHARE).
    CREATE VIEW layer_pairs AS
    SELECT r.sweep_id, r.device_name, r.model_name, p.first_index, p.second_index, p.ops,
           a.latency_s AS first_latency_s, b.latency_s AS second_latency_s,
           a.latency_s + b.latency_s AS sum_latency_s, p.latency_s AS pair_latency_s,
           a.latency_s + b.latency_s - p.latency_s AS latency_saved_s,
           a.latency_s + b.latency_s - p.latency_s > 0.5 * least(a.latency_s, b.latency_s)
               AS fused,
           -- Splitting adds one interpreter call per layer: a saving within about one call
           -- (twice the run's cheapest layer) is call overhead, not fusion.
           a.latency_s + b.latency_s - p.latency_s > 2.0 * (
               SELECT min(m.latency_s) FROM layer_measurements m WHERE m.run_id = p.run_id)
               AS beyond_call_overhead,
           a.energy_j + b.energy_j AS sum_energy_j, p.energy_j AS pair_energy_j,
           (a.energy_j + b.energy_j) / p.energy_j AS energy_ratio,
           p.true_energy_j AS pair_true_energy_j, p.iterations, p.flags, p.meter_kind,
           p.simulated,
           CASE WHEN p.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
           r.run_id
    FROM pair_measurements p JOIN runs r USING (run_id)
    JOIN layer_measurements a ON a.run_id = p.run_id AND a.layer_index = p.first_index
    JOIN layer_measurements b ON b.run_id = p.run_id AND b.layer_index = p.second_index;
    """),
    # The running controller's lease: who runs the sweep and when it last said so, so that a
    # sweep whose controller died shows as interrupted rather than running forever.
    (2, """
    ALTER TABLE sweeps ADD COLUMN controller_host VARCHAR;
    ALTER TABLE sweeps ADD COLUMN controller_pid INTEGER;
    ALTER TABLE sweeps ADD COLUMN heartbeat_at TIMESTAMPTZ;
    """),
    # Latency as a median over batches of calls, with its confidence interval; energy with its
    # stated uncertainty; which rows an estimator may train on; fusion only beyond the spread.
    (3, """
    ALTER TABLE layer_measurements ADD COLUMN latency_window_s DOUBLE;
    ALTER TABLE layer_measurements ADD COLUMN latency_low_s DOUBLE;
    ALTER TABLE layer_measurements ADD COLUMN latency_high_s DOUBLE;
    ALTER TABLE layer_measurements ADD COLUMN batches INTEGER;
    ALTER TABLE layer_measurements ADD COLUMN energy_err_j DOUBLE;
    ALTER TABLE pair_measurements ADD COLUMN latency_low_s DOUBLE;
    ALTER TABLE pair_measurements ADD COLUMN latency_high_s DOUBLE;
    -- usable: no flag of the row or its run is in joulefarm.results.UNUSABLE_FLAGS (this
    -- literal; tests/controller/test_store.py fails when the two part: a new list needs a
    -- migration that replaces this view).
    CREATE OR REPLACE VIEW layer_energy AS
    SELECT r.sweep_id, r.device_name, r.model_name, l.layer_index, l.op, l.macs,
           l.latency_s, l.latency_low_s, l.latency_high_s, l.energy_j, l.energy_err_j,
           l.active_energy_j, l.mean_power_w, l.coverage, l.flags,
           NOT list_has_any(list_concat(coalesce(l.flags, []), coalesce(r.flags, [])),
                            ['no_samples', 'low_coverage', 'latency_unstable', 'non_monotonic',
                             'saturated', 'host_contended', 'implausible_layer_sum',
                             'charging'])
               AS usable,
           l.meter_kind, l.simulated,
           CASE WHEN l.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
           r.run_id
    FROM layer_measurements l JOIN runs r USING (run_id);
    -- The layers' sum against the whole model's median call (a median, as each layer's).
    CREATE OR REPLACE VIEW additivity AS
    SELECT r.run_id, r.sweep_id, r.device_name, r.model_name, r.mode,
           r.latency_s AS layers_latency_s, w.latency_p50_s AS whole_latency_s,
           r.latency_s / w.latency_p50_s AS latency_ratio,
           r.energy_j AS layers_energy_j, w.energy_j AS whole_energy_j,
           r.energy_j / w.energy_j AS energy_ratio, r.simulated
    FROM runs r JOIN whole_measurements w USING (run_id)
    WHERE r.mode <> 'whole';
    -- fused: nn-Meter's rule, and a saving beyond the measured spread (the half-widths of the
    -- three latencies' confidence intervals, added; joulefarm.results.saving_spread_s).
    CREATE OR REPLACE VIEW layer_pairs AS
    WITH p AS (
        SELECT p.*, a.latency_s AS first_latency_s, b.latency_s AS second_latency_s,
               a.latency_s + b.latency_s - p.latency_s AS latency_saved_s,
               coalesce((a.latency_high_s - a.latency_low_s) / 2, 0)
               + coalesce((b.latency_high_s - b.latency_low_s) / 2, 0)
               + coalesce((p.latency_high_s - p.latency_low_s) / 2, 0) AS spread_s,
               a.energy_j + b.energy_j AS sum_energy_j
        FROM pair_measurements p
        JOIN layer_measurements a ON a.run_id = p.run_id AND a.layer_index = p.first_index
        JOIN layer_measurements b ON b.run_id = p.run_id AND b.layer_index = p.second_index
    )
    SELECT r.sweep_id, r.device_name, r.model_name, p.first_index, p.second_index, p.ops,
           p.first_latency_s, p.second_latency_s,
           p.first_latency_s + p.second_latency_s AS sum_latency_s,
           p.latency_s AS pair_latency_s, p.latency_saved_s, p.spread_s,
           p.latency_saved_s > 0.5 * least(p.first_latency_s, p.second_latency_s)
               AND p.latency_saved_s > p.spread_s AS fused,
           p.latency_saved_s > 2.0 * (
               SELECT min(m.latency_s) FROM layer_measurements m WHERE m.run_id = p.run_id)
               AS beyond_call_overhead,
           p.sum_energy_j, p.energy_j AS pair_energy_j,
           p.sum_energy_j / p.energy_j AS energy_ratio,
           p.true_energy_j AS pair_true_energy_j, p.iterations, p.flags, p.meter_kind,
           p.simulated,
           CASE WHEN p.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
           r.run_id
    FROM p JOIN runs r USING (run_id);
    """),
    # A layer that cannot run on its own (not_isolated) is stored with nothing measured: it
    # joins the unusable flags (joulefarm.results.UNUSABLE_FLAGS; this literal again).
    (4, """
    CREATE OR REPLACE VIEW layer_energy AS
    SELECT r.sweep_id, r.device_name, r.model_name, l.layer_index, l.op, l.macs,
           l.latency_s, l.latency_low_s, l.latency_high_s, l.energy_j, l.energy_err_j,
           l.active_energy_j, l.mean_power_w, l.coverage, l.flags,
           NOT list_has_any(list_concat(coalesce(l.flags, []), coalesce(r.flags, [])),
                            ['no_samples', 'low_coverage', 'latency_unstable', 'non_monotonic',
                             'saturated', 'host_contended', 'implausible_layer_sum',
                             'charging', 'not_isolated'])
               AS usable,
           l.meter_kind, l.simulated,
           CASE WHEN l.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
           r.run_id
    FROM layer_measurements l JOIN runs r USING (run_id);
    """),
    # What a sweep needs to be resumed from any directory, whatever became of its files: the
    # suite as resolved (JSON), the definitions of its devices (JSON; token files by path, never
    # a token) and every model's bytes; and why a sweep stopped early (status interrupted).
    (5, """
    ALTER TABLE sweeps ADD COLUMN suite_definition JSON;
    ALTER TABLE sweeps ADD COLUMN device_definitions JSON;
    ALTER TABLE sweeps ADD COLUMN error VARCHAR;
    CREATE TABLE model_contents (
        sha256 VARCHAR PRIMARY KEY,
        content BLOB NOT NULL
    );
    """),
    # What changed between nights (controller.changes): each change point of a measurement
    # series (a metric of the whole model or of one layer that moved, with its interval and,
    # for the whole, the layers it is owed to), and each change of a series' key. Columns:
    # controller.results_frames.CHANGE_POINT_SCHEMA and SERIES_CHANGE_SCHEMA.
    (6, """
    CREATE TABLE change_points (
        series_id VARCHAR NOT NULL,
        device_name VARCHAR NOT NULL,
        device_fingerprint VARCHAR NOT NULL,
        model_name VARCHAR NOT NULL,
        model_sha256 VARCHAR NOT NULL,
        settings JSON,                    -- the job's config without seed and repetition
        runtime_name VARCHAR,
        runtime_version VARCHAR,
        meter_kind VARCHAR NOT NULL,
        simulated BOOLEAN NOT NULL,
        metric VARCHAR NOT NULL,          -- energy_j | latency_s | power_w
        scope VARCHAR NOT NULL,           -- whole | layer
        layer_index INTEGER,              -- layer rows
        op VARCHAR,
        before_sweep VARCHAR NOT NULL,
        after_sweep VARCHAR NOT NULL,
        before_value DOUBLE,              -- geometric mean over the night's repetitions
        after_value DOUBLE,
        ratio DOUBLE,                     -- after / before, with its 1 - alpha interval
        ratio_low DOUBLE,
        ratio_high DOUBLE,
        direction VARCHAR NOT NULL,       -- regression | improvement
        p_value DOUBLE,                   -- Holm-adjusted over the series
        evidence VARCHAR NOT NULL,        -- repetitions | stated_uncertainty
        n_before INTEGER,
        n_after INTEGER,
        layers INTEGER[],                 -- whole rows: the layers that moved, largest first
        layer_ops VARCHAR[],
        layer_shares DOUBLE[],            -- each one's share of the whole's change
        alpha DOUBLE NOT NULL,
        threshold DOUBLE NOT NULL,
        detected_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE series_changes (
        device_name VARCHAR NOT NULL,
        model_name VARCHAR NOT NULL,
        field VARCHAR NOT NULL,           -- a series key field, or settings.KEY
        before_value VARCHAR,
        after_value VARCHAR,
        before_series VARCHAR NOT NULL,
        after_series VARCHAR NOT NULL,
        before_sweep VARCHAR NOT NULL,
        after_sweep VARCHAR NOT NULL,
        detected_at TIMESTAMPTZ NOT NULL
    );
    """),
    # Train mode: the training step by layer and phase (joulefarm.results.PhaseRecord), per
    # step. The step itself is the run's whole_measurements row; runs.latency_s and energy_j
    # are the phases' sum, as an insitu run's are its layers', so the additivity view reads
    # what the op windows hold of the step. layer_index NULL: model-wide work (the loss, ...).
    (7, """
    CREATE TABLE phase_measurements (
        run_id VARCHAR NOT NULL,
        layer_index INTEGER,
        op VARCHAR NOT NULL,
        phase VARCHAR NOT NULL,           -- joulefarm.tflite.training.PHASES
        ops INTEGER NOT NULL,             -- ops of the train subgraph in this (layer, phase)
        events BIGINT,                    -- profiler events attributed to them over the run
        latency_s DOUBLE,                 -- sum of their windows, per step
        energy_j DOUBLE,                  -- per step, idle included
        true_energy_j DOUBLE,
        meter_kind VARCHAR NOT NULL,
        simulated BOOLEAN NOT NULL
    );
    -- One row per layer and phase with its device and model, and the part of the step the
    -- phase belongs to (joulefarm.results.TRAIN_PHASE_GROUPS; loss and the like: other).
    CREATE VIEW train_phase_energy AS
    SELECT r.sweep_id, r.device_name, r.model_name, p.layer_index, p.op, p.phase,
           CASE WHEN p.phase = 'forward' THEN 'forward'
                WHEN p.phase LIKE 'backward-%' THEN 'backward'
                WHEN p.phase = 'update' THEN 'update'
                ELSE 'other' END AS part,
           p.ops, p.latency_s, p.energy_j, p.true_energy_j, p.meter_kind, p.simulated,
           CASE WHEN p.simulated THEN 'simulated' ELSE 'measured' END AS energy_source,
           r.run_id
    FROM phase_measurements p JOIN runs r USING (run_id);
    """),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

_ARROW_TYPES = {"INTEGER": pa.int32(), "BIGINT": pa.int64(), "DOUBLE": pa.float64(),
                "VARCHAR": pa.string(), "VARCHAR[]": pa.list_(pa.string())}
# layer_measurements: the run, the LayerRecord columns, and what produced them.
_LAYER_SCHEMA = pa.schema([("run_id", pa.string()),
                           *((c.name, _ARROW_TYPES[c.sql]) for c in LAYER_COLUMNS),
                           ("meter_kind", pa.string()), ("simulated", pa.bool_())])
_LAYER_FIELD = {c.name: c.field for c in LAYER_COLUMNS}
_SQL_OF = {"int32": "INTEGER", "int64": "BIGINT", "double": "DOUBLE", "string": "VARCHAR",
           "list<item: string>": "VARCHAR[]", "bool": "BOOLEAN"}


_PAIR_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("first_index", pa.int32()), ("second_index", pa.int32()),
    ("ops", pa.string()), ("latency_s", pa.float64()), ("energy_j", pa.float64()),
    ("mean_power_w", pa.float64()), ("iterations", pa.int32()),
    ("flags", pa.list_(pa.string())), ("true_energy_j", pa.float64()),
    ("meter_kind", pa.string()), ("simulated", pa.bool_()),
    ("latency_low_s", pa.float64()), ("latency_high_s", pa.float64()),
])


def _pair_table(run_id: str, pairs: Sequence[PairRecord], meter_kind: str,
                simulated: bool) -> pa.Table:
    """The pair_measurements rows of one run (pairs are few: built row by row)."""
    n = len(pairs)
    columns: dict[str, list[Any]] = {"run_id": [run_id] * n, "meter_kind": [meter_kind] * n,
                                     "simulated": [simulated] * n}
    for name in _PAIR_SCHEMA.names:
        if name in _NAN_IS_NULL:  # None and NaN (not known) become NULL
            columns[name] = [None if v is None or math.isnan(v) else v
                             for v in (getattr(p, name) for p in pairs)]
        elif name not in columns:
            columns[name] = [getattr(p, name) for p in pairs]
    return pa.Table.from_pydict(columns, schema=_PAIR_SCHEMA)


def _repeated(value: str, n: int) -> pa.Array:
    """``n`` copies of one string, built from two buffers rather than ``n`` Python objects (a
    third of the time it takes to build a run's table went to the two constant columns)."""
    raw = value.encode()
    if (n + 1) * len(raw) >= 2**31:  # Arrow's string offsets are 32-bit
        return pa.array([value] * n, pa.string())
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(raw * n))


# Columns where NaN means "not known" (no ground truth, no interval measured, a layer that did
# not run alone, a window without samples; controller.farm.result_checks lets NaN through only
# there): NULL in the database, so SQL's coalesce and aggregates treat them as missing, and
# never as a number that turns every sum it enters into NaN.
_NAN_IS_NULL = frozenset({"true_energy_j", "latency_window_s", "latency_low_s",
                          "latency_high_s", "energy_err_j", "window_start_s", "window_end_s",
                          "latency_s", "energy_j", "active_energy_j", "mean_power_w",
                          "coverage"})


def _known(value: float | None) -> float | None:
    """``value``, or None (NULL) where it is NaN: not known."""
    return None if value is None or math.isnan(value) else value


def _is_write_failure(error: BaseException) -> bool:
    """Whether the machine failed to write (rather than the data being refused): DuckDB says
    so in its I/O errors, and in a failed commit's (``TransactionContext Error: Failed to
    commit: Could not write file ...: No space left on device``)."""
    if isinstance(error, (OSError, duckdb.IOException)):
        return True
    return isinstance(error, duckdb.Error) and "Could not write file" in str(error)


def _write_failure(target: Path, error: BaseException) -> StoreWriteError:
    """One line that names why writing ``target`` failed: the system's words, not those of a
    rollback or a library that followed."""
    text = str(error)
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or (
            os.strerror(errno.ENOSPC) in text):
        return StoreWriteError(f"no space left on device writing {target}")
    if isinstance(error, OSError) and error.strerror:
        return StoreWriteError(f"cannot write {target}: {error.strerror}")
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return StoreWriteError(f"cannot write {target}: {first}")


def _layer_table(run_id: str, columns: Mapping[str, Any], meter_kind: str,
                 simulated: bool) -> pa.Table:
    """The layer_measurements rows of one run, straight from the result's columns (numpy
    arrays become Arrow arrays without a Python object per value)."""
    n = len(columns["index"])
    arrays = []
    for field in _LAYER_SCHEMA:
        name = field.name
        if name == "run_id":
            arrays.append(_repeated(run_id, n))
        elif name == "meter_kind":
            arrays.append(_repeated(meter_kind, n))
        elif name == "simulated":
            arrays.append(pa.array(np.full(n, simulated), field.type))
        elif name in _NAN_IS_NULL:
            values = np.asarray(columns[_LAYER_FIELD[name]], dtype=np.float64)
            arrays.append(pa.array(values, field.type, mask=np.isnan(values)))
        elif name == "flags":
            arrays.append(pa.array(columns["flags"], field.type))  # tuples convert as lists
        elif name == "macs":  # unknown (no cost formula) is NULL, not the column's 0
            unknown = np.array([NO_COST_FORMULA in f for f in columns["flags"]], dtype=bool)
            arrays.append(pa.array(columns["macs"], field.type, mask=unknown))
        else:
            arrays.append(pa.array(columns[_LAYER_FIELD[name]], field.type))
    return pa.Table.from_arrays(arrays, schema=_LAYER_SCHEMA)


def _layer_count(result: BenchmarkResult) -> int:
    """Layers measured: the rows of ``layers``, or in train mode the layers with phases."""
    if result.phases:
        return len({p.layer for p in result.phases if p.layer is not None})
    return len(result.layers)


def _rollback_quietly(cur: duckdb.DuckDBPyConnection) -> None:
    """Roll back after a failure, which stays the error reported: after a failed commit (a full
    disk) DuckDB has no transaction left, and its "cannot rollback" would hide the cause."""
    with suppress(duckdb.Error):
        cur.rollback()


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


class ResultStore:
    """A read-write handle on a results database. Thread-safe: one writer at a time."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot create its folder: {e}") from e
        # Open only while writing: readers (sweep status, query) get the file in between.
        self._writer = WriterConnection(self.path)
        self._migrate()

    def close(self) -> None:
        self._writer.close()

    @property
    def times_opened(self) -> int:
        """How often the file was opened for writing (it is let go whenever a reader asks)."""
        return self._writer.opened

    @contextmanager
    def _connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            with self._writer.hold() as con:
                yield con
        except DatabaseBusy as e:
            raise StoreError(
                f"{self.path}: other processes kept the database busy for "
                f"{self._writer.wait_s:g} s: {e}"
            ) from e
        except StoreWriteError:
            # DuckDB may drop a database whose file it failed to write: the next write opens it
            # afresh (once there is space again) rather than reuse a dead connection.
            self._writer.close()
            raise
        except duckdb.IOException as e:
            if os.strerror(errno.ENOSPC) in str(e):
                raise _write_failure(self.path, e) from e
            raise StoreError(f"{self.path}: cannot open the results database: {e}") from e

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connection() as con:
            cur = con.cursor()
            cur.begin()
            try:
                yield cur
                cur.commit()
            except BaseException as e:
                _rollback_quietly(cur)
                if _is_write_failure(e):
                    raise _write_failure(self.path, e) from e
                raise
            finally:
                cur.close()

    def _migrate(self) -> None:
        with self._transaction() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
            row = cur.execute("SELECT max(version) FROM schema_migrations").fetchone()
            current = row[0] or 0 if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {current} was written by a newer joulefarm "
                    f"(this one knows up to {SCHEMA_VERSION}); upgrade joulefarm")
            for version, sql in MIGRATIONS:
                if version > current:
                    cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations VALUES (?, ?)", [version, _now()])
            self._check_layer_columns(cur)

    def _check_layer_columns(self, cur: duckdb.DuckDBPyConnection) -> None:
        """The migrated layer_measurements must hold exactly the columns ingest writes
        (``joulefarm.results.LayerRecord``): a field added without its migration fails here,
        at open, not in the middle of a sweep."""
        # Compared as sets: ingest inserts by name, and migrations append columns at the end.
        stored = sorted((name, kind) for name, kind, *_ in
                        cur.execute("DESCRIBE layer_measurements").fetchall())
        expected = sorted((f.name, _SQL_OF[str(f.type)]) for f in _LAYER_SCHEMA)
        if stored != expected:
            raise StoreError(
                f"{self.path}: table layer_measurements has columns {stored}, but this "
                f"joulefarm writes {expected}: a LayerRecord field lacks its migration")

    # -- writes -------------------------------------------------------------------------------

    def upsert_device(self, facts: DeviceFacts, *, address: str, tags: Sequence[str]) -> None:
        meter = facts.meters[0] if facts.meters else None
        now = _now()
        with self._transaction() as cur:
            cur.execute(
                """INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                                               ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name, fingerprint) DO UPDATE SET
                       last_seen = excluded.last_seen, address = excluded.address,
                       tags = excluded.tags""",
                [facts.device_name, facts.fingerprint, facts.platform, address, list(tags),
                 facts.machine, facts.cpu_model, facts.cpu_count, facts.memory_bytes, facts.os,
                 facts.kernel, facts.python_version, facts.runtime_name, facts.runtime_version,
                 facts.agent_version, facts.rust_core_profile,
                 meter.kind if meter else None, meter.profile if meter else None,
                 bool(meter and meter.simulated), facts.cpu_max_khz, list(facts.governors),
                 json.dumps(asdict(facts)), now, now],
            )

    def start_sweep(self, *, suite: str, suite_file: str, devices_file: str,
                    joulefarm_version: str, git_revision: str, rust_core_profile: str,
                    suite_definition: str | None = None,
                    device_definitions: str | None = None) -> str:
        """Record a new sweep; ``suite_definition`` and ``device_definitions`` (JSON) are what
        resuming it needs (``controller.farm.sweep_record``)."""
        sweep_id = new_id("sweep")
        now = _now()
        with self._transaction() as cur:
            cur.execute("INSERT INTO sweeps (sweep_id, suite, suite_file, devices_file, status, "
                        "started_at, joulefarm_version, git_revision, rust_core_profile, "
                        "controller_host, controller_pid, heartbeat_at, suite_definition, "
                        "device_definitions) "
                        "VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [sweep_id, suite, suite_file, devices_file, now, joulefarm_version,
                         git_revision, rust_core_profile, socket.gethostname(), os.getpid(),
                         now, suite_definition, device_definitions])
        return sweep_id

    def heartbeat(self, sweep_id: str) -> None:
        """The running controller's lease on a sweep: it is alive now."""
        with self._transaction() as cur:
            cur.execute("UPDATE sweeps SET heartbeat_at = ? WHERE sweep_id = ?", [_now(), sweep_id])

    def finish_sweep(self, sweep_id: str, status: str, error: str | None = None) -> None:
        """``status``: done, partial, failed, or interrupted (stopped early, for ``error``)."""
        with self._transaction() as cur:
            cur.execute("UPDATE sweeps SET status = ?, finished_at = ?, error = ? "
                        "WHERE sweep_id = ?", [status, _now(), error, sweep_id])

    def add_model(self, sha256: str, name: str, source: str, size_bytes: int,
                  layers: Sequence[LayerInfo], content: bytes | None = None) -> None:
        """A model and its layers' static features (once per distinct content), and its bytes
        when given (what a sweep resumes with)."""
        with self._transaction() as cur:
            if content is not None:
                cur.execute("INSERT INTO model_contents VALUES (?, ?) ON CONFLICT DO NOTHING",
                            [sha256, content])
            new = cur.execute("INSERT INTO models VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING "
                              "RETURNING sha256",
                              [sha256, name, source, size_bytes, len(layers)]).fetchone()
            if new is None:
                return
            cur.executemany(
                "INSERT INTO model_layers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[sha256, x.index, x.op, shape_text(x.input_shapes), shape_text(x.output_shapes),
                  x.dtype, list(x.kernel) if x.kernel else None,
                  list(x.stride) if x.stride else None, x.padding, x.activation, x.macs,
                  x.param_bytes, x.act_in_bytes, x.act_out_bytes] for x in layers])

    def add_job(self, sweep_id: str, device_name: str, model_name: str,
                model_sha256: str, config: Mapping[str, object] | None = None) -> str:
        return self.add_jobs(sweep_id, [(device_name, model_name, model_sha256, config or {})])[0]

    def add_jobs(self, sweep_id: str,
                 jobs: Sequence[tuple[str, str, str, Mapping[str, object]]]) -> list[str]:
        """Create every job of a sweep up front (device, model, sha256, config), atomically,
        so a crashed controller leaves a complete list of what remains to do."""
        ids = [new_id("job") for _ in jobs]
        with self._transaction() as cur:
            for job_id, (device, model, sha, config) in zip(ids, jobs, strict=True):
                cur.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, NULL, "
                            "NULL, NULL)",
                            [job_id, sweep_id, device, model, sha, json.dumps(dict(config))])
        return ids

    def start_job(self, job_id: str) -> int:
        """Mark a job running and count the attempt; returns the attempt number."""
        with self._transaction() as cur:
            row = cur.execute("UPDATE jobs SET status = 'running', attempts = attempts + 1, "
                              "started_at = ? WHERE job_id = ? AND status <> 'done' "
                              "RETURNING attempts", [_now(), job_id]).fetchone()
        if row is None:
            raise StoreError(f"job {job_id} is already done or does not exist")
        return int(row[0])

    def fail_job(self, job_id: str, status: str, error: str) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE jobs SET status = ?, error = ?, finished_at = ? "
                        "WHERE job_id = ? AND status <> 'done'",
                        [status, error, _now(), job_id])

    def jobs(self, sweep_id: str, *, incomplete_only: bool = False) -> list[dict[str, object]]:
        """The jobs of a sweep in creation order, as dicts (config decoded)."""
        where = " AND status <> 'done'" if incomplete_only else ""
        names, rows = self.query(
            "SELECT job_id, device_name, model_name, model_sha256, config, status, attempts, "
            f"error FROM jobs WHERE sweep_id = ?{where} ORDER BY job_id", [sweep_id])
        jobs = [dict(zip(names, row, strict=True)) for row in rows]
        for job in jobs:
            job["config"] = json.loads(job["config"] or "{}")
        return jobs

    def sweep(self, sweep_id: str) -> dict[str, object]:
        names, rows = self.query("SELECT * FROM sweeps WHERE sweep_id = ?", [sweep_id])
        if not rows:
            raise StoreInputError(f"{self.path}: no sweep {sweep_id!r}")
        return dict(zip(names, rows[0], strict=True))

    def model_contents(self, sha256s: Sequence[str]) -> dict[str, bytes]:
        """The stored bytes of those of these models that have them, by sha256."""
        _, rows = self.query("SELECT sha256, content FROM model_contents "
                             "WHERE list_contains(?, sha256)", [list(sha256s)])
        return {str(sha): bytes(content) for sha, content in rows}

    def reopen_sweep(self, sweep_id: str) -> None:
        with self._transaction() as cur:
            cur.execute("UPDATE sweeps SET status = 'running', finished_at = NULL, error = NULL, "
                        "controller_host = ?, controller_pid = ?, heartbeat_at = ? "
                        "WHERE sweep_id = ?", [socket.gethostname(), os.getpid(), _now(), sweep_id])

    def store_run(self, *, job_id: str, sweep_id: str, device: DeviceFacts, model_name: str,
                  result: BenchmarkResult) -> str:
        """Store one run, its layers, its layer pairs or its training phases, and mark its job
        done, in a single transaction."""
        run_id = new_id("run")
        phase_keys = [(p.layer, p.op, p.phase) for p in result.phases]
        if len(set(phase_keys)) != len(phase_keys):
            raise StoreError(f"job {job_id}: the result lists a layer's phase more than once; "
                             "nothing was stored")
        m = result.meter
        layers = result.layers
        index = np.asarray(layers.columns["index"])
        # Layers arrive in order: the sort that np.unique needs is paid only when they do not.
        in_order = bool(np.all(index[1:] > index[:-1]))
        if not in_order and len(np.unique(index)) != len(index):
            raise StoreError(f"job {job_id}: the result lists a layer more than once; "
                             "nothing was stored")
        table = _layer_table(run_id, layers.columns, m.kind, m.simulated)
        pair_keys = [(p.first_index, p.second_index) for p in result.pairs]
        if len(set(pair_keys)) != len(pair_keys):
            raise StoreError(f"job {job_id}: the result lists a layer pair more than once; "
                             "nothing was stored")
        pairs = _pair_table(run_id, result.pairs, m.kind, m.simulated)
        w = result.whole
        if result.mode == "whole" and w is not None:
            latency, energy = _known(w.latency_mean_s), _known(w.energy_j)
        elif result.phases:  # train: the op windows' sum, against the step in whole
            latency = _known(sum(p.latency_s for p in result.phases))
            energy = _known(sum(p.energy_j for p in result.phases))
        else:
            # A sum with a part not known is not known: NULL (see _NAN_IS_NULL).
            latency = _known(float(np.sum(layers.columns["latency_s"])))
            energy = _known(float(np.sum(layers.columns["energy_j"])))
        # The trace file is written first and removed if the run's rows are not stored: the
        # database never points at a missing file, and a failed run leaves no stray file.
        trace_rel = self._write_trace(run_id, result)
        try:
            self._insert_run(run_id, job_id, sweep_id, device, model_name, result, table,
                             pairs, latency, energy, trace_rel)
        except BaseException:
            if trace_rel:
                (self.path.parent / trace_rel).unlink(missing_ok=True)
            raise
        return run_id

    def _write_trace(self, run_id: str, result: BenchmarkResult) -> str | None:
        t = result.trace
        if t is None:
            return None
        rel = Path(f"{self.path.stem}.traces") / f"{run_id}.parquet"
        target = self.path.parent / rel
        n = len(t.mean_w)
        table = pa.table({
            "t_s": pa.array(t.t0_s + t.bucket_s * np.arange(n), pa.float64()),
            "min_w": pa.array(t.min_w, pa.float32()),
            "max_w": pa.array(t.max_w, pa.float32()),
            "mean_w": pa.array(t.mean_w, pa.float32()),
        }).replace_schema_metadata({
            "clock": t.clock, "bucket_s": repr(t.bucket_s), "raw_samples": str(t.raw_samples),
            "clock_offset_s": repr(result.clock_offset_s), "meter_kind": result.meter.kind,
            "simulated": str(result.meter.simulated).lower(), "run_id": run_id,
        })
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, target, compression="zstd")
        except OSError as e:
            target.unlink(missing_ok=True)  # what part of it fitted
            raise _write_failure(target, e) from e
        return str(rel)

    def _insert_run(self, run_id: str, job_id: str, sweep_id: str, device: DeviceFacts,
                    model_name: str, result: BenchmarkResult, table: pa.Table,
                    pairs: pa.Table, latency: float | None, energy: float | None,
                    trace_rel: str | None) -> None:
        m = result.meter
        w = result.whole
        with self._transaction() as cur:
            # Bulk insert straight from the Arrow table: one scan, not a row at a time.
            cur.register("incoming_layers", table)
            cur.execute("INSERT INTO layer_measurements BY NAME SELECT * FROM incoming_layers")
            cur.unregister("incoming_layers")
            if pairs.num_rows:
                cur.register("incoming_pairs", pairs)
                cur.execute("INSERT INTO pair_measurements BY NAME SELECT * FROM incoming_pairs")
                cur.unregister("incoming_pairs")
            if result.phases:  # a few dozen rows: no Arrow table needed
                cur.executemany(
                    "INSERT INTO phase_measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [[run_id, p.layer, p.op, p.phase, p.ops, p.events, _known(p.latency_s),
                      _known(p.energy_j), _known(p.true_energy_j), m.kind, m.simulated]
                     for p in result.phases])
            try:
                cur.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [run_id, job_id, sweep_id, device.device_name, device.fingerprint,
                     model_name, result.model_sha256, result.mode, m.kind, m.profile,
                     m.simulated, m.sample_rate_hz, result.runtime_name, result.runtime_version,
                     result.num_threads, result.idle_power_w, result.clock_offset_s,
                     result.alignment_correlation, result.true_clock_offset_s,
                     _ts(result.started_unix_s), _ts(result.finished_unix_s),
                     list(result.flags), trace_rel, json.dumps(result.conditions_before),
                     json.dumps(result.conditions_after), _layer_count(result), latency, energy],
                )
            except duckdb.ConstraintException as e:  # runs.job_id is unique
                raise DuplicateRunError(f"job {job_id} already has its results stored") from e
            if w is not None:
                cur.execute(
                    "INSERT INTO whole_measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "?, ?, ?, ?, ?)",
                    [run_id, w.iterations, *map(_known, (
                        w.window_start_s, w.window_end_s, w.latency_mean_s, w.latency_p50_s,
                        w.latency_p90_s, w.latency_p99_s, w.energy_j, w.active_energy_j,
                        w.mean_power_w)), w.samples, _known(w.coverage), list(w.flags),
                     _known(w.true_energy_j), m.kind, m.simulated])
            done = cur.execute("UPDATE jobs SET status = 'done', error = NULL, finished_at = ? "
                               "WHERE job_id = ? AND status <> 'done' RETURNING job_id",
                               [_now(), job_id]).fetchone()
            if done is None:  # rolls the whole run back: a job is stored exactly once
                raise DuplicateRunError(f"job {job_id} already has its results stored")

    def replace_change_points(self, after_sweep: str, change_points: pa.Table,
                              series_changes: pa.Table) -> None:
        """Record what changed up to ``after_sweep`` (rows of the change_points and
        series_changes tables, controller.changes), in place of anything recorded for it
        before: detecting twice leaves one answer."""
        with self._transaction() as cur:
            for table, rows in (("change_points", change_points),
                                ("series_changes", series_changes)):
                cur.execute(f"DELETE FROM {table} WHERE after_sweep = ?", [after_sweep])
                if rows.num_rows:
                    cur.register("incoming_changes", rows)
                    cur.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_changes")
                    cur.unregister("incoming_changes")

    # -- reads --------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[object] = ()) -> tuple[list[str], list[tuple]]:
        with self._connection() as con:
            cur = con.cursor()
            try:
                rel = cur.execute(sql, list(params))
                names = [d[0] for d in rel.description or []]
                return names, rel.fetchall()
            finally:
                cur.close()


# Opening the file read_only stops writes to it, but not the rest of what SQL can reach:
# COPY ... TO wrote files (a run's trace among them), ATTACH ... (READ_WRITE) wrote other
# databases (a hard link to this one emptied it), and INSTALL/LOAD, or a known extension's
# function that DuckDB installs on its own, reached for the network. Set in this order:
# lock_configuration last, so that the query itself cannot SET the others back.
_READ_ONLY_SETTINGS: dict[str, bool] = {
    # No file system or network from SQL: COPY TO, ATTACH, EXPORT, read_csv/read_parquet/glob,
    # INSTALL and LOAD of extensions (DuckDB 2.0 refuses them all with a PermissionException).
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}
_REFUSED = ("`joulefarm query` is read-only: it cannot write or read files, attach databases, "
            "install or load extensions, or change settings")


def _lock_down(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Apply `_READ_ONLY_SETTINGS` to `con` before any of the caller's SQL runs."""
    # DuckDB shares one instance, settings included, between a process's connections to a
    # file: another query running in this process may have locked it already.
    if _setting(con, "lock_configuration"):
        wrong = [name for name, value in _READ_ONLY_SETTINGS.items()
                 if _setting(con, name) != value]
        if wrong:
            raise StoreError(f"{path}: this process holds the database open with "
                             f"{', '.join(wrong)} locked to other values; cannot query it "
                             "read-only")
        return
    for name, value in _READ_ONLY_SETTINGS.items():
        con.execute(f"SET {name} = {str(value).lower()}")


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> object:
    row = con.execute("SELECT current_setting(?)", [name]).fetchone()
    return row[0] if row else None


def _is_refusal(error: duckdb.Error) -> bool:
    """Whether DuckDB refused `error`'s statement because of `_READ_ONLY_SETTINGS`."""
    if isinstance(error, duckdb.PermissionException):
        return True
    text = str(error)
    # SET of a locked setting; and enable_external_access, which DuckDB never turns back on.
    return ("configuration has been locked" in text
            or "Cannot enable external access" in text)


def _query_error(error: duckdb.Error) -> StoreInputError:
    if _is_refusal(error):
        # One line: DuckDB's own words follow in brackets, without its further advice.
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return StoreInputError(f"query refused: {_REFUSED} ({first})")
    return StoreInputError(f"query failed: {error}")


def query_readonly(path: str | Path, sql: str, params: Sequence[object] = ()
                   ) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` (with ``?`` parameters) on a database opened read-only: nothing can be
    changed by a query, and nothing outside the database can be read or written (see
    `_READ_ONLY_SETTINGS`). While a sweep writes, this waits for it to let go of the file (see
    ``controller.database``)."""
    path = Path(path)
    if not path.exists():
        raise StoreInputError(f"{path}: no results database here (run `joulefarm demo` first, "
                              f"or pass --db)")
    try:
        with read_only(path) as con:
            _lock_down(con, path)
            try:
                rel = con.execute(sql, list(params))
                names = [d[0] for d in rel.description or []]
                return names, rel.fetchall()
            except duckdb.Error as e:
                raise _query_error(e) from e
    except DatabaseBusy as e:
        raise StoreError(
            f"{path}: a process kept the database open for writing for {READ_WAIT_S:g} s: {e}"
        ) from e
    except duckdb.Error as e:
        raise StoreError(f"{path}: cannot open read-only: {e}") from e
