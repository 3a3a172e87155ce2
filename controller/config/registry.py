"""The device registry: `devices.toml` read into frozen dataclasses.

The file lists the devices of a benchmarking farm (schema version 1)::

    schema_version = 1

    [[device]]
    name = "host"
    platform = "linux"
    address = "127.0.0.1"
    local = true

    [device.meter]
    kind = "sim"
    profile = "rpi4"

`load_registry` validates the whole file and raises `RegistryError` for the problem that comes
FIRST IN THE FILE (errors are collected, then sorted by line, so the report does not depend on the
order in which the checks run). Two exceptions to that rule: a syntax error stops everything, and
so does a missing or unsupported `schema_version`, because then the rest of the file cannot be
read against a known schema.

`tomllib` reports no positions for values, so `_LineIndex` below scans the text once more to find
the line of every key; a missing key is reported at the line of the table that should hold it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from joulefarm.enums import METER_OPTIONS, MeterKind, Platform
from joulefarm.errors import InputError
from joulefarm.sim_profiles import PROFILES

__all__ = [
    "DEVICE_KEYS",
    "METER_KEYS",
    "METER_KINDS",
    "PLATFORMS",
    "SCHEMA_VERSION",
    "SERVICE_KINDS",
    "SSH_KEYS",
    "Device",
    "MeterConfig",
    "Registry",
    "RegistryError",
    "SshConfig",
    "UnknownDeviceError",
    "UnknownTagError",
    "load_registry",
    "parse_jump",
    "parse_registry",
]

SCHEMA_VERSION = 1
PLATFORMS = Platform.values()
METER_KINDS = MeterKind.values()
TOP_LEVEL_KEYS = ("schema_version", "device")
DEVICE_KEYS = (
    "name",
    "platform",
    "address",
    "port",
    "local",
    "tags",
    "description",
    "token_file",
    "meter",
    "ssh",
)
METER_KEYS = ("kind", "profile", "sample_rate_hz", "options")
SSH_KEYS = (
    "user",
    "port",
    "key",
    "jump",
    "known_hosts",
    "python",
    "prefix",
    "service",
    "system_site_packages",
    "tunnel",
    "litert_lib",
    "litert_version",
    "build_on_device",
)
DEFAULT_SSH_PORT = 22
# How `joulefarm provision` keeps the agent running: a systemd user unit where systemd runs,
# a runit service where Termux's termux-services runs, otherwise a shell supervisor loop with a
# pid file; "auto" picks by probing the device.
SERVICE_KINDS = ("auto", "systemd", "runit", "supervised")
DEFAULT_AGENT_PREFIX = ".joulefarm"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
# tomllib ends its messages with "(at line L, column C)" or "(at end of document)".
_TOML_POSITION_RE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class RegistryError(InputError):
    """A problem in a devices file, with the place it was found.

    `str(err)` is ``"{path}:{line}: {field}: {message}"``, for example
    ``devices.toml:14: device[1].address: '300.1.1.1' is not a valid IP address or host name``.
    `line` is 1-based; 0 means the file as a whole (it could not be read). `field` is the key
    path with 0-based device indices; it is empty for errors about the whole file (unreadable
    file, TOML syntax), and then the ``"{field}: "`` part is left out of `str(err)`.
    """

    def __init__(self, path: str | Path, line: int, field: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}: "
        return where + (f"{self.field}: {self.message}" if self.field else self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduce would call __init__ with the formatted text only.
        return (type(self), (self.path, self.line, self.field, self.message))


class UnknownDeviceError(InputError, LookupError):
    """A device name that the registry does not hold."""


class UnknownTagError(InputError, LookupError):
    """A tag that no device in the registry carries."""


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterConfig:
    """How a device's power is measured (`[device.meter]`)."""

    kind: str
    # Simulated power profile; set only for kind = "sim".
    profile: str | None = None
    sample_rate_hz: float | None = None
    # Driver-specific settings, read-only; left out of the hash because values may be tables.
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)


