"""A results database made from a known generating function, for tests and demonstrations.

Nothing is run: every "measurement" is computed from the layer's features by a simple device
model (per-call overhead + compute at an op-dependent efficiency + memory traffic, with
multiplicative noise), and whole models cost the sum of their layers times a known
non-additivity factor. Stored through ``ResultStore.store_run`` like real results, with the
meter kind ``synthetic`` and ``simulated`` set: these numbers are never measurements.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controller.store import ResultStore
from joulefarm.results import (
    BenchmarkResult,
    DeviceFacts,
    LayerRecord,
    LayerTable,
    MeterDescription,
    WholeModelRecord,
    shape_text,
)
from joulefarm.tflite.ops import op_entry
from joulefarm.tflite.parse import LayerInfo, read_layers
from joulefarm.tflite.sweep import KINDS, reference_models, sample_chains, sample_configs

# The synthetic devices' compute efficiency per op family (share of the peak MAC rate; every
# other family as elementwise work): what makes per-op models necessary.
_EFFICIENCY = {"conv": 1.0, "depthwise": 0.25, "fully_connected": 0.6, "pool": 0.2}
_ELEMENTWISE_EFFICIENCY = 0.1


@dataclass(frozen=True)
class SyntheticDevice:
    """A device's generating function. Units in the names."""

    name: str
    platform: str
    cpu_max_khz: int
    cpu_count: int
    memory_bytes: int
    peak_macs_per_s: float
    bytes_per_s: float
    overhead_s: float
    idle_w: float
    dynamic_w: float

    def latency_s(self, layer: LayerInfo) -> float:
        efficiency = _EFFICIENCY.get(op_entry(layer.op).family, _ELEMENTWISE_EFFICIENCY)
        if layer.op == "CONV_2D" and layer.kernel == (1, 1):
            efficiency *= 0.7  # 1x1 convs reuse less data per weight
        moved = layer.param_bytes + layer.act_in_bytes + layer.act_out_bytes
        return (self.overhead_s + (layer.macs or 0) / (self.peak_macs_per_s * efficiency)
                + moved / self.bytes_per_s)

    def power_w(self, layer: LayerInfo, latency_s: float) -> float:
        compute_share = min(1.0, (layer.macs or 0) / (self.peak_macs_per_s * latency_s))
        return self.idle_w + self.dynamic_w * (0.3 + 0.7 * compute_share)


DEVICES: tuple[SyntheticDevice, ...] = (
    SyntheticDevice("syn-desktop", "linux", 4_200_000, 16, 64 << 30, 60e9, 20e9, 4e-6, 12.0, 25.0),
    SyntheticDevice("syn-laptop", "linux", 3_000_000, 8, 16 << 30, 25e9, 10e9, 6e-6, 5.0, 10.0),
    SyntheticDevice("syn-pi5", "rpi", 2_400_000, 4, 8 << 30, 8e9, 4e9, 12e-6, 2.5, 4.0),
    SyntheticDevice("syn-pi4", "rpi", 1_800_000, 4, 4 << 30, 3e9, 2e9, 20e-6, 2.7, 2.6),
)

WHOLE_SCALE = 0.9
"""Whole models cost WHOLE_SCALE * sum(layers) - (n_layers - 1) * device overhead: one call
overhead for the model instead of one per layer, and some cache reuse between layers."""


def _facts(device: SyntheticDevice, meter: MeterDescription) -> DeviceFacts:
    return DeviceFacts(
        device_name=device.name, platform=device.platform, machine="synthetic",
        cpu_model=f"synthetic {device.name}", cpu_count=device.cpu_count,
        memory_bytes=device.memory_bytes, os="synthetic", kernel="0", python_version="3",
        runtime_name="synthetic", runtime_version="0", agent_version="0",
        rust_core_profile="release", meters=(meter,),
        fingerprint=hashlib.sha256(device.name.encode()).hexdigest(),
        cpu_max_khz=device.cpu_max_khz)


def _meter(device: SyntheticDevice) -> MeterDescription:
    return MeterDescription(kind="synthetic", simulated=True, sample_rate_hz=1000.0,
                            profile=device.name,
                            description="synthetic generating function (not a measurement)")


def _layer_record(layer: LayerInfo, latency: float, energy: float, idle_w: float
                  ) -> LayerRecord:
    return LayerRecord(
        index=layer.index, op=layer.op, macs=layer.macs, param_bytes=layer.param_bytes,
        act_in_bytes=layer.act_in_bytes, act_out_bytes=layer.act_out_bytes,
        input_shapes=shape_text(layer.input_shapes),
        output_shapes=shape_text(layer.output_shapes), iterations=100, window_start_s=0.0,
        window_end_s=100 * latency, latency_s=latency, energy_j=energy,
        active_energy_j=energy - idle_w * latency, mean_power_w=energy / latency,
        samples=100, coverage=1.0, true_energy_j=energy)


