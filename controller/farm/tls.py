"""The controller's side of the agent's TLS: the certificate pinned in devices.toml, checked
before anything connects, and gRPC's handshake failures told as one line naming the device.

A provisioned agent serves a certificate made for it (``controller.provision.certs``) or one
the user brought; ``[device.tls] cert`` names the copy on the controller, and that certificate
is the channel's only root: the controller trusts nothing else for the device, no public CA,
no other device's certificate. Plaintext is for loopback (local agents, SSH tunnels) and for
devices whose entry opts out explicitly (``insecure_plaintext = true``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from controller.config.registry import Device
from controller.farm.client import AgentClient
from joulefarm.errors import InputError

__all__ = ["PinnedCert", "PinnedCertError", "agent_client", "agent_transport",
           "certificate_names", "fingerprint", "is_loopback", "normal_host", "parse_certificate",
           "pinned_cert", "plaintext_problem", "tls_failure"]


class PinnedCertError(InputError):
    """A device's pinned certificate cannot be used (unreadable, replaced, expired), or the
    device would be reached in plaintext without opting out: nothing connects."""


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER bytes, 64 lowercase hex digits."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def parse_certificate(pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM file; ``ValueError`` when there is none."""
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("not a PEM certificate (no BEGIN CERTIFICATE line)")
    return x509.load_pem_x509_certificate(pem)


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    """The host names and IP addresses a certificate is for: its subjectAltName entries, or
    its common name when it has none (what gRPC checks the server name against)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return tuple(normal_host(str(a.value)) for a in common)
    dns = san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    return tuple(normal_host(n) for n in dns) + tuple(str(ip) for ip in ips)


def normal_host(host: str) -> str:
    """Host names compare case-insensitively and without a final dot; IPs in one spelling."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return host.lower().rstrip(".")


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves the machine."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address.lower().rstrip(".") == "localhost"


def _host_of(target: str) -> str:
    """The host of a gRPC target, ``host:port`` or ``[v6]:port``."""
    if target.startswith("["):
        return target[1:].split("]", 1)[0]
    return target.rsplit(":", 1)[0]


@dataclass(frozen=True)
class PinnedCert:
    """A device's pinned certificate, read and checked (``pinned_cert``)."""

    device: str
    path: str
    """As devices.toml writes it."""
    pem: bytes
    sha256: str
    names: tuple[str, ...]
    not_after: dt.datetime
    # The name the agent is checked against when the address dialled is not one the
    # certificate names: the device's address if the certificate names it, else its first name.
    preferred_name: str

    @property
    def label(self) -> str:
        return f"{self.path}, sha256 {self.sha256[:16]}..."

    def server_name(self, target: str) -> str | None:
        """``ssl_target_name_override`` for ``target``: None when the certificate names the
        host dialled; else a name it has (an SSH tunnel's 127.0.0.1, a certificate made for a
        host name while devices.toml has the IP). The pin, not the name, is what is trusted:
        no other certificate chains to this root whatever name it carries."""
        if normal_host(_host_of(target)) in self.names or not self.preferred_name:
            return None
        return self.preferred_name


