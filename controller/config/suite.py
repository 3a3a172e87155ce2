"""Benchmark suites: ``benchmarks/*.toml`` read into dataclasses, and their models materialised.

A suite names its models (generated from a recipe of the model toolkit, or a .tflite file
relative to the suite), how to measure them, and which devices run it::

    schema_version = 1
    name = "demo"

    [select]
    tags = ["demo"]          # devices carrying any of these tags (or: names = [...])

    [measure]
    mode = "layers"
    min_layer_duration_s = 0.02

    [[model]]
    name = "tiny_cnn"
    recipe = "tiny_cnn"
    seed = 0
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from controller.cron import Cron, CronError
from joulefarm.errors import InputError
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import RECIPES
from joulefarm.tflite.sweep import SweepConfig, sample_configs

SCHEMA_VERSION = 1
TOP_KEYS = {"schema_version", "name", "description", "select", "measure", "matrix", "model",
            "schedule"}
MODEL_KEYS = {"name", "recipe", "seed", "file", "sweep"}
SWEEP_KEYS = {"count", "kinds", "profile", "seed", "max_macs"}
SELECT_KEYS = {"names", "tags"}
MEASURE_KEYS = ({f.name for f in fields(MeasureSettings) if f.name != "extra"}
                | {"timeout_s", "repetitions"})
DEFAULT_TIMEOUT_S = 600.0
MODES = ("layers", "whole", "insitu")


class SuiteError(InputError):
    """A suite file is missing or malformed; the message names the file and the field."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    recipe: str | None = None
    seed: int = 0
    file: Path | None = None
    # One configuration of a generated layer sweep (see joulefarm.tflite.sweep).
    sweep: SweepConfig | None = None

    @property
    def source(self) -> str:
        if self.sweep is not None:
            return self.sweep.name
        return f"recipe:{self.recipe} seed={self.seed}" if self.recipe else str(self.file)

    def materialise(self) -> bytes:
        """The model's .tflite bytes: generated (recipe or sweep), or read from its file."""
        if self.sweep is not None:
            return self.sweep.build()
        if self.recipe:
            if RECIPES[self.recipe].int8:  # calibrated in this machine's TFLite runtime
                from agent.local import build_recipe

                return build_recipe(self.recipe, self.seed)
            return RECIPES[self.recipe](self.seed)
        assert self.file is not None
        try:
            return self.file.read_bytes()
        except OSError as e:
            raise SuiteError(f"model {self.name!r}: cannot read {self.file}: {e.strerror}") from e


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    models: tuple[ModelSpec, ...]
    settings: MeasureSettings
    timeout_s: float
    select_names: tuple[str, ...] = ()
    select_tags: tuple[str, ...] = ()
    # Settings to vary: every combination becomes its own job (e.g. num_threads = [1, 2]).
    matrix: dict[str, list[Any]] = field(default_factory=dict)
    # `[schedule] cron = "0 2 * * *"`: when `joulefarm schedule` starts this suite.
    cron: str | None = None
    # Each (device, model, configuration) runs this many times, as separate jobs with their
    # own seed (different random inputs), so spread shows up in the results.
    repetitions: int = 1


@dataclass(frozen=True)
class MaterialisedModel:
    spec: ModelSpec
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def _require(cond: bool, path: Path, where: str, message: str) -> None:
    if not cond:
        raise SuiteError(f"{path}: {where}: {message}")


