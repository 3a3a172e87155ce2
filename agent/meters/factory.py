"""Open a meter by kind, and find which meters exist on this machine.

Kinds are ``joulefarm.enums.MeterKind``; ``options`` is the device's ``[device.meter.options]``
table, whose keys ``joulefarm.enums.METER_OPTIONS`` lists per kind. Every path is taken under
``root`` so tests can stand a
temporary directory in for ``/``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from agent.meters.base import Meter, MeterDescription, MeterError
from joulefarm.enums import METER_OPTIONS, MeterKind


@dataclass(frozen=True)
class _Open:
    """What ``open_meter`` was asked for, handed to the kind's opener."""

    options: dict[str, Any]
    rate: float | None
    root: Path
    profile: str
    seed: int


Opener = Callable[[_Open], Meter]


def _sim(a: _Open) -> Meter:
    from agent.meters.sim import SimMeter

    return SimMeter(a.profile or "host", sample_rate_hz=a.rate, seed=a.seed,
                    op_energy_scale=a.options.get("op_energy_scale"))


def _rapl(a: _Open) -> Meter:
    from agent.meters.rapl import RaplMeter

    return RaplMeter(root=a.root, sample_rate_hz=a.rate, domain_names=a.options.get("domains"))


def _ina3221(a: _Open) -> Meter:
    from agent.meters.jetson_hwmon import JetsonHwmonMeter

    return JetsonHwmonMeter(root=a.root, sample_rate_hz=a.rate,
                            total_rail=a.options.get("total_rail"))


def _ina3221_iio(a: _Open) -> Meter:
    from agent.meters.jetson_iio import JetsonIioMeter

    return JetsonIioMeter(root=a.root, sample_rate_hz=a.rate,
                          total_rail=a.options.get("total_rail"))


def _ina2xx(a: _Open) -> Meter:
    from agent.meters.ina2xx import Ina2xxMeter

    return Ina2xxMeter(root=a.root, sample_rate_hz=a.rate, sensor=a.options.get("sensor"),
                       mode=a.options.get("mode", "power"))


def _rpi5_pmic(a: _Open) -> Meter:
    from agent.meters.rpi5_pmic import Rpi5PmicMeter

    return Rpi5PmicMeter(sample_rate_hz=a.rate)


def _tegrastats(a: _Open) -> Meter:
    from agent.meters.tegrastats import COMMAND, DEFAULT_INTERVAL_MS, TegrastatsMeter

    interval = a.options.get("interval_ms") or (
        round(1000 / a.rate) if a.rate else DEFAULT_INTERVAL_MS)
    command = a.options.get("command", COMMAND)
    return TegrastatsMeter(interval_ms=int(interval), total_rail=a.options.get("total_rail"),
                           command=[command] if isinstance(command, str) else command)


def _android_battery(a: _Open) -> Meter:
    from agent.meters.android_battery import AndroidBatteryMeter

    return AndroidBatteryMeter(root=a.root, sample_rate_hz=a.rate,
                               current_unit=a.options.get("current_unit"),
                               voltage_unit=a.options.get("voltage_unit"),
                               discharge_sign=a.options.get("discharge_sign"))


def _android_odpm(a: _Open) -> Meter:
    from agent.meters.android_odpm import open_odpm

    return open_odpm(root=a.root, source=a.options.get("source", "auto"), sample_rate_hz=a.rate,
                     rails=a.options.get("rails"))


def _under_root(root: Path, path: str | Path) -> Path:
    p = Path(path)
    return root / p.relative_to("/") if p.is_absolute() else p


def _replay(a: _Open) -> Meter:
    from agent.meters.replay import ReplayMeter

    if "path" not in a.options:
        raise MeterError("meter kind 'replay' needs option 'path' (a recording: .npz, "
                         ".csv with t_s,power_w, .parquet, .jls or a Monsoon CSV)")
    return ReplayMeter(_under_root(a.root, a.options["path"]),
                       offset_s=float(a.options.get("offset_s", 0.0)),
                       fmt=a.options.get("format", "auto"), sample_rate_hz=a.rate)


def _serial(options: dict[str, Any]) -> str | None:
    return None if options.get("serial") is None else str(options["serial"])


def _joulescope(a: _Open) -> Meter:
    from agent.meters.joulescope import JoulescopeMeter

    return JoulescopeMeter(serial=_serial(a.options), sample_rate_hz=a.rate,
                           gpi=bool(a.options.get("gpi", True)),
                           config=a.options.get("config", "auto"))


