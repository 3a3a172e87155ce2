"""Run a suite on the devices of a registry, or resume a sweep: the controller's main loop.

Local devices get agents started here (a LocalFarm, stopped whatever happens); remote devices
are reached at their address with the token from their ``token_file``. Everything is
validated before anything starts: bad input runs nothing.
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
from controller.farm.timing import DEFAULT_TIMING, Timing
from controller.provision.tunnel import agent_tunnel
from controller.store import ResultStore
from joulefarm.errors import JoulefarmError


@dataclass
class RunReport:
    suite: Suite
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
    tokens = {d.name: read_device_token(d) for d in devices if not d.local}  # fail early
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
                endpoints.append(Endpoint(device, target, tokens[device.name]))
            else:
                endpoints.append(Endpoint(device, device.grpc_target(), tokens[device.name]))
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
    return RunReport(suite, outcome, skipped)


def resume(sweep_id: str, db_path: Path, *, devices_path: Path | None = None,
           progress: ProgressFn | None = None, timing: Timing = DEFAULT_TIMING) -> RunReport:
    """Run the jobs of ``sweep_id`` that did not complete, with the suite and devices it was
    started with (or ``devices_path``)."""
    with ResultStore(db_path) as store:
        sweep = store.sweep(sweep_id)
        suite_path = Path(str(sweep["suite_file"]))
        registry_path = devices_path or Path(str(sweep["devices_file"]))
        registry = load_registry(registry_path)
        suite = load_suite(suite_path)
        pending = {str(j["device_name"]) for j in store.jobs(sweep_id, incomplete_only=True)}
        devices = [d for d in registry if d.name in pending]
        models = materialise(suite)
        with connect(devices, progress) as (endpoints, skipped):
            outcome = execute_sweep(sweep_id, suite, endpoints, store, models, timing=timing,
                                    progress=progress)
    return RunReport(suite, outcome, skipped)
