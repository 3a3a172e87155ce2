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

import ipaddress
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from controller.config.toml_check import (
    INVALID,
    MISSING,
    Checker,
    ConfigError,
    KeyPath,
    describe,
    did_you_mean,
    parse_toml,
    read_config_text,
    unknown_choice,
)
from joulefarm.enums import METER_OPTIONS, MeterKind, Platform
from joulefarm.errors import InputError
from joulefarm.limits import (
    MAX_METER_INTERVAL_MS,
    MAX_MONSOON_VOUT_V,
    MAX_REPLAY_OFFSET_S,
    MAX_SAMPLE_RATE_HZ,
    MIN_SAMPLE_RATE_HZ,
)
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
    "TLS_KEYS",
    "TlsConfig",
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
    "tls",
    "insecure_plaintext",
    "delegates",
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
TLS_KEYS = ("cert", "key", "sha256")
DEFAULT_SSH_PORT = 22
# How `joulefarm provision` keeps the agent running: a systemd user unit where systemd runs,
# a runit service where Termux's termux-services runs, otherwise a shell supervisor loop with a
# pid file; "auto" picks by probing the device.
SERVICE_KINDS = ("auto", "systemd", "runit", "supervised")
DEFAULT_AGENT_PREFIX = ".joulefarm"

# The numeric meter options (METER_OPTIONS says which kinds take them): TOML type and bounds.
_NUMERIC_OPTIONS: dict[str, tuple[str, float, float]] = {
    "interval_ms": ("integer", 1, MAX_METER_INTERVAL_MS),  # tegrastats
    "offset_s": ("number", 0.0, MAX_REPLAY_OFFSET_S),  # replay
    "vout": ("number", 0.0, MAX_MONSOON_VOUT_V),  # monsoon
    "port": ("integer", 1, 65535),  # otii
}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
# A SHA-256 fingerprint: 64 hex digits, optionally in colon-separated pairs (as openssl prints).
_SHA256_RE = re.compile(r"[0-9A-Fa-f]{64}|[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}")
# tomllib ends its messages with "(at line L, column C)" or "(at end of document)".
_TOML_POSITION_RE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class RegistryError(ConfigError):
    """A problem in a devices file, e.g. ``devices.toml:14: device[1].address: '300.1.1.1' is
    not a valid IP address or host name`` (see ``ConfigError``; device indices are 0-based)."""


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
class TlsConfig:
    """The agent's TLS certificate, pinned on the controller (`[device.tls]`)."""

    # PEM file on the controller holding the agent's certificate: the only certificate the
    # controller trusts for this device (self-signed ones are their own root).
    cert: str
    # The agent's private key on the controller; only `joulefarm provision` reads it, to copy
    # it to the device.
    key: str | None = None
    # SHA-256 of the certificate (DER), lowercase hex: a replaced `cert` file is refused.
    sha256: str | None = None


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
    tls: TlsConfig | None = None
    # Reach a remote agent on a non-loopback address without TLS or a tunnel: the token then
    # crosses the network in clear, so this must be said explicitly.
    insecure_plaintext: bool = False
    # External delegate libraries (absolute paths on the device) that benchmarks may load.
    delegates: tuple[str, ...] = ()

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
            f"unknown device {name!r} in {self.path}{did_you_mean(name, self.names)}; "
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
                    f"{did_you_mean(unknown[0], known)}; "
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
    text = read_config_text(path, RegistryError, "devices file")
    return parse_registry(text, path, sim_profiles=sim_profiles)


def parse_registry(
    text: str, path: str | Path, *, sim_profiles: Collection[str] | None = None
) -> Registry:
    """Like `load_registry`, from the text of a devices file; `path` is used in messages."""
    document = parse_toml(text, path, RegistryError)
    validator = _Validator(path, text, sim_profiles)
    registry = validator.registry(document)
    validator.raise_first()
    assert registry is not None
    return registry


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

