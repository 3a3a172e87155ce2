"""What a sweep keeps to be resumed from anywhere: its resolved suite and the definitions of its
devices, as JSON in its ``sweeps`` row (the models' bytes are kept by sha256 in
``model_contents``).

``sweep resume`` once read the suite and the devices file again, by the relative paths the
sweep was started with: from another directory it failed, and a devices file edited meanwhile
changed devices in the middle of a sweep. A definition's paths (token file, SSH key, known
hosts, LiteRT library, TLS certificate and key) are kept absolute, as they resolved where the
sweep started. A token is never kept: a definition names its token *file*.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from controller.config.registry import Device, MeterConfig, SshConfig, TlsConfig
from controller.config.suite import MaterialisedModel, Suite
from joulefarm.errors import InputError

__all__ = ["SuiteRecord", "check_same_devices", "definition_difference", "devices_from_json",
           "devices_json", "suite_json"]

_SSH_PATHS = ("key", "known_hosts", "litert_lib")


def _absolute(path: str | None, base: Path) -> str | None:
    """``path`` as it resolved in ``base``: ``~`` and URLs are left as they are."""
    if path is None or path.startswith("~") or "://" in path:
        return path
    return os.path.normpath(base / path)


def definition(device: Device, base: Path) -> dict[str, Any]:
    """``device`` as JSON values, its relative paths made absolute against ``base``."""
    meter = {f.name: getattr(device.meter, f.name) for f in fields(MeterConfig)}
    meter["options"] = dict(device.meter.options)
    ssh = None
    if device.ssh is not None:
        ssh = asdict(device.ssh)
        ssh.update({key: _absolute(ssh[key], base) for key in _SSH_PATHS})
    tls = None
    if device.tls is not None:
        tls = asdict(device.tls)
        tls.update({key: _absolute(tls[key], base) for key in ("cert", "key")})
    out = {f.name: getattr(device, f.name) for f in fields(Device)}
    out.update(tags=list(device.tags), token_file=_absolute(device.token_file, base),
               meter=meter, ssh=ssh, tls=tls, delegates=list(device.delegates))
    # Through JSON and back: what is compared is what is stored.
    return dict(json.loads(json.dumps(out, default=str)))


def devices_json(devices: Sequence[Device], base: Path) -> str:
    return json.dumps([definition(d, base) for d in devices], sort_keys=True)


def devices_from_json(text: str) -> tuple[Device, ...]:
    return tuple(_device(d) for d in json.loads(text))


def _device(d: Mapping[str, Any]) -> Device:
    meter = MeterConfig(**{**d["meter"], "options": MappingProxyType(d["meter"]["options"])})
    ssh = SshConfig(**d["ssh"]) if d["ssh"] is not None else None
    # Sweeps recorded before TLS and delegates were device settings have neither key.
    tls = TlsConfig(**d["tls"]) if d.get("tls") is not None else None
    return Device(**{**d, "tags": tuple(d["tags"]), "meter": meter, "ssh": ssh, "tls": tls,
                     "delegates": tuple(d.get("delegates", ()))})


def definition_difference(stored: Any, given: Any, field: str = "") -> str | None:
    """The first field (dotted: ``meter.profile``) in which two definitions differ, with both
    values; None when they are the same."""
    if isinstance(stored, dict) and isinstance(given, dict):
        for key in sorted(stored.keys() | given.keys()):
            found = definition_difference(stored.get(key), given.get(key),
                                          f"{field}.{key}" if field else key)
            if found:
                return found
        return None
    if stored != given:
        return f"{field} is {given!r} there, {stored!r} in the sweep"
    return None


def check_same_devices(stored: Sequence[Device], given: Mapping[str, Device], base: Path,
                       *, sweep_id: str, where: Path) -> None:
    """Refuse (``InputError``) a devices file that defines a device of the sweep otherwise than
    the sweep ran it: one sweep, one definition of each device."""
    for device in stored:
        other = given.get(device.name)
        if other is None:
            raise InputError(f"{where} has no device {device.name!r}, which sweep {sweep_id} "
                             "runs on; resume without --devices to use the sweep's own")
        difference = definition_difference(definition(device, Path("/")),
                                           definition(other, base))
        if difference:
            raise InputError(
                f"{where}: device {device.name!r} differs from the one sweep {sweep_id} ran "
                f"with: {difference}; resume without --devices to use the sweep's own, or "
                "start a new sweep")


def suite_json(suite: Suite, models: Sequence[MaterialisedModel]) -> str:
    """The suite as resolved: its settings, matrix and every model with its sha256."""
    record = {
        "name": suite.name, "path": str(Path(suite.path).absolute()),
        "description": suite.description, "timeout_s": suite.timeout_s,
        "repetitions": suite.repetitions, "settings": asdict(suite.settings),
        "matrix": suite.matrix,
        "train": asdict(suite.train) if suite.train is not None else None,
        "select": {"names": list(suite.select_names), "tags": list(suite.select_tags)},
        "models": [{"name": m.spec.name, "source": m.source, "sha256": m.sha256,
                    "input_shapes": {key: list(shape) for key, shape in m.spec.input_shapes}}
                   for m in models],
    }
    return json.dumps(record, sort_keys=True, default=str)


@dataclass(frozen=True)
class SuiteRecord:
    """What resuming needs of the stored suite."""

    name: str
    path: str
    timeout_s: float

    @classmethod
    def from_json(cls, text: str) -> SuiteRecord:
        d = json.loads(text)
        return cls(str(d["name"]), str(d["path"]), float(d["timeout_s"]))
