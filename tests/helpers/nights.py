"""Synthetic nights of one model's layers, with noise and injected steps of known size: as
polars frames (the results API's columns) and as runs stored in a results database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from controller.store import ResultStore
from joulefarm.results import BenchmarkResult, DeviceFacts, LayerRecord, MeterDescription

SIM = MeterDescription(kind="sim", simulated=True, sample_rate_hz=10_000.0, profile="rpi4")
SETTINGS: dict[str, object] = {"mode": "layers", "num_threads": 1, "seed": 0}


@dataclass(frozen=True)
class Op:
    op: str
    latency_s: float
    power_w: float


# A small CNN's layers: the CONV_2D layers hold most of the energy, as in tiny_cnn.
MODEL: tuple[Op, ...] = (
    Op("CONV_2D", 4e-4, 6.0), Op("DEPTHWISE_CONV_2D", 1e-4, 5.0), Op("CONV_2D", 8e-4, 6.5),
    Op("AVERAGE_POOL_2D", 3e-5, 4.0), Op("FULLY_CONNECTED", 2e-5, 4.5), Op("SOFTMAX", 5e-6, 3.6),
)


def night(rng: np.random.Generator, reps: int, *, noise: float = 0.02,
          power_scale: Mapping[int, float] | None = None,
          latency_scale: Mapping[int, float] | None = None,
          model: Sequence[Op] = MODEL) -> list[list[LayerRecord]]:
    """``reps`` runs of ``model``: each layer's latency varies between runs by ``noise``
    (lognormal), its power by half that; ``*_scale``: a step (layer index -> factor). Each
    layer states an uncertainty equal to the noise it was drawn with (95% half-widths)."""
    power_scale, latency_scale = power_scale or {}, latency_scale or {}
    runs = []
    for _ in range(reps):
        layers = []
        for i, op in enumerate(model):
            t = op.latency_s * latency_scale.get(i, 1.0) * float(np.exp(rng.normal(0, noise)))
            p = op.power_w * power_scale.get(i, 1.0) * float(np.exp(rng.normal(0, noise / 2)))
            e = p * t
            layers.append(LayerRecord(
                index=i, op=op.op, macs=1000, param_bytes=1, act_in_bytes=1, act_out_bytes=1,
                input_shapes="1x8", output_shapes="1x8", iterations=100, window_start_s=0.0,
                window_end_s=0.1, latency_s=t, energy_j=e, active_energy_j=e / 2,
                mean_power_w=p, samples=1000, coverage=1.0, true_energy_j=e,
                latency_low_s=t * (1 - 1.96 * noise), latency_high_s=t * (1 + 1.96 * noise),
                batches=20, energy_err_j=1.96 * float(np.hypot(noise, noise / 2)) * e))
        runs.append(layers)
    return runs


def frames(runs: Sequence[Sequence[LayerRecord]], *, sweep: str = "s",
           series: str = "series") -> tuple[pl.DataFrame, pl.DataFrame]:
    """The runs and layers frames (``Results.runs`` / ``Results.layers`` columns that the
    comparison reads) of one series' night."""
    run_rows, layer_rows = [], []
    for k, layers in enumerate(runs):
        run_id = f"{sweep}-run-{k}"
        e = sum(x.energy_j for x in layers)
        t = sum(x.latency_s for x in layers)
        run_rows.append({"run_id": run_id, "sweep_id": sweep, "series_id": series,
                         "energy_j": e, "latency_s": t, "power_w": e / t, "usable": True})
        layer_rows.extend({
            "run_id": run_id, "sweep_id": sweep, "series_id": series,
            "layer_index": x.index, "op": x.op, "energy_j": x.energy_j,
            "latency_s": x.latency_s, "power_w": x.energy_j / x.latency_s,
            "energy_err_j": x.energy_err_j, "latency_low_s": x.latency_low_s,
            "latency_high_s": x.latency_high_s, "flags": list(x.flags), "usable": True}
            for x in layers)
    return pl.DataFrame(run_rows), pl.DataFrame(layer_rows,
                                                schema_overrides={"flags": pl.List(pl.String)})