class _Validator(Checker):
    """Turns the parsed TOML document into a `Registry`, collecting errors on the way."""

    error_class = RegistryError

    def __init__(self, path: str | Path, text: str, sim_profiles: Collection[str] | None
                 ) -> None:
        super().__init__(path, text)
        self.sim_profiles = sorted(set(PROFILES if sim_profiles is None else sim_profiles))

    def get_port(self, table: Mapping[str, Any], at: KeyPath, key: str, lowest: int) -> Any:
        port = self.get(table, at, key, "integer", required=False)
        if isinstance(port, int) and not lowest <= port <= 65535:
            self.error(at + (key,), f"port {port} is out of range {lowest}..65535")
            return INVALID
        return port

    def get_optional_path(self, table: Mapping[str, Any], at: KeyPath, key: str) -> Any:
        value = self.get(table, at, key, "string", required=False)
        if value == "":
            self.error(at + (key,), "must not be empty; leave the key out instead")
            return INVALID
        return value

    # -- the schema --------------------------------------------------------------------------

    def registry(self, document: Mapping[str, Any]) -> Registry | None:
        version = self.get(document, (), "schema_version", "integer", required=True)
        if version is MISSING:
            # Replace the generic message: say what to write.
            self.errors[-1] = RegistryError(
                self.path,
                1,
                "schema_version",
                f"missing; start the file with `schema_version = {SCHEMA_VERSION}`",
            )
        elif version is not INVALID and version != SCHEMA_VERSION:
            self.error(
                ("schema_version",),
                f"unsupported schema version {version}; this joulefarm reads version "
                f"{SCHEMA_VERSION}",
            )
        if self.errors:
            return None  # without a known schema the rest cannot be judged

        self.check_keys(document, (), TOP_LEVEL_KEYS)
        raw_devices = document.get("device", MISSING)
        if isinstance(raw_devices, dict):
            self.error(("device",), "expected an array of tables: write [[device]], not [device]")
            return None
        if raw_devices is MISSING or raw_devices == []:
            message = "no devices; add at least one [[device]] table"
            if raw_devices is MISSING:
                # Nothing to point at: name the end of the file, where one would add them.
                self.errors.append(
                    RegistryError(self.path, self.lines.last_line, "device", message)
                )
            else:
                self.error(("device",), message)
            return None
        if not isinstance(raw_devices, list):
            self.error(("device",), f"expected an array of tables, got {describe(raw_devices)}")
            return None

        devices: list[Device] = []
        first_name_line: dict[str, int] = {}
        for index, raw in enumerate(raw_devices):
            at: KeyPath = ("device", index)
            if not isinstance(raw, dict):
                self.error(at, f"expected a table, got {describe(raw)}")
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
            self.error(at + ("platform",), unknown_choice("platform", platform, PLATFORMS))

        address = self.get(raw, at, "address", "string", required=True)
        if isinstance(address, str):
            problem = _address_problem(address)
            if problem:
                self.error(at + ("address",), problem)

        port = self.get_port(raw, at, "port", lowest=0)
        local = self.get(raw, at, "local", "boolean", required=False)
        # `locale = true` (reported as an unknown key, "did you mean 'local'?") must not also
        # be reported as a remote device without a port; nor `prot = 1` as a missing port.
        typo = ((local is MISSING and self.misspelling(at, "local"))
                or (port is MISSING and self.misspelling(at, "port")))
        if local is not INVALID and local is not True and not typo:
            # port 0 means "bind any free port": only the controller, which starts a local
            # agent itself, can learn which port that was.
            if port == 0:
                self.error(
                    at + ("port",),
                    "port 0 (pick a free port) is only allowed with "
                    "local = true; give the port the agent listens on",
                )
            elif port is MISSING:
                self.error(
                    at + ("port",),
                    "missing; a remote device (local = false) needs the port its agent listens on",
                )

        tags = self.get(raw, at, "tags", "array", required=False)
        if isinstance(tags, list):
            for i, tag in enumerate(tags):
                if not isinstance(tag, str):
                    self.error(at + ("tags", i), f"expected a string, got {describe(tag)}")
                elif not tag:
                    self.error(at + ("tags", i), "tags must not be empty strings")
        description = self.get(raw, at, "description", "string", required=False)
        token_file = self.get_optional_path(raw, at, "token_file")

        meter = self.meter(raw, at)
        ssh = self.ssh(raw, at)
        tls = self.tls(raw, at)
        insecure = self.get(raw, at, "insecure_plaintext", "boolean", required=False)
        if insecure is True and tls is not None:
            self.error(at + ("insecure_plaintext",),
                       "contradicts the [device.tls] table of this device; remove one of them")
        if local is True and (insecure is True or tls is not None):
            key = "insecure_plaintext" if insecure is True else "tls"
            self.error(at + (key,), "only for remote devices: the controller starts a local "
                                    "agent itself, on 127.0.0.1")
        delegates = self.delegates(raw, at)

        if len(self.errors) > errors_before:
            return None
        return Device(
            name=name,
            platform=platform,
            address=address,
            meter=meter,
            port=0 if port is MISSING else port,
            local=local is True,
            tags=tuple(tags) if isinstance(tags, list) else (),
            description="" if description is MISSING else description,
            token_file=token_file if isinstance(token_file, str) else None,
            ssh=ssh,
            tls=tls,
            insecure_plaintext=insecure is True,
            delegates=delegates,
        )

    def tls(self, device: Mapping[str, Any], device_at: KeyPath) -> TlsConfig | None:
        raw = self.get(device, device_at, "tls", "table", required=False)
        if not isinstance(raw, dict):
            return None
        at = device_at + ("tls",)
        self.check_keys(raw, at, TLS_KEYS)
        cert = self.get(raw, at, "cert", "string", required=True)
        if cert == "":
            self.error(at + ("cert",), "must not be empty")
        key = self.get_optional_path(raw, at, "key")
        sha256 = self.get(raw, at, "sha256", "string", required=False)
        if isinstance(sha256, str) and not _SHA256_RE.fullmatch(sha256):
            self.error(at + ("sha256",), f"{sha256!r} is not a SHA-256 fingerprint (64 hex "
                                         "digits, optionally in colon-separated pairs)")
            sha256 = INVALID
        return TlsConfig(
            cert=cert if isinstance(cert, str) else "",
            key=key if isinstance(key, str) else None,
            sha256=sha256.replace(":", "").lower() if isinstance(sha256, str) else None,
        )

    def delegates(self, device: Mapping[str, Any], at: KeyPath) -> tuple[str, ...]:
        raw = self.get(device, at, "delegates", "array", required=False)
        if not isinstance(raw, list):
            return ()
        for i, path in enumerate(raw):
            if not isinstance(path, str):
                self.error(at + ("delegates", i), f"expected a string, got {describe(path)}")
            elif not path.startswith("/"):
                # The agent compares real paths: a relative one would depend on its directory.
                self.error(at + ("delegates", i),
                           f"{path!r} is not an absolute path on the device")
        return tuple(p for p in raw if isinstance(p, str))

    def meter(self, device: Mapping[str, Any], device_at: KeyPath) -> Any:
        raw = self.get(device, device_at, "meter", "table", required=True)
        if not isinstance(raw, dict):
            return INVALID
        at = device_at + ("meter",)
        self.check_keys(raw, at, METER_KEYS)

        kind = self.get(raw, at, "kind", "string", required=True)
        if isinstance(kind, str) and kind not in METER_KINDS:
            self.error(at + ("kind",), unknown_choice("meter kind", kind, METER_KINDS))

        profile = self.get(raw, at, "profile", "string", required=kind == "sim")
        if isinstance(profile, str):
            if isinstance(kind, str) and kind in METER_KINDS and kind != "sim":
                self.error(at + ("profile",), f"only used with kind = 'sim', not {kind!r}")
            elif profile not in self.sim_profiles:
                self.error(
                    at + ("profile",),
                    unknown_choice("sim profile", profile, self.sim_profiles),
                )

        rate = self.get(raw, at, "sample_rate_hz", "number", required=False)
        if isinstance(rate, int | float):
            self.within(at + ("sample_rate_hz",), rate, MIN_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ)

        options = self.get(raw, at, "options", "table", required=False)
        if isinstance(options, dict) and isinstance(kind, str) and kind in METER_KINDS:
            accepted = sorted(METER_OPTIONS[MeterKind(kind)])
            for key in options:
                if key not in accepted:
                    hint = did_you_mean(key, accepted)
                    self.error(at + ("options", key),
                               f"meter kind {kind!r} takes no option {key!r}{hint}; it takes: "
                               f"{', '.join(accepted) or 'none'}")
                elif key in _NUMERIC_OPTIONS:
                    self.numeric_option(options, at + ("options",), key)
        return MeterConfig(
            kind=kind,
            profile=profile if isinstance(profile, str) else None,
            sample_rate_hz=float(rate) if isinstance(rate, int | float) else None,
            options=MappingProxyType(dict(options) if isinstance(options, dict) else {}),
        )

    def numeric_option(self, options: Mapping[str, Any], at: KeyPath, key: str) -> None:
        expected, low, high = _NUMERIC_OPTIONS[key]
        value = self.get(options, at, key, expected, required=True)
        if isinstance(value, int | float):
            self.within(at + (key,), value, low, high)

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
            self.error(at + ("service",), unknown_choice("service", service, SERVICE_KINDS))
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


