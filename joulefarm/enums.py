"""The closed sets of names both programs share: measuring modes, device platforms, meter kinds
(with the options each accepts) and TFLite runtime backends.

They are string enums: a member equals its string (``Mode.LAYERS == "layers"``), formats as it,
and goes into JSON, TOML, protobuf text and SQL as it. ``enum.StrEnum`` would do this, but it is
Python 3.11+ and the agent runs on 3.10 (stock JetPack 6).
"""

from __future__ import annotations

from enum import Enum

__all__ = [
    "LITERT_LIB_URL",
    "METER_OPTIONS",
    "MeterKind",
    "Mode",
    "Platform",
    "RuntimeBackend",
]


class _StrEnum(str, Enum):  # noqa: UP042 - enum.StrEnum is Python 3.11+
    """A string enum that prints as its value on every Python version."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """Every member's value, in declaration order."""
        return tuple(str(m.value) for m in cls)


class Mode(_StrEnum):
    """How a model is measured (``joulefarm bench --mode``, a suite's ``[measure] mode``)."""

    LAYERS = "layers"
    """Each layer's single-op sub-model looped alone, and the unsplit model in the same trace."""
    WHOLE = "whole"
    """The whole model looped: latency percentiles and energy per inference."""
    INSITU = "insitu"
    """The whole model looped under the runtime's per-op profiler."""
    TRAIN = "train"
    """A trainable model's ``train`` signature looped under the per-op profiler: energy per
    training step, per layer and phase (in-process only: ``joulefarm bench``)."""


class Platform(_StrEnum):
    """What kind of device an agent runs on (``[[device]] platform``)."""

    ANDROID = "android"
    RASPBERRY_PI = "raspberry-pi"
    JETSON = "jetson"
    LINUX = "linux"
    SIM = "sim"


class MeterKind(_StrEnum):
    """A power meter driver (``[device.meter] kind``)."""

    SIM = "sim"
    REPLAY = "replay"
    RAPL = "rapl"
    INA3221 = "ina3221"
    INA3221_IIO = "ina3221-iio"
    INA2XX = "ina2xx"
    RPI5_PMIC = "rpi5-pmic"
    TEGRASTATS = "tegrastats"
    ANDROID_BATTERY = "android-battery"
    ANDROID_ODPM = "android-odpm"
    JOULESCOPE = "joulescope"
    MONSOON = "monsoon"
    OTII = "otii"


METER_OPTIONS: dict[MeterKind, frozenset[str]] = {
    MeterKind.SIM: frozenset({"op_energy_scale"}),
    MeterKind.REPLAY: frozenset({"path", "offset_s", "format"}),
    MeterKind.RAPL: frozenset({"domains"}),
    MeterKind.INA3221: frozenset({"total_rail"}),
    MeterKind.INA3221_IIO: frozenset({"total_rail"}),
    MeterKind.INA2XX: frozenset({"sensor", "mode"}),
    MeterKind.RPI5_PMIC: frozenset(),
    MeterKind.TEGRASTATS: frozenset({"interval_ms", "total_rail", "command"}),
    MeterKind.ANDROID_BATTERY: frozenset({"current_unit", "voltage_unit", "discharge_sign"}),
    MeterKind.ANDROID_ODPM: frozenset({"source", "rails"}),
    MeterKind.JOULESCOPE: frozenset({"serial", "gpi", "config"}),
    MeterKind.MONSOON: frozenset({"serial", "channel", "vout"}),
    MeterKind.OTII: frozenset({"host", "port", "device", "channel", "gpi", "keep_recording",
                               "licensing"}),
}
"""The ``[device.meter.options]`` keys each driver accepts: the registry refuses others, and
so does the agent when it opens the meter."""


class RuntimeBackend(_StrEnum):
    """The agent's TFLite runtime (``python -m agent serve --runtime``)."""

    AUTO = "auto"
    """A Python runtime that imports, or ``litert-c`` when a library is given."""
    AI_EDGE_LITERT = "ai-edge-litert"
    TFLITE_RUNTIME = "tflite-runtime"
    LITERT_C = "litert-c"
    """A standalone ``libLiteRt.so`` through the LiteRT C API (no Python TFLite package)."""


LITERT_LIB_URL = "https://storage.googleapis.com/litert/binaries/<version>/<platform>/libLiteRt.so"
"""Where Google publishes standalone ``libLiteRt.so`` builds (platform: android_arm64,
android_arm32, linux_x86_64, linux_arm64; e.g. version 2.3.1)."""
