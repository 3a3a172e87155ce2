"""Run a suite on the devices of a registry, or resume a sweep: the controller's main loop.

Local devices get agents started here (a LocalFarm, stopped whatever happens); remote devices
are reached at their address with the token from their ``token_file``, over TLS with the
certificate their ``[device.tls]`` pins (``controller.farm.tls``): plaintext only on loopback,
through an SSH tunnel, or with ``insecure_plaintext = true``. Everything is
validated before anything starts: bad input runs nothing. A sweep resumes with the suite,
device definitions and models it stored (``controller.farm.sweep_record``), from anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from controller.config.registry import Device, Registry, load_registry
from controller.config.suite import Suite, load_suite
from controller.farm.localfarm import LocalAgentError, LocalFarm, local_workdir
from controller.farm.sweep import (
    Endpoint,
    ProgressFn,
    SweepOutcome,
    execute_sweep,
    materialise,
    run_sweep,
)
from controller.farm.sweep_record import SuiteRecord, check_same_devices, devices_from_json
from controller.farm.timing import DEFAULT_TIMING, Timing
from controller.farm.tls import agent_transport
from controller.provision.tunnel import agent_tunnel
from controller.store import ResultStore
from joulefarm.errors import JoulefarmError


@dataclass
class RunReport:
    suite: str
    """The suite's name."""
    outcome: SweepOutcome
    # Local agents that did not even start, by device name.
    skipped: dict[str, str]

    @property
    def ok(self) -> bool:
        return self.outcome.status == "done" and not self.skipped

    def errors(self) -> list[str]:
        """Every problem, each naming its device."""
        out = [e for d in self.outcome.devices.values() for e in d.errors]
        return out + list(self.skipped.values())


def select_devices(registry: Registry, suite: Suite) -> tuple[Device, ...]:
    return registry.select(names=suite.select_names or None, tags=suite.select_tags or None)


def load_inputs(devices_path: Path, suite_path: Path, only: Sequence[str] = ()
                ) -> tuple[Registry, Suite, tuple[Device, ...]]:
    """Read and validate the registry and the suite, and pick the suite's devices (of them,
    only those named in ``only`` when given)."""
    registry = load_registry(devices_path)
    suite = load_suite(suite_path)
    devices = select_devices(registry, suite)
    if only:
        registry.select(names=list(only))  # a name the registry lacks: its clear error
        devices = tuple(d for d in devices if d.name in only)
        if not devices:
            raise JoulefarmError(f"{suite.path}: [select] leaves out {', '.join(only)}")
    if not devices:
        raise JoulefarmError(f"{suite_path}: no device in {devices_path} matches [select]")
    return registry, suite, devices


def read_device_token(device: Device) -> str:
    """The token of a remote agent, from the file its entry names (never logged)."""
    token_file = device.token_file
    if not token_file:
        return ""
    try:
        return Path(token_file).expanduser().read_text().strip()
    except OSError as e:
        raise JoulefarmError(f"device {device.name!r}: cannot read token_file {token_file}: "
                             f"{e.strerror}") from e


@contextmanager
def connect(devices: Sequence[Device], progress: ProgressFn | None = None
            ) -> Iterator[tuple[list[Endpoint], dict[str, str]]]:
    """Endpoints for ``devices``; local agents are started here and stopped on exit."""
    report = progress or (lambda *a: None)
    skipped: dict[str, str] = {}
    remote = [d for d in devices if not d.local]
    tokens = {d.name: read_device_token(d) for d in remote}  # fail early
    pins = {d.name: agent_transport(d) for d in remote}  # and refuse plaintext on a network
    with local_workdir() as tmp, LocalFarm(tmp) as farm, ExitStack() as tunnels:
        endpoints = []
        for device in devices:
            if device.local:
                report(device.name, "starting", 0, 0, "local agent")
                try:
                    agent = farm.start(device)
                except LocalAgentError as e:
                    skipped[device.name] = str(e)
                    report(device.name, "unreachable", 0, 0, str(e))
                    continue
                endpoints.append(Endpoint(device, agent.target, farm.token, shares_host=True,
                                          revive=partial(farm.ensure_running, device.name)))
            elif device.ssh is not None and device.ssh.tunnel:
                # The agent listens on the device's loopback only: reach it through SSH.
                try:
                    target = tunnels.enter_context(agent_tunnel(device))
                except JoulefarmError as e:
                    skipped[device.name] = f"{device.name}: SSH tunnel failed: {e}"
                    report(device.name, "unreachable", 0, 0, str(e))
                    continue
                endpoints.append(Endpoint(device, target, tokens[device.name],
                                          tls=pins[device.name]))
            else:
                endpoints.append(Endpoint(device, device.grpc_target(), tokens[device.name],
                                          tls=pins[device.name]))
        yield endpoints, skipped


