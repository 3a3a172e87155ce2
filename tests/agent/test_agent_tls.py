"""Optional TLS on the agent: a client that trusts the certificate gets through; a plaintext
client does not."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.server import AgentConfig, build_server
from controller.farm.client import AgentCallError, AgentClient


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
