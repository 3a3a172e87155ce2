"""Sweeps: a suite x devices expanded into jobs, run with one job at a time per device.

Every job is written to the database before anything runs, so a controller that dies leaves
a complete list of what remains; ``resume`` runs exactly the jobs that are not done, and the
database refuses a second copy of any job's results (``runs.job_id`` is unique).

Devices run in parallel, except agents that share this machine: they take turns
(``host_lock``), because agents competing for the same cores would measure each other.
A job that fails for a transient reason (agent unreachable, stalled, busy) is retried with
exponential backoff once the device is healthy again; a device that stays unhealthy is
skipped and reported. A result is checked against its job before it is stored
(``controller.farm.result_checks``).

A sweep keeps what resuming it needs (``controller.farm.sweep_record``). One that cannot go on
(the database cannot be written: a full disk; a bug; Ctrl-C) stops every device, is marked
``interrupted`` with the cause, and leaves the jobs it did not store pending for ``resume``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import grpc

import joulefarm
from controller.config.registry import Device
from controller.config.suite import (
    PER_MODEL_SETTINGS,
    MaterialisedModel,
    ModelSpec,
    Suite,
    SuiteError,
)
from controller.config.train_spec import make_prefixes, make_trainable, prefix_name
from controller.farm.client import AgentCallError, AgentClient
from controller.farm.lease import SweepLease
from controller.farm.result_checks import check_device, check_result
from controller.farm.sweep_record import devices_json, suite_json
from controller.farm.timing import DEFAULT_TIMING, Timing
from controller.farm.tls import PinnedCert, agent_client, tls_failure
from controller.provenance import git_revision
from controller.store import DuplicateRunError, ResultStore, StoreError, StoreWriteError
from joulefarm.errors import JoulefarmError, ModelError
from joulefarm.results import BenchmarkResult, DeviceFacts, MeasureSettings, Progress
from joulefarm.tflite.parse import read_layers
from joulefarm.version import package_version

# Worth another attempt once the device answers again; anything else fails the job at once.
# ABORTED is a busy agent (another benchmark running). RESOURCE_EXHAUSTED is not here: it
# means a model or message too large for the agent, which no retry makes smaller.
TRANSIENT_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED,
})


class SweepInterrupted(JoulefarmError):
    """A sweep stopped before its jobs were done (it cannot store results, or the controller
    failed); its jobs not done stay pending for ``sweep resume``."""

    def __init__(self, sweep_id: str, message: str) -> None:
        self.sweep_id = sweep_id
        super().__init__(message)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one device's agent."""

    device: Device
    target: str
    token: str
    shares_host: bool = False
    # For agents the controller started: bring the process back if it died.
    revive: Callable[[], None] | None = None
    # The agent's pinned certificate (TLS); None: plaintext (loopback, or opted out).
    tls: PinnedCert | None = None

    def client(self) -> AgentClient:
        return agent_client(self.device, self.target, self.token, self.tls)

    def explain(self, problem: str) -> str:
        """``problem`` as one line naming the device; a failed TLS handshake says why."""
        return (tls_failure(self.tls, self.target, problem)
                or f"{self.device.name}: unreachable at {self.target} ({problem})")


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