def run_suite(devices_path: Path, suite_path: Path, db_path: Path, *,
              progress: ProgressFn | None = None, timing: Timing = DEFAULT_TIMING,
              on_start: Callable[[str], None] | None = None,
              only: Sequence[str] = ()) -> RunReport:
    """A new sweep of ``suite_path`` on its devices, or on those of them in ``only``
    (``on_start`` gets its id first)."""
    _, suite, devices = load_inputs(devices_path, suite_path, only)
    with connect(devices, progress) as (endpoints, skipped), ResultStore(db_path) as store:
        outcome = run_sweep(suite, devices, endpoints, store, devices_file=str(devices_path),
                            timing=timing, progress=progress, on_start=on_start)
    return RunReport(suite.name, outcome, skipped)


@dataclass(frozen=True)
class _StoredPlan:
    """What a sweep is resumed with."""

    suite: SuiteRecord
    devices: tuple[Device, ...]
    models: dict[str, bytes]
    """The bytes of each model, by sha256."""


def resume(sweep_id: str, db_path: Path, *, devices_path: Path | None = None,
           progress: ProgressFn | None = None, timing: Timing = DEFAULT_TIMING) -> RunReport:
    """Run the jobs of ``sweep_id`` that did not complete, with the suite, device definitions
    and models it stored, whatever the current directory. ``devices_path``, when given, must
    define the sweep's devices as the sweep ran them (``InputError`` naming the device and the
    field otherwise)."""
    with ResultStore(db_path) as store:
        sweep = store.sweep(sweep_id)
        jobs = store.jobs(sweep_id, incomplete_only=True)
        pending = {str(j["device_name"]) for j in jobs}
        plan = _stored_plan(store, sweep, {str(j["model_sha256"]) for j in jobs}, devices_path)
        devices = [d for d in plan.devices if d.name in pending]
        if devices_path is not None and sweep["device_definitions"] is not None:
            given = {d.name: d for d in load_registry(devices_path)}
            check_same_devices(devices, given, Path.cwd(), sweep_id=sweep_id,
                               where=devices_path)
        with connect(devices, progress) as (endpoints, skipped):
            outcome = execute_sweep(sweep_id, plan.suite.timeout_s, endpoints, store,
                                    plan.models, timing=timing, progress=progress)
    return RunReport(plan.suite.name, outcome, skipped)


def _stored_plan(store: ResultStore, sweep: dict[str, object], shas: set[str],
                 devices_path: Path | None) -> _StoredPlan:
    """The sweep's own suite, devices and models; for a sweep recorded before they were
    stored (schema version 4), read again from its files."""
    suite_text, devices_text = sweep["suite_definition"], sweep["device_definitions"]
    models = store.model_contents(sorted(shas))
    if suite_text is not None and devices_text is not None and set(models) == shas:
        return _StoredPlan(SuiteRecord.from_json(str(suite_text)),
                           devices_from_json(str(devices_text)), models)
    suite = load_suite(Path(str(sweep["suite_file"])))
    registry = load_registry(devices_path or Path(str(sweep["devices_file"])))
    made = {m.sha256: m.content for m in materialise(suite)}
    return _StoredPlan(SuiteRecord(suite.name, str(suite.path), suite.timeout_s),
                       tuple(registry), {**made, **models})
