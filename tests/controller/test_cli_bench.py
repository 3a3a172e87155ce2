"""`joulefarm bench` and `joulefarm model layers` on a generated model, as a user runs them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from agent.local import build_recipe
from joulefarm.tflite.parse import read_layers
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny_cnn.tflite"
    path.write_bytes(build_recipe("tiny_cnn", 0))
    return path


def test_model_layers_json_lists_every_layer(model_file: Path) -> None:
    proc = run_cli("model", "layers", str(model_file), "--format", "json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    expected = read_layers(model_file.read_bytes())
    assert [r["op"] for r in rows] == [x.op for x in expected]
    assert rows[0]["op"] == "CONV_2D" and rows[0]["macs"] == expected[0].macs > 0
    assert rows[0]["kernel"] == [3, 3]


def _json(stdout: str) -> dict[str, list[dict[str, object]]]:
    """Layers mode's JSON document: stdout holds nothing else (run flags go to stderr)."""
    data: dict[str, list[dict[str, object]]] = json.loads(stdout)
    return data


def test_bench_layers_json_is_labelled_simulated(model_file: Path) -> None:
    proc = run_cli("bench", str(model_file), "--profile", "rpi4", "--min-layer-duration-s",
                   "0.005", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = _json(proc.stdout)
    rows = data["layers"]
    assert len(rows) == len(read_layers(model_file.read_bytes()))
    for row in rows:
        assert isinstance(row["index"], int)
        assert row["energy_uj"] == pytest.approx(row["sim_truth_uj"], rel=0.1)
        assert row["energy_source"] == "simulated"
    assert [t["index"] for t in data["totals"]] == ["total", "whole", "ratio"]
    assert all(t["energy_source"] == "simulated" for t in data["totals"])


def _total_matches_the_rows(rows: list[dict[str, str]], rel: float) -> None:
    """The rows as printed (text): ``total`` is the sum of the layer rows, ``whole`` the
    unsplit model, ``ratio`` total / whole; rounding in the printed digits only."""
    layers = [r for r in rows if r["index"].isdigit()]
    by_label = {r["index"]: r for r in rows if not r["index"].isdigit()}
    assert list(by_label) == ["total", "whole", "ratio"]
    assert rows[-3:] == list(by_label.values())  # the last rows, after every layer
    total, whole, ratio = by_label["total"], by_label["whole"], by_label["ratio"]
    assert total["op"] == f"{len(layers)} layers" and whole["op"] == "whole model"
    assert int(total["macs"]) == sum(int(r["macs"]) for r in layers)
    for column in ("latency_us", "energy_uj", "sim_truth_uj", "active_energy_uj"):
        assert float(total[column]) == pytest.approx(sum(float(r[column]) for r in layers),
                                                     rel=rel), column
    for column in ("latency_us", "energy_uj", "sim_truth_uj"):
        assert float(whole[column]) > 0
        assert float(ratio[column]) == pytest.approx(
            float(total[column]) / float(whole[column]), rel=rel), column
    assert int(whole["iterations"]) >= 5 and int(whole["samples"]) > 0
    assert all(r["energy_source"] == "simulated" for r in rows)


def test_bench_layers_prints_the_total_and_the_whole_model_in_every_format(
        model_file: Path) -> None:
    args = ("bench", str(model_file), "--mode", "layers", "--profile", "rpi4",
            "--min-layer-duration-s", "0.003")
    n = len(read_layers(model_file.read_bytes()))

    proc = run_cli(*args, "--format", "csv", timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "," in line]
    rows = list(csv.DictReader(lines))
    assert len(rows) == n + 3
    _total_matches_the_rows(rows, rel=1e-5)  # six significant digits in every cell

    proc = run_cli(*args, "--format", "json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = _json(proc.stdout)
    assert len(data["layers"]) == n
    _total_matches_the_rows([{k: str(v) for k, v in r.items()}
                             for r in (*data["layers"], *data["totals"])], rel=1e-9)
    # The whole model's latency is its median call, as each layer's is a median.
    whole = data["totals"][1]
    assert isinstance(whole["latency_us"], float) and isinstance(whole["energy_uj"], float)

    proc = run_cli(*args, timeout=120)  # the table
    assert proc.returncode == 0, proc.stderr
    header, *body = [[cell.strip() for cell in line.split(line[0])[1:-1]]
                     for line in proc.stdout.splitlines() if line and line[0] in "┃│"]
    table = [dict(zip(header, row, strict=True)) for row in body]
    assert len(table) == n + 3
    _total_matches_the_rows(table, rel=1e-5)


def test_total_rows_without_the_whole_model() -> None:
    from controller.cli.bench_cmd import _total_rows
    from tests.helpers.results import layer, result

    columns = ["index", "op", "macs", "latency_us", "energy_uj", "sim_truth_uj", "flags"]
    rows = _total_rows(result((layer(0, 2e-3), layer(1, 3e-3))), columns)
    assert len(rows) == 1  # no whole model in the result: no whole, no ratio
    assert rows[0][:3] == ["total", "2 layers", 200]
    assert rows[0][3:6] == pytest.approx([2000.0, 5000.0, 5000.0])


def test_bench_whole_reports_percentiles(model_file: Path) -> None:
    proc = run_cli("bench", str(model_file), "--mode", "whole", "--min-duration-s", "0.2",
                   "--format", "csv", timeout=120)
    assert proc.returncode == 0, proc.stderr
    header, row = [line for line in proc.stdout.splitlines() if "," in line][:2]
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert int(values["iterations"]) >= 5
    p50, p90, p99 = (float(values[k]) for k in ("latency_p50_ms", "latency_p90_ms",
                                                 "latency_p99_ms"))
    assert 0 < p50 <= p90 <= p99
    assert float(values["energy_mj"]) == pytest.approx(float(values["sim_truth_mj"]), rel=0.05)


def test_bench_rejects_bad_input_with_exit_code_2(tmp_path: Path, model_file: Path) -> None:
    missing = run_cli("bench", str(tmp_path / "none.tflite"), timeout=60)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    bad = run_cli("bench", str(junk), timeout=60)
    assert bad.returncode == 2 and "junk.tflite" in bad.stderr
    mode = run_cli("bench", str(model_file), "--mode", "turbo", timeout=60)
    assert mode.returncode == 2 and "unknown mode 'turbo'" in mode.stderr


def test_model_commands_refuse_what_is_not_a_regular_file(tmp_path: Path) -> None:
    # Was: `bench PIPE` and `model layers PIPE` waited for ever for a writer.
    import os

    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    for args in (("bench", str(fifo)), ("model", "layers", str(fifo))):
        done = run_cli(*args, timeout=60)
        assert done.returncode == 2, done.stderr
        assert f"{fifo}: is a named pipe (FIFO), not a model file" in done.stderr


def test_model_files_over_the_size_bound_are_refused_unread(tmp_path: Path) -> None:
    from joulefarm.limits import MAX_MODEL_FILE_BYTES

    huge = tmp_path / "huge.tflite"
    with open(huge, "wb") as f:
        f.truncate(MAX_MODEL_FILE_BYTES + 1)  # sparse: nothing is written
    done = run_cli("model", "layers", str(huge), timeout=60)
    assert done.returncode == 2, done.stderr
    assert (f"{huge}: is 536,870,913 bytes; a model file may be at most 536,870,912 bytes"
            in done.stderr)


@pytest.mark.parametrize(("option", "message"), [
    (("--threads", "100000"), "--threads: must be <= 256, got 100000"),  # was: a segfault
    (("--sample-rate-hz", "1e300"), "--sample-rate-hz: must be <= 10000000, got 1e+300"),
    (("--sample-rate-hz", "nan"), "--sample-rate-hz: must be a finite number, got nan"),
    (("--min-duration-s", "1e9"), "--min-duration-s: must be <= 3600, got 1000000000"),
    (("--min-layer-duration-s", "inf"), "--min-layer-duration-s: must be a finite number"),
])
def test_bench_options_are_bounded(model_file: Path, option: tuple[str, str],
                                   message: str) -> None:
    done = run_cli("bench", str(model_file), "--mode", "whole", *option, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