def _monsoon(a: _Open) -> Meter:
    from agent.meters.monsoon import MonsoonMeter

    return MonsoonMeter(serial=_serial(a.options), channel=a.options.get("channel", "main"),
                        vout=a.options.get("vout"), sample_rate_hz=a.rate)


def _otii(a: _Open) -> Meter:
    from agent.meters.otii import DEFAULT_HOST, DEFAULT_PORT, OtiiMeter

    return OtiiMeter(host=a.options.get("host", DEFAULT_HOST),
                     port=int(a.options.get("port", DEFAULT_PORT)),
                     device=a.options.get("device"), sample_rate_hz=a.rate,
                     channel=a.options.get("channel", "mp"), gpi=a.options.get("gpi", ()),
                     keep_recording=bool(a.options.get("keep_recording", False)),
                     licensing=a.options.get("licensing", "auto"))


# Each driver module (and its vendor library, if any) is imported only when its meter is opened.
_OPENERS: dict[MeterKind, Opener] = {
    MeterKind.SIM: _sim, MeterKind.REPLAY: _replay, MeterKind.RAPL: _rapl,
    MeterKind.INA3221: _ina3221, MeterKind.INA3221_IIO: _ina3221_iio, MeterKind.INA2XX: _ina2xx,
    MeterKind.RPI5_PMIC: _rpi5_pmic, MeterKind.TEGRASTATS: _tegrastats,
    MeterKind.ANDROID_BATTERY: _android_battery, MeterKind.ANDROID_ODPM: _android_odpm,
    MeterKind.JOULESCOPE: _joulescope, MeterKind.MONSOON: _monsoon, MeterKind.OTII: _otii,
}
if set(_OPENERS) != set(MeterKind):  # a new kind without a driver fails at import, not at use
    raise ImportError(f"no meter driver for {sorted(set(MeterKind) - set(_OPENERS))}")


def open_meter(
    kind: str,
    *,
    profile: str = "",
    sample_rate_hz: float | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    root: Path = Path("/"),
) -> Meter:
    """Open the meter named by a device's ``meter.kind``; MeterError says why one cannot be."""
    opts = dict(options or {})
    if kind not in MeterKind.values():
        raise MeterError(f"meter kind {kind!r} has no driver in this agent "
                         f"(available: {', '.join(MeterKind.values())})")
    accepted = METER_OPTIONS[MeterKind(kind)]
    unknown = sorted(set(opts) - accepted)
    if unknown:
        raise MeterError(f"meter kind {kind!r} does not take option(s) {', '.join(unknown)} "
                         f"(accepts: {', '.join(sorted(accepted)) or 'none'})")
    return _OPENERS[MeterKind(kind)](_Open(opts, sample_rate_hz, root, profile, seed))


def _found(kind: str, rate_hz: float, description: str) -> MeterDescription:
    return MeterDescription(kind=kind, simulated=False, sample_rate_hz=rate_hz,
                            description=description)


def _executable(root: Path, *candidates: str) -> Path | None:
    for rel in candidates:
        path = root / rel
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def _discover_rapl(root: Path) -> list[MeterDescription]:
    from agent.meters import rapl

    domains = rapl.discover(root)
    if not domains:
        return []
    names = ", ".join(f"{d.path.name}:{d.name}" for d in domains)
    return [_found(rapl.KIND, rapl.DEFAULT_RATE_HZ, f"RAPL energy counters: {names}")]


def _discover_ina3221(driver: ModuleType, interface: str, root: Path) -> list[MeterDescription]:
    """One meter over every INA3221 chip that ``driver`` (hwmon or IIO) finds."""
    chips = driver.discover(root)
    if not chips:
        return []
    rails = ", ".join(r.name for c in chips for r in c.rails)
    return [_found(driver.KIND, driver.DEFAULT_RATE_HZ,
                   f"Jetson INA3221 {interface} rails: {rails}")]


def _discover_hwmon(root: Path) -> list[MeterDescription]:
    from agent.meters import jetson_hwmon

    return _discover_ina3221(jetson_hwmon, "hwmon", root)


def _discover_iio(root: Path) -> list[MeterDescription]:
    from agent.meters import jetson_iio

    return _discover_ina3221(jetson_iio, "IIO", root)


