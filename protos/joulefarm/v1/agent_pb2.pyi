from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MeasureMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEASURE_MODE_UNSPECIFIED: _ClassVar[MeasureMode]
    MEASURE_MODE_LAYERS: _ClassVar[MeasureMode]
    MEASURE_MODE_WHOLE: _ClassVar[MeasureMode]
    MEASURE_MODE_INSITU: _ClassVar[MeasureMode]
    MEASURE_MODE_TRAIN: _ClassVar[MeasureMode]
MEASURE_MODE_UNSPECIFIED: MeasureMode
MEASURE_MODE_LAYERS: MeasureMode
MEASURE_MODE_WHOLE: MeasureMode
MEASURE_MODE_INSITU: MeasureMode
MEASURE_MODE_TRAIN: MeasureMode

class GetDeviceFactsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDeviceFactsResponse(_message.Message):
    __slots__ = ("facts",)
    FACTS_FIELD_NUMBER: _ClassVar[int]
    facts: DeviceFacts
    def __init__(self, facts: _Optional[_Union[DeviceFacts, _Mapping]] = ...) -> None: ...

class MeterInfo(_message.Message):
    __slots__ = ("kind", "simulated", "sample_rate_hz", "profile", "description")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    simulated: bool
    sample_rate_hz: float
    profile: str
    description: str
    def __init__(self, kind: _Optional[str] = ..., simulated: _Optional[bool] = ..., sample_rate_hz: _Optional[float] = ..., profile: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class DeviceFacts(_message.Message):
    __slots__ = ("device_name", "platform", "machine", "cpu_model", "cpu_count", "memory_bytes", "os", "kernel", "python_version", "runtime_name", "runtime_version", "agent_version", "rust_core_profile", "meters", "fingerprint", "cpu_max_khz", "governors", "thermal_zones")
    DEVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    MACHINE_FIELD_NUMBER: _ClassVar[int]
    CPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    PYTHON_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_NAME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUST_CORE_PROFILE_FIELD_NUMBER: _ClassVar[int]
    METERS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    CPU_MAX_KHZ_FIELD_NUMBER: _ClassVar[int]
    GOVERNORS_FIELD_NUMBER: _ClassVar[int]
    THERMAL_ZONES_FIELD_NUMBER: _ClassVar[int]
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
    meters: _containers.RepeatedCompositeFieldContainer[MeterInfo]
    fingerprint: str
    cpu_max_khz: int
    governors: _containers.RepeatedScalarFieldContainer[str]
    thermal_zones: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, device_name: _Optional[str] = ..., platform: _Optional[str] = ..., machine: _Optional[str] = ..., cpu_model: _Optional[str] = ..., cpu_count: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., os: _Optional[str] = ..., kernel: _Optional[str] = ..., python_version: _Optional[str] = ..., runtime_name: _Optional[str] = ..., runtime_version: _Optional[str] = ..., agent_version: _Optional[str] = ..., rust_core_profile: _Optional[str] = ..., meters: _Optional[_Iterable[_Union[MeterInfo, _Mapping]]] = ..., fingerprint: _Optional[str] = ..., cpu_max_khz: _Optional[int] = ..., governors: _Optional[_Iterable[str]] = ..., thermal_zones: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadModelChunk(_message.Message):
    __slots__ = ("name", "size_bytes", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    size_bytes: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadModelResponse(_message.Message):
    __slots__ = ("sha256", "size_bytes", "already_cached")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALREADY_CACHED_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    size_bytes: int
    already_cached: bool
    def __init__(self, sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., already_cached: _Optional[bool] = ...) -> None: ...

class RunBenchmarkRequest(_message.Message):
    __slots__ = ("model_sha256", "mode", "num_threads", "warmup_iterations", "min_layer_duration_s", "min_iterations", "idle_duration_s", "seed", "min_duration_s", "use_xnnpack", "delegate_path", "pairs", "input_shapes")
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NUM_THREADS_FIELD_NUMBER: _ClassVar[int]
    WARMUP_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_LAYER_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    MIN_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    IDLE_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MIN_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    USE_XNNPACK_FIELD_NUMBER: _ClassVar[int]
    DELEGATE_PATH_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    model_sha256: str
    mode: MeasureMode
    num_threads: int
    warmup_iterations: int
    min_layer_duration_s: float
    min_iterations: int
    idle_duration_s: float
    seed: int
    min_duration_s: float
    use_xnnpack: bool
    delegate_path: str
    pairs: bool
    input_shapes: _containers.RepeatedCompositeFieldContainer[InputShape]
    def __init__(self, model_sha256: _Optional[str] = ..., mode: _Optional[_Union[MeasureMode, str]] = ..., num_threads: _Optional[int] = ..., warmup_iterations: _Optional[int] = ..., min_layer_duration_s: _Optional[float] = ..., min_iterations: _Optional[int] = ..., idle_duration_s: _Optional[float] = ..., seed: _Optional[int] = ..., min_duration_s: _Optional[float] = ..., use_xnnpack: _Optional[bool] = ..., delegate_path: _Optional[str] = ..., pairs: _Optional[bool] = ..., input_shapes: _Optional[_Iterable[_Union[InputShape, _Mapping]]] = ...) -> None: ...

class InputShape(_message.Message):
    __slots__ = ("input", "dims")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DIMS_FIELD_NUMBER: _ClassVar[int]
    input: str
    dims: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, input: _Optional[str] = ..., dims: _Optional[_Iterable[int]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "done", "total", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done: int
    total: int
    message: str
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class LayerColumns(_message.Message):
    __slots__ = ("index", "op", "macs", "param_bytes", "act_in_bytes", "act_out_bytes", "input_shapes", "output_shapes", "iterations", "window_start_s", "window_end_s", "latency_s", "energy_j", "active_energy_j", "mean_power_w", "samples", "coverage", "flags", "true_energy_j", "latency_window_s", "latency_low_s", "latency_high_s", "batches", "energy_err_j")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    MACS_FIELD_NUMBER: _ClassVar[int]
    PARAM_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACT_IN_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACT_OUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPES_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    MEAN_POWER_W_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TRUE_ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    LATENCY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_LOW_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_HIGH_S_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    ENERGY_ERR_J_FIELD_NUMBER: _ClassVar[int]
    index: _containers.RepeatedScalarFieldContainer[int]
    op: _containers.RepeatedScalarFieldContainer[str]
    macs: _containers.RepeatedScalarFieldContainer[int]
    param_bytes: _containers.RepeatedScalarFieldContainer[int]
    act_in_bytes: _containers.RepeatedScalarFieldContainer[int]
    act_out_bytes: _containers.RepeatedScalarFieldContainer[int]
    input_shapes: _containers.RepeatedScalarFieldContainer[str]
    output_shapes: _containers.RepeatedScalarFieldContainer[str]
    iterations: _containers.RepeatedScalarFieldContainer[int]
    window_start_s: _containers.RepeatedScalarFieldContainer[float]
    window_end_s: _containers.RepeatedScalarFieldContainer[float]
    latency_s: _containers.RepeatedScalarFieldContainer[float]
    energy_j: _containers.RepeatedScalarFieldContainer[float]
    active_energy_j: _containers.RepeatedScalarFieldContainer[float]
    mean_power_w: _containers.RepeatedScalarFieldContainer[float]
    samples: _containers.RepeatedScalarFieldContainer[int]
    coverage: _containers.RepeatedScalarFieldContainer[float]
    flags: _containers.RepeatedScalarFieldContainer[str]
    true_energy_j: _containers.RepeatedScalarFieldContainer[float]
    latency_window_s: _containers.RepeatedScalarFieldContainer[float]
    latency_low_s: _containers.RepeatedScalarFieldContainer[float]
    latency_high_s: _containers.RepeatedScalarFieldContainer[float]
    batches: _containers.RepeatedScalarFieldContainer[int]
    energy_err_j: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, index: _Optional[_Iterable[int]] = ..., op: _Optional[_Iterable[str]] = ..., macs: _Optional[_Iterable[int]] = ..., param_bytes: _Optional[_Iterable[int]] = ..., act_in_bytes: _Optional[_Iterable[int]] = ..., act_out_bytes: _Optional[_Iterable[int]] = ..., input_shapes: _Optional[_Iterable[str]] = ..., output_shapes: _Optional[_Iterable[str]] = ..., iterations: _Optional[_Iterable[int]] = ..., window_start_s: _Optional[_Iterable[float]] = ..., window_end_s: _Optional[_Iterable[float]] = ..., latency_s: _Optional[_Iterable[float]] = ..., energy_j: _Optional[_Iterable[float]] = ..., active_energy_j: _Optional[_Iterable[float]] = ..., mean_power_w: _Optional[_Iterable[float]] = ..., samples: _Optional[_Iterable[int]] = ..., coverage: _Optional[_Iterable[float]] = ..., flags: _Optional[_Iterable[str]] = ..., true_energy_j: _Optional[_Iterable[float]] = ..., latency_window_s: _Optional[_Iterable[float]] = ..., latency_low_s: _Optional[_Iterable[float]] = ..., latency_high_s: _Optional[_Iterable[float]] = ..., batches: _Optional[_Iterable[int]] = ..., energy_err_j: _Optional[_Iterable[float]] = ...) -> None: ...

class PairColumns(_message.Message):
    __slots__ = ("first_index", "second_index", "ops", "iterations", "latency_s", "energy_j", "mean_power_w", "flags", "true_energy_j", "latency_low_s", "latency_high_s")
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    SECOND_INDEX_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    MEAN_POWER_W_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TRUE_ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    LATENCY_LOW_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_HIGH_S_FIELD_NUMBER: _ClassVar[int]
    first_index: _containers.RepeatedScalarFieldContainer[int]
    second_index: _containers.RepeatedScalarFieldContainer[int]
    ops: _containers.RepeatedScalarFieldContainer[str]
    iterations: _containers.RepeatedScalarFieldContainer[int]
    latency_s: _containers.RepeatedScalarFieldContainer[float]
    energy_j: _containers.RepeatedScalarFieldContainer[float]
    mean_power_w: _containers.RepeatedScalarFieldContainer[float]
    flags: _containers.RepeatedScalarFieldContainer[str]
    true_energy_j: _containers.RepeatedScalarFieldContainer[float]
    latency_low_s: _containers.RepeatedScalarFieldContainer[float]
    latency_high_s: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, first_index: _Optional[_Iterable[int]] = ..., second_index: _Optional[_Iterable[int]] = ..., ops: _Optional[_Iterable[str]] = ..., iterations: _Optional[_Iterable[int]] = ..., latency_s: _Optional[_Iterable[float]] = ..., energy_j: _Optional[_Iterable[float]] = ..., mean_power_w: _Optional[_Iterable[float]] = ..., flags: _Optional[_Iterable[str]] = ..., true_energy_j: _Optional[_Iterable[float]] = ..., latency_low_s: _Optional[_Iterable[float]] = ..., latency_high_s: _Optional[_Iterable[float]] = ...) -> None: ...

class PhaseColumns(_message.Message):
    __slots__ = ("layer", "op", "phase", "ops", "events", "latency_s", "energy_j", "true_energy_j")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    TRUE_ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    layer: _containers.RepeatedScalarFieldContainer[int]
    op: _containers.RepeatedScalarFieldContainer[str]
    phase: _containers.RepeatedScalarFieldContainer[str]
    ops: _containers.RepeatedScalarFieldContainer[int]
    events: _containers.RepeatedScalarFieldContainer[int]
    latency_s: _containers.RepeatedScalarFieldContainer[float]
    energy_j: _containers.RepeatedScalarFieldContainer[float]
    true_energy_j: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, layer: _Optional[_Iterable[int]] = ..., op: _Optional[_Iterable[str]] = ..., phase: _Optional[_Iterable[str]] = ..., ops: _Optional[_Iterable[int]] = ..., events: _Optional[_Iterable[int]] = ..., latency_s: _Optional[_Iterable[float]] = ..., energy_j: _Optional[_Iterable[float]] = ..., true_energy_j: _Optional[_Iterable[float]] = ...) -> None: ...

