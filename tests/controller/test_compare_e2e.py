"""An end-to-end night: two sweeps on the local simulated farm, the second with one op type 20%
dearer on one device (the sim meter's ``op_energy_scale``); ``joulefarm compare`` exits 1 and
names that op's layers on that device, and the scheduled sweep's ``--detect-changes`` records
them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from agent.local import build_recipe
from controller.results_frames import open_results
from joulefarm.tflite.parse import read_layers
from tests.helpers import REPO, run_cli

pytestmark = pytest.mark.slow

# Five repetitions a night: on a shared machine a layer's latency moves by tens of percent
# between runs, and the test must see a 20% step through it.
SUITE = """
schema_version = 1
name = "nightly"

[select]
names = ["rpi4-sim", "host"]

[measure]
mode = "layers"
min_layer_duration_s = 0.02
idle_duration_s = 0.2
repetitions = 5

[[model]]
name = "tiny_cnn"
recipe = "tiny_cnn"
seed = 0
"""
DEARER_OP = "CONV_2D"


def _dearer(devices: str) -> str:
    """The demo farm, with rpi4-sim's CONV_2D layers drawing 20% more power."""
    anchor = 'profile = "rpi4"\n'
    assert anchor in devices
    return devices.replace(
        anchor, anchor + f"options = {{ op_energy_scale = {{ {DEARER_OP} = 1.2 }} }}\n")


def test_compare_names_the_layers_of_the_op_that_became_dearer(tmp_path: Path) -> None:
    suite = tmp_path / "nightly.toml"
    suite.write_text(SUITE)
    plain = (REPO / "devices.toml").read_text()
    (tmp_path / "night1.toml").write_text(plain)
    (tmp_path / "night2.toml").write_text(_dearer(plain))
    db = tmp_path / "r.duckdb"
    first = run_cli("sweep", "run", str(suite), "--devices", str(tmp_path / "night1.toml"),
                    "--db", str(db))
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli("sweep", "run", str(suite), "--devices", str(tmp_path / "night2.toml"),
                     "--db", str(db), "--detect-changes")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "change points against the previous night" in second.stdout

    before, after = open_results(db).sweeps()["sweep_id"].to_list()
    model = build_recipe("tiny_cnn", 0)
    sha = hashlib.sha256(model).hexdigest()
    assert open_results(db).model_contents([sha, "0" * 64]) == {sha: model}
    conv = {x.index for x in read_layers(model) if x.op == DEARER_OP}
    assert len(conv) >= 2

    table = run_cli("compare", before, after, "--db", str(db))
    assert table.returncode == 1, table.stdout + table.stderr
    assert "rpi4-sim" in table.stdout and DEARER_OP in table.stdout
    assert "regression beyond 5.0%" in table.stdout

    data = run_cli("compare", before, after, "--db", str(db), "--format", "json")
    assert data.returncode == 1, data.stderr
    changes = json.loads(data.stdout)["changes"]
    pi = [r for r in changes if r["device_name"] == "rpi4-sim"]
    # Power (energy per second of work) shows the step whatever the machine's load does to
    # latency; it names exactly the dearer op's layers, each about 20% up.
    power = [r for r in pi if r["metric"] == "power_w" and r["scope"] == "layer"]
    assert {r["layer_index"] for r in power} == conv, power
    assert all(r["op"] == DEARER_OP and r["direction"] == "regression" for r in power)
    assert all(1.1 < r["ratio"] < 1.3 for r in power), power
    whole = [r for r in pi if r["metric"] == "power_w" and r["scope"] == "whole"]
    assert whole and set(whole[0]["layers"]) <= conv and whole[0]["layers"], whole
    assert all(r["simulated"] for r in changes)

    # The second sweep recorded the same change points for the report.
    recorded = open_results(db).change_points([after])
    assert set(recorded.filter((recorded["device_name"] == "rpi4-sim")
                               & (recorded["metric"] == "power_w")
                               & (recorded["scope"] == "layer"))["layer_index"]) == conv
