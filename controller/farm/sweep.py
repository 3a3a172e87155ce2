"""Sweeps: a suite x devices expanded into jobs, run with one job at a time per device.

Every job is written to the database before anything runs, so a controller that dies leaves
a complete list of what remains; ``resume`` runs exactly the jobs that are not done, and the
database refuses a second copy of any job's results (``runs.job_id`` is unique).

Devices run in parallel, except agents that share this machine: they take turns
(``host_lock``), because agents competing for the same cores would measure each other.
A job that fails for a transient reason (agent unreachable, stalled, busy) is retried with
exponential backoff once the device is healthy again; a device that stays unhealthy is
skipped and reported.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields

import grpc

import joulefarm
from controller.config.registry import Device
from controller.config.suite import PER_MODEL_SETTINGS, MaterialisedModel, ModelSpec, Suite
from controller.farm.client import AgentCallError, AgentClient
from controller.farm.lease import SweepLease
from controller.farm.timing import DEFAULT_TIMING, Timing
from controller.provenance import git_revision
from controller.store import DuplicateRunError, ResultStore
from joulefarm.errors import JoulefarmError
from joulefarm.results import DeviceFacts, MeasureSettings, Progress
from joulefarm.tflite.parse import read_layers
from joulefarm.version import package_version

# Worth another attempt once the device answers again; anything else fails the job at once.
TRANSIENT_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED,
})


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one device's agent."""

    device: Device
    target: str
    token: str
    shares_host: bool = False
    # For agents the controller started: bring the process back if it died.
    revive: Callable[[], None] | None = None


@dataclass(frozen=True)
class Job:
    job_id: str
    device_name: str
    model_name: str
    model_sha256: str
    config: dict[str, object]

    @property
    def settings(self) -> MeasureSettings:
        # The config also holds bookkeeping (the repetition number) that is not a setting.
        known = {k: v for k, v in self.config.items() if k in _SETTING_NAMES}
        return MeasureSettings(**known)  # type: ignore[arg-type]


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

_SETTING_NAMES = {f.name for f in fields(MeasureSettings)}


def job_configs(suite: Suite) -> list[dict[str, object]]:
    """The suite's settings crossed with every combination of its ``[matrix]``, each repeated
    ``repetitions`` times (repetition k runs with seed + k). Settings of one model (its input
    shapes) are added per model (``model_config``)."""
    base = {k: v for k, v in asdict(suite.settings).items()
            if k in _SETTING_NAMES and k not in PER_MODEL_SETTINGS}
    keys = list(suite.matrix)
    combos = itertools.product(*(suite.matrix[k] for k in keys)) if keys else [()]
    configs = []
    for combo in combos:
        config = {**base, **dict(zip(keys, combo, strict=True))}
        for k in range(suite.repetitions):
            configs.append({**config, "seed": int(config["seed"]) + k, "repetition": k})
    return configs


def model_config(model: ModelSpec, config: dict[str, object]) -> dict[str, object]:
    """One job's config for ``model``: ``config`` and the model's own settings. Input shapes
    are stored (``jobs.config``) as ``{"audio": [1, 16000]}``."""
    if not model.input_shapes:
        return config
    return {**config, "input_shapes": {key: list(shape) for key, shape in model.input_shapes}}


def materialise(suite: Suite) -> list[MaterialisedModel]:
    return [MaterialisedModel(spec, spec.materialise()) for spec in suite.models]


def plan_sweep(suite: Suite, devices: Sequence[Device], store: ResultStore, *,
               devices_file: str, models: Sequence[MaterialisedModel]) -> str:
    """Record the sweep, its models and every job (device x model x config); return its id."""
    for m in models:
        store.add_model(m.sha256, m.spec.name, m.spec.source, len(m.content),
                        read_layers(m.content))
    sweep_id = store.start_sweep(
        suite=suite.name, suite_file=str(suite.path), devices_file=devices_file,
        joulefarm_version=package_version(), git_revision=git_revision(),
        rust_core_profile=joulefarm.build_profile(),
    )
    store.add_jobs(sweep_id, [(d.name, m.spec.name, m.sha256, model_config(m.spec, config))
                              for d in devices for m in models for config in job_configs(suite)])
    return sweep_id


