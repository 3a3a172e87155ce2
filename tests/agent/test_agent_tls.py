"""TLS between the controller and the agent: the agent serves the certificate provisioning makes
for it (``controller.provision.certs``); the controller trusts the one devices.toml pins and
refuses any other, an expired one, and plaintext on a network address without an opt-out; an
agent given a bad certificate or key says so in one line and does not start."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.server import AgentConfig, build_server
from controller.config.registry import Device, load_registry
from controller.farm.checks import check_devices
from controller.farm.client import AgentCallError, AgentClient
from controller.farm.runner import run_suite
from controller.farm.tls import PinnedCertError, agent_client, pinned_cert, tls_failure
from controller.provision import certs

TOKEN = "tls-test-token"
SUITE = """\
schema_version = 1
name = "tls"
[measure]
mode = "whole"
min_duration_s = 0.05
idle_duration_s = 0.02
[[model]]
name = "mlp"
recipe = "mlp"
"""


def self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "joulefarm-test-agent")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def test_tls_agent(tmp_path: Path) -> None:
    key, cert = self_signed()
    config = AgentConfig(name="tls-agent", platform="sim", cache_dir=tmp_path)
    server, port, _ = build_server(config, "tok", port=0, tls=(key, cert))
    try:
        with AgentClient("tls-agent", f"localhost:{port}", "tok",
                         root_certificates=cert) as client:
            assert client.facts().device_name == "tls-agent"
        with AgentClient("tls-agent", f"localhost:{port}", "tok") as plain, \
                pytest.raises(AgentCallError) as err:
            plain.facts(timeout_s=3)
        assert err.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        server.stop(0).wait()


# -- the controller against an agent serving a provisioned certificate -----------------------

@contextmanager
def tls_agent(tmp_path: Path, name: str, key: bytes, cert: bytes) -> Iterator[int]:
    """An agent called ``name`` on 127.0.0.1 serving ``cert``; yields its port."""
    config = AgentConfig(name=name, platform="sim", cache_dir=tmp_path / f"cache-{name}")
    server, port, _ = build_server(config, TOKEN, host="127.0.0.1", port=0, tls=(key, cert))
    try:
        yield port
    finally:
        server.stop(0).wait()


def devices_file(tmp_path: Path, name: str, port: int, pinned: bytes | None,
                 address: str = "127.0.0.1", extra: str = "") -> Path:
    """A devices.toml with one remote device; ``pinned``: the certificate it pins."""
    token = tmp_path / f"{name}.token"
    token.write_text(TOKEN + "\n")
    text = (f'schema_version = 1\n[[device]]\nname = "{name}"\nplatform = "sim"\n'
            f'address = "{address}"\nport = {port}\ntoken_file = "{token}"\n{extra}'
            '[device.meter]\nkind = "sim"\nprofile = "host"\n')
    if pinned is not None:
        cert = tmp_path / f"{name}.pinned.crt"
        cert.write_bytes(pinned)
        digest = certs.fingerprint(certs.parse_certificate(pinned))
        text += f'[device.tls]\ncert = "{cert}"\nsha256 = "{digest}"\n'
    path = tmp_path / f"devices-{name}.toml"
    path.write_text(text)
    return path


def only_device(path: Path) -> Device:
    (device,) = load_registry(path).devices
    return device


def test_the_pinned_provisioned_certificate_is_trusted_by_checks_and_sweeps(
        tmp_path: Path) -> None:
    key, cert = certs.generate("pi4-lab-1", "127.0.0.1")
    assert certs.pair_problem(key, cert) is None
    with tls_agent(tmp_path, "pi4-lab-1", key, cert) as port:
        devices = devices_file(tmp_path, "pi4-lab-1", port, cert)
        (check,) = check_devices([only_device(devices)])
        assert check.healthy and check.authenticated and check.meter_present, check.problem
        suite = tmp_path / "suite.toml"
        suite.write_text(SUITE)
        report = run_suite(devices, suite, tmp_path / "r.duckdb")
        assert report.ok, report.errors()


def test_the_certificate_is_checked_against_the_devices_address(tmp_path: Path) -> None:
    """Made for the device's IP, reached through 127.0.0.1 (an SSH tunnel's port): the
    channel checks the certificate against the address it was made for."""
    key, cert = certs.generate("pi4-lab-1", "192.0.2.10")
    with tls_agent(tmp_path, "pi4-lab-1", key, cert) as port:
        device = only_device(devices_file(tmp_path, "pi4-lab-1", port, cert,
                                          address="192.0.2.10"))
        pin = pinned_cert(device)
        assert pin.server_name(f"192.0.2.10:{port}") is None
        assert pin.server_name(f"127.0.0.1:{port}") == "192.0.2.10"
        with agent_client(device, f"127.0.0.1:{port}", TOKEN, pin) as client:
            assert client.facts().device_name == "pi4-lab-1"


def test_another_devices_certificate_is_refused(tmp_path: Path) -> None:
    key, cert = certs.generate("pi4-lab-1", "127.0.0.1")
    _, other = certs.generate("pi4-lab-2", "127.0.0.1")  # same address, another device
    with tls_agent(tmp_path, "pi4-lab-1", key, cert) as port:
        devices = devices_file(tmp_path, "pi4-lab-1", port, other)
        (check,) = check_devices([only_device(devices)])
        assert not check.healthy
        assert check.problem.startswith(
            "pi4-lab-1: the agent's TLS certificate does not match the one pinned in "
            f"devices.toml ({tmp_path / 'pi4-lab-1.pinned.crt'}, sha256 "), check.problem
        suite = tmp_path / "suite.toml"
        suite.write_text(SUITE)
        report = run_suite(devices, suite, tmp_path / "r.duckdb")
        assert not report.ok
        (error,) = report.errors()
        assert "does not match the one pinned in devices.toml" in error


def test_a_replaced_certificate_file_is_refused_by_its_fingerprint(tmp_path: Path) -> None:
    _, cert = certs.generate("pi4-lab-1", "127.0.0.1")
    _, other = certs.generate("pi4-lab-1", "127.0.0.1")
    device = only_device(devices_file(tmp_path, "pi4-lab-1", 50051, cert))
    assert device.tls is not None
    Path(device.tls.cert).write_bytes(other)
    with pytest.raises(PinnedCertError, match=r"is not the certificate devices.toml pins"):
        check_devices([device])


def expired(name: str) -> tuple[bytes, bytes]:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    return certs.generate(name, "127.0.0.1", now=past, days=30)


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    key, cert = expired("pi4-lab-1")
    device = only_device(devices_file(tmp_path, "pi4-lab-1", 50051, cert))
    with pytest.raises(PinnedCertError) as err:
        check_devices([device])
    assert str(err.value).startswith(
        "device 'pi4-lab-1': the agent's TLS certificate ")
    assert "expired on" in str(err.value) and "\n" not in str(err.value)
    # The handshake refuses it too (a controller whose clock let the pin through).
    with tls_agent(tmp_path, "pi4-lab-1", key, cert) as port:
        device = only_device(devices_file(tmp_path, "pi4-lab-1", port, cert))
        pin = pinned_cert(device, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=380))
        target = f"127.0.0.1:{port}"
        with agent_client(device, target, TOKEN, pin) as client:
            problem = client.health_problem()
        assert problem is not None
        message = tls_failure(pin, target, problem)
        assert message is not None and message.startswith(
            f"pi4-lab-1: the agent at {target} serves an expired TLS certificate"), problem


def test_a_plaintext_agent_is_refused_when_a_certificate_is_pinned(tmp_path: Path) -> None:
    _, cert = certs.generate("pi4-lab-1", "127.0.0.1")
    config = AgentConfig(name="pi4-lab-1", platform="sim", cache_dir=tmp_path)
    server, port, _ = build_server(config, TOKEN, host="127.0.0.1", port=0)
    try:
        (check,) = check_devices([only_device(devices_file(tmp_path, "pi4-lab-1", port, cert))])
    finally:
        server.stop(0).wait()
    assert "does not speak TLS" in check.problem, check.problem


def test_plaintext_on_a_network_address_needs_an_opt_out(tmp_path: Path) -> None:
    devices = devices_file(tmp_path, "pi4-lab-1", 50051, None, address="192.0.2.10")
    with pytest.raises(PinnedCertError) as err:
        check_devices([only_device(devices)])
    message = str(err.value)
    assert message.startswith("device 'pi4-lab-1': its agent at 192.0.2.10 would be reached "
                              "in plaintext"), message
    assert "insecure_plaintext = true" in message
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    with pytest.raises(PinnedCertError, match="plaintext"):
        run_suite(devices, suite, tmp_path / "r.duckdb")
    # Loopback needs no TLS: the token never leaves the machine.
    config = AgentConfig(name="pi4-lab-1", platform="sim", cache_dir=tmp_path)
    server, port, _ = build_server(config, TOKEN, host="127.0.0.1", port=0)
    try:
        (check,) = check_devices([only_device(devices_file(tmp_path, "pi4-lab-1", port, None))])
    finally:
        server.stop(0).wait()
    assert check.healthy, check.problem


# -- the agent refuses a bad certificate or key in one line ----------------------------------

def serve(tmp_path: Path, cert: Path, key: Path) -> subprocess.CompletedProcess[str]:
    token = tmp_path / "agent.token"
    token.write_text(TOKEN)
    return subprocess.run(
        [sys.executable, "-m", "agent", "serve", "--name", "x", "--platform", "sim",
         "--token-file", str(token), "--cache-dir", str(tmp_path / "cache"),
         "--tls-cert", str(cert), "--tls-key", str(key)],
        capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case, message", [
    ("mismatch", "error: --tls-key {key} is not the private key of --tls-cert {cert}"),
    ("missing cert", "error: cannot read --tls-cert {cert}: No such file or directory"),
    ("missing key", "error: cannot read --tls-key {key}: No such file or directory"),
    ("cert not PEM", "error: --tls-cert {cert} is not a certificate in PEM form"),
    ("key not PEM", "error: --tls-key {key} is not a private key in PEM form"),
    ("cert and key swapped", "error: --tls-cert {cert} is not a certificate in PEM form"),
    ("key encrypted", "error: --tls-key {key} is encrypted; the agent needs it unencrypted"),
])
def test_a_bad_certificate_or_key_stops_the_agent_in_one_line(tmp_path: Path, case: str,
                                                               message: str) -> None:
    key_pem, cert_pem = certs.generate("x", "127.0.0.1")
    other_key, _ = certs.generate("y", "127.0.0.1")
    cert, key = tmp_path / "agent.crt", tmp_path / "agent.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    if case == "mismatch":
        key.write_bytes(other_key)
    elif case == "missing cert":
        cert.unlink()
    elif case == "missing key":
        key.unlink()
    elif case == "cert not PEM":
        cert.write_bytes(b"\x30\x82 DER bytes, not PEM")
    elif case == "key not PEM":
        key.write_text("hello\n")
    elif case == "cert and key swapped":
        cert, key = key, cert
    elif case == "key encrypted":
        private = serialization.load_pem_private_key(key_pem, password=None)
        key.write_bytes(private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")))
    done = serve(tmp_path, cert, key)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(message.format(cert=cert, key=key)), lines[0]
