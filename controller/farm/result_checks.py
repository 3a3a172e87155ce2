"""An agent's result is checked against its job before anything of it is stored.

Runs are stored under the job's device and model. An agent that answers as another device, or
returns another model's results (misconfigured, replaced, lying), would put numbers under the
wrong name; a number no measurement can have (negative or infinite latency or energy, coverage
outside [0, 1], a window that ends before it starts) would sit among real ones and skew every
sum and fit. Either refuses the whole result: its other numbers came from the same agent and
cannot be trusted more. The refusal is permanent (running the job again on the same agent
gives the same), and the message names what was reported and what was expected.

NaN is how an agent says "not measured", and is let through only where a flag on the row says
why: ``not_isolated`` (a layer that cannot run alone: nothing measured) and, for energy and
coverage, ``no_samples`` (the meter gave no sample in the window). The store keeps those as NULL,
never as a number (``controller.store._NAN_IS_NULL``). A NaN no flag explains is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from joulefarm.enums import Mode
from joulefarm.errors import JoulefarmError
from joulefarm.results import NOT_ISOLATED, BenchmarkResult, LayerTable

__all__ = ["ResultRejected", "check_device", "check_result"]

NO_SAMPLES = "no_samples"

# Field -> the flags under which NaN (not measured) is a valid value of it.
_LAYER_NAN_ALLOWED: dict[str, frozenset[str]] = {
    "latency_s": frozenset({NOT_ISOLATED}),
    "energy_j": frozenset({NOT_ISOLATED, NO_SAMPLES}),
    "coverage": frozenset({NOT_ISOLATED, NO_SAMPLES}),
}
_LAYER_WINDOW_NAN_ALLOWED = frozenset({NOT_ISOLATED})
_WHOLE_LATENCIES = ("latency_mean_s", "latency_p50_s", "latency_p90_s", "latency_p99_s")


class ResultRejected(JoulefarmError):
    """A result that is not the job's, or that holds a value no measurement can have: refused
    whole, nothing of it stored."""


def check_device(job_device: str, reported: str) -> None:
    """The agent at the job's device address must answer as that device."""
    if reported != job_device:
        raise ResultRejected(
            f"{job_device}: the agent there answers as device {reported!r}, not "
            f"{job_device!r} (a misconfigured or wrong agent at this address); nothing stored")


def check_result(job_device: str, job_model: str, job_sha256: str, reported_device: str,
                 result: BenchmarkResult) -> None:
    """Refuse (``ResultRejected``) a result that is not for the job's device and model, or that
    holds an impossible or unexplained value; return quietly otherwise."""
    check_device(job_device, reported_device)
    where = f"{job_device}: model {job_model}"
    if result.model_sha256 != job_sha256:
        raise ResultRejected(
            f"{where}: the agent returned results for model sha256 {result.model_sha256}, but "
            f"the job asked for {job_sha256}; nothing stored")
    problem = (_layers_problem(result.layers) or _whole_problem(result)
               or _pairs_problem(result) or _phases_problem(result))
    if problem:
        raise ResultRejected(f"{where}: result refused, {problem}; nothing stored")


def _value_problem(name: str, value: float, flags: Iterable[str],
                   nan_allowed: frozenset[str] = frozenset()) -> str | None:
    """What is wrong with one latency, energy or coverage value, or None."""
    if math.isnan(value):
        return None if nan_allowed & set(flags) else f"{name} is nan (no flag says why)"
    if math.isinf(value) or value < 0:
        return f"{name} is {value!r}"
    if name == "coverage" and value > 1:
        return f"{name} is {value!r} (above 1)"
    return None


def _window_problem(start: float, end: float, flags: Iterable[str],
                    nan_allowed: frozenset[str] = frozenset()) -> str | None:
    """What is wrong with a window, or None. Its ends are instants on the agent's clock, of
    any sign; the end comes after the start."""
    for name, value in (("window_start_s", start), ("window_end_s", end)):
        if math.isnan(value) and not nan_allowed & set(flags):
            return f"{name} is nan (no flag says why)"
        if math.isinf(value):
            return f"{name} is {value!r}"
    if end < start:  # False when either is NaN
        return f"window_end_s {end!r} is before window_start_s {start!r}"
    return None


def _layers_problem(layers: LayerTable) -> str | None:
    """The first impossible value of any layer. A result has up to thousands of layers and is
    almost always clean: the columns are checked whole, and only suspect rows one by one."""
    c = layers.columns
    suspect = c["coverage"] > 1
    for name in _LAYER_NAN_ALLOWED:
        suspect |= ~np.isfinite(c[name]) | (c[name] < 0)
    suspect |= ~np.isfinite(c["window_start_s"]) | ~np.isfinite(c["window_end_s"])
    suspect |= c["window_end_s"] < c["window_start_s"]
    for k in np.flatnonzero(suspect):
        flags: Sequence[str] = c["flags"][k]
        checks = (
            *(_value_problem(name, float(c[name][k]), flags, allowed)
              for name, allowed in _LAYER_NAN_ALLOWED.items()),
            _window_problem(float(c["window_start_s"][k]), float(c["window_end_s"][k]), flags,
                            _LAYER_WINDOW_NAN_ALLOWED),
        )
        problem = next((p for p in checks if p), None)
        if problem:
            return f"layer {int(c['index'][k])} ({c['op'][k]}): {problem}"
    return None


def _whole_problem(result: BenchmarkResult) -> str | None:
    """The whole-model record: every latency measured (the agent's clock always runs), energy
    and coverage NaN only without samples."""
    w = result.whole
    if w is None:
        return None
    checks = (
        *(_value_problem(name, getattr(w, name), w.flags) for name in _WHOLE_LATENCIES),
        _value_problem("energy_j", w.energy_j, w.flags, frozenset({NO_SAMPLES})),
        _value_problem("coverage", w.coverage, w.flags, frozenset({NO_SAMPLES})),
        _window_problem(w.window_start_s, w.window_end_s, w.flags),
    )
    problem = next((p for p in checks if p), None)
    return f"whole model: {problem}" if problem else None


def _pairs_problem(result: BenchmarkResult) -> str | None:
    """Pairs are measured as layers are; one that cannot run alone is left out, not sent."""
    for p in result.pairs:
        problem = (_value_problem("latency_s", p.latency_s, p.flags)
                   or _value_problem("energy_j", p.energy_j, p.flags, frozenset({NO_SAMPLES})))
        if problem:
            return f"pair {p.first_index}+{p.second_index} ({p.ops}): {problem}"
    return None


def _phases_problem(result: BenchmarkResult) -> str | None:
    """Train mode: a step (``whole``) and its phases, each with a measured time and energy."""
    if (result.mode == Mode.TRAIN) != bool(result.phases):
        return (f"mode {result.mode} with {len(result.phases)} training phase rows"
                if result.phases else "mode train without phase rows")
    if result.mode == Mode.TRAIN and result.whole is None:
        return "mode train without the step (whole record)"
    flags = result.whole.flags if result.whole is not None else ()
    for p in result.phases:
        problem = (_value_problem("latency_s", p.latency_s, ())
                   or _value_problem("energy_j", p.energy_j, flags, frozenset({NO_SAMPLES}))
                   or (f"ops is {p.ops}" if p.ops < 1 else None))
        if problem:
            layer = "model-wide" if p.layer is None else f"layer {p.layer} ({p.op})"
            return f"{layer}, phase {p.phase}: {problem}"
    return None
