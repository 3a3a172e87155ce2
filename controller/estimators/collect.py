"""Measure models in-process on this machine and store them like a farm run would.

For training data without a farm: each model runs through the agent's own pipeline
(``agent.local.measure``, the real TFLite runtime on this CPU) with a simulated meter, and
the result goes through ``ResultStore.store_run``. Latency is this host's real latency; energy
comes from the simulated meter's device profile and is stored as simulated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import joulefarm
from agent.local import collect_facts, measure, open_meter, runtime_info
from controller.store import ResultStore
from joulefarm.results import DeviceFacts, MeasureSettings
from joulefarm.tflite.parse import read_layers

QUICK_LAYERS = MeasureSettings(mode="layers", min_layer_duration_s=0.005, min_iterations=3,
                               idle_duration_s=0.05, warmup_iterations=2)
"""Layer-mode settings for tests: short windows, still well over the sync pattern's needs."""
QUICK_WHOLE = MeasureSettings(mode="whole", min_duration_s=0.02, min_iterations=5,
                              idle_duration_s=0.05, warmup_iterations=2)
QUICK_INSITU = MeasureSettings(mode="insitu", min_duration_s=0.05, min_iterations=5,
                               idle_duration_s=0.05, warmup_iterations=2)


@dataclass(frozen=True)
class ModelToMeasure:
    name: str
    content: bytes
    modes: tuple[str, ...] = ("layers",)
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """Shapes for dynamic inputs (``MeasureSettings.input_shapes``)."""


def local_facts(device_name: str, profile: str) -> DeviceFacts:
    """This machine's facts under ``device_name``, with the simulated meter of ``profile``."""
    meter = open_meter("sim", profile=profile)
    return collect_facts(device_name, "linux", (meter.description,), runtime_info(),
                         joulefarm.build_profile())


def measure_into_store(
    db_path: str | Path,
    device_name: str,
    profile: str,
    models: Sequence[ModelToMeasure],
    *,
    layers_settings: MeasureSettings = QUICK_LAYERS,
    whole_settings: MeasureSettings = QUICK_WHOLE,
    insitu_settings: MeasureSettings = QUICK_INSITU,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Measure every model in its modes on this machine as ``device_name``; returns the number
    of runs stored."""
    facts = local_facts(device_name, profile)
    runtime = runtime_info()
    runs = 0
    with ResultStore(db_path) as store:
        store.upsert_device(facts, address="in-process", tags=("local",))
        sweep = store.start_sweep(suite="estimator-training", suite_file="", devices_file="",
                                  joulefarm_version="in-process", git_revision="",
                                  rust_core_profile=joulefarm.build_profile())
        for i, model in enumerate(models):
            sha = hashlib.sha256(model.content).hexdigest()
            store.add_model(sha, model.name, "generated", len(model.content),
                            read_layers(model.content))
            for mode in model.modes:
                settings = replace({"layers": layers_settings, "whole": whole_settings,
                                    "insitu": insitu_settings}[mode],
                                   input_shapes=model.input_shapes)
                if progress:
                    progress(f"{device_name}: {mode} {i + 1}/{len(models)} {model.name}")
                meter = open_meter("sim", profile=profile, seed=i)
                result = measure(model.content, sha, meter, settings, runtime)
                job = store.add_job(sweep, device_name, model.name, sha)
                store.store_run(job_id=job, sweep_id=sweep, device=facts, model_name=model.name,
                                result=result)
                runs += 1
        store.finish_sweep(sweep, "done")
    return runs
