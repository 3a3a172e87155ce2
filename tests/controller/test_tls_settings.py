"""devices.toml's TLS and delegate settings: `[device.tls]`, `insecure_plaintext`, `delegates`;
how they reach the agent's command line, how provisioning makes, reuses and pins a certificate
(devices.toml edited in place), and a sweep whose delegate the device does not allow."""

from __future__ import annotations

import datetime as dt
import shlex
import stat
from dataclasses import replace
from pathlib import Path

import duckdb
import pytest

from agent.__main__ import build_parser
from controller.config.registry import (
    Device,
    MeterConfig,
    RegistryError,
    SshConfig,
    TlsConfig,
    load_registry,
    parse_registry,
)
from controller.config.registry_edit import set_device_tls
from controller.farm.agent_command import AgentPlace, agent_command
from controller.farm.runner import run_suite
from controller.farm.sweep import TRANSIENT_CODES
from controller.farm.sweep_record import check_same_devices, devices_from_json, devices_json
from controller.provision import certs
from controller.provision.errors import ProvisionInputError
from controller.provision.install import RemoteLayout
from controller.provision.provisioner import check_provisionable
from controller.provision.service import run_script
from joulefarm.errors import InputError

HEAD = """\
schema_version = 1

[[device]]
name = "pi"
platform = "raspberry-pi"
address = "192.0.2.10"
port = 50051
token_file = "/t/pi.token"
"""
METER = """
[device.meter]
kind = "ina2xx"
"""


def parse(device_lines: str = "", tables: str = "") -> Device:
    (device,) = parse_registry(HEAD + device_lines + METER + tables, "devices.toml").devices
    return device


def error_of(device_lines: str = "", tables: str = "") -> str:
    with pytest.raises(RegistryError) as err:
        parse(device_lines, tables)
    return str(err.value)


# -- the registry -----------------------------------------------------------------------------

def test_tls_delegates_and_plaintext_keys_and_their_defaults() -> None:
    plain = parse()
    assert (plain.tls, plain.insecure_plaintext, plain.delegates) == (None, False, ())
    full = parse('delegates = ["/usr/lib/libedgetpu.so.1", "/opt/d.so"]\n',
                 '[device.tls]\ncert = "~/.config/joulefarm/pi.agent.crt"\nkey = "k.key"\n'
                 'sha256 = "' + ":".join(["AB"] * 32) + '"\n')
    assert full.delegates == ("/usr/lib/libedgetpu.so.1", "/opt/d.so")
    assert full.tls == TlsConfig("~/.config/joulefarm/pi.agent.crt", "k.key", "ab" * 32)
    assert parse("insecure_plaintext = true\n").insecure_plaintext


@pytest.mark.parametrize(("device_lines", "tables", "message"), [
    ('delegates = "/x.so"\n', "", "9: device[0].delegates: expected an array, got string"),
    ("delegates = [1]\n", "", "9: device[0].delegates[0]: expected a string, got integer 1"),
    ('delegates = ["libedgetpu.so"]\n', "", "9: device[0].delegates[0]: 'libedgetpu.so' is not "
                                            "an absolute path on the device"),
    ('insecure_plaintext = "yes"\n', "", "9: device[0].insecure_plaintext: expected a boolean"),
    ("insecure_plaintext = true\n", '[device.tls]\ncert = "c.crt"\n',
     "9: device[0].insecure_plaintext: contradicts the [device.tls] table of this device"),
    ("", "[device.tls]\n", "12: device[0].tls.cert: missing required key"),
    ("", '[device.tls]\ncert = "c"\nsha256 = "abc"\n',
     "14: device[0].tls.sha256: 'abc' is not a SHA-256 fingerprint"),
    ("", '[device.tls]\ncert = "c"\nca = "x"\n', "14: device[0].tls.ca: unknown key"),
    ("local = true\n", '[device.tls]\ncert = "c"\n', "13: device[0].tls: only for remote devices"),
])
def test_tls_delegates_and_plaintext_keys_are_validated(device_lines: str, tables: str,
                                                        message: str) -> None:
    assert error_of(device_lines, tables).startswith(f"devices.toml:{message}")


def test_sweeps_keep_tls_and_delegates_in_the_device_definition(tmp_path: Path) -> None:
    device = parse('delegates = ["/opt/d.so"]\n',
                   '[device.tls]\ncert = "pins/pi.crt"\nsha256 = "' + "a" * 64 + '"\n')
    (back,) = devices_from_json(devices_json([device], tmp_path))
    assert back == replace(device, tls=TlsConfig(str(tmp_path / "pins/pi.crt"), None, "a" * 64))
    # A definition recorded before these settings existed reads as a device without them.
    old = devices_json([device], tmp_path).replace('"delegates": ["/opt/d.so"], ', "")
    old = old.replace(', "tls": {"cert": "' + str(tmp_path / "pins/pi.crt")
                      + '", "key": null, "sha256": "' + "a" * 64 + '"}', "")
    (older,) = devices_from_json(old)
    assert (older.tls, older.delegates) == (None, ())
    with pytest.raises(InputError, match=r"tls.cert"):
        check_same_devices([back], {"pi": replace(device, tls=TlsConfig("other.crt"))},
                           tmp_path, sweep_id="s", where=tmp_path / "devices.toml")


