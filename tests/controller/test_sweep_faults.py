"""Sweeps survive faults: nothing lost, nothing stored twice.

Real local agents (separate processes, gRPC on loopback) are killed, stopped and resumed;
the controller itself is killed mid-sweep and resumed. Timing constants are shrunk.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from agent.local import build_recipe
from controller.farm.runner import resume, run_suite
from controller.farm.timing import Timing
from joulefarm.tflite.parse import read_layers
from tests.helpers import REPO, run_cli

pytestmark = pytest.mark.slow

SUITES = REPO / "tests/fixtures/suites"
SUITE = SUITES / "fast.toml"
DEVICES = SUITES / "devices_two.toml"
FAST = Timing(heartbeat_timeout_s=2.0, retries=4, backoff_base_s=0.2, backoff_max_s=1.0,
              health_patience_s=30.0, health_poll_s=0.2)
LAYERS = {name: len(read_layers(build_recipe(name, 0))) for name in ("mlp", "tiny_cnn")}


def agent_pid(device: str) -> int:
    """The pid of this test process's local agent for ``device`` (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"agent" in args and b"serve" in args and device.encode() in args:
            try:
                parent = int(args[args.index(b"--exit-with-parent") + 1])
            except (ValueError, IndexError):
                continue
            if parent == os.getpid():
                return int(entry.name)
    raise LookupError(device)