class WholeModelResult(_message.Message):
    __slots__ = ("iterations", "window_start_s", "window_end_s", "latency_mean_s", "latency_p50_s", "latency_p90_s", "latency_p99_s", "energy_j", "active_energy_j", "mean_power_w", "samples", "coverage", "flags", "true_energy_j")
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_START_S_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MEAN_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P90_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ENERGY_J_FIELD_NUMBER: _ClassVar[int]
    MEAN_POWER_W_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TRUE_ENERGY_J_FIELD_NUMBER: _ClassVar[int]
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
    flags: _containers.RepeatedScalarFieldContainer[str]
    true_energy_j: float
    def __init__(self, iterations: _Optional[int] = ..., window_start_s: _Optional[float] = ..., window_end_s: _Optional[float] = ..., latency_mean_s: _Optional[float] = ..., latency_p50_s: _Optional[float] = ..., latency_p90_s: _Optional[float] = ..., latency_p99_s: _Optional[float] = ..., energy_j: _Optional[float] = ..., active_energy_j: _Optional[float] = ..., mean_power_w: _Optional[float] = ..., samples: _Optional[int] = ..., coverage: _Optional[float] = ..., flags: _Optional[_Iterable[str]] = ..., true_energy_j: _Optional[float] = ...) -> None: ...