class _Halt:
    """The first reason every device of a sweep stops (a write that failed, a bug, Ctrl-C);
    each device looks before its next job."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cause: BaseException | None = None

    def set(self, cause: BaseException) -> None:
        with self._lock:
            if self.cause is None:
                self.cause = cause

    def is_set(self) -> bool:
        return self.cause is not None

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
    """Every model's bytes; in train mode, the trainable model made of each (``SuiteError``
    naming the model when one cannot be)."""
    models = [MaterialisedModel(spec, spec.materialise()) for spec in suite.models]
    if suite.train is None:
        return models
    made = []
    for m in models:
        try:
            trainable = make_trainable(m.content, suite.train)
            prefixes = make_prefixes(m.content, suite.train) if suite.train.prefixes else []
        except ModelError as e:
            raise SuiteError(suite.path, 0, "train", f"model {m.spec.name!r}: {e}") from e
        made.append(MaterialisedModel(m.spec, trainable.content, trainable.made,
                                      trainable.layers))
        made += [MaterialisedModel(replace(m.spec, name=prefix_name(m.spec.name, k)),
                                   prefix.content, prefix.made, prefix.layers)
                 for k, prefix in prefixes]
    return made


def plan_sweep(suite: Suite, devices: Sequence[Device], store: ResultStore, *,
               devices_file: str, models: Sequence[MaterialisedModel]) -> str:
    """Record the sweep, its models (their bytes too) and every job (device x model x config),
    with what resuming it needs wherever it is resumed from; return its id."""
    for m in models:
        layers = m.layers if m.layers is not None else read_layers(m.content)
        store.add_model(m.sha256, m.spec.name, m.source, len(m.content), layers,
                        content=m.content)
    sweep_id = store.start_sweep(
        suite=suite.name, suite_file=str(suite.path), devices_file=devices_file,
        joulefarm_version=package_version(), git_revision=git_revision(),
        rust_core_profile=joulefarm.build_profile(),
        suite_definition=suite_json(suite, models),
        device_definitions=devices_json(devices, Path.cwd()),
    )
    store.add_jobs(sweep_id, [(d.name, m.spec.name, m.sha256, model_config(m.spec, config))
                              for d in devices for m in models for config in job_configs(suite)])
    return sweep_id


def store_result(store: ResultStore, job: Job, sweep_id: str, device: DeviceFacts,
                 result: BenchmarkResult) -> str:
    """Store ``result`` as ``job``'s, once it is checked to be the job's and to hold only
    values a measurement can have (``ResultRejected`` otherwise: nothing stored)."""
    check_result(job.device_name, job.model_name, job.model_sha256, device.device_name, result)
    return store.store_run(job_id=job.job_id, sweep_id=sweep_id, device=device,
                           model_name=job.model_name, result=result)


class _DeviceRunner:
    """Runs one device's jobs in order: the device's exclusive lease is this one thread."""

    def __init__(self, endpoint: Endpoint, models: Mapping[str, bytes], timeout_s: float,
                 store: ResultStore, sweep_id: str, host_lock: threading.Lock, timing: Timing,
                 progress: ProgressFn, halt: _Halt) -> None:
        self.endpoint, self.models, self.timeout_s = endpoint, models, timeout_s
        self.store, self.sweep_id, self.timing = store, sweep_id, timing
        self.halt = halt
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
        try:
            self._run_jobs(jobs)
        except StoreWriteError as e:
            # Nothing more can be stored, on any device: the jobs not stored stay pending.
            self.halt.set(e)
        except BaseException as e:
            self.halt.set(e)  # a bug: every device stops, and the sweep says why
            raise
        if self.halt.is_set():
            self.report(self.name, "stopped", self.outcome.done, len(jobs),
                        f"{self.outcome.done} done; the sweep stopped: {self.halt.cause}")
        else:
            self.report(self.name, "done" if not self.outcome.failed else "failed",
                        self.outcome.done, len(jobs),
                        f"{self.outcome.done} done, {self.outcome.failed} failed")
        return self.outcome

    def _run_jobs(self, jobs: list[Job]) -> None:
        with self.endpoint.client() as client:
            for k, job in enumerate(jobs):
                if self.halt.is_set():
                    return
                if not self.run_job(client, job, k, len(jobs)):
                    # Unhealthy beyond patience: skip the rest of this device, say so.
                    for rest in jobs[k + 1:]:
                        self.store.fail_job(rest.job_id, "unreachable",
                                            f"{self.name}: skipped, the device is unhealthy")
                        self.outcome.failed += 1
                    return

    def run_job(self, client: AgentClient, job: Job, k: int, total: int) -> bool:
        """Run one job with retries. Returns False when the device stayed unhealthy."""
        content = self.models[job.model_sha256]
        label = f"{job.model_name} {job.settings.mode}"
        for attempt in range(self.timing.retries + 1):
            problem = self.wait_healthy(client)
            if problem is not None:
                message = self.endpoint.explain(problem)
                self.store.fail_job(job.job_id, "unreachable", message)
                self.outcome.failed += 1
                self.outcome.errors.append(message)
                self.report(self.name, "unreachable", k, total, message)
                return False
            try:
                self.report(self.name, "upload", k, total, label)
                self.store.start_job(job.job_id)
                if self.facts is None:
                    facts = client.facts()
                    # Nothing is taken from an agent that is not this device, not even facts.
                    check_device(self.name, facts.device_name)
                    self.facts = facts
                    self.store.upsert_device(self.facts, address=self.endpoint.target,
                                             tags=self.endpoint.device.tags)
                sha = client.upload(job.model_name, content)

                def on_progress(p: Progress) -> None:
                    if p.stage != "heartbeat":
                        counter = f" ({p.done}/{p.total})" if p.total else ""
                        self.report(self.name, p.stage, k, total,
                                    f"{label}: {p.message}{counter}")

                with self.lock:
                    result = client.run_benchmark(
                        sha, job.settings, timeout_s=self.timeout_s,
                        on_progress=on_progress,
                        heartbeat_timeout_s=self.timing.heartbeat_timeout_s)
                store_result(self.store, job, self.sweep_id, self.facts, result)
                self.outcome.done += 1
                return True
            except StoreWriteError:
                raise  # not this job's fault: the sweep stops (run)
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
    sweep_id: str, timeout_s: float, endpoints: Sequence[Endpoint], store: ResultStore,
    models: Mapping[str, bytes], *, timing: Timing = DEFAULT_TIMING,
    progress: ProgressFn | None = None,
) -> SweepOutcome:
    """Run every job of the sweep that is not done yet (``models``: each job's model bytes by
    sha256). One device's failure never raises; ``SweepInterrupted`` when the sweep cannot go
    on (its results cannot be stored), and any other error after marking it interrupted."""
    report = progress or (lambda *a: None)
    pending = _pending_jobs(store, sweep_id, models)
    store.reopen_sweep(sweep_id)
    host_lock, halt = threading.Lock(), _Halt()
    known = {e.device.name: e for e in endpoints}
    outcomes = _fail_without_endpoint(store, pending, known)
    runners = {name: _DeviceRunner(known[name], models, timeout_s, store, sweep_id, host_lock,
                                   timing, report, halt)
               for name in pending if name in known}
    try:
        with (SweepLease(store, sweep_id, timing.lease_interval_s),
              ThreadPoolExecutor(max_workers=max(1, len(runners)),
                                 thread_name_prefix="device") as pool):
            futures = {name: pool.submit(r.run, pending[name]) for name, r in runners.items()}
            try:
                for name, future in futures.items():
                    outcomes[name] = future.result()
            except BaseException as e:
                halt.set(e)  # Ctrl-C, or a device's bug: the others stop after their job
                raise
        if halt.cause is None:
            store.finish_sweep(sweep_id, _final_status(store, sweep_id))
    except StoreWriteError as e:
        raise _interrupted(store, sweep_id, e) from e
    except BaseException as e:
        _mark_interrupted(store, sweep_id, f"the controller stopped: {e!r}")
        raise
    if halt.cause is not None:  # a write failed on a device's thread
        raise _interrupted(store, sweep_id, halt.cause) from halt.cause
    return SweepOutcome(sweep_id, outcomes)


def _pending_jobs(store: ResultStore, sweep_id: str, models: Mapping[str, bytes]
                  ) -> dict[str, list[Job]]:
    """The sweep's jobs not done, by device, each with its model at hand."""
    pending: dict[str, list[Job]] = {}
    for row in store.jobs(sweep_id, incomplete_only=True):
        config = row["config"]
        assert isinstance(config, dict)  # ResultStore.jobs decodes the stored JSON object
        job = Job(str(row["job_id"]), str(row["device_name"]), str(row["model_name"]),
                  str(row["model_sha256"]), dict(config))
        if job.model_sha256 not in models:
            raise JoulefarmError(
                f"sweep {sweep_id}: model {job.model_name!r} ({job.model_sha256[:12]}) is "
                "neither stored with the sweep nor made by its suite file any more; restore "
                "the suite file to resume")
        pending.setdefault(job.device_name, []).append(job)
    return pending


