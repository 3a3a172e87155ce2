"""Intel/AMD RAPL through powercap: cumulative package energy in microjoules.

Layout: ``/sys/class/powercap/intel-rapl:<pkg>[:<sub>]/`` with ``name`` (``package-0``,
``core``, ``uncore``, ``dram``, ``psys``), ``energy_uj`` and ``max_energy_range_uj``. The
counter wraps to 0 at ``max_energy_range_uj``; delta = (e1 - e0) mod range, so it must be read
at least once per wrap (minutes at full load). Sub-domains (``intel-rapl:0:0``) are parts of
their package and ``psys`` overlaps the packages, so only ``package-*`` domains are summed by
default. ``intel-rapl-mmio:*`` mirrors the package through MMIO and is never globbed.
``energy_uj`` is root-only on kernels patched for PLATYPUS (CVE-2020-8694): an unreadable
domain counts as not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.meters.base import MeterDescription, MeterError
from agent.meters.polled import PolledCounterMeter, unwrap_counter
from agent.meters.sysfs import read_int, read_optional_text, sort_numeric

KIND = "rapl"
POWERCAP = "sys/class/powercap"
DEFAULT_RATE_HZ = 1000.0  # the counter updates about every millisecond
UJ = 1e-6


@dataclass(frozen=True)
class RaplDomain:
    """One powercap RAPL domain; ``readable`` is False when energy_uj needs root."""

    path: Path
    name: str
    max_energy_range_uj: int
    readable: bool

    @property
    def energy_path(self) -> Path:
        return self.path / "energy_uj"

    @property
    def is_package(self) -> bool:
        return self.name.startswith("package-")


def _domain(path: Path) -> RaplDomain | None:
    name = read_optional_text(path / "name")
    wrap = read_optional_text(path / "max_energy_range_uj")
    if name is None or wrap is None or not wrap.isdigit() or int(wrap) <= 0:
        return None
    try:
        read_int(path / "energy_uj")
        readable = True
    except (OSError, MeterError):
        readable = False
    return RaplDomain(path, name, int(wrap), readable)


def discover_all(root: Path = Path("/")) -> list[RaplDomain]:
    """Every RAPL domain under ``root`` (packages and sub-domains), readable or not."""
    found = []
    for path in sort_numeric(list((root / POWERCAP).glob("intel-rapl:*"))):
        domain = _domain(path)
        if domain is not None:
            found.append(domain)
    return found


def discover(root: Path = Path("/"), domains: Sequence[str] | None = None) -> list[RaplDomain]:
    """Readable domains to sum: ``package-*`` by default, else those whose name is listed."""
    chosen = []
    for d in discover_all(root):
        wanted = d.is_package if domains is None else d.name in domains
        if wanted and d.readable:
            chosen.append(d)
    return chosen


class RaplMeter(PolledCounterMeter):
    """Sum of RAPL package counters, returned as a ``CounterTrace``."""

    def __init__(self, domains: Sequence[RaplDomain] | None = None, *, root: Path = Path("/"),
                 sample_rate_hz: float | None = None,
                 domain_names: Sequence[str] | None = None) -> None:
        if domains is None:
            domains = discover(root, domain_names)
        if not domains:
            present = discover_all(root)
            if present and not any(d.readable for d in present):
                raise MeterError("rapl: energy_uj exists but is not readable (root needed: "
                                 "CVE-2020-8694 made it 0400)")
            raise MeterError(f"rapl: no readable RAPL package domain under {root / POWERCAP}")
        self.domains = tuple(domains)
        paths = [d.energy_path for d in self.domains]
        wraps = np.array([d.max_energy_range_uj for d in self.domains], dtype=np.float64)
        labels = [f"{d.path.name}:{d.name}" for d in self.domains]

        def read_raw() -> list[float]:
            return [float(read_int(p)) for p in paths]

        def to_joules(raw: np.ndarray) -> np.ndarray:
            cols = [unwrap_counter(raw[:, k], wraps[k]) for k in range(raw.shape[1])]
            return np.stack(cols, axis=1) * UJ if cols else raw

        rate = sample_rate_hz or DEFAULT_RATE_HZ
        super().__init__(
            MeterDescription(kind=KIND, simulated=False, sample_rate_hz=float(rate),
                             description=f"RAPL energy counters: {', '.join(labels)}"),
            labels, read_raw, to_joules,
        )