class DecimatedTrace(_message.Message):
    __slots__ = ("clock", "t0_s", "bucket_s", "min_w", "max_w", "mean_w", "raw_samples")
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    T0_S_FIELD_NUMBER: _ClassVar[int]
    BUCKET_S_FIELD_NUMBER: _ClassVar[int]
    MIN_W_FIELD_NUMBER: _ClassVar[int]
    MAX_W_FIELD_NUMBER: _ClassVar[int]
    MEAN_W_FIELD_NUMBER: _ClassVar[int]
    RAW_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    clock: str
    t0_s: float
    bucket_s: float
    min_w: _containers.RepeatedScalarFieldContainer[float]
    max_w: _containers.RepeatedScalarFieldContainer[float]
    mean_w: _containers.RepeatedScalarFieldContainer[float]
    raw_samples: int
    def __init__(self, clock: _Optional[str] = ..., t0_s: _Optional[float] = ..., bucket_s: _Optional[float] = ..., min_w: _Optional[_Iterable[float]] = ..., max_w: _Optional[_Iterable[float]] = ..., mean_w: _Optional[_Iterable[float]] = ..., raw_samples: _Optional[int] = ...) -> None: ...

class BenchmarkResult(_message.Message):
    __slots__ = ("model_sha256", "mode", "meter", "runtime_name", "runtime_version", "num_threads", "idle_power_w", "clock_offset_s", "alignment_correlation", "started_unix_s", "finished_unix_s", "layers", "flags", "true_clock_offset_s", "whole", "conditions_before", "conditions_after", "trace", "pairs", "phases")
    class ConditionsBeforeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ConditionsAfterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_NAME_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    NUM_THREADS_FIELD_NUMBER: _ClassVar[int]
    IDLE_POWER_W_FIELD_NUMBER: _ClassVar[int]
    CLOCK_OFFSET_S_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_CORRELATION_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    TRUE_CLOCK_OFFSET_S_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_AFTER_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    model_sha256: str
    mode: MeasureMode
    meter: MeterInfo
    runtime_name: str
    runtime_version: str
    num_threads: int
    idle_power_w: float
    clock_offset_s: float
    alignment_correlation: float
    started_unix_s: float
    finished_unix_s: float
    layers: LayerColumns
    flags: _containers.RepeatedScalarFieldContainer[str]
    true_clock_offset_s: float
    whole: WholeModelResult
    conditions_before: _containers.ScalarMap[str, float]
    conditions_after: _containers.ScalarMap[str, float]
    trace: DecimatedTrace
    pairs: PairColumns
    phases: PhaseColumns
    def __init__(self, model_sha256: _Optional[str] = ..., mode: _Optional[_Union[MeasureMode, str]] = ..., meter: _Optional[_Union[MeterInfo, _Mapping]] = ..., runtime_name: _Optional[str] = ..., runtime_version: _Optional[str] = ..., num_threads: _Optional[int] = ..., idle_power_w: _Optional[float] = ..., clock_offset_s: _Optional[float] = ..., alignment_correlation: _Optional[float] = ..., started_unix_s: _Optional[float] = ..., finished_unix_s: _Optional[float] = ..., layers: _Optional[_Union[LayerColumns, _Mapping]] = ..., flags: _Optional[_Iterable[str]] = ..., true_clock_offset_s: _Optional[float] = ..., whole: _Optional[_Union[WholeModelResult, _Mapping]] = ..., conditions_before: _Optional[_Mapping[str, float]] = ..., conditions_after: _Optional[_Mapping[str, float]] = ..., trace: _Optional[_Union[DecimatedTrace, _Mapping]] = ..., pairs: _Optional[_Union[PairColumns, _Mapping]] = ..., phases: _Optional[_Union[PhaseColumns, _Mapping]] = ...) -> None: ...

class RunBenchmarkResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: BenchmarkResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[BenchmarkResult, _Mapping]] = ...) -> None: ...
