"""Small, fixed results to store: a device, layers, a run, a sweep."""

from __future__ import annotations

from controller.store import ResultStore
from joulefarm.results import BenchmarkResult, DeviceFacts, LayerRecord, MeterDescription

SIM = MeterDescription(kind="sim", simulated=True, sample_rate_hz=10_000.0, profile="rpi4")


def facts(name: str = "dev") -> DeviceFacts:
    return DeviceFacts(
        device_name=name, platform="sim", machine="x86_64", cpu_model="cpu", cpu_count=2,
        memory_bytes=1, os="os", kernel="k", python_version="3.11", runtime_name="rt",
        runtime_version="1", agent_version="0", rust_core_profile="release", meters=(SIM,),
        fingerprint="f" * 64)


def layer(i: int, energy: float = 1e-3) -> LayerRecord:
    return LayerRecord(
        index=i, op="CONV_2D", macs=100, param_bytes=1, act_in_bytes=2, act_out_bytes=3,
        input_shapes="1x8", output_shapes="1x8", iterations=10, window_start_s=0.0,
        window_end_s=0.01, latency_s=1e-3, energy_j=energy, active_energy_j=energy / 2,
        mean_power_w=1.0, samples=100, coverage=1.0, flags=("partial_coverage",) if i else (),
        true_energy_j=energy)


def result(layers: tuple[LayerRecord, ...]) -> BenchmarkResult:
    return BenchmarkResult(
        model_sha256="a" * 64, mode="layers", meter=SIM, runtime_name="rt", runtime_version="1",
        num_threads=1, idle_power_w=2.0, clock_offset_s=0.01, alignment_correlation=0.99,
        started_unix_s=1.7e9, finished_unix_s=1.7e9 + 1, layers=layers, true_clock_offset_s=0.01)


def new_sweep(store: ResultStore) -> str:
    return store.start_sweep(suite="s", suite_file="s.toml", devices_file="d.toml",
                             joulefarm_version="0", git_revision="x", rust_core_profile="release")