def _result(sha: str, meter: MeterDescription, mode: str, layers: tuple[LayerRecord, ...],
            whole: WholeModelRecord | None, idle_w: float) -> BenchmarkResult:
    now = time.time()
    return BenchmarkResult(
        model_sha256=sha, mode=mode, meter=meter, runtime_name="synthetic",
        runtime_version="0", num_threads=1, idle_power_w=idle_w, clock_offset_s=0.0,
        alignment_correlation=1.0, started_unix_s=now, finished_unix_s=now,
        layers=LayerTable.from_records(layers), whole=whole)


def measure_synthetic(device: SyntheticDevice, layers: Sequence[LayerInfo],
                      rng: np.random.Generator, noise: float
                      ) -> tuple[list[float], list[float]]:
    """(latency, energy) per layer with multiplicative lognormal noise."""
    latencies, energies = [], []
    for layer in layers:
        latency = device.latency_s(layer) * math.exp(noise * rng.standard_normal())
        energy = latency * device.power_w(layer, latency) * math.exp(
            noise * rng.standard_normal())
        latencies.append(latency)
        energies.append(energy)
    return latencies, energies


def build_synthetic_db(
    path: str | Path,
    *,
    devices: Sequence[SyntheticDevice] = DEVICES,
    n_configs: int = 120,
    n_chains: int = 12,
    seed: int = 0,
    noise: float = 0.02,
    profile: str = "mobile",
    kinds: Sequence[str] = KINDS,
) -> Path:
    """Write a results database at ``path``: per device, ``n_configs`` single-layer sweep
    models (layers mode), ``n_chains`` multi-layer models (layers and whole mode) and the
    reference models (whole mode). Returns the path."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    models: list[tuple[str, bytes, bool, bool]] = []  # name, bytes, layers run, whole run
    for config in sample_configs(n_configs, seed=seed, profile=profile, kinds=kinds):
        models.append((config.name, config.build(), True, False))
    for config in sample_chains(n_chains, seed=seed):
        models.append((config.name, config.build(), True, True))
    for name, content in reference_models():
        models.append((name, content, False, True))
    parsed = [(name, content, hashlib.sha256(content).hexdigest(), read_layers(content), lay, wh)
              for name, content, lay, wh in models]
    with ResultStore(path) as store:
        sweep = store.start_sweep(suite="synthetic", suite_file="", devices_file="",
                                  joulefarm_version="synthetic", git_revision="",
                                  rust_core_profile="release")
        for name, content, sha, layers, _, _ in parsed:
            store.add_model(sha, name, "synthetic", len(content), layers, content)
        for device in devices:
            meter = _meter(device)
            facts = _facts(device, meter)
            store.upsert_device(facts, address="synthetic", tags=("synthetic",))
            for name, _, sha, layers, run_layers, run_whole in parsed:
                latencies, energies = measure_synthetic(device, layers, rng, noise)
                if run_layers:
                    records = tuple(_layer_record(layer, lat, e, device.idle_w)
                                    for layer, lat, e in zip(layers, latencies, energies,
                                                             strict=True))
                    job = store.add_job(sweep, device.name, name, sha)
                    store.store_run(job_id=job, sweep_id=sweep, device=facts, model_name=name,
                                    result=_result(sha, meter, "layers", records, None,
                                                   device.idle_w))
                if run_whole:
                    saved = (len(layers) - 1) * device.overhead_s
                    latency = WHOLE_SCALE * sum(latencies) - saved
                    energy = sum(energies) * latency / sum(latencies)
                    whole = WholeModelRecord(
                        iterations=100, window_start_s=0.0, window_end_s=100 * latency,
                        latency_mean_s=latency, latency_p50_s=latency, latency_p90_s=latency,
                        latency_p99_s=latency, energy_j=energy,
                        active_energy_j=energy - device.idle_w * latency,
                        mean_power_w=energy / latency, samples=100, coverage=1.0,
                        true_energy_j=energy)
                    job = store.add_job(sweep, device.name, name, sha)
                    store.store_run(job_id=job, sweep_id=sweep, device=facts, model_name=name,
                                    result=_result(sha, meter, "whole", (), whole,
                                                   device.idle_w))
        store.finish_sweep(sweep, "done")
    return path
