"""The agent on the Pythons devices actually have, provisioned for real.

Each device is this machine reached over the real sshd on loopback, with another CPython as its
``ssh.python``: 3.10 (stock JetPack 6, Ubuntu 22.04) and 3.13 (Raspberry Pi OS trixie). The
same abi3 wheel goes onto both; the venv is a plain one (no system site packages), so pip fetches
exactly what provisioning asks for, and the test lists what it holds. Then a layers job from
this controller (Python 3.11+) runs on each agent and lands in DuckDB.

The interpreters come from ``~/.pyenv/versions`` (this machine kind has them) or from
``JOULEFARM_DEVICE_PYTHONS`` (``3.10=/path/python3.10,3.13=/path/python3.13``). A missing
one skips its tests, which fails a CI run (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.provision.requirements import HEAVY_DISTRIBUTIONS
from tests.helpers.pythons import find_python
from tests.helpers.sshd import PASSPHRASE, SshServer, device_entry, free_port

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

DEVICE_PYTHONS = ("3.10", "3.13")
_MAIN = "from controller.cli.app import main; main()\n"
# What the agent's venv must hold (pip's names, lower case): the agent and its requirements.
EXPECTED = {"joulefarm", "grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf",
            "numpy", "flatbuffers", "ai-edge-litert"}


@dataclass
class Provisioned:
    version: str
    name: str
    root: Path
    devices_file: Path
    prefix: Path
    output: str

    @property
    def venv_python(self) -> Path:
        return self.prefix / "venv/bin/python"


def _devices(root: Path, name: str, server: SshServer, python: Path) -> Path:
    path = root / "devices.toml"
    path.write_text(device_entry(
        server, name=name, platform="linux", agent_port=free_port(),
        token_file=root / f"{name}.token", known_hosts=root / "known_hosts", python=str(python),
        prefix=root / "device-home/.joulefarm", ssh_extra='service = "supervised"\n'))
    return path


@pytest.fixture(scope="module", params=DEVICE_PYTHONS, ids=lambda v: f"python{v}")
def provisioned(request: pytest.FixtureRequest, sshd_server: SshServer, agent_wheel: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    version: str = request.param
    python = find_python(version)
    if python is None or not python.is_file():
        pytest.skip(f"no CPython {version} here (pyenv's ~/.pyenv/versions/{version}.*, or "
                    f"JOULEFARM_DEVICE_PYTHONS={version}=/path/python{version})")
    name = "py" + version.replace(".", "")
    root = tmp_path_factory.mktemp(name)
    devices_file = _devices(root, name, sshd_server, python)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    env["JOULEFARM_SSH_PASSPHRASE"] = PASSPHRASE
    prefix = root / "device-home/.joulefarm"
    done = subprocess.run(
        [sys.executable, "-c", _MAIN, "provision", name, "--devices", str(devices_file),
         "--wheel", str(agent_wheel), "--trust-new-host"],
        capture_output=True, text=True, timeout=900, env=env)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        yield Provisioned(version, name, root, devices_file, prefix, done.stdout)
    finally:
        if (prefix / "stop-agent.sh").exists():
            subprocess.run(["sh", str(prefix / "stop-agent.sh")], timeout=60, check=False)


def test_the_device_python_runs_the_agent(provisioned: Provisioned) -> None:
    out = provisioned.output
    assert f"device: Linux x86_64, Python {provisioned.version}." in out, out
    assert "abi3" in out  # the one wheel for every Python >= 3.10
    assert f"[{provisioned.name}] healthy directly at 127.0.0.1:" in out, out
    version = subprocess.run([str(provisioned.venv_python), "-c",
                              "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    assert version.strip() == provisioned.version


def test_the_venv_holds_the_agent_and_its_requirements_only(provisioned: Provisioned) -> None:
    listed = subprocess.run([str(provisioned.venv_python), "-m", "pip", "list", "--format",
                             "json", "--disable-pip-version-check"],
                            capture_output=True, text=True, check=True, timeout=120).stdout
    names = {entry["name"].lower().replace("_", "-") for entry in json.loads(listed)}
    assert names >= EXPECTED, EXPECTED - names
    heavy = names & set(HEAVY_DISTRIBUTIONS)
    assert not heavy, f"controller-side packages on the device: {sorted(heavy)}"
    # Nothing the agent's own metadata asks for is missing: no pip warnings on the device.
    check = subprocess.run([str(provisioned.venv_python), "-m", "pip", "check",
                            "--disable-pip-version-check"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((provisioned.prefix / "install.json").read_text())
    assert manifest["wheel"].endswith(".whl") and "-abi3-" in manifest["wheel"]


def test_a_layers_job_from_the_controller_lands_in_duckdb(provisioned: Provisioned) -> None:
    import duckdb

    from controller.farm.runner import run_suite

    suite = provisioned.root / "suite.toml"
    suite.write_text(f'schema_version = 1\nname = "pythons"\n[select]\n'
                     f'names = ["{provisioned.name}"]\n[measure]\nmode = "layers"\n'
                     'min_duration_s = 0.05\nidle_duration_s = 0.05\n'
                     '[[model]]\nname = "mlp"\nrecipe = "mlp"\n')
    db = provisioned.root / "results.duckdb"
    report = run_suite(provisioned.devices_file, suite, db)
    assert report.ok, report.errors()
    con = duckdb.connect(str(db), read_only=True)
    try:
        python, machine = con.execute(
            "SELECT python_version, machine FROM devices WHERE name = ?",
            [provisioned.name]).fetchone() or (None, None)
        layers = con.execute(
            "SELECT count(*), count(DISTINCT layer_index) FROM layer_measurements "
            "JOIN runs USING (run_id) WHERE runs.device_name = ? AND runs.mode = 'layers'",
            [provisioned.name]).fetchone()
    finally:
        con.close()
    assert str(python).startswith(provisioned.version + "."), python
    assert machine == "x86_64"
    assert layers is not None and layers[0] > 0 and layers[1] >= 2