def facts(name: str = "pi", runtime_version: str = "2.3.0") -> DeviceFacts:
    return DeviceFacts(
        device_name=name, platform="sim", machine="x86_64", cpu_model="cpu", cpu_count=2,
        memory_bytes=1, os="os", kernel="k", python_version="3.11", runtime_name="litert",
        runtime_version=runtime_version, agent_version="0", rust_core_profile="release",
        meters=(SIM,), fingerprint="f" * 64)


def store_night(store: ResultStore, runs: Sequence[Sequence[LayerRecord]], *,
                device: DeviceFacts | None = None, model: str = "cnn",
                sha256: str = "a" * 64, settings: Mapping[str, object] = SETTINGS,
                sweep_id: str | None = None) -> str:
    """Store one night (a sweep, or more runs in ``sweep_id``): each run a repetition (its
    own job, seed + k) of ``model`` on ``device``; returns the sweep id."""
    device = device or facts()
    sweep_id = sweep_id or store.start_sweep(
        suite="nightly", suite_file="nightly.toml", devices_file="devices.toml",
        joulefarm_version="0", git_revision="x", rust_core_profile="release")
    seed = int(str(settings.get("seed", 0)))
    configs = [{**settings, "seed": seed + k, "repetition": k} for k in range(len(runs))]
    jobs = store.add_jobs(sweep_id, [(device.device_name, model, sha256, c) for c in configs])
    for job_id, layers in zip(jobs, runs, strict=True):
        result = BenchmarkResult(
            model_sha256=sha256, mode=str(settings.get("mode", "layers")), meter=SIM,
            runtime_name=device.runtime_name, runtime_version=device.runtime_version,
            num_threads=1, idle_power_w=2.7, clock_offset_s=0.0, alignment_correlation=0.99,
            started_unix_s=1.7e9, finished_unix_s=1.7e9 + 1, layers=tuple(layers))
        store.start_job(job_id)
        store.store_run(job_id=job_id, sweep_id=sweep_id, device=device, model_name=model,
                        result=result)
    store.finish_sweep(sweep_id, "done")
    return sweep_id



# -- two real nights on the local simulated farm (tests/controller/conftest.py: two_nights) --

# Five repetitions a night: on a shared machine a layer's latency moves by tens of percent
# between runs, and the tests must see a 20% step through it.
NIGHTLY_SUITE = """
schema_version = 1
name = "nightly"

[select]
names = ["rpi4-sim", "host"]

[measure]
mode = "layers"
min_layer_duration_s = 0.02
idle_duration_s = 0.2
repetitions = 5

[[model]]
name = "tiny_cnn"
recipe = "tiny_cnn"
seed = 0
"""
DEARER_OP = "CONV_2D"


@dataclass(frozen=True)
class TwoNights:
    """A database of two sweeps of NIGHTLY_SUITE, the second with rpi4-sim's DEARER_OP layers
    drawing 20% more power (the sim meter's ``op_energy_scale``), run as a scheduled sweep runs
(--detect-changes --report-dir)."""

    db: Path
    before: str
    after: str
    second_output: str
    report: Path
    """What the second sweep wrote with --report-dir, as a scheduled sweep does."""


def dearer(devices: str) -> str:
    """The demo farm, with rpi4-sim's DEARER_OP layers drawing 20% more power."""
    anchor = 'profile = "rpi4"\n'
    assert anchor in devices
    return devices.replace(
        anchor, anchor + f"options = {{ op_energy_scale = {{ {DEARER_OP} = 1.2 }} }}\n")


def run_two_nights(root: Path) -> TwoNights:
    from controller.results_frames import open_results
    from tests.helpers import REPO, run_cli

    suite = root / "nightly.toml"
    suite.write_text(NIGHTLY_SUITE)
    plain = (REPO / "devices.toml").read_text()
    (root / "night1.toml").write_text(plain)
    (root / "night2.toml").write_text(dearer(plain))
    db = root / "r.duckdb"
    first = run_cli("sweep", "run", str(suite), "--devices", str(root / "night1.toml"),
                    "--db", str(db))
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli("sweep", "run", str(suite), "--devices", str(root / "night2.toml"),
                     "--db", str(db), "--detect-changes", "--report-dir", str(root / "reports"))
    assert second.returncode == 0, second.stdout + second.stderr
    before, after = open_results(db).sweeps()["sweep_id"].to_list()
    return TwoNights(db, before, after, second.stdout, root / "reports" / f"{after}.html")