def _discover_ina2xx(root: Path) -> list[MeterDescription]:
    from agent.meters import ina2xx

    return [_found(ina2xx.KIND, ina2xx.DEFAULT_RATE_HZ, f"{s.chip} {s.device} via hwmon")
            for s in ina2xx.discover(root)]


def _discover_pmic(root: Path) -> list[MeterDescription]:
    from agent.meters import rpi5_pmic

    if rpi5_pmic.is_pi5(root) and _executable(root, "usr/bin/vcgencmd", "opt/vc/bin/vcgencmd"):
        return [_found(rpi5_pmic.KIND, rpi5_pmic.DEFAULT_RATE_HZ,
                       "Raspberry Pi 5 PMIC ADC via vcgencmd pmic_read_adc")]
    return []


def _discover_tegrastats(root: Path) -> list[MeterDescription]:
    from agent.meters import tegrastats

    if _executable(root, "usr/bin/tegrastats"):
        return [_found(tegrastats.KIND, 1000 / tegrastats.DEFAULT_INTERVAL_MS,
                       "tegrastats (instantaneous rail power)")]
    return []


def _discover_battery(root: Path) -> list[MeterDescription]:
    from agent.meters import android_battery

    return [_found(android_battery.KIND, android_battery.DEFAULT_RATE_HZ,
                   f"battery fuel gauge {p}") for p in android_battery.discover(root)]


def _discover_odpm(root: Path) -> list[MeterDescription]:
    from agent.meters import android_odpm

    devices = [d for d in android_odpm.discover(root)
               if os.access(d / "energy_value", os.R_OK)]
    if not devices:
        return []
    return [_found(android_odpm.KIND, android_odpm.SYSFS_RATE_HZ,
                   f"Pixel ODPM energy_value ({len(devices)} PMIC)")]


def _usb_ids(root: Path) -> list[tuple[int, int, Path]]:
    devices = []
    for path in sorted((root / "sys/bus/usb/devices").glob("*")):
        try:
            vid = int((path / "idVendor").read_text().strip(), 16)
            pid = int((path / "idProduct").read_text().strip(), 16)
        except (OSError, ValueError):
            continue  # interfaces and hubs without ids
        devices.append((vid, pid, path))
    return devices


def _usb_serial(path: Path) -> str:
    try:
        return (path / "serial").read_text().strip()
    except OSError:
        return "?"


def _install_hint(module: str, kind: str) -> str:
    if importlib.util.find_spec(module) is None:
        return f" (driver not installed: pip install 'joulefarm[{kind}]')"
    return ""


def _discover_usb(root: Path) -> list[MeterDescription]:
    """Joulescopes and Monsoon monitors on this machine's USB, by vendor and product id. (An
    Otii is reached over TCP through its application: configured, not discovered.)"""
    from agent.meters import joulescope, monsoon

    found = []
    for vid, pid, path in _usb_ids(root):
        if (vid, pid) in joulescope.USB_IDS:
            found.append(_found(joulescope.KIND, joulescope.DEFAULT_RATE_HZ,
                                f"Joulescope {joulescope.USB_IDS[vid, pid]} serial "
                                f"{_usb_serial(path)} on USB {path.name}"
                                + _install_hint("joulescope", joulescope.KIND)))
        elif (vid, pid) == (monsoon.USB_VENDOR_ID, monsoon.USB_PRODUCT_ID):
            found.append(_found(monsoon.KIND, monsoon.MONSOON_RATE_HZ,
                                f"Monsoon power monitor serial {_usb_serial(path)} on USB "
                                f"{path.name}" + _install_hint("Monsoon", monsoon.KIND)))
    return found


_DISCOVERERS: tuple[Callable[[Path], list[MeterDescription]], ...] = (
    _discover_rapl, _discover_hwmon, _discover_iio, _discover_ina2xx, _discover_pmic,
    _discover_tegrastats, _discover_battery, _discover_odpm, _discover_usb,
)


def discover_meters(root: Path = Path("/")) -> list[MeterDescription]:
    """The real meters present and readable under ``root``, by file checks only (no command is
    run). A source that cannot be inspected counts as absent: this never raises for that."""
    found: list[MeterDescription] = []
    for discover in _DISCOVERERS:
        try:
            found.extend(discover(root))
        except (OSError, MeterError):
            continue
    return found
