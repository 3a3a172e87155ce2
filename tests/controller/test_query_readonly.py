"""``joulefarm query`` is read-only for real: the attacks of a red-team pass, each refused.

Opening the file read-only was not enough: DuckDB could still write files (COPY ... TO),
attach other databases read-write (a hard link to the queried file emptied it), and install or
load extensions from the network. Each test names the statement that did harm before.
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from controller.store import ResultStore, StoreInputError, query_readonly
from joulefarm.results import DecimatedTrace
from tests.helpers import run_cli
from tests.helpers.results import facts, layer, new_sweep, result

RUNS = 3
REFUSED = "read-only"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A results database with `RUNS` runs, each with its trace file beside the database."""
    trace = DecimatedTrace(clock="meter", t0_s=1.0, bucket_s=0.01,
                           min_w=np.ones(5, np.float32), max_w=np.full(5, 3, np.float32),
                           mean_w=np.full(5, 2, np.float32), raw_samples=500)
    path = tmp_path / "r.duckdb"
    with ResultStore(path) as store:
        sweep = new_sweep(store)
        for i in range(RUNS):
            job = store.add_job(sweep, "dev", f"m{i}", "a" * 64)
            store.store_run(job_id=job, sweep_id=sweep, device=facts(), model_name=f"m{i}",
                            result=dataclasses.replace(result((layer(0),)), trace=trace))
    return path


def run_count(db: Path) -> int:
    _, rows = query_readonly(db, "SELECT count(*) FROM runs")
    return int(rows[0][0])


def refused(db: Path, sql: str) -> str:
    """The message `sql` is refused with (failing the test when it is not refused)."""
    with pytest.raises(StoreInputError) as err:
        query_readonly(db, sql)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def test_the_documented_queries_still_work(db: Path) -> None:
    _, rows = query_readonly(db, "SELECT device_name, model_name, layer_index, op, energy_j, "
                                 "energy_source FROM layer_energy ORDER BY energy_j DESC LIMIT 10")
    assert len(rows) == RUNS
    columns, rows = query_readonly(db, "SELECT * FROM runs")
    assert "trace_path" in columns and len(rows) == RUNS
    for view in ("additivity", "layer_pairs"):  # no whole-model or pair runs here
        assert query_readonly(db, f"SELECT * FROM {view}")[1] == []


def test_copy_to_a_new_file_is_refused(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert REFUSED in refused(db, f"COPY (SELECT 1) TO '{target}'")
    assert not target.exists()


def test_copy_over_a_stored_trace_leaves_it_unchanged(db: Path, tmp_path: Path) -> None:
    _, rows = query_readonly(db, "SELECT trace_path FROM runs LIMIT 1")
    trace = tmp_path / rows[0][0]
    before = trace.read_bytes()
    refused(db, f"COPY (SELECT 1 AS x) TO '{trace}' (FORMAT parquet)")
    assert trace.read_bytes() == before


def test_attaching_another_database_to_write_it_is_refused(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    before = other.read_bytes()
    refused(db, f"ATTACH '{other}' AS o (READ_WRITE); CREATE TABLE o.pwned AS SELECT 1 AS x")
    assert other.read_bytes() == before
    with duckdb.connect(str(other), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)


def test_a_hard_link_to_the_queried_database_cannot_empty_it(db: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.duckdb"
    os.link(db, link)
    refused(db, f"ATTACH '{link}' AS h (READ_WRITE); DELETE FROM h.runs")
    assert run_count(db) == RUNS


def test_reading_files_through_the_query_is_refused(db: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\nsecret\n")
    assert REFUSED in refused(db, f"SELECT * FROM read_csv('{secret}')")


@pytest.mark.parametrize("sql", [
    "SET enable_external_access = true",
    "SET GLOBAL enable_external_access = true",
    "RESET enable_external_access",
    "SET lock_configuration = false",
    "SET autoinstall_known_extensions = true",
])
def test_the_settings_cannot_be_set_back(db: Path, sql: str) -> None:
    assert REFUSED in refused(db, sql)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """An extension repository on loopback that records every request and serves nothing."""

    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.paths.append(self.path)
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def extension_repository(db: Path, tmp_path: Path) -> Iterator[list[str]]:
    """Points this process's DuckDB at a recording repository for `db`, and yields the paths
    it was asked for. DuckDB shares one instance (and its settings) between the connections a
    process opens to a file, so a connection held open here sets them for the query's."""
    _Recorder.paths = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    holder = duckdb.connect(str(db), read_only=True)
    holder.execute(f"SET custom_extension_repository = 'http://127.0.0.1:{server.server_port}'")
    holder.execute(f"SET extension_directory = '{tmp_path / 'extensions'}'")
    try:
        yield _Recorder.paths
    finally:
        holder.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("sql", [
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "LOAD httpfs",
    # A known extension's function or file type: DuckDB installs and loads it on its own.
    "SELECT * FROM 'http://127.0.0.1:9/x.parquet'",
])
def test_no_extension_is_installed_or_loaded(db: Path, tmp_path: Path, sql: str,
                                             extension_repository: list[str]) -> None:
    refused(db, sql)
    assert extension_repository == []
    assert not (tmp_path / "extensions").exists()


def test_a_refused_statement_is_one_line_and_exit_2(db: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    done = run_cli("query", "--db", str(db), f"COPY (SELECT 1) TO '{target}'", timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and REFUSED in done.stderr, done.stderr
    assert not target.exists()
