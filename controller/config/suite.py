"""Benchmark suites: ``benchmarks/*.toml`` read into dataclasses, and their models materialised.

A suite names its models (generated from a recipe of the model toolkit, a configuration sweep,
or a .tflite file relative to the suite), how to measure them, and which devices run it::

    schema_version = 1
    name = "demo"

    [select]
    tags = ["demo"]          # devices carrying ALL of these tags (or: names = [...])

    [measure]
    mode = "layers"
    min_layer_duration_s = 0.02

    [[model]]
    name = "tiny_cnn"
    recipe = "tiny_cnn"
    seed = 0

    [[model]]
    name = "speech"
    file = "models/speech.tflite"
    input_shapes = { audio = [1, 16000] }   # inputs with dynamic dimensions need a shape

``load_suite`` checks the whole file as the device registry is checked
(``controller.config.toml_check``): every problem is found with its file, line and field,
unknown keys and choices get a "did you mean", and the first problem in the file is raised as
a ``SuiteError`` (exit code 2) carrying the others.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from controller.config.toml_check import (
    ARTICLE,
    INVALID,
    MISSING,
    Checker,
    ConfigError,
    KeyPath,
    describe,
    did_you_mean,
    has_type,
    parse_toml,
    read_config_text,
    unknown_choice,
)
from controller.config.train_spec import (
    LOSSES,
    MAX_BATCH_SIZE,
    MAX_LAYERS,
    OPTIMIZERS,
    TRAIN_KEYS,
    TrainSpec,
)
from controller.cron import Cron, CronError
from joulefarm.enums import Mode
from joulefarm.errors import InputError, ModelError
from joulefarm.files import FileRefused, read_regular_file, regular_file_problem
from joulefarm.limits import (
    MAX_INPUT_ELEMENTS,
    MAX_MODEL_FILE_BYTES,
    MAX_REPETITIONS,
    MAX_SEED,
    MAX_SUITE_JOBS,
    MAX_SWEEP_COUNT,
    MAX_SWEEP_MACS,
    MAX_TIMEOUT_S,
    MEASURE_BOUNDS,
)
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import RECIPES
from joulefarm.tflite.inputs import SUITE_KEY, ModelInput, model_inputs, resolve_input_shapes
from joulefarm.tflite.parse import LayerInfo
from joulefarm.tflite.sweep import (
    KINDS,
    PROFILES,
    SweepConfig,
    reference_model,
    reference_names,
    sample_configs,
)

SCHEMA_VERSION = 1
TOP_KEYS = ("schema_version", "name", "description", "select", "measure", "matrix", "model",
            "schedule", "train")
MODEL_KEYS = ("name", "recipe", "seed", "file", "sweep", "reference", SUITE_KEY)
REFERENCE_PREFIX = "ref"
"""Models of a ``reference = true`` entry are named ``ref:MEMBER``: the names the
cross-hardware estimators find a device's reference runs by."""
BUILTIN_SUITES: dict[str, Path] = {
    "reference": Path(__file__).resolve().parent.parent / "suites" / "reference.toml",
}
"""Suites shipped with joulefarm, run by name (``joulefarm sweep run reference``)."""
SWEEP_KEYS = ("count", "kinds", "profile", "seed", "max_macs")
SELECT_KEYS = ("names", "tags")
# Settings of every model alike; input shapes belong to one model ([[model]] input_shapes).
PER_MODEL_SETTINGS = ("input_shapes",)
SETTING_KEYS = tuple(f.name for f in fields(MeasureSettings) if f.name not in PER_MODEL_SETTINGS)
MEASURE_KEYS = (*SETTING_KEYS, "timeout_s", "repetitions")
SCHEDULE_KEYS = ("cron",)
DEFAULT_TIMEOUT_S = 600.0
# The TOML type each measuring setting takes (from MeasureSettings' annotations).
_SETTING_TYPES = {f.name: {"str": "string", "int": "integer", "float": "number",
                           "bool": "boolean"}[str(f.type)] for f in fields(MeasureSettings)
                  if f.name in SETTING_KEYS}


