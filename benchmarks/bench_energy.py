"""Throughput of the Rust core's windowed integration, measured in one run against references.

    python benchmarks/bench_energy.py [--samples 1e8] [--windows 1e5] [--repeat 3]
                                      [--stream-samples 1e9] [--stream-chunk 1e6]

Prints, for a float32 uniform trace and contiguous windows with fractional edges:
  * rust_core ``integrate_windows`` (single thread: the core has no threads);
  * a vectorised numpy reference (prefix sums, the way one writes it in numpy) — target >= 10x;
  * ``numpy.sum`` over the same array, a memory-bandwidth yardstick — target >= 0.6;
  * the cost of one small call (64 samples, one window) through the binding, beside a numpy
    call of the same size: the stable ABI (abi3) the extension is built for could show there.
Then, in a subprocess (so the first part's arrays do not count), the memory of
``StreamingIntegrator``: a ``--stream-samples`` float32 trace generated chunk by chunk (never
whole) is fed through it with ``--windows`` windows; the peak RSS above the baseline taken just
before must stay <= 64 MiB. The same child checks, on a 1e7-sample trace, that the streamed
result equals the sum over chunks of one-shot integration of each chunk (hold model).
Figures from a debug build are refused: ``pip install -e .`` builds release.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import joulefarm


def numpy_reference(power: np.ndarray, fs: float, starts: np.ndarray,
                    ends: np.ndarray, t0: float) -> np.ndarray:
    """Exact sample-and-hold energy per window with numpy prefix sums (float64)."""
    n = len(power)
    cum = np.empty(n + 1)
    cum[0] = 0.0
    np.cumsum(power, dtype=np.float64, out=cum[1:])

    def energy_at(t: np.ndarray) -> np.ndarray:
        u = np.clip((t - t0) * fs, 0.0, n)
        i = np.minimum(np.floor(u).astype(np.int64), n - 1)
        return (cum[i] + (u - i) * power[i]) / fs

    return energy_at(ends) - energy_at(starts)


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


STREAM_LIMIT_MIB = 64.0
STREAM_FS = 10_000.0


def _rss_kib(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process in KiB (Linux), None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _contiguous_windows(n: int, w: int, fs: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.sort(np.random.default_rng(seed).uniform(0, n, w + 1))
    edges[0], edges[-1] = 0.5, n - 0.5
    return edges[:-1] / fs, edges[1:] / fs


def _chunks(n: int, chunk: int, seed: int, buf: np.ndarray):
    """Yields float32 chunks of a random 1-5 W trace, reusing ``buf``: never the whole trace."""
    rng = np.random.default_rng(seed)
    for i in range(0, n, chunk):
        part = buf[: min(chunk, n - i)]
        rng.random(out=part, dtype=np.float32)
        part *= 4.0
        part += 1.0
        yield part


def streaming_child(samples: int, windows: int, chunk: int) -> dict:
    """Runs in a fresh interpreter: peak memory of streaming, and the chunked-sum check."""
    # Check first, on a small trace: streamed == sum over chunks of one-shot integration.
    n_small = 10_000_000
    starts, ends = _contiguous_windows(n_small, 10_000, STREAM_FS, 1)
    stream = joulefarm.StreamingIntegrator(STREAM_FS, starts, ends)
    per_chunk = np.zeros(len(starts))
    buf = np.empty(chunk, dtype=np.float32)
    for k, part in enumerate(_chunks(n_small, chunk, 2, buf)):
        stream.feed(part)
        e = joulefarm.integrate(part, STREAM_FS, starts, ends, t0=k * chunk / STREAM_FS)
        per_chunk += np.nan_to_num(e)
    streamed = stream.finish()["energy_j"]
    check = float(np.max(np.abs(streamed - per_chunk) / np.abs(per_chunk)))
    del stream, per_chunk, streamed, buf, starts, ends

    starts, ends = _contiguous_windows(samples, windows, STREAM_FS, 3)
    base_kib = _rss_kib("VmRSS")
    exact_peak = _reset_peak() and base_kib is not None
    if not exact_peak:
        base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began = time.perf_counter()
    buf = np.empty(chunk, dtype=np.float32)
    stream = joulefarm.StreamingIntegrator(STREAM_FS, starts, ends)
    # float64 sum of every sample, and the end samples, to check the windows' total energy.
    total, first, last = 0.0, None, 0.0
    for part in _chunks(samples, chunk, 4, buf):
        stream.feed(part)
        total += float(np.sum(part, dtype=np.float64))
        first = float(part[0]) if first is None else first
        last = float(part[-1])
    cols = stream.finish()
    elapsed = time.perf_counter() - began
    peak_kib = _rss_kib("VmHWM") if exact_peak else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss
    # The windows tile [0.5, n - 0.5] samples: all but half of the first and last sample.
    want = (total - 0.5 * first - 0.5 * last) / STREAM_FS
    got = float(np.sum(cols["energy_j"]))
    return {
        "samples": samples, "windows": windows, "chunk": chunk, "seconds": elapsed,
        "peak_above_baseline_mib": (peak_kib - base_kib) / 1024.0,
        "method": "VmHWM after clear_refs" if exact_peak else "ru_maxrss delta",
        "total_rel_diff": abs(got - want) / want,
        "chunked_check_max_rel_diff": check,
    }


def streaming_section(samples: int, windows: int, chunk: int) -> None:
    cmd = [sys.executable, __file__, "--streaming-child", "--stream-samples", str(samples),
           "--windows", str(windows), "--stream-chunk", str(chunk)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    mib = r["peak_above_baseline_mib"]
    print(f"streaming: {r['samples']:.3g} float32 samples in chunks of {r['chunk']:.3g}, "
          f"{r['windows']:.3g} windows, {r['seconds']:.1f} s "
          f"({r['samples'] / r['seconds'] / 1e6:.0f} M samples/s incl. generating them)")
    print(f"streaming peak RSS above baseline: {mib:8.1f} MiB  (target <= {STREAM_LIMIT_MIB:.0f}"
          f" MiB; {r['method']}){'' if mib <= STREAM_LIMIT_MIB else '  OVER TARGET'}")
    print(f"streaming: total energy of the windows vs float64 sum of the samples: "
          f"relative difference {r['total_rel_diff']:.2e}")
    print(f"streamed == sum of per-chunk one-shot integration (1e7 samples): "
          f"max relative difference {r['chunked_check_max_rel_diff']:.2e}")


def call_overhead_section(repeat: int) -> None:
    """Microseconds per call on a tiny input, where the binding's overhead (argument parsing,
    array conversion, the result dict) is all there is to measure."""
    power = np.linspace(1.0, 2.0, 64, dtype=np.float32)
    starts, ends = np.array([0.001]), np.array([0.005])
    calls = 20_000

    def per_call(fn: Callable[[], object]) -> float:
        best, _ = best_of(repeat, lambda: [fn() for _ in range(calls)])
        return best / calls * 1e6

    t_int = per_call(lambda: joulefarm.integrate(power, 10_000.0, starts, ends))
    t_win = per_call(lambda: joulefarm.integrate_windows(power, 10_000.0, starts, ends))
    t_np = per_call(lambda: np.sum(power))
    abi = Path(joulefarm._core.__file__).name
    print(f"call overhead ({abi}): integrate {t_int:5.2f} us, integrate_windows {t_win:5.2f} us "
          f"per call on 64 samples (numpy.sum on the same: {t_np:5.2f} us)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=float, default=1e8)
    parser.add_argument("--windows", type=float, default=1e5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stream-samples", type=float, default=1e9,
                        help="length of the streamed trace (0 skips the streaming section)")
    parser.add_argument("--stream-chunk", type=float, default=1e6)
    parser.add_argument("--streaming-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--allow-debug", action="store_true",
                        help="run on a debug build anyway (figures are then meaningless)")
    ns = parser.parse_args()
    if ns.streaming_child:
        r = streaming_child(int(ns.stream_samples), int(ns.windows), int(ns.stream_chunk))
        print(json.dumps(r))
        return 0
    profile = joulefarm.build_profile()
    if profile != "release" and not ns.allow_debug:
        print(f"refusing: the Rust core is a {profile} build; `pip install -e .` builds release",
              file=sys.stderr)
        return 2

    n, w, fs, t0 = int(ns.samples), int(ns.windows), 10_000.0, 12.5
    rng = np.random.default_rng(0)
    power = rng.uniform(1.0, 5.0, n).astype(np.float32)
    # Contiguous windows covering the trace, with edges at fractional sample positions.
    edges = np.sort(rng.uniform(0, n, w + 1))
    edges[0], edges[-1] = 0.5, n - 0.5
    starts, ends = t0 + edges[:-1] / fs, t0 + edges[1:] / fs
    mb = power.nbytes / 1e6

    t_rust, rust = best_of(ns.repeat, lambda: joulefarm.integrate_windows(
        power, fs, starts, ends, t0=t0)["energy_j"])
    t_np, ref = best_of(1, lambda: numpy_reference(power, fs, starts, ends, t0))
    t_sum, _ = best_of(ns.repeat, lambda: np.sum(power))
    err = float(np.max(np.abs(rust - ref) / np.abs(ref)))

    print(f"build profile: {profile}; trace {n:.3g} float32 samples ({mb:.0f} MB), "
          f"{w:.3g} windows")
    print(f"rust_core integrate_windows : {t_rust * 1e3:9.1f} ms  {mb / 1e3 / t_rust:6.2f} GB/s")
    print(f"numpy reference (prefix sum): {t_np * 1e3:9.1f} ms  {mb / 1e3 / t_np:6.2f} GB/s")
    print(f"numpy.sum (bandwidth)       : {t_sum * 1e3:9.1f} ms  {mb / 1e3 / t_sum:6.2f} GB/s")
    print(f"speed-up vs numpy reference : {t_np / t_rust:6.1f}x   (target >= 10x)")
    print(f"throughput vs numpy.sum     : {t_sum / t_rust:6.2f}    (target >= 0.6)")
    print(f"max relative difference rust vs reference: {err:.2e}")
    call_overhead_section(ns.repeat)
    if ns.stream_samples > 0:
        del power, rust, ref
        streaming_section(int(ns.stream_samples), w, int(ns.stream_chunk))
    return 0


if __name__ == "__main__":
    sys.exit(main())
