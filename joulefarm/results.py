"""Plain dataclasses for what an agent reports. Protobuf stays at the edge (``joulefarm.wire``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, cast, overload

import numpy as np


@dataclass(frozen=True)
class MeterDescription:
    """What produced a trace. ``simulated`` is True whenever power comes from a model."""

    kind: str
    simulated: bool
    sample_rate_hz: float
    profile: str = ""
    description: str = ""


@dataclass(frozen=True)
class DeviceFacts:
    """What a device is. ``fingerprint`` hashes everything but the device's name."""

    device_name: str
    platform: str
    machine: str
    cpu_model: str
    cpu_count: int
    memory_bytes: int
    os: str
    kernel: str
    python_version: str
    runtime_name: str
    runtime_version: str
    agent_version: str
    rust_core_profile: str
    meters: tuple[MeterDescription, ...]
    fingerprint: str
    cpu_max_khz: int = 0
    governors: tuple[str, ...] = ()
    thermal_zones: tuple[str, ...] = ()


FILE_SHAPES_DIFFER = "file_shapes_differ"
"""Layer flag: the layer's shapes (and so its MACs and bytes) are those the runtime computed;
the model file stores others for some of its tensors (a converter's placeholders)."""
NOT_ISOLATED = "not_isolated"
"""Layer flag: the layer could not run on its own (its sub-model does not load or run), so it
was not measured (NaN); the others were, fed from the whole model where they needed its output."""
CPU_CONTENDED = "cpu_contended"
"""Run flag (insitu and train modes, one interpreter thread): the measuring thread was on the
CPU for less than ``agent.measure.MIN_ON_CPU_SHARE`` of the timed loop; another process ran."""
NO_COST_FORMULA = "no_cost_formula"
"""Layer flag: the op has no cost formula in ``joulefarm.tflite.ops``, so its MACs are unknown
(None, NULL), never a made-up count."""


def _column(sql: str, *, name: str | None = None, default: Any = MISSING) -> Any:
    """A ``LayerRecord`` field and how it is stored: its SQL type, and its column name in
    ``layer_measurements`` where that differs from the field's."""
    return field(default=default, metadata={"sql": sql, "column": name})


@dataclass(frozen=True)
class LayerRecord:
    """One layer's measurement. Energies are joules per call; times are seconds.

    The one declaration of the per-layer result columns: ``LAYER_COLUMNS``, the in-memory
    ``LayerTable``, the protobuf conversion (``joulefarm.wire``) and the database's Arrow
    ingest (``controller.store``, which checks its table against these columns when it opens a
    database) all derive from these fields.
    """

    index: int = _column("INTEGER", name="layer_index")
    """TFLite node index."""
    op: str = _column("VARCHAR")
    macs: int | None = _column("BIGINT")
    """None (NULL) for an op without a cost formula, flagged ``no_cost_formula``: held as 0
    in ``LayerTable``'s integer column and on the wire, where the flag says it is unknown."""
    param_bytes: int = _column("BIGINT")
    act_in_bytes: int = _column("BIGINT")
    act_out_bytes: int = _column("BIGINT")
    input_shapes: str = _column("VARCHAR")
    output_shapes: str = _column("VARCHAR")
    iterations: int = _column("INTEGER")
    window_start_s: float = _column("DOUBLE")
    window_end_s: float = _column("DOUBLE")
    latency_s: float = _column("DOUBLE")
    """Per call. Layers mode: the median over batches of calls, which one interruption cannot
    move (``joulefarm.latency``); in situ: the mean of the op's calls."""
    energy_j: float = _column("DOUBLE")
    """Per call, idle included. Layers mode: the window's mean power x ``latency_s``, so a part
    of the window no sample covered is filled at the covered part's mean power."""
    active_energy_j: float = _column("DOUBLE")
    mean_power_w: float = _column("DOUBLE")
    samples: int = _column("BIGINT")
    coverage: float = _column("DOUBLE")
    flags: tuple[str, ...] = _column("VARCHAR[]", default=())
    true_energy_j: float | None = _column("DOUBLE", default=None)
    """Only a simulated meter knows the truth; None for real meters (NULL, NaN in columns)."""
    latency_window_s: float = _column("DOUBLE", default=math.nan)
    """Window duration / iterations: the plain mean, inflated by anything else that ran."""
    latency_low_s: float = _column("DOUBLE", default=math.nan)
    latency_high_s: float = _column("DOUBLE", default=math.nan)
    """The 95% confidence interval of ``latency_s`` (NaN where not measured by batches)."""
    batches: int = _column("INTEGER", default=0)
    energy_err_j: float = _column("DOUBLE", default=math.nan)
    """Half-width of ``energy_j``'s stated uncertainty: the latency interval's, plus the
    uncovered share of the window taken as wholly unknown, ``(1 - coverage) * energy_j``."""


