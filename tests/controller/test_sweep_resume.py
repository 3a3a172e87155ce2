"""A sweep keeps what it needs to be resumed: its resolved suite, the device definitions it ran
with and its models' bytes, in the database. ``resume`` uses them from any directory; a devices
file changed since does not leak in, and one given explicitly that differs is refused.

Real local agents (processes, gRPC on loopback); the controller "crashes" in the middle of the
sweep by an exception from its progress display, as any bug would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from controller.farm.runner import resume, run_suite
from controller.farm.timing import Timing
from tests.helpers import REPO, run_cli

pytestmark = pytest.mark.slow

SUITES = REPO / "tests/fixtures/suites"
FAST = Timing(heartbeat_timeout_s=10.0, retries=2, backoff_base_s=0.1, backoff_max_s=0.5,
              health_patience_s=10.0, health_poll_s=0.2)
SECRET = "s3cret-token-value"


class ControllerCrash(Exception):
    """Stands for any bug that ends the controller in the middle of a sweep."""


def crash_on_second_job(device: str, stage: str, done: int, total: int, message: str) -> None:
    if device == "sim-a" and stage == "upload" and done == 1:
        raise ControllerCrash("the controller died")


def start_then_crash(workdir: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Start a sweep from ``workdir`` with relative paths; it dies after sim-a's first job.
    Returns the sweep id."""
    workdir.mkdir()
    shutil.copy(SUITES / "fast.toml", workdir / "suite.toml")
    # sim-a names a token file (relative, as users write it): its path is kept, never the token.
    devices = (SUITES / "devices_two.toml").read_text().replace(
        'name = "sim-a"', 'name = "sim-a"\ntoken_file = "sim-a.token"')
    (workdir / "devices.toml").write_text(devices)
    (workdir / "sim-a.token").write_text(SECRET)
    monkeypatch.chdir(workdir)
    # This checkout is not installed where its .pth says: agents and the CLI started from
    # another directory find its packages as an installed joulefarm's would be found.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    with pytest.raises(ControllerCrash):
        run_suite(Path("devices.toml"), Path("suite.toml"), db, progress=crash_on_second_job,
                  timing=FAST)
    con = duckdb.connect(str(db), read_only=True)
    (sweep_id,) = con.execute("SELECT sweep_id FROM sweeps").fetchone() or ("",)
    left = con.execute("SELECT count(*) FROM jobs WHERE status <> 'done'").fetchone()
    con.close()
    assert left is not None and left[0] >= 1
    return str(sweep_id)


def test_resume_from_elsewhere_uses_what_the_sweep_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "r.duckdb"
    first = tmp_path / "first"
    sweep_id = start_then_crash(first, db, monkeypatch)
    con = duckdb.connect(str(db), read_only=True)
    (status, stored) = con.execute("SELECT status, device_definitions FROM sweeps").fetchone() \
        or ("", "")
    con.close()
    assert status == "interrupted"  # not "done": sim-a's jobs are still to run
    assert SECRET not in str(stored) and str(first / "sim-a.token") in str(stored)

    # The devices file changes meanwhile: sim-a now says another meter profile.
    changed = (first / "devices.toml").read_text().replace('profile = "rpi4"',
                                                           'profile = "jetson-orin-nano"')
    (first / "devices.toml").write_text(changed)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # Given explicitly, a definition that differs is refused, naming the device and the field.
    refused = run_cli("sweep", "resume", sweep_id, "--devices", str(first / "devices.toml"),
                      "--db", str(db), cwd=elsewhere, timeout=120)
    assert refused.returncode == 2, refused.stderr
    message = " ".join(refused.stderr.split())
    assert "'sim-a'" in message and "meter.profile" in message, message
    assert "'jetson-orin-nano'" in message and "'rpi4'" in message, message

    # Resumed from another directory (no suite or devices file there), with the stored ones.
    monkeypatch.chdir(elsewhere)
    report = resume(sweep_id, db, timing=FAST)
    assert report.ok, report.errors()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM sweeps").fetchone() == ("done",)
    assert con.execute("SELECT status, count(*) FROM jobs GROUP BY ALL").fetchall() == [
        ("done", 4)]
    assert con.execute("SELECT count(DISTINCT job_id), count(*) FROM runs").fetchone() == (4, 4)
    profiles = con.execute("SELECT device_name, meter_profile, count(*) FROM runs "
                           "GROUP BY ALL ORDER BY 1").fetchall()
    assert profiles == [("sim-a", "rpi4", 2), ("sim-b", "jetson-orin-nano", 2)]
    suite = json.loads(con.execute("SELECT suite_definition FROM sweeps").fetchone()[0])
    assert suite["name"] == "fast" and suite["path"] == str(first / "suite.toml")