@dataclass(frozen=True)
class SshConfig:
    """How the controller reaches a remote device to provision it (`[device.ssh]`)."""

    user: str
    port: int = DEFAULT_SSH_PORT
    key: str | None = None
    # `[user@]host[:port]` of a bastion to hop through (`parse_jump` splits it).
    jump: str | None = None
    known_hosts: str | None = None
    # The device's interpreter that the agent's virtual environment is made from.
    python: str = "python3"
    # Where the agent is installed on the device; relative paths start at the login's home.
    prefix: str = DEFAULT_AGENT_PREFIX
    service: str = "auto"
    # Let the agent's venv see the interpreter's packages (JetPack's numpy, offline installs).
    system_site_packages: bool = False
    # Reach the agent through an SSH port forward: the agent then binds loopback only.
    tunnel: bool = False
    # A standalone LiteRT runtime library (libLiteRt.so) for devices without a Python TFLite
    # wheel (Android/Termux, 32-bit ARM): a file on the controller, or an https:// URL the
    # device downloads. Termux devices get Google's prebuilt one by default.
    litert_lib: str | None = None
    # The library's version label, stored with every result (taken from Google's URL if unset).
    litert_version: str | None = None
    # Build the agent's Rust core on the device from the source distribution (needs Rust and
    # maturin there) instead of installing a wheel built here; automatic when no wheel fits.
    build_on_device: bool = False


@dataclass(frozen=True)
class Device:
    """One `[[device]]` entry."""

    name: str
    platform: str
    address: str
    meter: MeterConfig
    # Agent's gRPC port; 0 = pick a free one, only for agents the controller starts (local).
    port: int = 0
    local: bool = False
    tags: tuple[str, ...] = ()
    description: str = ""
    # File holding the token the agent expects (remote agents; local ones get a fresh token).
    token_file: str | None = None
    ssh: SshConfig | None = None

    def grpc_target(self, port: int | None = None) -> str:
        """`host:port` for a gRPC channel; IPv6 addresses get their brackets here.

        `port` overrides the configured one (a local agent reports the port it picked).
        """
        chosen = self.port if port is None else port
        if chosen == 0:
            raise ValueError(f"device {self.name!r} has no fixed port; pass the port it bound")
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{chosen}"


@dataclass(frozen=True)
class Registry:
    """All devices of one devices file, in file order."""

    path: Path
    schema_version: int
    devices: tuple[Device, ...]

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices)

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.devices)

    def get(self, name: str) -> Device:
        """The device called `name`; `UnknownDeviceError` (a `LookupError`) lists known names."""
        for device in self.devices:
            if device.name == name:
                return device
        raise UnknownDeviceError(
            f"unknown device {name!r} in {self.path}{_did_you_mean(name, self.names)}; "
            f"known devices: {', '.join(self.names)}"
        )

    def select(
        self, names: Iterable[str] | None = None, tags: Iterable[str] | None = None
    ) -> tuple[Device, ...]:
        """Devices matching every filter given, in file order, each once.

        `names`: keep only these devices (an unknown name raises `UnknownDeviceError`).
        `tags`: keep devices that carry ALL of these tags (a tag no device carries raises
        `UnknownTagError`, since it is almost surely a typo). No filters: every device.
        """
        chosen = list(self.devices)
        if names is not None:
            wanted = {self.get(n).name for n in names}
            chosen = [d for d in chosen if d.name in wanted]
        if tags is not None:
            wanted_tags = set(tags)
            known = sorted({t for d in self.devices for t in d.tags})
            unknown = sorted(wanted_tags - set(known))
            if unknown:
                raise UnknownTagError(
                    f"no device in {self.path} has tag {unknown[0]!r}"
                    f"{_did_you_mean(unknown[0], known)}; "
                    f"known tags: {', '.join(known) or '(none)'}"
                )
            chosen = [d for d in chosen if wanted_tags <= set(d.tags)]
        return tuple(chosen)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_registry(path: str | Path, *, sim_profiles: Collection[str] | None = None) -> Registry:
    """Read and validate a devices file; raises `RegistryError` on the first problem in it.

    `sim_profiles`: the simulated power profiles a `sim` meter may name (default: those of
    `joulefarm.sim_profiles`).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise RegistryError(path, 0, "", "file not found") from None
    except IsADirectoryError:
        raise RegistryError(path, 0, "", "is a directory, not a devices file") from None
    except OSError as exc:
        raise RegistryError(path, 0, "", f"cannot read file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RegistryError(path, line, "", "file is not valid UTF-8") from None
    return parse_registry(text, path, sim_profiles=sim_profiles)


def parse_registry(
    text: str, path: str | Path, *, sim_profiles: Collection[str] | None = None
) -> Registry:
    """Like `load_registry`, from the text of a devices file; `path` is used in messages."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, text, path) from None
    validator = _Validator(path, _LineIndex(text), sim_profiles)
    registry = validator.registry(document)
    if validator.errors:
        # min() keeps the first of equal lines: errors on one line stay in the checks' order.
        raise min(validator.errors, key=lambda e: e.line)
    assert registry is not None
    return registry