class SuiteError(ConfigError):
    """A problem in a suite file: ``str(err)`` is ``"{path}:{line}: {field}: {message}"``
    (see ``controller.config.toml_check.ConfigError``)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    recipe: str | None = None
    seed: int = 0
    file: Path | None = None
    # One configuration of a generated layer sweep (see joulefarm.tflite.sweep).
    sweep: SweepConfig | None = None
    # The shapes to run the model's inputs at: (input name or position, shape) pairs
    # (MeasureSettings.input_shapes; joulefarm.tflite.inputs.resolve_input_shapes).
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    # A member of the reference set (joulefarm.tflite.sweep.reference_models): its ref: name.
    reference: str | None = None

    @property
    def source(self) -> str:
        if self.sweep is not None:
            return self.sweep.name
        if self.reference is not None:
            return f"reference set: {self.reference}"
        return f"recipe:{self.recipe} seed={self.seed}" if self.recipe else str(self.file)

    def materialise(self) -> bytes:
        """The model's .tflite bytes: generated (recipe or sweep), or read from its file."""
        if self.sweep is not None:
            return self.sweep.build()
        if self.reference is not None:
            return reference_model(self.reference)
        if self.recipe:
            if RECIPES[self.recipe].int8:  # calibrated in this machine's TFLite runtime
                from agent.local import build_recipe

                return build_recipe(self.recipe, self.seed)
            return RECIPES[self.recipe](self.seed)
        assert self.file is not None
        try:
            return read_regular_file(self.file, MAX_MODEL_FILE_BYTES, "model file")
        except OSError as e:
            raise SuiteError(self.file, 0, "", f"model {self.name!r}: cannot read the model "
                                               f"file: {e.strerror}") from e
        except FileRefused as e:  # a FIFO (the read would never end), or too large
            raise SuiteError(self.file, 0, "", f"model {self.name!r}: {e}") from None


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
    # Train mode: how the models are made trainable (controller.config.train_spec).
    train: TrainSpec | None = None


@dataclass(frozen=True)
class MaterialisedModel:
    spec: ModelSpec
    content: bytes
    made: str = ""
    """What was done to the spec's model before measuring it (train mode: made trainable)."""
    layers: tuple[LayerInfo, ...] | None = None
    """The layers to store for it, where they are not its own (a trainable model's: those of
    the inference model it was made from)."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def source(self) -> str:
        return f"{self.spec.source}; {self.made}" if self.made else self.spec.source


def resolve_suite(path: str | Path) -> Path:
    """``path``, or the file of the built-in suite of that name when no such file exists."""
    path = Path(path)
    if not path.exists() and str(path) in BUILTIN_SUITES:
        return BUILTIN_SUITES[str(path)]
    return path


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file (or a built-in suite by name: ``BUILTIN_SUITES``);
    ``SuiteError`` names the file, line and field of the first problem in it (and carries
    every problem found)."""
    path = resolve_suite(path)
    text = read_config_text(path, SuiteError, "suite file")
    document = parse_toml(text, path, SuiteError)
    checker = _SuiteChecker(path, text)
    suite = checker.suite(document)
    checker.raise_first()
    assert suite is not None
    return suite


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _planned_models(entry: Any) -> int:
    """How many models a ``[[model]]`` entry stands for, before it is checked or expanded."""
    if not isinstance(entry, dict):
        return 0
    if "reference" in entry:
        return len(reference_names()) if entry["reference"] is True else 0
    sweep = entry.get("sweep")
    if isinstance(sweep, dict):
        count = sweep.get("count")
        return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0
    return 1


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _input_listing(inputs: tuple[ModelInput, ...]) -> str:
    """``'audio' (position 0, shape_signature [-1, -1])``, for each input."""
    if not inputs:
        return "none"
    return ", ".join(f"{i.name!r} (position {i.position}, shape_signature {list(i.signature)})"
                     if i.name else f"position {i.position} (shape_signature "
                     f"{list(i.signature)})" for i in inputs)


