"""Run a suite on a set of devices and store every result as it arrives.

Each device runs its jobs one at a time; different devices run in parallel, except agents
that share this machine: they take turns (``host_lock``), because agents competing for the
same cores would measure each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import joulefarm
from agent.facts import package_version
from agent.models.parse import read_layers
from agent.results import Progress
from controller.client import AgentCallError, AgentClient
from controller.errors import JoulefarmError
from controller.provenance import git_revision
from controller.registry import Device
from controller.store import ResultStore
from controller.suite import MaterialisedModel, Suite


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one device's agent."""

    device: Device
    target: str
    token: str
    shares_host: bool = False


@dataclass
class DeviceOutcome:
    device: str
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SweepOutcome:
    sweep_id: str
    devices: dict[str, DeviceOutcome]

    @property
    def status(self) -> str:
        done = sum(d.done for d in self.devices.values())
        failed = sum(d.failed for d in self.devices.values())
        if failed == 0:
            return "done"
        return "partial" if done else "failed"


# (device, stage, done, total, message) for a live display.
ProgressFn = Callable[[str, str, int, int, str], None]


def materialise(suite: Suite) -> list[MaterialisedModel]:
    return [MaterialisedModel(spec, spec.materialise()) for spec in suite.models]


def _run_device(
    endpoint: Endpoint, models: list[MaterialisedModel], suite: Suite, store: ResultStore,
    sweep_id: str, host_lock: threading.Lock, progress: ProgressFn,
) -> DeviceOutcome:
    name = endpoint.device.name
    outcome = DeviceOutcome(name)
    jobs = [store.add_job(sweep_id, name, m.spec.name, m.sha256) for m in models]
    with AgentClient(name, endpoint.target, endpoint.token) as client:
        try:
            facts = client.facts()
        except AgentCallError as e:
            for job_id in jobs:
                store.fail_job(job_id, "unreachable", str(e))
            outcome.failed = len(jobs)
            outcome.errors.append(str(e))
            progress(name, "unreachable", 0, len(jobs), str(e))
            return outcome
        store.upsert_device(facts, address=endpoint.target, tags=endpoint.device.tags)
        for k, (job_id, model) in enumerate(zip(jobs, models, strict=True)):
            progress(name, "upload", k, len(models), model.spec.name)

            def on_progress(p: Progress, k: int = k, model: MaterialisedModel = model) -> None:
                progress(name, p.stage, k, len(models),
                         f"{model.spec.name}: {p.message} ({p.done}/{p.total})")

            try:
                sha = client.upload(model.spec.name, model.content)
                lock = host_lock if endpoint.shares_host else threading.Lock()
                with lock:
                    result = client.run_benchmark(sha, suite.settings, timeout_s=suite.timeout_s,
                                                  on_progress=on_progress)
                store.store_run(job_id=job_id, sweep_id=sweep_id, device=facts,
                                model_name=model.spec.name, result=result)
                outcome.done += 1
            except JoulefarmError as e:
                store.fail_job(job_id, "failed", str(e))
                outcome.failed += 1
                outcome.errors.append(str(e))
        progress(name, "done", len(models), len(models),
                 f"{outcome.done} done, {outcome.failed} failed")
    return outcome


def run_sweep(
    suite: Suite, endpoints: list[Endpoint], store: ResultStore, *, devices_file: str,
    progress: ProgressFn | None = None,
) -> SweepOutcome:
    """Run every model of ``suite`` on every endpoint; store results; never raise per device."""
    report = progress or (lambda *a: None)
    models = materialise(suite)
    for m in models:
        store.add_model(m.sha256, m.spec.name, m.spec.source, len(m.content),
                        len(read_layers(m.content)))
    sweep_id = store.start_sweep(
        suite=suite.name, suite_file=str(suite.path), devices_file=devices_file,
        joulefarm_version=package_version(), git_revision=git_revision(),
        rust_core_profile=joulefarm.build_profile(),
    )
    host_lock = threading.Lock()
    outcomes: dict[str, DeviceOutcome] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(endpoints)),
                                thread_name_prefix="device") as pool:
            futures = {
                e.device.name: pool.submit(_run_device, e, models, suite, store, sweep_id,
                                           host_lock, report)
                for e in endpoints
            }
            for name, future in futures.items():
                outcomes[name] = future.result()
    finally:
        outcome = SweepOutcome(sweep_id, outcomes)
        store.finish_sweep(sweep_id, outcome.status if outcomes else "failed")
    return outcome
