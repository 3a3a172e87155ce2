"""Plain dataclasses for what an agent reports. Protobuf stays at the edge (``agent.convert``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.meters.base import MeterDescription


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


@dataclass(frozen=True)
class LayerRecord:
    """One layer's measurement. Energies are joules per call; times are seconds."""

    index: int
    op: str
    macs: int
    param_bytes: int
    act_in_bytes: int
    act_out_bytes: int
    input_shapes: str
    output_shapes: str
    iterations: int
    window_start_s: float
    window_end_s: float
    latency_s: float
    energy_j: float
    active_energy_j: float
    mean_power_w: float
    samples: int
    coverage: float
    flags: tuple[str, ...] = ()
    # Only a simulated meter knows the truth; None for real meters.
    true_energy_j: float | None = None


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


@dataclass(frozen=True)
class BenchmarkResult:
    """One model measured on one device: layer by layer (``layers``) or whole (``whole``)."""

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
    layers: tuple[LayerRecord, ...]
    flags: tuple[str, ...] = ()
    true_clock_offset_s: float | None = None
    whole: WholeModelRecord | None = None
    conditions_before: dict[str, float] = field(default_factory=dict)
    conditions_after: dict[str, float] = field(default_factory=dict)
    trace: DecimatedTrace | None = None


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
    extra: dict[str, str] = field(default_factory=dict)