def _syntax_error(exc: tomllib.TOMLDecodeError, text: str, path: str | Path) -> RegistryError:
    message = str(exc)
    match = _TOML_POSITION_RE.search(message)
    if match is None:
        return RegistryError(path, 1, "", f"invalid TOML: {message}")
    reason = message[: match.start()]
    if match.group(1) is None:  # "at end of document"
        return RegistryError(path, _last_line(text), "", f"invalid TOML: {reason} at end of file")
    line, column = int(match.group(1)), int(match.group(2))
    return RegistryError(path, line, "", f"invalid TOML: {reason} (column {column})")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

KeyPath = tuple[str | int, ...]
_MISSING = object()  # a key that is not in its table
_INVALID = object()  # a value that failed its check (already reported)


class _Validator:
    """Turns the parsed TOML document into a `Registry`, collecting errors on the way."""

    def __init__(
        self, path: str | Path, lines: _LineIndex, sim_profiles: Collection[str] | None
    ) -> None:
        self.path = path
        self.lines = lines
        self.sim_profiles = sorted(set(PROFILES if sim_profiles is None else sim_profiles))
        self.errors: list[RegistryError] = []

    # -- reporting ---------------------------------------------------------------------------

    def error(self, key_path: KeyPath, message: str) -> None:
        self.errors.append(
            RegistryError(self.path, self.lines.line_of(key_path), _field_name(key_path), message)
        )

    def check_keys(self, table: Mapping[str, Any], at: KeyPath, allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                self.error(at + (key,), _unknown_key_message(key, allowed))

    # -- typed getters: return the value, _MISSING, or _INVALID after reporting ---------------

    def get(
        self, table: Mapping[str, Any], at: KeyPath, key: str, expected: str, required: bool
    ) -> Any:
        if key not in table:
            if required:
                what = "table" if expected == "table" else "key"
                self.error(at + (key,), f"missing required {what}")
            return _MISSING
        value = table[key]
        if not _has_type(value, expected):
            self.error(at + (key,), f"expected {_ARTICLE[expected]}, got {_describe(value)}")
            return _INVALID
        return value

    def get_port(self, table: Mapping[str, Any], at: KeyPath, key: str, lowest: int) -> Any:
        port = self.get(table, at, key, "integer", required=False)
        if isinstance(port, int) and not lowest <= port <= 65535:
            self.error(at + (key,), f"port {port} is out of range {lowest}..65535")
            return _INVALID
        return port

    def get_optional_path(self, table: Mapping[str, Any], at: KeyPath, key: str) -> Any:
        value = self.get(table, at, key, "string", required=False)
        if value == "":
            self.error(at + (key,), "must not be empty; leave the key out instead")
            return _INVALID
        return value

    # -- the schema --------------------------------------------------------------------------

    def registry(self, document: Mapping[str, Any]) -> Registry | None:
        version = self.get(document, (), "schema_version", "integer", required=True)
        if version is _MISSING:
            # Replace the generic message: say what to write.
            self.errors[-1] = RegistryError(
                self.path,
                1,
                "schema_version",
                f"missing; start the file with `schema_version = {SCHEMA_VERSION}`",
            )
        elif version is not _INVALID and version != SCHEMA_VERSION:
            self.error(
                ("schema_version",),
                f"unsupported schema version {version}; this joulefarm reads version "
                f"{SCHEMA_VERSION}",
            )
        if self.errors:
            return None  # without a known schema the rest cannot be judged

        self.check_keys(document, (), TOP_LEVEL_KEYS)
        raw_devices = document.get("device", _MISSING)
        if isinstance(raw_devices, dict):
            self.error(("device",), "expected an array of tables: write [[device]], not [device]")
            return None
        if raw_devices is _MISSING or raw_devices == []:
            message = "no devices; add at least one [[device]] table"
            if raw_devices is _MISSING:
                # Nothing to point at: name the end of the file, where one would add them.
                self.errors.append(
                    RegistryError(self.path, self.lines.last_line, "device", message)
                )
            else:
                self.error(("device",), message)
            return None
        if not isinstance(raw_devices, list):
            self.error(("device",), f"expected an array of tables, got {_describe(raw_devices)}")
            return None

        devices: list[Device] = []
        first_name_line: dict[str, int] = {}
        for index, raw in enumerate(raw_devices):
            at: KeyPath = ("device", index)
            if not isinstance(raw, dict):
                self.error(at, f"expected a table, got {_describe(raw)}")
                continue
            device = self.device(raw, at)
            name = raw.get("name")
            if isinstance(name, str) and _NAME_RE.fullmatch(name):
                name_line = self.lines.line_of(at + ("name",))
                if name in first_name_line:
                    self.error(
                        at + ("name",),
                        f"duplicate device name {name!r} (first defined at line "
                        f"{first_name_line[name]})",
                    )
                else:
                    first_name_line[name] = name_line
            if device is not None:
                devices.append(device)
        return Registry(Path(self.path), SCHEMA_VERSION, tuple(devices))

    def device(self, raw: Mapping[str, Any], at: KeyPath) -> Device | None:
        errors_before = len(self.errors)
        self.check_keys(raw, at, DEVICE_KEYS)

        name = self.get(raw, at, "name", "string", required=True)
        if isinstance(name, str) and not _NAME_RE.fullmatch(name):
            self.error(
                at + ("name",),
                f"{name!r} is not a valid device name: use 1-63 characters from A-Z a-z 0-9 "
                "_ . - starting with a letter or digit",
            )

        platform = self.get(raw, at, "platform", "string", required=True)
        if isinstance(platform, str) and platform not in PLATFORMS:
            self.error(at + ("platform",), _unknown_choice("platform", platform, PLATFORMS))

        address = self.get(raw, at, "address", "string", required=True)
        if isinstance(address, str):
            problem = _address_problem(address)
            if problem:
                self.error(at + ("address",), problem)

        port = self.get_port(raw, at, "port", lowest=0)
        local = self.get(raw, at, "local", "boolean", required=False)
        if local is not _INVALID and local is not True:
            # port 0 means "bind any free port": only the controller, which starts a local
            # agent itself, can learn which port that was.
            if port == 0:
                self.error(
                    at + ("port",),
                    "port 0 (pick a free port) is only allowed with "
                    "local = true; give the port the agent listens on",
                )
            elif port is _MISSING:
                self.error(
                    at + ("port",),
                    "missing; a remote device (local = false) needs the port its agent listens on",
                )

        tags = self.get(raw, at, "tags", "array", required=False)
        if isinstance(tags, list):
            for i, tag in enumerate(tags):
                if not isinstance(tag, str):
                    self.error(at + ("tags", i), f"expected a string, got {_describe(tag)}")
                elif not tag:
                    self.error(at + ("tags", i), "tags must not be empty strings")
        description = self.get(raw, at, "description", "string", required=False)
        token_file = self.get_optional_path(raw, at, "token_file")

        meter = self.meter(raw, at)
        ssh = self.ssh(raw, at)

        if len(self.errors) > errors_before:
            return None
        return Device(
            name=name,
            platform=platform,
            address=address,
            meter=meter,
            port=0 if port is _MISSING else port,
            local=local is True,
            tags=tuple(tags) if isinstance(tags, list) else (),
            description="" if description is _MISSING else description,
            token_file=token_file if isinstance(token_file, str) else None,
            ssh=ssh,
        )

    def meter(self, device: Mapping[str, Any], device_at: KeyPath) -> Any:
        raw = self.get(device, device_at, "meter", "table", required=True)
        if not isinstance(raw, dict):
            return _INVALID
        at = device_at + ("meter",)
        self.check_keys(raw, at, METER_KEYS)

        kind = self.get(raw, at, "kind", "string", required=True)
        if isinstance(kind, str) and kind not in METER_KINDS:
            self.error(at + ("kind",), _unknown_choice("meter kind", kind, METER_KINDS))

        profile = self.get(raw, at, "profile", "string", required=kind == "sim")
        if isinstance(profile, str):
            if isinstance(kind, str) and kind in METER_KINDS and kind != "sim":
                self.error(at + ("profile",), f"only used with kind = 'sim', not {kind!r}")
            elif profile not in self.sim_profiles:
                self.error(
                    at + ("profile",),
                    _unknown_choice("sim profile", profile, self.sim_profiles),
                )

        rate = self.get(raw, at, "sample_rate_hz", "number", required=False)
        if isinstance(rate, int | float) and not (math.isfinite(rate) and rate > 0):
            self.error(at + ("sample_rate_hz",), f"must be a finite number > 0, got {rate!r}")

        options = self.get(raw, at, "options", "table", required=False)
        if isinstance(options, dict) and isinstance(kind, str) and kind in METER_KINDS:
            accepted = sorted(METER_OPTIONS[MeterKind(kind)])
            for key in options:
                if key not in accepted:
                    hint = _did_you_mean(key, accepted)
                    self.error(at + ("options", key),
                               f"meter kind {kind!r} takes no option {key!r}{hint}; it takes: "
                               f"{', '.join(accepted) or 'none'}")
        return MeterConfig(
            kind=kind,
            profile=profile if isinstance(profile, str) else None,
            sample_rate_hz=float(rate) if isinstance(rate, int | float) else None,
            options=MappingProxyType(dict(options) if isinstance(options, dict) else {}),
        )

    def ssh(self, device: Mapping[str, Any], device_at: KeyPath) -> SshConfig | None:
        raw = self.get(device, device_at, "ssh", "table", required=False)
        if not isinstance(raw, dict):
            return None
        at = device_at + ("ssh",)
        self.check_keys(raw, at, SSH_KEYS)
        user = self.get(raw, at, "user", "string", required=True)
        if user == "":
            self.error(at + ("user",), "must not be empty")
        port = self.get_port(raw, at, "port", lowest=1)
        key = self.get_optional_path(raw, at, "key")
        jump = self.get_optional_path(raw, at, "jump")
        if isinstance(jump, str):
            try:
                parse_jump(jump)
            except ValueError as exc:
                self.error(at + ("jump",), str(exc))
        known_hosts = self.get_optional_path(raw, at, "known_hosts")
        python = self.get_optional_path(raw, at, "python")
        prefix = self.get_optional_path(raw, at, "prefix")
        service = self.get(raw, at, "service", "string", required=False)
        if isinstance(service, str) and service not in SERVICE_KINDS:
            self.error(at + ("service",), _unknown_choice("service", service, SERVICE_KINDS))
        site = self.get(raw, at, "system_site_packages", "boolean", required=False)
        tunnel = self.get(raw, at, "tunnel", "boolean", required=False)
        litert_lib = self.get_optional_path(raw, at, "litert_lib")
        if isinstance(litert_lib, str) and "://" in litert_lib and not litert_lib.startswith(
                "https://"):
            self.error(at + ("litert_lib",), "must be a file path or an https:// URL")
        litert_version = self.get_optional_path(raw, at, "litert_version")
        build_on_device = self.get(raw, at, "build_on_device", "boolean", required=False)
        return SshConfig(
            user=user,
            port=port if isinstance(port, int) else DEFAULT_SSH_PORT,
            key=key if isinstance(key, str) else None,
            jump=jump if isinstance(jump, str) else None,
            known_hosts=known_hosts if isinstance(known_hosts, str) else None,
            python=python if isinstance(python, str) else "python3",
            prefix=prefix if isinstance(prefix, str) else DEFAULT_AGENT_PREFIX,
            service=service if isinstance(service, str) else "auto",
            system_site_packages=site is True,
            tunnel=tunnel is True,
            litert_lib=litert_lib if isinstance(litert_lib, str) else None,
            litert_version=litert_version if isinstance(litert_version, str) else None,
            build_on_device=build_on_device is True,
        )


def parse_jump(value: str) -> tuple[str | None, str, int]:
    """Split a jump host `[user@]host[:port]` (IPv6 as `[addr]:port`) into (user, host, port).

    The user is None when not given (the device's `ssh.user` is meant); the port defaults to
    22. Raises `ValueError` with the reason.
    """
    user, at_sign, rest = value.rpartition("@")
    if at_sign and not user:
        raise ValueError(f"{value!r}: empty user before '@'")
    port_text = ""
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{value!r}: write an IPv6 jump host as [addr] or [addr]:port")
        port_text = tail[1:]
        if ":" not in host:
            raise ValueError(f"{value!r}: brackets are only for IPv6 addresses")
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    elif ":" in rest:
        raise ValueError(f"{value!r}: write an IPv6 jump host in brackets, as [addr]:port")
    else:
        host = rest
    problem = _address_problem(host) if host else "the host is empty"
    if problem:
        raise ValueError(f"{value!r}: {problem}; expected [user@]host[:port]")
    port = DEFAULT_SSH_PORT
    if port_text or rest.endswith(":"):
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"{value!r}: port {port_text!r} is not a number in 1..65535")
        port = int(port_text)
    return (user or None), host, port


