"""The command line: bad input stops with a clear message and exit code 2, and runs nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, run_cli

GOOD = (REPO / "devices.toml").read_text()


def _demo_with(tmp_path: Path, devices_text: str) -> tuple[int, str, Path]:
    path = tmp_path / "devices.toml"
    path.write_text(devices_text)
    db = tmp_path / "r.duckdb"
    proc = run_cli("demo", "--devices", str(path), "--db", str(db), timeout=60)
    return proc.returncode, proc.stderr, db


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(needle):
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(needle)


@pytest.mark.parametrize(
    ("change", "needle", "occurrence", "field", "message"),
    [
        (lambda t: t.replace('local = true\ntags = ["demo"]\ndescription = "this machine',
                             'local = true\ncolour = "red"\ntags = ["demo"]\n'
                             'description = "this machine', 1),
         'colour = "red"', 1, "device[0].colour", "unknown key 'colour'"),
        (lambda t: t.replace('name = "rpi4-sim"', 'name = "host"'),
         'name = "host"', 2, "device[1].name", "duplicate device name 'host'"),
        (lambda t: t.replace('address = "127.0.0.1"', 'address = "300.1.1.1"', 1),
         'address = "300.1.1.1"', 1, "device[0].address", "'300.1.1.1' is not a valid"),
        (lambda t: t.replace('platform = "linux"\n', '', 1),
         "[[device]]", 1, "device[0].platform", "missing"),
    ],
    ids=["unknown-key", "duplicate-name", "bad-address", "missing-field"],
)
def test_bad_devices_file_names_file_line_and_field(
    tmp_path: Path, change, needle: str, occurrence: int, field: str, message: str,
) -> None:
    text = change(GOOD)
    assert text != GOOD
    code, stderr, db = _demo_with(tmp_path, text)
    line = _line_of(text, needle, occurrence)
    assert code == 2, stderr
    assert f"devices.toml:{line}: {field}:" in stderr.replace("\n", ""), stderr
    assert message in stderr.replace("\n", "")
    assert not db.exists(), "nothing may run on bad input"


def test_bad_suite_is_refused_before_anything_runs(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text('schema_version = 1\nname = "x"\n[[model]]\nname = "m"\nrecipe = "nope"\n')
    db = tmp_path / "r.duckdb"
    proc = run_cli("demo", "--suite", str(suite), "--db", str(db), timeout=60)
    assert proc.returncode == 2
    assert "model[0].recipe: unknown recipe 'nope'" in proc.stderr.replace("\n", "")
    assert not db.exists()


def test_help_describes_the_commands() -> None:
    proc = run_cli("--help", timeout=60)
    assert proc.returncode == 0
    for command in ("demo", "query", "devices"):
        assert command in proc.stdout


def test_devices_list_json(repo: Path) -> None:
    proc = run_cli("devices", "list", "--format", "json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '"name": "rpi4-sim"' in proc.stdout and "simulated" in proc.stdout


HEAVY = ("duckdb", "grpc", "numpy", "onnxruntime", "ai_edge_litert", "paramiko", "pyarrow",
         "polars", "joulefarm._core")


def test_help_imports_nothing_heavy() -> None:
    # `joulefarm --help` (and every command's --help) must not load the database, gRPC, numpy,
    # the estimators' runtime or a TFLite runtime: commands import what they use when they run.
    code = (
        "import sys\n"
        "from controller.cli.app import app\n"
        "for argv in [['--help']] + [[c, '--help'] for c in sys.argv[1:]]:\n"
        "    try:\n"
        "        app(args=argv, prog_name='joulefarm', standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n")
    commands = ["demo", "bench", "query", "compare", "export", "schedule", "provision", "fit",
                "predict", "devices", "sweep", "model", "trace"]
    done = subprocess.run([sys.executable, "-c", code, *commands], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout[-500:]
    assert "Usage: joulefarm trace" in done.stdout  # the helps really printed


def test_version_prints_the_version_and_imports_nothing_heavy() -> None:
    from joulefarm.version import package_version

    code = (
        "import sys\n"
        "from controller.cli.app import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as e:\n"
        "    print('EXIT', e.code)\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"joulefarm {package_version()}", done.stdout
    assert "EXIT 0" in done.stdout and "LOADED []" in done.stdout, done.stdout


def test_help_names_the_exit_codes() -> None:
    proc = run_cli("--help", timeout=60)
    assert "Exit codes: 0 success, 1 the work failed, 2 bad input" in proc.stdout, proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (("query", "SELECT 1"), "no results database here"),
    (("sweep", "status", "no-such-sweep"), "no sweep 'no-such-sweep'"),
    (("query", "SELEKT * FROM runs"), "query failed"),
])
def test_bad_database_input_exits_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    # Exit codes (README): a missing database, an unknown sweep id and SQL that does not parse
    # are bad input (2), not failed work (1).
    from controller.store import ResultStore

    db = tmp_path / "r.duckdb"
    if "no results database here" not in message:
        ResultStore(db).close()
    done = run_cli(*args, "--db", str(db), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr, done.stderr


def test_error_messages_are_printed_as_text_not_markup(tmp_path: Path) -> None:
    # Rich markup ate "[schedule]" from messages; data and messages are escaped now.
    suite = tmp_path / "nightly.toml"
    suite.write_text('schema_version = 1\nname = "n"\n[[model]]\nname = "m"\nrecipe = "mlp"\n')
    done = run_cli("schedule", str(suite), "--print-crontab")
    assert done.returncode == 2
    assert "the suite has no [schedule] cron" in done.stderr, done.stderr


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_query_results_that_look_like_markup_print_as_they_are(tmp_path: Path, fmt: str) -> None:
    from controller.store import ResultStore

    db = tmp_path / "r.duckdb"
    ResultStore(db).close()
    sql = "SELECT '[bold]x' AS a, '[select]' AS b, '[user@]host' AS c"
    done = run_cli("query", "--db", str(db), "--format", fmt, sql)
    assert done.returncode == 0, done.stderr
    for text in ("[bold]x", "[select]", "[user@]host"):
        assert text in done.stdout, (fmt, done.stdout)


def test_messages_that_look_like_markup_print_as_they_are(tmp_path: Path) -> None:
    devices = tmp_path / "devices.toml"
    devices.write_text('schema_version = 1\n[[device]]\nname = "pi"\nplatform = "linux"\n'
                       'address = "10.0.0.9"\nport = 1\n[device.meter]\nkind = "rapl"\n'
                       '[device.ssh]\nuser = "pi"\njump = "[user@]host"\n')
    done = run_cli("devices", "validate", "--devices", str(devices))
    assert done.returncode == 2
    assert "'[user@]host'" in done.stderr, done.stderr
