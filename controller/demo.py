"""``joulefarm demo``: the local demo farm of devices.toml runs a suite end to end.

Local agents are started as separate processes on loopback, measured with their (simulated)
meters, results stored in DuckDB, and the agents stopped again, whatever happens.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from agent.meters.profiles import PROFILES
from controller.errors import JoulefarmError
from controller.localfarm import LocalAgentError, LocalFarm
from controller.provenance import SOURCE_ROOT
from controller.registry import Device, Registry, load_registry
from controller.store import ResultStore
from controller.suite import Suite, load_suite
from controller.sweep import Endpoint, ProgressFn, SweepOutcome, run_sweep

DEMO_SUITE = Path("benchmarks/demo.toml")
DEVICES_FILE = Path("devices.toml")


def resolve_default(path: Path | None, default: Path) -> Path:
    """An explicit path as given; else ``default`` in the working directory if it exists,
    else the one shipped in the joulefarm source tree."""
    if path is not None:
        return path
    if default.exists():
        return default
    return SOURCE_ROOT / default


@dataclass
class DemoRun:
    registry: Registry
    suite: Suite
    outcome: SweepOutcome
    skipped: dict[str, str]


def select_devices(registry: Registry, suite: Suite) -> tuple[Device, ...]:
    return registry.select(names=suite.select_names or None, tags=suite.select_tags or None)


def load_inputs(devices_path: Path, suite_path: Path) -> tuple[Registry, Suite, tuple[Device, ...]]:
    """Read and validate the registry and the suite, and pick the suite's devices."""
    registry = load_registry(devices_path, sim_profiles=tuple(PROFILES))
    suite = load_suite(suite_path)
    devices = select_devices(registry, suite)
    if not devices:
        raise JoulefarmError(f"{suite_path}: no device in {devices_path} matches [select]")
    return registry, suite, devices


def run_demo(
    devices_path: Path, suite_path: Path, db_path: Path, *, progress: ProgressFn | None = None,
) -> DemoRun:
    """Validate everything first (nothing runs on bad input), then run the sweep."""
    registry, suite, devices = load_inputs(devices_path, suite_path)
    report = progress or (lambda *a: None)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="joulefarm-demo-") as tmp, \
            LocalFarm(Path(tmp)) as farm, ResultStore(db_path) as store:
        endpoints = []
        for device in devices:
            if device.local:
                report(device.name, "starting", 0, len(suite.models), "local agent")
                try:
                    agent = farm.start(device)
                except LocalAgentError as e:
                    skipped[device.name] = str(e)
                    report(device.name, "unreachable", 0, len(suite.models), str(e))
                    continue
                endpoints.append(Endpoint(device, agent.target, farm.token, shares_host=True,
                                          revive=partial(farm.ensure_running, device.name)))
            else:
                token = read_device_token(device)
                endpoints.append(Endpoint(device, device.grpc_target(), token))
        outcome = run_sweep(suite, devices, endpoints, store, devices_file=str(devices_path),
                            progress=progress)
    return DemoRun(registry, suite, outcome, skipped)


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