# -- small helpers for messages ---------------------------------------------------------------

_ARTICLE = {
    "string": "a string",
    "integer": "an integer",
    "boolean": "a boolean (true or false)",
    "number": "a number",
    "array": "an array",
    "table": "a table",
}


def _has_type(value: Any, expected: str) -> bool:
    # bool is a subclass of int in Python, but `port = true` is not a port.
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    python_type = {"string": str, "boolean": bool, "array": list, "table": dict}[expected]
    return isinstance(value, python_type)


def _describe(value: Any) -> str:
    """TOML type name and a short rendering of a value, for 'expected X, got Y'."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, dt.date | dt.time):
        return f"{type(value).__name__} {value.isoformat()}"
    toml_type = {str: "string", int: "integer", float: "float", list: "array", dict: "table"}
    name = toml_type.get(type(value), type(value).__name__)
    shown = repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{name} {shown}"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_key_message(key: str, allowed: Sequence[str]) -> str:
    hint = _did_you_mean(key, allowed)
    if hint:
        return f"unknown key {key!r}{hint}"
    return f"unknown key {key!r}; valid keys: {', '.join(allowed)}"


def _unknown_choice(what: str, value: str, choices: Sequence[str]) -> str:
    return (
        f"unknown {what} {value!r}{_did_you_mean(value, choices)}; "
        f"expected one of: {', '.join(choices)}"
    )


def _field_name(key_path: KeyPath) -> str:
    """("device", 1, "meter", "kind") -> "device[1].meter.kind"."""
    out = ""
    for part in key_path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY_RE.fullmatch(part) else json.dumps(part)
            out += f".{name}" if out else name
    return out


def _last_line(text: str) -> int:
    """Number of the last line of `text` (a final newline does not start another)."""
    return max(1, text.count("\n") + (0 if text.endswith("\n") else 1))


def _address_problem(address: str) -> str | None:
    """None if `address` is an IPv4/IPv6 address or an RFC 1123 host name, else the reason."""
    message = f"{address!r} is not a valid IP address or host name"
    try:
        ipaddress.ip_address(address)
        return None
    except ValueError:
        pass
    if address.startswith("[") and address.endswith("]"):
        return message + "; write IPv6 addresses without brackets"
    host = address[:-1] if address.endswith(".") else address  # allow a fully qualified name
    labels = host.split(".")
    if (
        0 < len(host) <= 253
        and all(_HOST_LABEL_RE.fullmatch(label) for label in labels)
        # An all-numeric last label would make "300.1.1.1" a host name; RFC 3696 section 2
        # rules that out, so dotted numbers must be a valid IPv4 address.
        and not labels[-1].isdigit()
    ):
        return None
    if re.fullmatch(r"[^:]+:\d+", address):
        return message + "; put the port in `port`, not in the address"
    return message


# --------------------------------------------------------------------------------------------
# Line index
# --------------------------------------------------------------------------------------------


class _LineIndex:
    """Where each key of a TOML document is written: key path -> 1-based line.

    Key paths are what the parsed document would be indexed with; entries of arrays of tables
    and of plain arrays get their 0-based position: `[[device]]` (the second one) followed by
    `[device.meter]` and `kind = "sim"` yields ("device", 1, "meter", "kind"). Tables are found
    at their header (`[device.meter]`), at the key of an inline table (`meter = { ... }`) or at
    the first dotted key that creates them (`meter.kind = ...`).

    The text has already passed `tomllib`, so this scanner can trust it is valid TOML and only
    needs to know enough syntax not to be fooled: strings (a multi-line string may contain
    lines that look like headers or keys), arrays and inline tables (which can nest and, for
    arrays, span lines) and comments.
    """

    def __init__(self, text: str) -> None:
        self._text = text
        self._pos = 0
        self._line = 1
        self._lines: dict[KeyPath, int] = {}
        # Number of `[[x]]` headers seen per array path, to number their entries.
        self._array_tables: dict[KeyPath, int] = {}
        self.last_line = _last_line(text)
        self._scan_document()

    def line_of(self, key_path: KeyPath) -> int:
        """Line of `key_path`, else of the nearest enclosing table that is written down, else 1.

        So a missing key is reported at the header of the table that lacks it.
        """
        while key_path:
            if key_path in self._lines:
                return self._lines[key_path]
            key_path = key_path[:-1]
        return 1

    # -- character primitives ----------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> str:
        i = self._pos + ahead
        return self._text[i] if i < len(self._text) else ""

    def _startswith(self, token: str) -> bool:
        return self._text.startswith(token, self._pos)

    def _advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self._pos < len(self._text):
                if self._text[self._pos] == "\n":
                    self._line += 1
                self._pos += 1

    def _skip_blanks(self) -> None:
        """Spaces and tabs (inside one line)."""
        while self._peek() in (" ", "\t"):
            self._advance()

    def _skip_blanks_newlines_comments(self) -> None:
        while True:
            c = self._peek()
            if c in (" ", "\t", "\r", "\n"):
                self._advance()
            elif c == "#":
                while self._peek() not in ("\n", ""):
                    self._advance()
            else:
                return

    def _record(self, key_path: KeyPath, line: int) -> None:
        # First mention wins: later dotted keys and sub-tables only re-open a table.
        self._lines.setdefault(key_path, line)

    # -- grammar -----------------------------------------------------------------------------

    def _scan_document(self) -> None:
        table: KeyPath = ()  # the table that key/value lines currently belong to
        while True:
            self._skip_blanks_newlines_comments()
            if not self._peek():
                return
            line = self._line
            if self._startswith("[["):
                self._advance(2)
                table = self._resolve_header(self._scan_key(), line, array_entry=True)
                self._skip_blanks()
                self._advance(2)  # "]]"
            elif self._peek() == "[":
                self._advance()
                table = self._resolve_header(self._scan_key(), line, array_entry=False)
                self._skip_blanks()
                self._advance()  # "]"
            else:
                self._scan_key_value(table)

    def _resolve_header(self, key: list[str], line: int, *, array_entry: bool) -> KeyPath:
        """Key path of the table a header opens; `[[x]]` starts a new entry of array x."""
        path: KeyPath = ()
        for i, part in enumerate(key):
            path += (part,)
            if array_entry and i == len(key) - 1:
                count = self._array_tables.get(path, 0)
                self._array_tables[path] = count + 1
                self._record(path, line)  # the array itself: its first header
                path += (count,)
            elif path in self._array_tables:
                # `[device.meter]` belongs to the latest `[[device]]` entry.
                path += (self._array_tables[path] - 1,)
            self._record(path, line)
        return path

    def _scan_key_value(self, table: KeyPath) -> None:
        line = self._line
        key = self._scan_key()
        path = table
        for part in key:
            path += (part,)
            self._record(path, line)  # also the tables a dotted key creates
        self._skip_blanks()
        self._advance()  # "="
        self._skip_blanks()
        self._scan_value(path)

    def _scan_key(self) -> list[str]:
        """A dotted key (`a."b c".d`), as its parts."""
        parts: list[str] = []
        while True:
            self._skip_blanks()
            c = self._peek()
            if c in ('"', "'"):
                start = self._pos
                self._scan_string()
                # Let tomllib decode escapes in quoted keys rather than repeat its rules.
                parts.append(tomllib.loads("k = " + self._text[start : self._pos])["k"])
            else:
                start = self._pos
                while self._peek() and _BARE_KEY_RE.fullmatch(self._peek()):
                    self._advance()
                parts.append(self._text[start : self._pos])
            self._skip_blanks()
            if self._peek() != ".":
                return parts
            self._advance()

    def _scan_value(self, path: KeyPath) -> None:
        c = self._peek()
        if c in ('"', "'"):
            self._scan_string()
        elif c == "[":
            self._advance()
            index = 0
            while True:
                self._skip_blanks_newlines_comments()
                if self._peek() in ("]", ""):
                    self._advance()
                    return
                self._record(path + (index,), self._line)
                self._scan_value(path + (index,))
                index += 1
                self._skip_blanks_newlines_comments()
                if self._peek() == ",":
                    self._advance()
        elif c == "{":
            self._advance()
            while True:
                self._skip_blanks_newlines_comments()
                if self._peek() in ("}", ""):
                    self._advance()
                    return
                self._scan_key_value(path)
                self._skip_blanks_newlines_comments()
                if self._peek() == ",":
                    self._advance()
        else:
            # Number, boolean or date-time; a date-time may hold a space, so stop only at
            # what can follow a value.
            while self._peek() not in (",", "]", "}", "#", "\r", "\n", ""):
                self._advance()

    def _scan_string(self) -> None:
        quote = self._peek()
        escapes = quote == '"'  # literal strings ('...') have no escapes
        if self._startswith(quote * 3):
            self._advance(3)
            while self._peek():
                if escapes and self._peek() == "\\":
                    self._advance(2)
                elif self._startswith(quote * 3):
                    self._advance(3)
                    # A closing run may be up to 5 quotes: the first 1-2 belong to the text.
                    for _ in range(2):
                        if self._peek() == quote:
                            self._advance()
                    return
                else:
                    self._advance()
        else:
            self._advance()
            while self._peek():
                c = self._peek()
                if escapes and c == "\\":
                    self._advance(2)
                else:
                    self._advance()
                    if c == quote:
                        return