# -- the agent's command line -----------------------------------------------------------------

def test_delegates_and_tls_reach_the_agents_command_line() -> None:
    device = Device(name="pi", platform="raspberry-pi", address="192.0.2.10", port=50051,
                    meter=MeterConfig(kind="sim", profile="rpi4"), token_file="/t/pi.token",
                    ssh=SshConfig(user="pi"), delegates=("/opt/a.so", "/opt/b b.so"))
    local = agent_command(device, AgentPlace("python3", "127.0.0.1", 0, "/t", "/c"))
    ns = build_parser().parse_args(local[3:])
    assert ns.allow_delegate == ["/opt/a.so", "/opt/b b.so"]
    assert ns.tls_cert is None and ns.tls_key is None  # local agents: plaintext on loopback
    layout = RemoteLayout("/home/pi/.joulefarm")
    plain = run_script(device, layout)
    assert "--tls-cert" not in plain
    pinned = run_script(replace(device, tls=TlsConfig("/c/pi.crt", "/c/pi.key")), layout)
    exec_line = next(line for line in pinned.splitlines() if line.startswith("exec "))
    ns = build_parser().parse_args(shlex.split(exec_line)[4:])
    assert (str(ns.tls_cert), str(ns.tls_key)) == (layout.tls_cert, layout.tls_key)
    assert ns.allow_delegate == ["/opt/a.so", "/opt/b b.so"]


# -- certificates: made, reused, brought ------------------------------------------------------

def remote(tmp_path: Path, **changes: object) -> Device:
    base = Device(name="pi", platform="raspberry-pi", address="192.0.2.10", port=50051,
                  meter=MeterConfig(kind="ina2xx"), token_file=str(tmp_path / "cfg/pi.token"),
                  ssh=SshConfig(user="pi"))
    return replace(base, **changes)


def test_a_certificate_is_made_beside_the_token_and_reused(tmp_path: Path) -> None:
    events: list[str] = []
    made = certs.agent_certificate(remote(tmp_path), events.append)
    assert made.new_pin and made.tls.cert == str(tmp_path / "cfg/pi.agent.crt")
    key_file = Path(made.tls.key or "")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes() == made.key_pem
    cert = certs.parse_certificate(made.cert_pem)
    assert certs.certificate_names(cert) == ("192.0.2.10",)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=824)
    assert made.tls.sha256 == certs.fingerprint(cert)
    assert made.key_pem.decode() not in " ".join(events)
    again = certs.agent_certificate(remote(tmp_path), events.append)
    assert again.cert_pem == made.cert_pem and "reusing" in events[-1]
    # Another address: the old certificate does not name it, a new one is made.
    moved = certs.agent_certificate(remote(tmp_path, address="pi.lab.example.org"),
                                    events.append)
    assert moved.cert_pem != made.cert_pem
    assert certs.certificate_names(certs.parse_certificate(moved.cert_pem)) == (
        "pi.lab.example.org",)


def test_a_brought_pair_is_checked_before_anything_runs(tmp_path: Path) -> None:
    key, cert = certs.generate("pi", "192.0.2.10")
    other_key, _ = certs.generate("pi", "192.0.2.10")
    (tmp_path / "pi.crt").write_bytes(cert)
    (tmp_path / "pi.key").write_bytes(key)
    (tmp_path / "other.key").write_bytes(other_key)
    good = remote(tmp_path, tls=TlsConfig(str(tmp_path / "pi.crt"), str(tmp_path / "pi.key")))
    check_provisionable(good)
    brought = certs.agent_certificate(good, print)
    assert not brought.new_pin and brought.cert_pem == cert
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    old_key, old_cert = certs.generate("pi", "192.0.2.10", now=past, days=30)
    (tmp_path / "old.crt").write_bytes(old_cert)
    (tmp_path / "old.key").write_bytes(old_key)
    cases = [
        (TlsConfig(str(tmp_path / "pi.crt")), r"\[device.tls\] has no key"),
        (TlsConfig(str(tmp_path / "pi.crt"), str(tmp_path / "other.key")),
         f"tls.key {tmp_path / 'other.key'} is not the private key of the certificate"),
        (TlsConfig(str(tmp_path / "nope.crt"), str(tmp_path / "pi.key")),
         "cannot read tls.cert .*nope.crt: No such file"),
        (TlsConfig(str(tmp_path / "pi.key"), str(tmp_path / "pi.key")),
         "not a PEM certificate"),
        (TlsConfig(str(tmp_path / "pi.crt"), str(tmp_path / "pi.key"), "0" * 64),
         "has sha256 .* but tls.sha256 is 0000"),
        (TlsConfig(str(tmp_path / "old.crt"), str(tmp_path / "old.key")), "expired on"),
    ]
    for tls, message in cases:
        with pytest.raises(ProvisionInputError, match=message):
            check_provisionable(remote(tmp_path, tls=tls))


