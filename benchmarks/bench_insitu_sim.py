"""In-situ post-processing on the simulated meter: time per op window, 1e3 to 1e6 windows.

    python benchmarks/bench_insitu_sim.py [--windows 1e3,1e4,1e5,1e6] [--recipe tiny_cnn]

An in-situ run yields one window per op per inference. A real profiled run of a recipe model
(looped until it has the asked number of windows) is recorded once per size; then what follows
the loop is timed, the part that grows with the windows: telling the simulator what ran
(``note_activity`` per window), synthesising the trace (``stop``), and ``integrate_insitu``
(alignment, integration, per-layer grouping, the simulator's ground truth). The time per window
must stay flat as the windows grow (it was quadratic: the ground truth was rebuilt per window).
"""

from __future__ import annotations

import argparse
import sys
import time

import joulefarm
from agent.measure import TAIL_S, RawRun, _prelude, integrate_insitu
from agent.meters.sim import SimMeter
from agent.runtimes.profiler import open_profiled_model
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import RECIPES
from joulefarm.tflite.parse import read_layers


def one_size(model_bytes: bytes, windows: int) -> tuple[int, float, float]:
    """(windows, seconds recording them with the simulator, seconds integrating them)."""
    layers = read_layers(model_bytes)
    settings = MeasureSettings(mode="insitu", idle_duration_s=0.05, min_duration_s=0.0,
                               warmup_iterations=2)
    ops_per_inference = len(layers)
    iterations = max(1, -(-windows // ops_per_inference))
    meter = SimMeter("host", sample_rate_hz=10_000, seed=1)
    with open_profiled_model(model_bytes, num_threads=1, use_xnnpack=False, seed=0) as model:
        model.warmup(settings.warmup_iterations)
        idle_window, busy_starts, busy_ends = _prelude(meter, settings)
        run = model.run(iterations, min_duration_s=0.0)
    by_node = {x.index: x for x in layers}
    began = time.perf_counter()
    for start, end, node in zip(run.starts_s.tolist(), run.ends_s.tolist(),
                                run.node_index.tolist(), strict=True):
        info = by_node.get(node)
        meter.note_activity("layer", start, end, macs=info.macs if info else 0,
                            bytes_moved=(info.act_in_bytes + info.act_out_bytes
                                         + info.param_bytes) if info else 0)
    recorded = time.perf_counter() - began
    tail = time.perf_counter()
    time.sleep(TAIL_S)  # as _tail_and_stop does, outside the timing
    meter.note_activity("idle", tail, time.perf_counter())
    began = time.perf_counter()
    trace = meter.stop()
    recorded += time.perf_counter() - began
    raw = RawRun(trace, idle_window, busy_starts, busy_ends, (), 0.0, 0.0)
    began = time.perf_counter()
    result = integrate_insitu(raw, run, layers, meter, settings, "0" * 64, ("bench", "0"))
    integrated = time.perf_counter() - began
    assert all(x.true_energy_j is not None for x in result.layers)
    return len(run), recorded, integrated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", default="1e3,1e4,1e5,1e6",
                        help="comma-separated window counts")
    parser.add_argument("--recipe", default="tiny_cnn", choices=sorted(
        name for name, recipe in RECIPES.items() if not recipe.int8))
    ns = parser.parse_args()
    if joulefarm.build_profile() != "release":
        print("refusing: the Rust core is a debug build; `pip install -e .` builds release",
              file=sys.stderr)
        return 2
    model_bytes = RECIPES[ns.recipe](0)
    print(f"recipe {ns.recipe}: {len(read_layers(model_bytes))} ops per inference")
    print(f"{'windows':>9} {'record us/window':>17} {'integrate us/window':>20} "
          f"{'total us/window':>16}")
    for target in (int(float(x)) for x in ns.windows.split(",")):
        n, recorded, integrated = one_size(model_bytes, target)
        print(f"{n:9d} {recorded / n * 1e6:17.2f} {integrated / n * 1e6:20.2f} "
              f"{(recorded + integrated) / n * 1e6:16.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
