"""Open a meter by kind, and find which meters exist on this machine.

Kinds match ``controller.registry.METER_KINDS``; ``options`` is the device's
``[device.meter.options]`` table. Every path is taken under ``root`` so tests can stand a
temporary directory in for ``/``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from agent.meters.base import Meter, MeterDescription, MeterError

# Kinds with no driver yet, and what they would need (all registry kinds have one now).
EXTERNAL_KINDS: dict[str, str] = {}

# Option names each kind accepts (anything else is a mistake worth reporting).
KIND_OPTIONS: dict[str, frozenset[str]] = {
    "sim": frozenset(),
    "rapl": frozenset({"domains"}),
    "ina3221": frozenset({"total_rail"}),
    "ina3221-iio": frozenset({"total_rail"}),
    "ina2xx": frozenset({"sensor", "mode"}),
    "rpi5-pmic": frozenset(),
    "tegrastats": frozenset({"interval_ms", "total_rail", "command"}),
    "android-battery": frozenset({"current_unit", "voltage_unit", "discharge_sign"}),
    "android-odpm": frozenset({"source", "rails"}),
    "replay": frozenset({"path", "offset_s", "format"}),
    "joulescope": frozenset({"serial", "gpi", "config"}),
    "monsoon": frozenset({"serial", "channel", "vout"}),
    "otii": frozenset({"host", "port", "device", "channel", "gpi", "keep_recording",
                       "licensing"}),
}


def implemented_kinds() -> tuple[str, ...]:
    return tuple(KIND_OPTIONS)


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
    if kind in EXTERNAL_KINDS:
        raise MeterError(f"meter kind {kind!r} has no driver yet: it needs the "
                         f"{EXTERNAL_KINDS[kind]} driver, an optional extra that is not "
                         "implemented yet")
    if kind not in KIND_OPTIONS:
        raise MeterError(f"meter kind {kind!r} has no driver in this agent "
                         f"(available: {', '.join(implemented_kinds())})")
    unknown = sorted(set(opts) - KIND_OPTIONS[kind])
    if unknown:
        raise MeterError(f"meter kind {kind!r} does not take option(s) {', '.join(unknown)} "
                         f"(accepts: {', '.join(sorted(KIND_OPTIONS[kind])) or 'none'})")
    rate = sample_rate_hz
    if kind == "sim":
        from agent.meters.sim import SimMeter

        return SimMeter(profile or "host", sample_rate_hz=rate, seed=seed)
    if kind == "rapl":
        from agent.meters.rapl import RaplMeter

        return RaplMeter(root=root, sample_rate_hz=rate, domain_names=opts.get("domains"))
    if kind == "ina3221":
        from agent.meters.jetson_hwmon import JetsonHwmonMeter

        return JetsonHwmonMeter(root=root, sample_rate_hz=rate, total_rail=opts.get("total_rail"))
    if kind == "ina3221-iio":
        from agent.meters.jetson_iio import JetsonIioMeter

        return JetsonIioMeter(root=root, sample_rate_hz=rate, total_rail=opts.get("total_rail"))
    if kind == "ina2xx":
        from agent.meters.ina2xx import Ina2xxMeter

        return Ina2xxMeter(root=root, sample_rate_hz=rate, sensor=opts.get("sensor"),
                           mode=opts.get("mode", "power"))
    if kind == "rpi5-pmic":
        from agent.meters.rpi5_pmic import Rpi5PmicMeter

        return Rpi5PmicMeter(sample_rate_hz=rate)
    if kind == "tegrastats":
        from agent.meters.tegrastats import COMMAND, DEFAULT_INTERVAL_MS, TegrastatsMeter

        interval = opts.get("interval_ms") or (round(1000 / rate) if rate else DEFAULT_INTERVAL_MS)
        command = opts.get("command", COMMAND)
        return TegrastatsMeter(interval_ms=int(interval), total_rail=opts.get("total_rail"),
                               command=[command] if isinstance(command, str) else command)
    if kind == "android-battery":
        from agent.meters.android_battery import AndroidBatteryMeter

        return AndroidBatteryMeter(root=root, sample_rate_hz=rate,
                                   current_unit=opts.get("current_unit"),
                                   voltage_unit=opts.get("voltage_unit"),
                                   discharge_sign=opts.get("discharge_sign"))
    if kind in ("replay", "joulescope", "monsoon", "otii"):
        return _open_lab_meter(kind, opts, rate, root)
    from agent.meters.android_odpm import open_odpm  # the last kind: android-odpm

    return open_odpm(root=root, source=opts.get("source", "auto"), sample_rate_hz=rate,
                     rails=opts.get("rails"))


def _under_root(root: Path, path: str | Path) -> Path:
    p = Path(path)
    return root / p.relative_to("/") if p.is_absolute() else p


def _open_lab_meter(kind: str, opts: dict[str, Any], rate: float | None, root: Path) -> Meter:
    """The lab instruments and the replay meter (each imports its vendor library, if any, only
    when opened)."""
    serial = None if opts.get("serial") is None else str(opts["serial"])
    if kind == "replay":
        from agent.meters.replay import ReplayMeter

        if "path" not in opts:
            raise MeterError("meter kind 'replay' needs option 'path' (a recording: .npz, "
                             ".csv with t_s,power_w, .parquet, .jls or a Monsoon CSV)")
        return ReplayMeter(_under_root(root, opts["path"]),
                           offset_s=float(opts.get("offset_s", 0.0)),
                           fmt=opts.get("format", "auto"), sample_rate_hz=rate)
    if kind == "joulescope":
        from agent.meters.joulescope import JoulescopeMeter

        return JoulescopeMeter(serial=serial, sample_rate_hz=rate,
                               gpi=bool(opts.get("gpi", True)), config=opts.get("config", "auto"))
    if kind == "monsoon":
        from agent.meters.monsoon import MonsoonMeter

        return MonsoonMeter(serial=serial, channel=opts.get("channel", "main"),
                            vout=opts.get("vout"), sample_rate_hz=rate)
    from agent.meters.otii import DEFAULT_HOST, DEFAULT_PORT, OtiiMeter

    return OtiiMeter(host=opts.get("host", DEFAULT_HOST), port=int(opts.get("port", DEFAULT_PORT)),
                     device=opts.get("device"), sample_rate_hz=rate,
                     channel=opts.get("channel", "mp"), gpi=opts.get("gpi", ()),
                     keep_recording=bool(opts.get("keep_recording", False)),
                     licensing=opts.get("licensing", "auto"))


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
