"""`joulefarm devices check|add`: real local agents checked; the registry edited safely."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import REPO, run_cli


def test_check_starts_local_agents_and_reports_each(tmp_path: Path) -> None:
    token = tmp_path / "t.token"
    token.write_text("nope")
    devices = tmp_path / "devices.toml"
    devices.write_text((REPO / "tests/fixtures/suites/devices_two.toml").read_text() + f'''
[[device]]
name = "remote-down"
platform = "linux"
address = "127.0.0.1"
port = 9
token_file = "{token}"

[device.meter]
kind = "rapl"
''')
    proc = run_cli("devices", "check", "--devices", str(devices), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    rows = {r["device"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"sim-a", "sim-b", "remote-down"}
    for name in ("sim-a", "sim-b"):
        assert rows[name]["healthy"] and rows[name]["authenticated"] and rows[name]["meter_present"]
        assert len(rows[name]["fingerprint"]) == 16 and "simulated" in rows[name]["meter"]
    assert not rows["remote-down"]["reachable"] and "UNAVAILABLE" in rows["remote-down"]["problem"]
    assert "nope" not in proc.stdout + proc.stderr


def test_add_appends_validated_entries_and_keeps_the_file_on_error(tmp_path: Path) -> None:
    devices = tmp_path / "devices.toml"
    original = "# our lab\n" + (REPO / "tests/fixtures/suites/devices_two.toml").read_text()
    devices.write_text(original)
    bad = run_cli("devices", "add", "pi", "--platform", "raspberry-pi", "--address", "300.1.1.1",
                  "--port", "50051", "--meter", "ina2xx", "--devices", str(devices))
    assert bad.returncode == 2 and "address: '300.1.1.1' is not a valid" in bad.stderr
    assert devices.read_text() == original
    dup = run_cli("devices", "add", "sim-a", "--platform", "sim", "--address", "127.0.0.1",
                  "--local", "--profile", "rpi4", "--devices", str(devices))
    assert dup.returncode == 2 and "duplicate device name 'sim-a'" in dup.stderr
    good = run_cli("devices", "add", "pi", "--platform", "raspberry-pi", "--address",
                   "192.0.2.7", "--port", "50051", "--meter", "ina2xx", "--tag", "lab",
                   "--devices", str(devices))
    assert good.returncode == 0, good.stderr
    text = devices.read_text()
    assert text.startswith(original) and 'name = "pi"' in text and 'tags = ["lab"]' in text
    listed = run_cli("devices", "list", "--devices", str(devices), "--format", "json")
    assert [d["name"] for d in json.loads(listed.stdout)] == ["sim-a", "sim-b", "pi"]