def pinned_cert(device: Device, now: dt.datetime | None = None) -> PinnedCert:
    """The certificate ``[device.tls]`` pins, once it is readable, is the one its ``sha256``
    names (when given) and is valid now; ``PinnedCertError`` naming the device otherwise."""
    assert device.tls is not None
    tls, name = device.tls, device.name
    path = Path(tls.cert).expanduser()
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise PinnedCertError(f"device {name!r}: cannot read tls.cert {tls.cert}: "
                              f"{exc.strerror or exc}") from None
    try:
        cert = parse_certificate(pem)
    except ValueError as exc:
        raise PinnedCertError(f"device {name!r}: tls.cert {tls.cert}: {exc}") from None
    digest = fingerprint(cert)
    if tls.sha256 is not None and digest != tls.sha256:
        raise PinnedCertError(
            f"device {name!r}: tls.cert {tls.cert} is not the certificate devices.toml pins "
            f"(its sha256 is {digest[:16]}..., tls.sha256 is {tls.sha256[:16]}...); restore the "
            f"file, or run `joulefarm provision {name}` to pin a new one")
    now = now or dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        raise PinnedCertError(
            f"device {name!r}: the agent's TLS certificate {tls.cert} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; remove [device.tls] and run "
            f"`joulefarm provision {name}` to make a new one")
    if cert.not_valid_before_utc > now:
        raise PinnedCertError(
            f"device {name!r}: the agent's TLS certificate {tls.cert} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; is this machine's clock right?")
    names = certificate_names(cert)
    address = normal_host(device.address)
    preferred = address if address in names else (names[0] if names else "")
    return PinnedCert(name, tls.cert, pem, digest, names, cert.not_valid_after_utc, preferred)


def plaintext_problem(device: Device) -> str | None:
    """Why ``device``'s agent may not be reached in plaintext, or None when it may: the token
    would cross the network in clear."""
    tunnel = device.ssh is not None and device.ssh.tunnel
    if (device.local or device.tls is not None or device.insecure_plaintext or tunnel
            or is_loopback(device.address)):
        return None
    return (f"device {device.name!r}: its agent at {device.address} would be reached in "
            "plaintext (no [device.tls], no SSH tunnel), so its token would cross the network "
            f"in clear; run `joulefarm provision {device.name}` (it sets up TLS), add a "
            "[device.tls] table with the agent's certificate, set `tunnel = true` under "
            "[device.ssh], or, on a network you trust, set `insecure_plaintext = true`")


def agent_transport(device: Device) -> PinnedCert | None:
    """The pinned certificate to reach ``device``'s agent with, or None for plaintext (where
    that is allowed); ``PinnedCertError`` otherwise. Call before connecting anything."""
    if device.tls is not None:
        return pinned_cert(device)
    problem = plaintext_problem(device)
    if problem is not None:
        raise PinnedCertError(problem)
    return None


def agent_client(device: Device, target: str, token: str, pin: PinnedCert | None
                 ) -> AgentClient:
    """A client for ``device``'s agent at ``target``: over TLS with ``pin`` as the only root
    when given, in plaintext otherwise."""
    if pin is None:
        return AgentClient(device.name, target, token)
    return AgentClient(device.name, target, token, root_certificates=pin.pem,
                       server_name=pin.server_name(target))


# gRPC reports a failed handshake as UNAVAILABLE with BoringSSL's reason in the details.
_EXPIRED = "certificate has expired"
_UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED", "Hostname Verification Check failed")
_NOT_TLS = "WRONG_VERSION_NUMBER"
_HANDSHAKE = ("handshake failed", "ssl_error", "tsi_")


def tls_failure(pin: PinnedCert | None, target: str, problem: str) -> str | None:
    """``problem`` (a gRPC status and details) told in one line naming the device when it is a
    failed TLS handshake with a pinned agent; None for any other problem."""
    if pin is None:
        return None
    name = pin.device
    again = f"run `joulefarm provision {name}` to give the agent its pinned certificate again"
    if _EXPIRED in problem:
        return (f"{name}: the agent at {target} serves an expired TLS certificate "
                f"(devices.toml pins {pin.label}); {again}")
    if any(marker in problem for marker in _UNTRUSTED):
        return (f"{name}: the agent's TLS certificate does not match the one pinned in "
                f"devices.toml ({pin.label}): another device's agent at {target}, or one "
                f"given another certificate; {again}")
    if _NOT_TLS in problem:
        return (f"{name}: the agent at {target} does not speak TLS, but devices.toml pins a "
                f"certificate for it ({pin.label}); {again}")
    lowered = problem.lower()
    if any(marker in lowered for marker in _HANDSHAKE):
        return f"{name}: the TLS handshake with the agent at {target} failed: {problem}"
    return None