def assert_exactly_once(db: Path, sweep_id: str, repetitions: int = 1) -> None:
    n = 4 * repetitions
    con = duckdb.connect(str(db), read_only=True)
    jobs = con.execute("SELECT status, count(*) FROM jobs WHERE sweep_id = ? GROUP BY ALL",
                       [sweep_id]).fetchall()
    assert jobs == [("done", n)], jobs
    runs = con.execute("SELECT count(*), count(DISTINCT job_id) FROM runs WHERE sweep_id = ?",
                       [sweep_id]).fetchone()
    assert runs == (n, n)
    per_run = con.execute(
        "SELECT r.model_name, count(l.layer_index) FROM runs r "
        "JOIN layer_measurements l USING (run_id) WHERE sweep_id = ? GROUP BY r.run_id, 1",
        [sweep_id]).fetchall()
    assert sorted(per_run) == sorted([(m, k) for m, k in LAYERS.items()] * 2 * repetitions)
    orphans = con.execute("SELECT count(*) FROM layer_measurements "
                          "WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchone()
    assert orphans == (0,)


def test_agent_killed_mid_job_is_revived_and_the_job_retried(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    killed: list[int] = []

    def progress(device: str, stage: str, done: int, total: int, message: str) -> None:
        if device == "sim-a" and stage == "layers" and not killed:
            killed.append(agent_pid("sim-a"))
            os.kill(killed[0], signal.SIGKILL)

    report = run_suite(DEVICES, SUITE, db, progress=progress, timing=FAST)
    assert killed, "the agent was never killed"
    assert report.ok, report.errors()
    assert_exactly_once(db, report.outcome.sweep_id)
    con = duckdb.connect(str(db), read_only=True)
    attempts = con.execute("SELECT max(attempts) FROM jobs WHERE device_name = 'sim-a'")
    assert attempts.fetchone()[0] >= 2


def test_agent_that_stops_answering_is_waited_for_and_retried(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    stopped: list[int] = []
    events: list[str] = []

    def progress(device: str, stage: str, done: int, total: int, message: str) -> None:
        events.append(f"{device}:{stage}")
        if device == "sim-b" and stage == "layers" and not stopped:
            stopped.append(agent_pid("sim-b"))
            os.kill(stopped[0], signal.SIGSTOP)
            # It comes back well after the heartbeat timeout, within the health patience.
            threading.Timer(5.0, os.kill, (stopped[0], signal.SIGCONT)).start()

    started = time.monotonic()
    report = run_suite(DEVICES, SUITE, db, progress=progress, timing=FAST)
    assert stopped and report.ok, report.errors()
    assert time.monotonic() - started >= 5.0
    assert "sim-b:retrying" in events  # the heartbeat timeout fired; retried once it answered
    assert_exactly_once(db, report.outcome.sweep_id)


def test_controller_killed_mid_sweep_then_resumed(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    # Enough work that the sweep still runs while a user looks at it, even when starting the
    # status command takes seconds on a busy machine: 12 jobs per device, layers looped 50 ms.
    suite = tmp_path / "fast12.toml"
    suite.write_text(SUITE.read_text().replace("timeout_s = 120", "timeout_s = 120\n"
                                               "repetitions = 6").replace(
        "min_layer_duration_s = 0.004", "min_layer_duration_s = 0.05"))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from controller.cli.app import main; main()", "sweep", "run",
         str(suite), "--devices", str(DEVICES), "--db", str(db)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    announced = None
    for line in proc.stdout:
        if line.startswith("sweep ") and " started" in line:
            announced = line.split()[1]  # the id comes first, before any job
        # "[sim-a] job 2/12 upload: ...": sim-a finished its first job and starts the second.
        if "job 2/12 upload" in line:
            break
        assert time.monotonic() < deadline, "the sweep never got going"
    assert announced is not None and announced.startswith("sweep-")
    # A user can watch the running sweep: the controller lets go of the database between writes.
    watching = run_cli("sweep", "status", announced, "--db", str(db))
    assert watching.returncode == 0, watching.stderr
    assert f"sweep {announced}: running" in watching.stdout
    proc.kill()
    proc.wait()
    proc.stdout.close()
    con = duckdb.connect(str(db), read_only=True)
    (sweep_id, status), = con.execute("SELECT sweep_id, status FROM sweeps").fetchall()
    done_before = con.execute("SELECT count(*) FROM jobs WHERE status = 'done'").fetchone()[0]
    con.close()
    assert status == "running" and 1 <= done_before < 24 and sweep_id == announced
    # Stored as running, shown as what it is: its controller is gone.
    shown = run_cli("sweep", "status", "--db", str(db), "--format", "csv")
    assert "interrupted" in shown.stdout
    assert f"resume with: joulefarm sweep resume {sweep_id}" in shown.stdout, shown.stdout

    # The killed controller's agents notice their parent is gone and stop by themselves.
    report = resume(sweep_id, db, timing=FAST)
    assert report.ok, report.errors()
    assert_exactly_once(db, sweep_id, repetitions=6)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM sweeps").fetchone() == ("done",)


# ``joulefarm`` on a disk that fills once AFTER runs are stored: from then on every write fails
# as it does on a full disk (ENOSPC). The trace file's write raises OSError(ENOSPC); DuckDB's
# commit raises what DuckDB raises on a full tmpfs (test_a_real_full_filesystem below), having
# dropped the transaction, so a rollback after it fails too. Nothing else is changed.
FULL_DISK = '''
import errno
import os
import sys
from contextlib import contextmanager

import duckdb

import controller.database as database
import controller.store as store
from controller.cli.app import main

AFTER = int(sys.argv.pop(1))
stored = []
store_run, hold, write_table = (store.ResultStore.store_run, database.WriterConnection.hold,
                                store.pq.write_table)


def full():
    return len(stored) >= AFTER


def counting_store_run(self, **kwargs):
    run_id = store_run(self, **kwargs)
    stored.append(run_id)
    return run_id


def full_write_table(table, where, **kwargs):
    if full():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
    return write_table(table, where, **kwargs)


class FullCursor:
    def __init__(self, cur, db):
        self._cur, self._db = cur, db

    def __getattr__(self, name):
        return getattr(self._cur, name)

    def commit(self):
        if full():
            self._cur.rollback()
            raise duckdb.TransactionException(
                'TransactionContext Error: Failed to commit: Could not write file '
                f'"{self._db}.wal": No space left on device')
        return self._cur.commit()


class FullConnection:
    def __init__(self, con, db):
        self._con, self._db = con, db

    def __getattr__(self, name):
        return getattr(self._con, name)

    def cursor(self):
        return FullCursor(self._con.cursor(), self._db)


@contextmanager
def full_hold(self):
    with hold(self) as con:
        yield FullConnection(con, self.db)


store.ResultStore.store_run = counting_store_run
store.pq.write_table = full_write_table
database.WriterConnection.hold = full_hold
main()
'''


def test_a_full_disk_interrupts_the_sweep_which_resume_finishes(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    suite = tmp_path / "fast2.toml"
    suite.write_text(SUITE.read_text().replace("timeout_s = 120", "timeout_s = 120\n"
                                               "repetitions = 2"))
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, str(script), "2", "sweep", "run", str(suite),
                          "--devices", str(DEVICES), "--db", str(db)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 1, output
    # The cause, named once, plainly: not an internal error, not the rollback that followed.
    # (The database, or a run's trace file beside it: whichever write came first.)
    assert f"no space left on device writing {tmp_path}/r." in output, output
    assert "internal error" not in output and "rollback" not in output, output
    con = duckdb.connect(str(db), read_only=True)
    (sweep_id,) = con.execute("SELECT sweep_id FROM sweeps").fetchone() or ("",)
    (done,) = con.execute("SELECT count(*) FROM jobs WHERE status = 'done'").fetchone() or (0,)
    con.close()
    assert 2 <= done < 8
    assert f"resume with: joulefarm sweep resume {sweep_id}" in output, output

    shown = run_cli("sweep", "status", sweep_id, "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert f"sweep {sweep_id}: interrupted; {done} of 8 jobs done" in shown.stdout, shown.stdout
    assert shown.stdout.count("pending") == 8 - done, shown.stdout

    # The disk is freed (this process writes normally): resume runs what remains, once.
    report = resume(sweep_id, db, timing=FAST)
    assert report.ok, report.errors()
    assert_exactly_once(db, sweep_id, repetitions=2)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM sweeps").fetchone() == ("done",)


# Runs, against a real ResultStore, inside its own user and mount namespaces where the database
# lies on a tmpfs too small for it: the disk really fills; then it is made larger ("freed").
REAL_FULL_DISK = """
import json, subprocess, sys
from pathlib import Path
from controller.store import ResultStore, StoreWriteError
from tests.helpers.results import facts, layer, new_sweep, result
tiny = Path(sys.argv[1])
out = {"stored": 0}
with ResultStore(tiny / "r.duckdb") as store:
    sweep = new_sweep(store)
    run = result(tuple(layer(k) for k in range(200)))
    try:
        while out["stored"] < 10_000:
            job = store.add_job(sweep, "dev", "m", "a" * 64)
            store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m", result=run)
            out["stored"] += 1
    except StoreWriteError as e:
        out["error"] = str(e)
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny)], check=True)
    job = store.add_job(sweep, "dev", "m", "a" * 64)
    store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name="m", result=run)
    out["runs"] = store.query("SELECT count(*) FROM runs")[1][0][0]
print(json.dumps(out))
"""


@pytest.mark.must_run  # a real full disk: the unprivileged tmpfs works on CI's machine kind
def test_a_real_full_filesystem_is_named_and_writes_go_on_once_freed(tmp_path: Path) -> None:
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(REAL_FULL_DISK)
    mount = f"mount -t tmpfs -o size=3m tmpfs {tiny}"
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", mount], capture_output=True,
                           text=True, check=False) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("no unprivileged mount namespace here (unshare -rm) for a small tmpfs")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && exec {sys.executable} "
                           f"{script} {tiny}"], cwd=REPO, env={**os.environ,
                                                               "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["error"] == f"no space left on device writing {tiny}/r.duckdb", out
    assert out["stored"] >= 1 and out["runs"] == out["stored"] + 1, out