def _check_keys(table: dict[str, Any], allowed: set[str], path: Path, where: str) -> None:
    for key in table:
        _require(key in allowed, path, f"{where}{key}",
                 f"unknown key (allowed: {', '.join(sorted(allowed))})")


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file. Raises SuiteError naming the file and the field."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as e:
        raise SuiteError(f"{path}: cannot read suite file: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"{path}: {e}") from e
    _check_keys(doc, TOP_KEYS, path, "")
    _require(doc.get("schema_version") == SCHEMA_VERSION, path, "schema_version",
             f"must be {SCHEMA_VERSION}, got {doc.get('schema_version')!r}")
    name = doc.get("name")
    _require(isinstance(name, str) and bool(name), path, "name", "a non-empty string is required")

    select = doc.get("select", {})
    _require(isinstance(select, dict), path, "select", "must be a table")
    _check_keys(select, SELECT_KEYS, path, "select.")
    for key in ("names", "tags"):
        value = select.get(key, [])
        _require(isinstance(value, list) and all(isinstance(v, str) for v in value), path,
                 f"select.{key}", "must be a list of strings")

    measure = dict(doc.get("measure", {}))
    _require(isinstance(measure, dict), path, "measure", "must be a table")
    _check_keys(measure, MEASURE_KEYS, path, "measure.")
    timeout_s = measure.pop("timeout_s", DEFAULT_TIMEOUT_S)
    repetitions = measure.pop("repetitions", 1)
    _require(isinstance(repetitions, int) and not isinstance(repetitions, bool)
             and repetitions >= 1, path, "measure.repetitions",
             f"must be an integer >= 1, got {repetitions!r}")
    defaults = MeasureSettings()
    for key, value in measure.items():
        expected = type(getattr(defaults, key))
        ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
        _require(ok and (expected is bool or not isinstance(value, bool)), path,
                 f"measure.{key}", f"must be {expected.__name__}, got {value!r}")
        if expected in (int, float):
            _require(value >= 0, path, f"measure.{key}", f"must be >= 0, got {value!r}")
    _require(measure.get("mode", "layers") in MODES, path, "measure.mode",
             f"unsupported mode {measure.get('mode')!r} (supported: {', '.join(MODES)})")
    settings = MeasureSettings(**measure)

    matrix = doc.get("matrix", {})
    _require(isinstance(matrix, dict), path, "matrix", "must be a table")
    _check_keys(matrix, MEASURE_KEYS - {"timeout_s", "repetitions"}, path, "matrix.")
    for key, values in matrix.items():
        _require(isinstance(values, list) and len(values) > 0, path, f"matrix.{key}",
                 "must be a non-empty list of values")
        for value in values:
            try:
                MeasureSettings(**{key: value})
            except TypeError as e:  # pragma: no cover (keys are checked above)
                raise SuiteError(f"{path}: matrix.{key}: {e}") from e
            expected = type(getattr(defaults, key))
            ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
            _require(ok and (expected is bool or not isinstance(value, bool)), path,
                     f"matrix.{key}", f"values must be {expected.__name__}, got {value!r}")
        if key == "mode":
            bad = [v for v in values if v not in MODES]
            _require(not bad, path, "matrix.mode",
                     f"unsupported mode {bad[0] if bad else ''!r} (supported: {', '.join(MODES)})")

    raw_models = doc.get("model", [])
    _require(isinstance(raw_models, list) and len(raw_models) > 0, path, "model",
             "at least one [[model]] is required")
    models, seen = [], set()
    for i, m in enumerate(raw_models):
        where = f"model[{i}]"
        _check_keys(m, MODEL_KEYS, path, f"{where}.")
        mname = m.get("name")
        _require(isinstance(mname, str) and bool(mname), path, f"{where}.name",
                 "a non-empty string is required")
        _require(mname not in seen, path, f"{where}.name", f"duplicate model name {mname!r}")
        seen.add(mname)
        recipe, file, sweep = m.get("recipe"), m.get("file"), m.get("sweep")
        _require(sum(x is not None for x in (recipe, file, sweep)) == 1, path, where,
                 "give exactly one of 'recipe', 'file' or 'sweep'")
        if sweep is not None:
            for k, config in enumerate(_sweep_configs(sweep, path, f"{where}.sweep")):
                models.append(ModelSpec(name=f"{mname}-{k:03d}", sweep=config))
            continue
        if recipe is not None:
            _require(recipe in RECIPES, path, f"{where}.recipe",
                     f"unknown recipe {recipe!r} (known: {', '.join(sorted(RECIPES))})")
        seed = m.get("seed", 0)
        _require(isinstance(seed, int) and not isinstance(seed, bool), path, f"{where}.seed",
                 "must be an integer")
        models.append(ModelSpec(name=mname, recipe=recipe, seed=seed,
                                file=(path.parent / file) if file else None))
    return Suite(
        path=path, name=name, description=str(doc.get("description", "")), models=tuple(models),
        settings=settings, timeout_s=float(timeout_s),
        select_names=tuple(select.get("names", [])), select_tags=tuple(select.get("tags", [])),
        matrix={k: list(v) for k, v in matrix.items()},
        cron=_schedule(doc, path),
        repetitions=repetitions,
    )


def _sweep_configs(table: Any, path: Path, where: str) -> list[SweepConfig]:
    """A generated layer sweep: ``{count = 50, kinds = ["conv", ...], profile = "mobile",
    seed = 0, max_macs = ...}``, expanded into single-layer configurations."""
    _require(isinstance(table, dict), path, where, "must be a table, e.g. { count = 20 }")
    _check_keys(table, SWEEP_KEYS, path, f"{where}.")
    count = table.get("count")
    _require(isinstance(count, int) and not isinstance(count, bool) and count >= 1, path,
             f"{where}.count", f"an integer >= 1 is required, got {count!r}")
    options: dict[str, Any] = {"seed": table.get("seed", 0),
                               "profile": table.get("profile", "mobile")}
    if "kinds" in table:
        options["kinds"] = table["kinds"]
    if "max_macs" in table:
        options["max_macs"] = table["max_macs"]
    try:
        return sample_configs(count, **options)
    except (ValueError, TypeError) as e:
        raise SuiteError(f"{path}: {where}: {e}") from None


def _schedule(doc: dict[str, Any], path: Path) -> str | None:
    schedule = doc.get("schedule", {})
    _require(isinstance(schedule, dict), path, "schedule", "must be a table")
    _check_keys(schedule, {"cron"}, path, "schedule.")
    cron = schedule.get("cron")
    if cron is None:
        return None
    _require(isinstance(cron, str), path, "schedule.cron", "must be a string")
    try:
        Cron.parse(cron)
    except CronError as e:
        raise SuiteError(f"{path}: schedule.cron: {e}") from None
    return cron