# -- pinning in devices.toml ------------------------------------------------------------------

FILE = """\
# the farm
schema_version = 1

[[device]]
name = "a"   # first
platform = "linux"
address = "192.0.2.1"
port = 50051

[device.meter]
kind = "sim"
profile = "host"

# the second one, a Pi
[[device]]
name = "b"
platform = "raspberry-pi"
address = "192.0.2.2"
port = 50051

[device.meter]
kind = "ina2xx"
[device.ssh]
user = "pi"  # keep me
"""


def test_pinning_edits_only_the_devices_tls_table(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(FILE)
    path.chmod(0o640)
    first = TlsConfig("/c/a.crt", "/c/a.key", "1" * 64)
    set_device_tls(path, "a", first)
    text = path.read_text()
    assert text.startswith(FILE.split("# the second one")[0].rstrip("\n") + "\n\n[device.tls]")
    assert text.endswith("# the second one" + FILE.split("# the second one")[1])
    assert load_registry(path).get("a").tls == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    # Again, with another pin: replaced in place, nothing else moves; the same pin twice gives
    # the same file.
    second = TlsConfig("/c/a2.crt", "/c/a2.key", "2" * 64)
    set_device_tls(path, "a", second)
    assert path.read_text() == text.replace("/c/a.", "/c/a2.").replace("1" * 64, "2" * 64)
    set_device_tls(path, "b", first)
    once = path.read_text()
    set_device_tls(path, "b", first)
    assert path.read_text() == once and once.endswith(
        'user = "pi"  # keep me\n\n[device.tls]\n'
        "# The agent's certificate: the only one this controller trusts for the device.\n"
        'cert = "/c/a.crt"\nkey = "/c/a.key"\nsha256 = "' + "1" * 64 + '"\n')
    assert [d.tls for d in load_registry(path)] == [second, first]


def test_a_tls_table_written_inline_is_left_for_the_user(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(FILE.replace('port = 50051\n\n[device.meter]\nkind = "sim"',
                                 'port = 50051\ntls = { cert = "x.crt" }\n\n[device.meter]\n'
                                 'kind = "sim"', 1))
    before = path.read_text()
    with pytest.raises(RegistryError, match=r"cannot pin the TLS certificate of 'a' "
                                            r"automatically; give it a \[device.tls\] table "
                                            r'with cert = "/c/a.crt", key'):
        set_device_tls(path, "a", TlsConfig("/c/a.crt", "/c/a.key", "1" * 64))
    assert path.read_text() == before


# -- delegates: only those the device allows --------------------------------------------------

def test_a_delegate_the_device_does_not_allow_fails_its_job_without_retries(
        tmp_path: Path) -> None:
    allowed = tmp_path / "allowed_delegate.so"
    allowed.write_bytes(b"not really a shared library")
    devices = tmp_path / "devices.toml"
    devices.write_text(f'schema_version = 1\n[[device]]\nname = "host"\nplatform = "linux"\n'
                       f'address = "127.0.0.1"\nlocal = true\ndelegates = ["{allowed}"]\n'
                       '[device.meter]\nkind = "sim"\nprofile = "host"\n')
    suite = tmp_path / "suite.toml"
    suite.write_text('schema_version = 1\nname = "d"\n[measure]\nmode = "whole"\n'
                     'min_duration_s = 0.05\nidle_duration_s = 0.02\n'
                     f'[matrix]\ndelegate_path = ["{allowed}", "/opt/other/libdelegate.so"]\n'
                     '[[model]]\nname = "mlp"\nrecipe = "mlp"\n')
    stages: list[str] = []
    report = run_suite(devices, suite, tmp_path / "r.duckdb",
                       progress=lambda device, stage, *rest: stages.append(stage))
    assert "retrying" not in stages
    errors = report.errors()
    denied = [e for e in errors if "PERMISSION_DENIED" in e]
    assert len(denied) == 1, errors
    assert "delegate '/opt/other/libdelegate.so' is not allowed on host" in denied[0]
    # The allowed one got past the check (and then failed to load: it is no library).
    assert len(errors) == 2 and "PERMISSION_DENIED" not in "".join(set(errors) - set(denied))
    con = duckdb.connect(str(tmp_path / "r.duckdb"), read_only=True)
    assert con.execute("SELECT status, count(*) FROM jobs GROUP BY ALL").fetchall() == [
        ("failed", 2)]
    assert "PERMISSION_DENIED" not in {code.name for code in TRANSIENT_CODES}