UNUSABLE_FLAGS: tuple[str, ...] = (
    "no_samples", "low_coverage", "latency_unstable", "non_monotonic", "saturated",
    "host_contended", "implausible_layer_sum", "charging", "not_isolated",
)
"""A row (or a run) flagged with any of these is stored and shown, but no estimator trains on
it. The meaning of every flag: docs/flags.md."""
MIN_USABLE_COVERAGE = 0.8
"""Below this share of a window covered by samples (a polled meter that fell behind), the
coverage correction is a guess: the row is flagged ``low_coverage``."""


ENERGY_ONLY_FLAGS: tuple[str, ...] = (
    "no_samples", "low_coverage", "non_monotonic", "saturated", "charging",
)
"""Unusable flags that concern only the meter's samples: the row's latency, timed on the
agent's clock, still trains a latency estimator."""


def is_usable(flags: Iterable[str], target: str = "energy") -> bool:
    """Whether a row with these flags (its own and its run's) may train an estimator of
    ``target`` (``"energy"``: every unusable flag counts; ``"latency"``: those of
    ``ENERGY_ONLY_FLAGS`` do not)."""
    bad = set(flags) & set(UNUSABLE_FLAGS)
    if target == "latency":
        bad -= set(ENERGY_ONLY_FLAGS)
    return not bad


def shape_text(shapes: Sequence[Sequence[int]]) -> str:
    """The text form of a list of shapes in ``LayerRecord.input_shapes`` and in the database:
    ``((1, 32, 32, 3), (1, 10))`` -> ``"1x32x32x3,1x10"``; a scalar is the empty string."""
    return ",".join("x".join(str(d) for d in shape) for shape in shapes)


def parse_shapes(text: str | None) -> tuple[tuple[int, ...], ...]:
    """Inverse of ``shape_text``."""
    if not text:
        return ()
    return tuple(tuple(int(d) for d in part.split("x")) if part else () for part in
                 text.split(","))


@dataclass(frozen=True)
class Column:
    """One per-layer result column: the ``LayerRecord`` field, its database column and SQL
    type, and the numpy dtype ``LayerTable`` holds it in (None: text or flags)."""

    field: str
    name: str
    sql: str
    dtype: type | None


# Every integer is int64 in memory: the narrower SQL types only bound what is stored.
_NUMPY = {"INTEGER": np.int64, "BIGINT": np.int64, "DOUBLE": np.float64}
LAYER_COLUMNS: tuple[Column, ...] = tuple(
    Column(f.name, f.metadata["column"] or f.name, f.metadata["sql"],
           _NUMPY.get(f.metadata["sql"]))
    for f in fields(LayerRecord))
LAYER_FIELDS = tuple(c.field for c in LAYER_COLUMNS)
LAYER_NUMERIC = {c.field: c.dtype for c in LAYER_COLUMNS if c.dtype is not None}
"""Field -> numpy dtype of ``LayerTable``'s numeric columns."""
LAYER_TEXT = tuple(c.field for c in LAYER_COLUMNS if c.sql == "VARCHAR")