class _DeviceRunner:
    """Runs one device's jobs in order: the device's exclusive lease is this one thread."""

    def __init__(self, endpoint: Endpoint, models: dict[str, MaterialisedModel], suite: Suite,
                 store: ResultStore, sweep_id: str, host_lock: threading.Lock, timing: Timing,
                 progress: ProgressFn) -> None:
        self.endpoint, self.models, self.suite = endpoint, models, suite
        self.store, self.sweep_id, self.timing = store, sweep_id, timing
        self.lock = host_lock if endpoint.shares_host else threading.Lock()
        self.name = endpoint.device.name
        self.report = progress
        self.outcome = DeviceOutcome(self.name)
        self.facts: DeviceFacts | None = None
        self.seen_healthy = False

    def wait_healthy(self, client: AgentClient) -> str | None:
        """None once the agent is healthy; else the last problem seen.

        A device that has never answered is skipped after one check; one that answered
        before and went quiet (crashed, stopped, rebooting) gets ``health_patience_s``.
        """
        patience = self.timing.health_patience_s if self.seen_healthy else 0.0
        deadline = time.monotonic() + patience
        while True:
            problem = client.health_problem(timeout_s=min(5.0, max(patience, 1.0)))
            if problem is None:
                self.seen_healthy = True
                return None
            if self.endpoint.revive:
                self.endpoint.revive()  # a local agent that died comes back on its port
            if time.monotonic() >= deadline:
                return problem
            self.report(self.name, "unhealthy", self.outcome.done, 0, problem)
            time.sleep(self.timing.health_poll_s)

    def run(self, jobs: list[Job]) -> DeviceOutcome:
        with AgentClient(self.name, self.endpoint.target, self.endpoint.token) as client:
            for k, job in enumerate(jobs):
                if not self.run_job(client, job, k, len(jobs)):
                    # Unhealthy beyond patience: skip the rest of this device, say so.
                    for rest in jobs[k + 1:]:
                        self.store.fail_job(rest.job_id, "unreachable",
                                            f"{self.name}: skipped, the device is unhealthy")
                        self.outcome.failed += 1
                    break
        self.report(self.name, "done" if not self.outcome.failed else "failed",
                    self.outcome.done, len(jobs),
                    f"{self.outcome.done} done, {self.outcome.failed} failed")
        return self.outcome

    def run_job(self, client: AgentClient, job: Job, k: int, total: int) -> bool:
        """Run one job with retries. Returns False when the device stayed unhealthy."""
        model = self.models[job.model_sha256]
        label = f"{job.model_name} {job.settings.mode}"
        for attempt in range(self.timing.retries + 1):
            problem = self.wait_healthy(client)
            if problem is not None:
                message = f"{self.name}: unreachable at {self.endpoint.target} ({problem})"
                self.store.fail_job(job.job_id, "unreachable", message)
                self.outcome.failed += 1
                self.outcome.errors.append(message)
                self.report(self.name, "unreachable", k, total, message)
                return False
            try:
                self.report(self.name, "upload", k, total, label)
                if self.facts is None:
                    self.facts = client.facts()
                    self.store.upsert_device(self.facts, address=self.endpoint.target,
                                             tags=self.endpoint.device.tags)
                self.store.start_job(job.job_id)
                sha = client.upload(job.model_name, model.content)

                def on_progress(p: Progress) -> None:
                    if p.stage != "heartbeat":
                        counter = f" ({p.done}/{p.total})" if p.total else ""
                        self.report(self.name, p.stage, k, total,
                                    f"{label}: {p.message}{counter}")

                with self.lock:
                    result = client.run_benchmark(
                        sha, job.settings, timeout_s=self.suite.timeout_s,
                        on_progress=on_progress,
                        heartbeat_timeout_s=self.timing.heartbeat_timeout_s)
                self.store.store_run(job_id=job.job_id, sweep_id=self.sweep_id,
                                     device=self.facts, model_name=job.model_name,
                                     result=result)
                self.outcome.done += 1
                return True
            except DuplicateRunError:
                self.outcome.done += 1  # stored by an earlier attempt: nothing to add
                return True
            except AgentCallError as e:
                if e.code in TRANSIENT_CODES and attempt < self.timing.retries:
                    wait = self.timing.backoff_s(attempt + 1)
                    self.report(self.name, "retrying", k, total,
                                f"{label}: {e.code.name}, retry in {wait:g} s")
                    time.sleep(wait)
                    continue
                self._fail(job, str(e))
                return True
            except JoulefarmError as e:
                self._fail(job, str(e))
                return True
        return True  # pragma: no cover (the loop always returns)

    def _fail(self, job: Job, message: str) -> None:
        self.store.fail_job(job.job_id, "failed", message)
        self.outcome.failed += 1
        self.outcome.errors.append(message)