class _SuiteChecker(Checker):
    """Turns a suite document into a ``Suite``, collecting problems with their lines."""

    error_class = SuiteError

    def __init__(self, path: Path, text: str) -> None:
        super().__init__(path, text)
        self.suite_path = path
        # False once the suite plans too many jobs: its sweeps are then not drawn.
        self.expand = True

    def suite(self, doc: dict[str, Any]) -> Suite | None:
        version = self.get(doc, (), "schema_version", "integer", required=True)
        if version is MISSING:
            self.errors[-1] = SuiteError(self.suite_path, 1, "schema_version",
                                         f"missing; start the file with `schema_version = "
                                         f"{SCHEMA_VERSION}`")
        elif version is not INVALID and version != SCHEMA_VERSION:
            self.error(("schema_version",), f"unsupported schema version {version}; this "
                                            f"joulefarm reads version {SCHEMA_VERSION}")
        if self.errors:
            return None  # without a known schema the rest cannot be judged
        self.check_keys(doc, (), TOP_KEYS)
        name = self.get(doc, (), "name", "string", required=True)
        if name == "":
            self.error(("name",), "must not be empty")
        description = self.get(doc, (), "description", "string", required=False)
        names, tags = self.select(doc)
        settings, timeout_s, repetitions = self.measure(doc)
        train = self.train(doc, settings)
        matrix = self.matrix(doc)
        # Counted before anything is expanded: a refused suite draws no sweep.
        self.expand = self.jobs_within_bound(doc, repetitions)
        models = self.models(doc)
        cron = self.schedule(doc)
        if self.errors:
            return None
        return Suite(
            path=self.suite_path, name=name,
            description=description if isinstance(description, str) else "",
            models=tuple(models), settings=settings, timeout_s=timeout_s,
            select_names=names, select_tags=tags, matrix=matrix, cron=cron,
            repetitions=repetitions, train=train,
        )

    def table(self, doc: dict[str, Any], key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """An optional top-level table, its keys checked; empty when absent or not a table."""
        value = self.get(doc, (), key, "table", required=False)
        if not isinstance(value, dict):
            return {}
        self.check_keys(value, (key,), allowed)
        return value

    def strings(self, table: dict[str, Any], at: KeyPath, key: str) -> tuple[str, ...]:
        values = self.get(table, at, key, "array", required=False)
        if not isinstance(values, list):
            return ()
        for i, value in enumerate(values):
            if not isinstance(value, str):
                self.error(at + (key, i), f"expected a string, got {describe(value)}")
        return tuple(v for v in values if isinstance(v, str))

    def select(self, doc: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        select = self.table(doc, "select", SELECT_KEYS)
        return self.strings(select, ("select",), "names"), self.strings(select, ("select",),
                                                                       "tags")

    def setting(self, key: str, value: Any, at: KeyPath) -> bool:
        """Check one measuring setting's value; True when it is usable."""
        expected = _SETTING_TYPES[key]
        if not self.typed(value, expected, at):
            return False
        if key == "mode" and value == Mode.TRAIN and at[0] == "matrix":
            # The trainable model is another model (another sha256), not another setting.
            self.error(at, "mode 'train' measures a trainable model made from each model: give "
                           "it as [measure] mode = \"train\", in a suite of its own")
            return False
        if key == "mode" and value not in Mode.values():
            self.error(at, unknown_choice("mode", value, Mode.values()))
            return False
        if expected in ("integer", "number"):
            return self.within(at, value, *MEASURE_BOUNDS[key])
        return True

    def typed(self, value: Any, expected: str, at: KeyPath) -> bool:
        if has_type(value, expected):
            return True
        self.error(at, f"expected {ARTICLE[expected]}, got {describe(value)}")
        return False

    def measure(self, doc: dict[str, Any]) -> tuple[MeasureSettings, float, int]:
        measure = self.table(doc, "measure", MEASURE_KEYS)
        values = {key: value for key, value in measure.items() if key in SETTING_KEYS
                  and self.setting(key, value, ("measure", key))}
        timeout_s = self.get(measure, ("measure",), "timeout_s", "number", required=False)
        if isinstance(timeout_s, int | float):
            self.within(("measure", "timeout_s"), timeout_s, 0, MAX_TIMEOUT_S, above_low=True)
        repetitions = self.get(measure, ("measure",), "repetitions", "integer", required=False)
        if _is_int(repetitions) and not self.within(("measure", "repetitions"), repetitions, 1,
                                                    MAX_REPETITIONS):
            repetitions = INVALID
        return (MeasureSettings(**values),
                float(timeout_s) if isinstance(timeout_s, int | float) else DEFAULT_TIMEOUT_S,
                repetitions if _is_int(repetitions) else 1)

    def train(self, doc: dict[str, Any], settings: MeasureSettings) -> TrainSpec | None:
        """``[train]``: how train mode makes the models trainable (``train_spec``); None for
        the other modes, where the table is an error."""
        table = self.table(doc, "train", TRAIN_KEYS)
        if settings.mode != Mode.TRAIN:
            if "train" in doc:
                self.error(("train",), "a [train] table needs [measure] mode = \"train\"")
            return None
        for key in ("use_xnnpack", "delegate_path"):
            if getattr(settings, key):
                self.error(("measure", key), "train mode attributes every op of the step to "
                                             "its layer and phase; a delegate fuses them: "
                                             "leave it out")
        values: dict[str, Any] = {}
        for key, choices in (("optimizer", OPTIMIZERS), ("loss", LOSSES)):
            value = self.get(table, ("train",), key, "string", required=False)
            if isinstance(value, str) and value not in choices:
                self.error(("train", key), unknown_choice(key, value, choices))
            elif isinstance(value, str):
                values[key] = value
        for key, high in (("batch_size", MAX_BATCH_SIZE), ("trainable_layers", MAX_LAYERS)):
            value = self.get(table, ("train",), key, "integer", required=False)
            if _is_int(value) and self.within(("train", key), value, 1, high):
                values[key] = value
        prefixes = self.get(table, ("train",), "prefixes", "boolean", required=False)
        if prefixes is True:
            if "trainable_layers" in values:
                self.error(("train", "prefixes"), "the prefixes train every layer with weights: "
                                                  "leave out trainable_layers")
            values["prefixes"] = True
        return TrainSpec(**values)

    def matrix(self, doc: dict[str, Any]) -> dict[str, list[Any]]:
        matrix = self.table(doc, "matrix", SETTING_KEYS)
        out: dict[str, list[Any]] = {}
        for key, values in matrix.items():
            if key not in SETTING_KEYS:
                continue
            if not isinstance(values, list) or not values:
                self.error(("matrix", key), "must be a non-empty array of values, e.g. "
                                            f"{key} = [...]; got {describe(values)}")
                continue
            if all([self.setting(key, v, ("matrix", key, i)) for i, v in enumerate(values)]):
                out[key] = list(values)
        return out

    def jobs_within_bound(self, doc: dict[str, Any], repetitions: int) -> bool:
        """Whether the suite plans at most ``MAX_SUITE_JOBS`` jobs per device (models x matrix
        combinations x repetitions); else reported, at the table that multiplies most
        visibly. Counted from the document, without expanding sweeps or the matrix, so a
        matrix of a million combinations costs no more than its arrays."""
        models = sum(_planned_models(entry) for entry in _list(doc.get("model")))
        matrix = doc.get("matrix")
        lengths = {key: len(values) for key, values in matrix.items()
                   if key in SETTING_KEYS and isinstance(values, list) and values
                   } if isinstance(matrix, dict) else {}
        combinations = math.prod(lengths.values())
        jobs = models * combinations * repetitions
        if jobs <= MAX_SUITE_JOBS:
            return True
        factors = " x ".join(f"{key} {n:,}" for key, n in lengths.items())
        at: KeyPath = (("matrix",) if combinations > 1 else ("measure", "repetitions")
                       if repetitions > 1 else ("model",))
        self.error(at, f"the suite plans {jobs:,} jobs per device, more than "
                       f"{MAX_SUITE_JOBS:,}: {_count(models, 'model')} x "
                       f"{_count(combinations, 'configuration')}"
                       f"{f' ({factors})' if factors else ''} x "
                       f"{_count(repetitions, 'repetition')}; vary fewer settings at once, or "
                       f"split the suite")
        return False

    def models(self, doc: dict[str, Any]) -> list[ModelSpec]:
        raw = doc.get("model", MISSING)
        if raw is MISSING:  # nothing to point at: the end of the file, where one would add one
            self.errors.append(SuiteError(self.suite_path, self.lines.last_line, "model",
                                          "no models; add at least one [[model]] table"))
            return []
        if raw == []:
            self.error(("model",), "no models; add at least one [[model]] table")
            return []
        if isinstance(raw, dict):
            self.error(("model",), "expected an array of tables: write [[model]], not [model]")
            return []
        if not isinstance(raw, list):
            self.error(("model",), f"expected an array of tables, got {describe(raw)}")
            return []
        models: list[ModelSpec] = []
        first_line: dict[str, int] = {}
        for i, entry in enumerate(raw):
            at: KeyPath = ("model", i)
            if not isinstance(entry, dict):
                self.error(at, f"expected a table ([[model]] with name = ...), got "
                               f"{describe(entry)}")
                continue
            self.check_keys(entry, at, MODEL_KEYS)
            if "reference" in entry:
                line = self.lines.line_of(at + ("reference",))
                for spec in self.reference_set(entry, at):
                    if spec.name in first_line:
                        self.error(at + ("reference",), f"duplicate model name {spec.name!r} "
                                                        f"(first at line {first_line[spec.name]})")
                        break
                    first_line[spec.name] = line
                    models.append(spec)
                continue
            name = self.get(entry, at, "name", "string", required=True)
            if name == "":
                self.error(at + ("name",), "must not be empty")
            elif isinstance(name, str):
                if name in first_line:
                    self.error(at + ("name",), f"duplicate model name {name!r} (first at line "
                                               f"{first_line[name]})")
                first_line.setdefault(name, self.lines.line_of(at + ("name",)))
            models += self.model(entry, at, name if isinstance(name, str) else "")
        return models

    def reference_set(self, entry: dict[str, Any], at: KeyPath) -> list[ModelSpec]:
        """``reference = true``: the ten models of the reference set, named ``ref:MEMBER``."""
        value = self.get(entry, at, "reference", "boolean", required=True)
        others = [k for k in ("recipe", "file", "sweep", "seed", SUITE_KEY) if k in entry]
        if others:
            self.error(at + (others[0],), "a reference = true entry takes no other source or "
                                          "settings: its ten models are fixed")
        name = self.get(entry, at, "name", "string", required=False)
        if isinstance(name, str) and name != REFERENCE_PREFIX:
            self.error(at + ("name",), f"the reference set's models are always named "
                                       f"{REFERENCE_PREFIX}:MEMBER (the names the estimators "
                                       f"find them by): leave out name")
        if value is not True:
            if value is False:
                self.error(at + ("reference",), "false lists nothing: remove the entry")
            return []
        return [ModelSpec(name=ref, reference=ref) for ref in reference_names()]

    def model(self, entry: dict[str, Any], at: KeyPath, name: str) -> list[ModelSpec]:
        given = [k for k in ("recipe", "file", "sweep") if k in entry]
        if len(given) != 1:
            self.error(at, "give exactly one of 'recipe', 'file', 'sweep' or 'reference'"
                           + (f" (got {', '.join(given)})" if given else ""))
            return []
        seed = self.seed(entry, at)
        shapes = self.input_shapes(entry, at)
        if "sweep" in entry:
            return [ModelSpec(name=f"{name}-{k:03d}", sweep=config, input_shapes=shapes)
                    for k, config in enumerate(self.sweep(entry, at + ("sweep",)))]
        if "recipe" in entry:
            recipe = self.get(entry, at, "recipe", "string", required=True)
            if isinstance(recipe, str) and recipe not in RECIPES:
                self.error(at + ("recipe",), unknown_choice("recipe", recipe, sorted(RECIPES)))
                return []
            return [ModelSpec(name=name, recipe=recipe, seed=seed, input_shapes=shapes)
                    ] if isinstance(recipe, str) else []
        file = self.get(entry, at, "file", "string", required=True)
        if not isinstance(file, str):
            return []
        path = self.suite_path.parent / file
        # Only looked at: a missing file may be added before the suite runs, but a FIFO
        # there would block the run's read for ever.
        problem = regular_file_problem(path, MAX_MODEL_FILE_BYTES, "model file")
        if problem is not None:
            self.error(at + ("file",), f"{file} {problem}")
            return []
        if shapes:
            self.check_shapes_against(path, shapes, at + (SUITE_KEY,))
        return [ModelSpec(name=name, seed=seed, file=path, input_shapes=shapes)]

    def input_shapes(self, entry: dict[str, Any], at: KeyPath
                     ) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """``input_shapes = { audio = [1, 16000] }``: input name (or position, ``0``) -> the
        shape to run it at, each dimension an integer >= 1. Empty when absent or invalid."""
        if SUITE_KEY not in entry:
            return ()
        where = at + (SUITE_KEY,)
        table = entry[SUITE_KEY]
        if not isinstance(table, dict):
            self.error(where, "expected a table of input name (or position) = shape, e.g. "
                              f"{SUITE_KEY} = {{ audio = [1, 16000] }}; got {describe(table)}")
            return ()
        out = []
        valid = True
        for key, shape in table.items():
            if not isinstance(shape, list):
                self.error(where + (key,), f"expected an array of dimensions, e.g. [1, 16000]; "
                                           f"got {describe(shape)}")
                valid = False
                continue
            bad = [k for k, d in enumerate(shape) if not _is_int(d) or d < 1]
            for k in bad:
                self.error(where + (key, k), f"expected an integer >= 1, got "
                                             f"{describe(shape[k])}")
            elements = 0 if bad else math.prod(shape)
            if elements > MAX_INPUT_ELEMENTS:  # the device would allocate it
                self.error(where + (key,), f"{elements} elements, more than {MAX_INPUT_ELEMENTS} "
                                           f"(the most one input is run at)")
            valid = valid and not bad and elements <= MAX_INPUT_ELEMENTS
            out.append((key, tuple(shape)))
        return tuple(out) if valid else ()

    def check_shapes_against(self, path: Path, shapes: tuple[tuple[str, tuple[int, ...]], ...],
                             at: KeyPath) -> None:
        """The input shape rule (``joulefarm.tflite.inputs.resolve_input_shapes``) on the model
        file, where it can be read now: a name the model lacks is reported at its key, with
        the model's inputs; any other problem at the table. An unreadable file is left for
        when the model is materialised."""
        try:
            inputs = model_inputs(read_regular_file(path, MAX_MODEL_FILE_BYTES, "model file"))
        except (OSError, ModelError, FileRefused):
            return
        names = {i.name for i in inputs}
        unknown = [key for key, _ in shapes
                   if key not in names and not (key.isdigit() and int(key) < len(inputs))]
        for key in unknown:
            self.error(at + (key,), f"{path.name} has no input {key!r}"
                                    f"{did_you_mean(key, sorted(names))}; "
                                    f"its inputs: {_input_listing(inputs)}")
        if unknown:
            return
        try:
            resolve_input_shapes(inputs, shapes)
        except InputError as e:
            self.error(at, f"{path.name}: {e}")

    def sweep(self, entry: dict[str, Any], at: KeyPath) -> list[SweepConfig]:
        """A generated layer sweep: ``{ count = 50, kinds = ["conv", ...], profile = "mobile",
        seed = 0, max_macs = ... }``, expanded into single-layer configurations."""
        table = entry["sweep"]
        if not isinstance(table, dict):
            self.error(at, f"expected a table such as {{ count = 20 }}, got {describe(table)}")
            return []
        self.check_keys(table, at, SWEEP_KEYS)
        count = self.get(table, at, "count", "integer", required=True)
        if _is_int(count) and not self.within(at + ("count",), count, 1, MAX_SWEEP_COUNT):
            count = INVALID
        options: dict[str, Any] = {"seed": self.seed(table, at)}
        profile = self.get(table, at, "profile", "string", required=False)
        if isinstance(profile, str) and profile not in PROFILES:
            self.error(at + ("profile",), unknown_choice("sweep profile", profile, PROFILES))
        options["profile"] = profile if profile in PROFILES else "mobile"
        kinds = self.strings(table, at, "kinds")
        for i, kind in enumerate(kinds):
            if kind not in KINDS:
                self.error(at + ("kinds", i), unknown_choice("sweep kind", kind, KINDS))
        if kinds:
            options["kinds"] = kinds
        max_macs = self.get(table, at, "max_macs", "integer", required=False)
        if _is_int(max_macs) and self.within(at + ("max_macs",), max_macs, 1, MAX_SWEEP_MACS):
            options["max_macs"] = max_macs
        if not _is_int(count) or not self.expand:
            return []
        try:
            return sample_configs(count, **options)
        except ValueError as e:
            self.error(at, str(e))
            return []

    def seed(self, table: dict[str, Any], at: KeyPath) -> int:
        """``seed`` of a model or sweep table: 0 when absent or invalid (reported)."""
        seed = self.get(table, at, "seed", "integer", required=False)
        return seed if _is_int(seed) and self.within(at + ("seed",), seed, 0, MAX_SEED) else 0

    def schedule(self, doc: dict[str, Any]) -> str | None:
        schedule = self.table(doc, "schedule", SCHEDULE_KEYS)
        cron = self.get(schedule, ("schedule",), "cron", "string", required=False)
        if not isinstance(cron, str):
            return None
        try:
            Cron.parse(cron)
        except CronError as e:
            self.error(("schedule", "cron"), str(e))
            return None
        return cron