class LayerTable(Sequence[LayerRecord]):
    """Per-layer results held by column: numpy arrays for numbers, lists for text, a list of
    flag tuples. Models have up to thousands of layers and a sweep many runs; columns cross the
    wire and land in DuckDB without one Python object per value. Iterating or indexing gives
    ``LayerRecord`` rows. ``true_energy_j`` is NaN where no ground truth exists."""

    def __init__(self, columns: Mapping[str, Any]) -> None:
        n = len(columns["index"])
        self.columns: dict[str, Any] = {}
        for name in LAYER_FIELDS:
            value = columns[name]
            if name in LAYER_NUMERIC:
                value = np.asarray(value, dtype=LAYER_NUMERIC[name])
            elif name == "flags":
                value = [tuple(f) for f in value]
            else:
                value = [str(v) for v in value]
            if len(value) != n:
                raise ValueError(f"layer column {name!r} has {len(value)} values, expected {n}")
            self.columns[name] = value

    @classmethod
    def from_records(cls, records: Iterable[LayerRecord]) -> LayerTable:
        rows = [tuple(getattr(r, name) for name in LAYER_FIELDS) for r in records]
        values = list(zip(*rows, strict=True)) if rows else [()] * len(LAYER_FIELDS)
        columns: dict[str, Sequence[object]] = dict(zip(LAYER_FIELDS, values, strict=True))
        columns["true_energy_j"] = [np.nan if v is None else v
                                    for v in columns["true_energy_j"]]
        flags = cast("Sequence[tuple[str, ...]]", columns["flags"])
        columns["flags"] = [(*f, NO_COST_FORMULA) if m is None and NO_COST_FORMULA not in f
                            else f for m, f in zip(columns["macs"], flags, strict=True)]
        columns["macs"] = [0 if v is None else v for v in columns["macs"]]
        return cls(columns)

    def __len__(self) -> int:
        return len(self.columns["index"])

    @overload
    def __getitem__(self, i: int) -> LayerRecord: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[LayerRecord]: ...

    def __getitem__(self, i: int | slice) -> LayerRecord | Sequence[LayerRecord]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        values = {name: self.columns[name][i] for name in LAYER_FIELDS}
        for name, dtype in LAYER_NUMERIC.items():
            values[name] = (int if dtype is np.int64 else float)(values[name])
        if np.isnan(values["true_energy_j"]):
            values["true_energy_j"] = None
        if NO_COST_FORMULA in values["flags"]:
            values["macs"] = None
        return LayerRecord(**values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return list(self) == list(other)

    # mypy rejects the documented way to make a class unhashable (python/mypy#4266).
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LayerTable({len(self)} layers)"


@dataclass(frozen=True)
class WholeModelRecord:
    """The whole model looped. Latencies in seconds; energies in joules per inference."""

    iterations: int
    window_start_s: float
    window_end_s: float
    latency_mean_s: float
    latency_p50_s: float
    latency_p90_s: float
    latency_p99_s: float
    energy_j: float
    active_energy_j: float
    mean_power_w: float
    samples: int
    coverage: float
    flags: tuple[str, ...] = ()
    true_energy_j: float | None = None


@dataclass(frozen=True)
class PairRecord:
    """Two adjacent layers, the second reading the first's output, looped as one sub-model
    (layers mode with ``pairs``): against the two layers alone it shows whether the runtime
    fuses them. Energies are joules per call (idle included); times are seconds."""

    first_index: int
    """Node index of the first layer (as ``LayerRecord.index``)."""
    second_index: int
    ops: str
    """"FIRST_OP+SECOND_OP"."""
    iterations: int
    latency_s: float
    energy_j: float
    mean_power_w: float
    flags: tuple[str, ...] = ()
    true_energy_j: float | None = None
    """The simulator's exact energy per call; None for real meters."""
    latency_low_s: float = math.nan
    latency_high_s: float = math.nan
    """The 95% confidence interval of ``latency_s`` (a median over batches, as a layer's)."""


FUSED_SAVING_SHARE = 0.5
"""nn-Meter's rule: two ops run fused when the pair saves more than this share of the shorter
op's latency, lat(a) + lat(b) - lat(ab) > 0.5 * min(lat(a), lat(b))."""


@dataclass(frozen=True)
class PairCheck:
    """A pair against its two layers measured alone (see ``check_pairs``)."""

    pair: PairRecord
    sum_latency_s: float
    """lat(a) + lat(b), the two layers alone."""
    latency_saved_s: float
    """lat(a) + lat(b) - lat(ab)."""
    fused: bool
    """nn-Meter's verdict (``FUSED_SAVING_SHARE``), and the saving beyond ``spread_s``: a
    saving the measurements cannot tell from zero is not called fusion."""
    sum_energy_j: float
    energy_ratio: float
    """(E(a) + E(b)) / E(ab): above 1 when the pair costs less than its parts."""
    beyond_call_overhead: bool = True
    """The saving exceeds ``CALL_OVERHEAD_FACTOR`` x the run's cheapest layer call. Splitting
    adds one interpreter call per layer; for ops of a microsecond or two that call alone can
    pass nn-Meter's rule, so a "fused" pair that fails this saved a call, not work."""
    spread_s: float = 0.0
    """How far the saving could be off: the half-widths of the three latencies' confidence
    intervals added (``saving_spread_s``); 0 where they were not measured."""


# A saving up to this many times the run's cheapest layer call (about one interpreter call)
# is call overhead, not fusion.
CALL_OVERHEAD_FACTOR = 2.0


def is_fused(latency_a_s: float, latency_b_s: float, latency_ab_s: float,
             spread_s: float = 0.0) -> bool:
    """nn-Meter's fusion rule on per-call latencies, with the saving beyond ``spread_s``."""
    saved = latency_a_s + latency_b_s - latency_ab_s
    return bool(saved > FUSED_SAVING_SHARE * min(latency_a_s, latency_b_s)
                and saved > spread_s)


def saving_spread_s(*intervals: tuple[float, float]) -> float:
    """The half-widths of latency confidence intervals ``(low, high)``, added: a bound on how
    far a sum or difference of those latencies could be off. Unmeasured (NaN) counts 0."""
    return float(sum((high - low) / 2 for low, high in intervals
                     if math.isfinite(low) and math.isfinite(high)))


@dataclass(frozen=True)
class DecimatedTrace:
    """A run's power trace reduced to min/max/mean per bucket (watts), for plots and audits.

    Bucket ``i`` covers ``[t0_s + i*bucket_s, t0_s + (i+1)*bucket_s)`` on ``clock`` ("meter":
    agent time = meter time - clock_offset_s; "agent": the agent's perf_counter)."""

    clock: str
    t0_s: float
    bucket_s: float
    min_w: np.ndarray
    max_w: np.ndarray
    mean_w: np.ndarray
    raw_samples: int


TRAIN_PHASE_GROUPS: dict[str, tuple[str, ...]] = {
    "forward": ("forward",),
    "backward": ("backward-activation", "backward-input", "backward-weights"),
    "update": ("update",),
}
"""The three parts of a training step that reports and estimators show, by the phases of
``joulefarm.tflite.training.PHASES`` each holds (loss, init and read belong to none)."""


@dataclass(frozen=True)
class PhaseRecord:
    """Train mode: one layer's ops of one phase of the training step, per step. ``layer`` None
    (NULL, -1 on the wire) is model-wide work, such as the loss or Adam's per-step powers."""

    layer: int | None
    op: str
    """The layer's op (``""`` for model-wide work)."""
    phase: str
    """One of ``joulefarm.tflite.training.PHASES``: forward, loss, backward-activation,
    backward-input, backward-weights, update, ..."""
    ops: int
    """Ops of the train subgraph in this (layer, phase)."""
    events: int
    """Profiler events attributed to them over the run: ``ops`` times the steps when no op
    went unseen."""
    latency_s: float
    """Sum of their windows, per step."""
    energy_j: float
    """Energy in their windows, per step, idle included."""
    true_energy_j: float | None = None
    """The simulator's exact energy (simulated meters only)."""


@dataclass(frozen=True)
class BenchmarkResult:
    """One model measured on one device: layer by layer (``layers``), whole (``whole``), or
    one training step (``whole``) by layer and phase (``phases``)."""

    model_sha256: str
    mode: str
    meter: MeterDescription
    runtime_name: str
    runtime_version: str
    num_threads: int
    idle_power_w: float
    clock_offset_s: float
    alignment_correlation: float
    started_unix_s: float
    finished_unix_s: float
    # Any sequence of LayerRecord given here is converted to a LayerTable.
    layers: LayerTable
    flags: tuple[str, ...] = ()
    true_clock_offset_s: float | None = None
    whole: WholeModelRecord | None = None
    conditions_before: dict[str, float] = field(default_factory=dict)
    conditions_after: dict[str, float] = field(default_factory=dict)
    trace: DecimatedTrace | None = None
    # Layers mode with ``MeasureSettings.pairs``: adjacent data-dependent pairs of layers.
    pairs: tuple[PairRecord, ...] = ()
    # Train mode: the step per (layer, phase); ``whole`` is then the step (``layers`` empty).
    phases: tuple[PhaseRecord, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.layers, LayerTable):
            object.__setattr__(self, "layers", LayerTable.from_records(self.layers))
        object.__setattr__(self, "pairs", tuple(self.pairs))
        object.__setattr__(self, "phases", tuple(self.phases))


def check_pairs(result: BenchmarkResult) -> tuple[PairCheck, ...]:
    """Every pair of ``result`` against its two layers alone: latency saved, nn-Meter's fused
    verdict, energy ratio. Pairs whose layers the result lacks are left out."""
    by_index = {x.index: x for x in result.layers}
    call_s = min((x.latency_s for x in result.layers), default=0.0)
    checks = []
    for p in result.pairs:
        a, b = by_index.get(p.first_index), by_index.get(p.second_index)
        if a is None or b is None:
            continue
        sum_energy = a.energy_j + b.energy_j
        spread = saving_spread_s((a.latency_low_s, a.latency_high_s),
                                 (b.latency_low_s, b.latency_high_s),
                                 (p.latency_low_s, p.latency_high_s))
        checks.append(PairCheck(
            pair=p, sum_latency_s=a.latency_s + b.latency_s,
            latency_saved_s=a.latency_s + b.latency_s - p.latency_s,
            fused=is_fused(a.latency_s, b.latency_s, p.latency_s, spread),
            sum_energy_j=sum_energy,
            energy_ratio=sum_energy / p.energy_j if p.energy_j else float("nan"),
            beyond_call_overhead=(a.latency_s + b.latency_s - p.latency_s
                                  > CALL_OVERHEAD_FACTOR * call_s),
            spread_s=spread))
    return tuple(checks)


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    message: str = ""


@dataclass(frozen=True)
class MeasureSettings:
    """How long and how often to run each layer (see agent.measure)."""

    mode: str = "layers"
    num_threads: int = 1
    warmup_iterations: int = 3
    min_layer_duration_s: float = 0.02
    min_iterations: int = 5
    idle_duration_s: float = 0.2
    seed: int = 0
    # Whole mode: the timed loop lasts at least this long.
    min_duration_s: float = 1.0
    # Runtime: the default XNNPACK delegate, and an external delegate library by path.
    use_xnnpack: bool = False
    delegate_path: str = ""
    # Layers mode: also loop each adjacent data-dependent pair of layers as one sub-model, to
    # see which pairs the runtime fuses (ignored by the other modes).
    pairs: bool = False
    # The shapes to run the model's inputs at, as (input name or position in decimal, shape)
    # pairs; needed for inputs with dynamic dimensions. The rule, and what happens to inputs
    # given none: ``joulefarm.tflite.inputs.resolve_input_shapes``. A mapping, or lists (a
    # job's stored JSON), are accepted and kept as tuples.
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        given: Any = self.input_shapes or ()
        items = given.items() if isinstance(given, Mapping) else given
        object.__setattr__(self, "input_shapes", tuple(
            (str(key), tuple(int(d) for d in shape)) for key, shape in items))
