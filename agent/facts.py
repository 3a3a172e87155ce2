"""Collect what this device is: hardware, software, meters, and a stable fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import asdict
from pathlib import Path

from agent.meters.base import MeterDescription
from agent.system import read_cpu_freqs, read_thermal_zones
from joulefarm.results import DeviceFacts
from joulefarm.version import package_version


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86 'model name', Arm 'Model' or 'Hardware')."""
    keys = ("model name", "Model", "Hardware", "cpu model")
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keys and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def memory_bytes() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    return 0


def os_name() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip('"')
    return platform.system()


def fingerprint(facts: dict[str, object]) -> str:
    """sha256 over the facts that define the machine and its software, not its name."""
    keyed = {k: v for k, v in facts.items() if k not in ("device_name", "fingerprint")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()


def collect_facts(
    device_name: str, device_platform: str, meters: tuple[MeterDescription, ...],
    runtime: tuple[str, str], rust_core_profile: str, sysfs_root: Path = Path("/"),
) -> DeviceFacts:
    cpus = read_cpu_freqs(sysfs_root)
    zones = read_thermal_zones(sysfs_root)
    fields: dict[str, object] = dict(
        device_name=device_name,
        platform=device_platform,
        machine=platform.machine(),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count() or 0,
        memory_bytes=memory_bytes(),
        os=os_name(),
        kernel=platform.release(),
        python_version=platform.python_version(),
        runtime_name=runtime[0],
        runtime_version=runtime[1],
        agent_version=package_version(),
        rust_core_profile=rust_core_profile,
        meters=tuple(meters),
        cpu_max_khz=max((c.hw_max_khz or 0 for c in cpus), default=0),
        governors=tuple(sorted({c.governor for c in cpus if c.governor})),
        thermal_zones=tuple(z.zone_type for z in zones),
    )
    serialisable = {**fields, "meters": [asdict(m) for m in meters]}
    return DeviceFacts(**fields, fingerprint=fingerprint(serialisable))  # type: ignore[arg-type]
