"""The agent's TLS key and certificate, made on the controller or brought by the user.

`joulefarm provision` gives every agent a certificate unless the device opts out
(``insecure_plaintext = true``): a P-256 key and a self-signed certificate for the device's
address (subjectAltName: its IP or host name), valid for `CERT_DAYS`. Both are kept on the
controller next to the device's token (the key 0600, like the token: whoever holds it can pose
as the agent) and recorded under ``[device.tls]`` in devices.toml with the certificate's SHA-256;
the controller then trusts that certificate only (``controller.farm.tls``). Provisioning again
reuses them while they are valid. A user's own pair goes in ``[device.tls]`` (``cert``, ``key``)
and is checked, then copied the same way.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.config.registry import Device, TlsConfig
from controller.farm.tls import certificate_names, fingerprint, normal_host, parse_certificate
from controller.provision.errors import ProvisionError, ProvisionInputError

# 825 days: the longest validity TLS clients have accepted for a server certificate since
# 2018; long enough that a lab device is not re-provisioned for it, short enough to rotate.
CERT_DAYS = 825
# Provisioning again makes a new certificate when the old one has less than this left.
RENEW_DAYS = 30
# A little backdating, so that a device whose clock is a few minutes behind accepts it.
BACKDATE = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class AgentCertificate:
    """What the agent serves (``key_pem``, ``cert_pem``) and what devices.toml pins."""

    key_pem: bytes
    cert_pem: bytes
    tls: TlsConfig
    # Made (or taken from the default files) by this run: devices.toml must record it.
    new_pin: bool


def generate(device_name: str, address: str, now: dt.datetime | None = None,
             days: int = CERT_DAYS) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM): a fresh P-256 key and a self-signed certificate for
    ``address`` (subjectAltName), valid from ``now`` for ``days``."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(address)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _san(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        return x509.DNSName(address.rstrip("."))


def pair_problem(key_pem: bytes, cert_pem: bytes) -> str | None:
    """Why ``key_pem`` cannot serve ``cert_pem`` (not a key, encrypted, another key's), or
    None when it can."""
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        return "is encrypted; the agent needs it unencrypted"
    except ValueError:
        return "is not a PEM private key"
    cert = x509.load_pem_x509_certificate(cert_pem)
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        return "is not the private key of the certificate"
    return None


def default_paths(device: Device) -> tuple[str, str]:
    """(certificate, key) beside the device's token file, written as devices.toml writes the
    token file (``~`` kept: the file stays valid for the same user elsewhere)."""
    assert device.token_file is not None
    folder = PurePath(device.token_file).parent
    return (str(folder / f"{device.name}.agent.crt"), str(folder / f"{device.name}.agent.key"))


def check_given(device: Device, now: dt.datetime | None = None) -> AgentCertificate:
    """The pair ``[device.tls]`` names, once both are readable, belong together, match
    ``tls.sha256`` (when given) and are valid now; ``ProvisionInputError`` otherwise."""
    assert device.tls is not None
    tls, name = device.tls, device.name
    if tls.key is None:
        raise ProvisionInputError(
            f"device {name!r}: [device.tls] has no key; provisioning copies the agent's private "
            "key to the device: add key = \"PATH\" (the certificate's key, on this machine)")
    cert_pem = _read(name, "tls.cert", tls.cert)
    key_pem = _read(name, "tls.key", tls.key)
    try:
        cert = parse_certificate(cert_pem)
    except ValueError as exc:
        raise ProvisionInputError(f"device {name!r}: tls.cert {tls.cert}: {exc}") from None
    problem = pair_problem(key_pem, cert_pem)
    if problem:
        raise ProvisionInputError(f"device {name!r}: tls.key {tls.key} {problem} "
                                  f"(tls.cert {tls.cert})")
    digest = fingerprint(cert)
    if tls.sha256 is not None and tls.sha256 != digest:
        raise ProvisionInputError(
            f"device {name!r}: tls.cert {tls.cert} has sha256 {digest[:16]}..., but tls.sha256 "
            f"is {tls.sha256[:16]}...; pin the certificate you mean")
    now = now or dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise ProvisionInputError(
            f"device {name!r}: tls.cert {tls.cert} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; give a new pair, or remove the [device.tls] "
            "table so that provisioning makes one")
    return AgentCertificate(key_pem, cert_pem, tls, new_pin=False)


def _read(device: str, field: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ProvisionInputError(f"device {device!r}: cannot read {field} {path}: "
                                  f"{exc.strerror or exc}") from None


def agent_certificate(device: Device, report: Callable[[str], None],
                      now: dt.datetime | None = None) -> AgentCertificate:
    """The pair the agent will serve: the one ``[device.tls]`` names, else the one made for
    the device before (while valid for its address for `RENEW_DAYS` more), else a new one."""
    if device.tls is not None:
        return check_given(device, now)
    now = now or dt.datetime.now(dt.UTC)
    cert_path, key_path = default_paths(device)
    reused = _reusable(device, cert_path, key_path, now)
    if reused is not None:
        report(f"reusing the agent's TLS certificate {cert_path} (sha256 "
               f"{reused.tls.sha256 or ''})")
        return reused
    key_pem, cert_pem = generate(device.name, device.address, now)
    _write(Path(key_path).expanduser(), key_pem, 0o600)
    _write(Path(cert_path).expanduser(), cert_pem, 0o644)
    digest = fingerprint(parse_certificate(cert_pem))
    report(f"made a TLS key and certificate for {device.address} in {cert_path} (key "
           f"{key_path}, mode 600; valid {CERT_DAYS} days; sha256 {digest})")
    return AgentCertificate(key_pem, cert_pem, TlsConfig(cert_path, key_path, digest),
                            new_pin=True)


def _reusable(device: Device, cert_path: str, key_path: str,
              now: dt.datetime) -> AgentCertificate | None:
    """The pair made for the device before, if it still fits; None means make a new one."""
    try:
        cert_pem = Path(cert_path).expanduser().read_bytes()
        key_pem = Path(key_path).expanduser().read_bytes()
        cert = parse_certificate(cert_pem)
    except (OSError, ValueError):
        return None
    fits = (pair_problem(key_pem, cert_pem) is None
            and cert.not_valid_after_utc - now > dt.timedelta(days=RENEW_DAYS)
            and normal_host(device.address) in certificate_names(cert))
    if not fits:
        return None
    return AgentCertificate(key_pem, cert_pem,
                            TlsConfig(cert_path, key_path, fingerprint(cert)), new_pin=True)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``, its mode set before any byte is written (the key is a
    secret); the folder is made private like the token's."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # O_CREAT's mode is not applied to an existing file
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ProvisionError(f"cannot write {path}: {exc.strerror or exc}") from None
