"""CPU frequencies, governors and thermal zones, read from sysfs.

Every reader takes ``root`` (default ``/``) so tests can pass a directory laid out like ``/sys``.
Missing files mean "not available on this device", never an error: containers, phones and
boards expose different subsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

CPU_DIR = "sys/devices/system/cpu"
THERMAL_DIR = "sys/class/thermal"
# A zone this close (in °C) to its lowest passive trip point is treated as throttling.
TRIP_MARGIN_C = 2.0
# A CPU whose max frequency is capped below this share of its hardware maximum is throttled.
CAPPED_SHARE = 0.95


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _natural_key(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.name)
    return (int(digits[-1]) if digits else -1, path.name)


@dataclass(frozen=True)
class CpuFreq:
    """One CPU's frequency state (kHz, as the kernel reports it)."""

    cpu: int
    cur_khz: int | None
    min_khz: int | None
    max_khz: int | None
    hw_max_khz: int | None
    governor: str | None

    @property
    def capped(self) -> bool:
        """The allowed maximum sits below the hardware maximum (a thermal or power cap)."""
        if self.max_khz is None or self.hw_max_khz is None or self.hw_max_khz == 0:
            return False
        return self.max_khz < CAPPED_SHARE * self.hw_max_khz


@dataclass(frozen=True)
class ThermalZone:
    """One thermal zone; temperatures in °C (sysfs reports millidegrees)."""

    name: str
    zone_type: str
    temp_c: float | None
    passive_trip_c: float | None = None


@dataclass(frozen=True)
class Conditions:
    """A snapshot of what affects a measurement: clocks and temperatures."""

    cpus: tuple[CpuFreq, ...] = ()
    zones: tuple[ThermalZone, ...] = ()
    flags: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, float]:
        """Flat ``name -> value`` readings for storage (kHz and °C in the keys)."""
        out: dict[str, float] = {}
        for c in self.cpus:
            if c.cur_khz is not None:
                out[f"cpu{c.cpu}_cur_khz"] = float(c.cur_khz)
            if c.max_khz is not None:
                out[f"cpu{c.cpu}_max_khz"] = float(c.max_khz)
        for z in self.zones:
            if z.temp_c is not None:
                out[f"{z.name}_{z.zone_type}_c"] = z.temp_c
        return out


def read_cpu_freqs(root: Path = Path("/")) -> tuple[CpuFreq, ...]:
    cpus = []
    for cpu_dir in sorted((root / CPU_DIR).glob("cpu[0-9]*"), key=_natural_key):
        freq = cpu_dir / "cpufreq"
        cpus.append(CpuFreq(
            cpu=_natural_key(cpu_dir)[0],
            cur_khz=_read_int(freq / "scaling_cur_freq"),
            min_khz=_read_int(freq / "scaling_min_freq"),
            max_khz=_read_int(freq / "scaling_max_freq"),
            hw_max_khz=_read_int(freq / "cpuinfo_max_freq"),
            governor=_read(freq / "scaling_governor"),
        ))
    return tuple(cpus)


def _passive_trip_c(zone_dir: Path) -> float | None:
    trips = []
    for type_file in zone_dir.glob("trip_point_*_type"):
        if _read(type_file) == "passive":
            temp = _read_int(type_file.with_name(type_file.name.replace("_type", "_temp")))
            if temp is not None:
                trips.append(temp / 1000)
    return min(trips) if trips else None


def read_thermal_zones(root: Path = Path("/")) -> tuple[ThermalZone, ...]:
    zones = []
    for zone_dir in sorted((root / THERMAL_DIR).glob("thermal_zone*"), key=_natural_key):
        millideg = _read_int(zone_dir / "temp")
        zones.append(ThermalZone(
            name=zone_dir.name,
            zone_type=_read(zone_dir / "type") or "unknown",
            temp_c=millideg / 1000 if millideg is not None else None,
            passive_trip_c=_passive_trip_c(zone_dir),
        ))
    return tuple(zones)


def read_conditions(root: Path = Path("/")) -> Conditions:
    cpus = read_cpu_freqs(root)
    zones = read_thermal_zones(root)
    flags = []
    if any(c.capped for c in cpus):
        flags.append("cpu_frequency_capped")
    if any(z.temp_c is not None and z.passive_trip_c is not None
           and z.temp_c >= z.passive_trip_c - TRIP_MARGIN_C for z in zones):
        flags.append("thermal_trip_reached")
    return Conditions(cpus, zones, tuple(flags))


def compare_conditions(before: Conditions, after: Conditions) -> tuple[str, ...]:
    """Run flags from the snapshots taken before and after a run: a throttled run is flagged."""
    flags = set(before.flags) | set(after.flags)
    for b, a in zip(before.cpus, after.cpus, strict=False):
        if b.max_khz and a.max_khz and a.max_khz < CAPPED_SHARE * b.max_khz:
            flags.add("cpu_frequency_capped")
    return tuple(sorted(flags))
