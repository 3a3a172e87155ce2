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
from joulefarm.tflite.training import trainable_from_model

QUICK_LAYERS = MeasureSettings(mode="layers", min_layer_duration_s=0.005, min_iterations=3,
                               idle_duration_s=0.05, warmup_iterations=2)
"""Layer-mode settings for tests: short windows, still well over the sync pattern's needs."""
QUICK_WHOLE = MeasureSettings(mode="whole", min_duration_s=0.02, min_iterations=5,
                              idle_duration_s=0.05, warmup_iterations=2)
QUICK_INSITU = MeasureSettings(mode="insitu", min_duration_s=0.05, min_iterations=5,
                               idle_duration_s=0.05, warmup_iterations=2)
QUICK_TRAIN = MeasureSettings(mode="train", min_duration_s=0.1, min_iterations=3,
                              idle_duration_s=0.05, warmup_iterations=1)


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


@dataclass(frozen=True)
class TrainToMeasure:
    """An inference model to measure one training step of (made trainable here)."""

    name: str
    content: bytes
    """The float32 inference model, at the step's batch."""


def measure_train_into_store(
    db_path: str | Path,
    device_name: str,
    profile: str,
    models: Sequence[TrainToMeasure],
    *,
    loss: str = "softmax_cross_entropy",
    optimizer: str = "adam",
    settings: MeasureSettings = QUICK_TRAIN,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Make each model trainable (``loss``, ``optimizer``) and store one train-mode run of it
    on this machine as ``device_name``, as a sweep of ``[measure] mode = "train"`` does: the
    trainable model keyed by its sha256 with the inference model's layers, its source saying
    what was made of it. Returns the number of runs stored."""
    facts = local_facts(device_name, profile)
    runtime = runtime_info()
    with ResultStore(db_path) as store:
        store.upsert_device(facts, address="in-process", tags=("local",))
        sweep = store.start_sweep(suite="estimator-training", suite_file="", devices_file="",
                                  joulefarm_version="in-process", git_revision="",
                                  rust_core_profile=joulefarm.build_profile())
        for i, model in enumerate(models):
            layers = read_layers(model.content)
            trainable = trainable_from_model(model.content, loss=loss, optimizer=optimizer)
            sha = hashlib.sha256(trainable).hexdigest()
            batch = layers[0].input_shapes[0][0] if layers and layers[0].input_shapes else 1
            store.add_model(sha, model.name, f"trainable: {optimizer}, {loss}, batch {batch}",
                            len(trainable), layers)
            if progress:
                progress(f"{device_name}: train {i + 1}/{len(models)} {model.name}")
            meter = open_meter("sim", profile=profile, seed=seed + i)
            result = measure(trainable, sha, meter, replace(settings, seed=seed + i), runtime)
            job = store.add_job(sweep, device_name, model.name, sha)
            store.store_run(job_id=job, sweep_id=sweep, device=facts, model_name=model.name,
                            result=result)
        store.finish_sweep(sweep, "done")
    return len(models)
