"""One DuckDB file, a writer and readers in other processes: readers get in during writes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.database import request_path
from controller.farm.lease import sweep_state
from controller.store import ResultStore
from tests.helpers import REPO
from tests.helpers.results import facts, layer, new_sweep, result

READ = (
    "from controller.store import query_readonly; import sys, time; t = time.monotonic(); "
    "print(query_readonly(sys.argv[1], 'SELECT count(*) FROM jobs')[1][0][0], "
    "time.monotonic() - t)"
)


def _read(db: Path) -> tuple[int, float]:
    done = subprocess.run(
        [sys.executable, "-c", READ, str(db)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]
    count, waited = done.stdout.split()
    return int(count), float(waited)


def test_a_reader_gets_in_while_the_writer_writes_without_pause(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    stop = threading.Event()
    written = [0]
    with ResultStore(db) as store:
        sweep = new_sweep(store)

        def write() -> None:  # back-to-back runs: the connection never goes idle
            while not stop.is_set():
                job = store.add_job(sweep, "dev", "m", "a" * 64)
                store.store_run(
                    job_id=job,
                    sweep_id=sweep,
                    device=facts(),
                    model_name="m",
                    result=result(tuple(layer(i) for i in range(50))),
                )
                written[0] += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            time.sleep(0.5)
            count, waited = _read(db)  # it asks; the writer lets go after its current write
            assert count >= 1
            assert waited < 20.0
            opened = store._writer.opened
            count_again, _ = _read(db)
            assert count_again >= count
            assert store._writer.opened > opened  # the writer closed and reopened for it
        finally:
            stop.set()
            writer.join()
    assert not request_path(db).exists()
    assert _read(db)[0] == written[0]


def test_a_writer_idle_for_a_moment_lets_readers_in_at_once(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    with ResultStore(db) as store:
        new_sweep(store)
        time.sleep(0.6)  # longer than the idle close
        _, waited = _read(db)
        assert waited < 1.0


def test_sweep_state_reads_the_lease() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    fresh, stale = now - timedelta(seconds=5), now - timedelta(seconds=31)
    me = socket.gethostname()
    assert sweep_state("done", me, 1, stale, 10.0, now) == "done"
    assert sweep_state("running", "elsewhere", 1, fresh, 10.0, now) == "running"
    assert sweep_state("running", "elsewhere", 1, stale, 10.0, now) == "interrupted"
    assert sweep_state("running", "elsewhere", 1, None, 10.0, now) == "interrupted"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert sweep_state("running", me, dead.pid, fresh, 10.0, now) == "interrupted"
    assert sweep_state("running", me, os.getpid(), fresh, 10.0, now) == "running"