def execute_sweep(
    sweep_id: str, suite: Suite, endpoints: Sequence[Endpoint], store: ResultStore,
    models: Sequence[MaterialisedModel], *, timing: Timing = DEFAULT_TIMING,
    progress: ProgressFn | None = None,
) -> SweepOutcome:
    """Run every job of the sweep that is not done yet; never raises for one device."""
    report = progress or (lambda *a: None)
    by_sha = {m.sha256: m for m in models}
    pending: dict[str, list[Job]] = {}
    for row in store.jobs(sweep_id, incomplete_only=True):
        config = row["config"]
        assert isinstance(config, dict)  # ResultStore.jobs decodes the stored JSON object
        job = Job(str(row["job_id"]), str(row["device_name"]), str(row["model_name"]),
                  str(row["model_sha256"]), dict(config))
        if job.model_sha256 not in by_sha:
            raise JoulefarmError(
                f"sweep {sweep_id}: model {job.model_name!r} ({job.model_sha256[:12]}) is not "
                f"in suite {suite.path} any more; restore the suite to resume")
        pending.setdefault(job.device_name, []).append(job)
    store.reopen_sweep(sweep_id)
    host_lock = threading.Lock()
    outcomes: dict[str, DeviceOutcome] = {}
    known = {e.device.name: e for e in endpoints}
    for name, jobs in pending.items():
        if name not in known:
            for job in jobs:
                store.fail_job(job.job_id, "unreachable", f"{name}: no endpoint")
            outcomes[name] = DeviceOutcome(name, failed=len(jobs),
                                           errors=[f"{name}: no endpoint for this device"])
    runners = {name: _DeviceRunner(known[name], by_sha, suite, store, sweep_id, host_lock,
                                   timing, report)
               for name in pending if name in known}
    try:
        with (SweepLease(store, sweep_id, timing.lease_interval_s),
              ThreadPoolExecutor(max_workers=max(1, len(runners)),
                                 thread_name_prefix="device") as pool):
            futures = {name: pool.submit(r.run, pending[name]) for name, r in runners.items()}
            for name, future in futures.items():
                outcomes[name] = future.result()
    finally:
        outcome = SweepOutcome(sweep_id, outcomes)
        remaining = store.jobs(sweep_id, incomplete_only=True)
        store.finish_sweep(sweep_id, "done" if not remaining else outcome.status)
    return outcome


def run_sweep(
    suite: Suite, devices: Sequence[Device], endpoints: Sequence[Endpoint], store: ResultStore,
    *, devices_file: str, timing: Timing = DEFAULT_TIMING, progress: ProgressFn | None = None,
    on_start: Callable[[str], None] | None = None,
) -> SweepOutcome:
    """Plan a new sweep and run it; ``on_start`` learns the sweep id before any job runs."""
    models = materialise(suite)
    sweep_id = plan_sweep(suite, devices, store, devices_file=devices_file, models=models)
    if on_start is not None:
        on_start(sweep_id)
    return execute_sweep(sweep_id, suite, endpoints, store, models, timing=timing,
                         progress=progress)
