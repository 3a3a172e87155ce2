"""Throughput of the Rust core's windowed integration, measured in one run against references.

    python benchmarks/bench_energy.py [--samples 1e8] [--windows 1e5] [--repeat 3]

Prints, for a float32 uniform trace and contiguous windows with fractional edges:
  * rust_core ``integrate_windows`` (single thread: the core has no threads);
  * a vectorised numpy reference (prefix sums, the way one writes it in numpy) — target >= 10x;
  * ``numpy.sum`` over the same array, a memory-bandwidth yardstick — target >= 0.6.
Figures from a debug build are refused: ``pip install -e .`` builds release.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=float, default=1e8)
    parser.add_argument("--windows", type=float, default=1e5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--allow-debug", action="store_true",
                        help="run on a debug build anyway (figures are then meaningless)")
    ns = parser.parse_args()
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