def _fail_without_endpoint(store: ResultStore, pending: Mapping[str, list[Job]],
                           known: Mapping[str, Endpoint]) -> dict[str, DeviceOutcome]:
    """Fail the jobs of devices that have no endpoint (a local agent that did not start)."""
    outcomes = {}
    for name, jobs in pending.items():
        if name not in known:
            for job in jobs:
                store.fail_job(job.job_id, "unreachable", f"{name}: no endpoint")
            outcomes[name] = DeviceOutcome(name, failed=len(jobs),
                                           errors=[f"{name}: no endpoint for this device"])
    return outcomes


def _final_status(store: ResultStore, sweep_id: str) -> str:
    """done, or partial / failed when jobs failed; from every job of the sweep, not only
    those this run had."""
    statuses = [str(j["status"]) for j in store.jobs(sweep_id)]
    failed = sum(s in ("failed", "unreachable") for s in statuses)
    if not failed:
        return "done"
    return "partial" if failed < len(statuses) else "failed"


def _mark_interrupted(store: ResultStore, sweep_id: str, cause: str) -> None:
    """Best effort: on a disk still full this write fails too; the sweep then shows as
    interrupted anyway once this controller has gone (its lease, controller.farm.lease)."""
    with suppress(StoreError):
        store.finish_sweep(sweep_id, "interrupted", error=cause)


def _interrupted(store: ResultStore, sweep_id: str, cause: BaseException) -> SweepInterrupted:
    """Mark the sweep interrupted by ``cause``; the error that says so, and what to do."""
    _mark_interrupted(store, sweep_id, str(cause))
    try:
        left = sum(str(j["status"]) in ("pending", "running") for j in store.jobs(sweep_id))
        count = f"{left} jobs not run; "
    except StoreError:
        count = ""
    return SweepInterrupted(
        sweep_id, f"sweep {sweep_id} interrupted: {cause}; {count}once that is fixed, resume "
                  f"with: joulefarm sweep resume {sweep_id}")


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
    return execute_sweep(sweep_id, suite.timeout_s, endpoints, store,
                         {m.sha256: m.content for m in models}, timing=timing,
                         progress=progress)
