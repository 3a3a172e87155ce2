"""THOR's subtraction method against the per-op events and the simulator's truth.

    python benchmarks/train_subtraction.py [--profile rpi4] [--min-duration-s 0.3]
        [--batch-size 8] [--rounds 5]

The generated CNNs of ``benchmarks/train_split.py`` (inference models, made trainable prefix
by prefix with MSE and Adam: ``agent.measure_prefixes``) are measured with the simulated
meter. Per layer it prints the per-op events' energy, the subtraction's E(k) - E(k-1) and
the simulator's truth of the layer's op windows; its last lines give, over every layer of
every model, the median |difference| between the two methods and between the subtraction
and the truth, and the events' additivity (their per-layer sum over the step).
"""

from __future__ import annotations

import argparse
import statistics

from agent.measure_prefixes import measure_prefixes
from agent.meters.sim import SimMeter
from agent.runtimes.backend import runtime_info
from benchmarks.train_split import INPUT, MODELS
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import build_model

LARGE_SHARE = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="rpi4", help="simulated device profile")
    parser.add_argument("--min-duration-s", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    settings = MeasureSettings(mode="train", min_duration_s=args.min_duration_s,
                               idle_duration_s=0.1)
    print(f"SIMULATED meter ({args.profile}), batch {args.batch_size}, Adam, MSE; energy per "
          f"training step; {args.rounds} rounds")
    vs_events: list[float] = []
    vs_truth: list[float] = []
    additivity: list[float] = []
    large: list[float] = []  # |subtraction - truth| / truth of layers >= 10% of their step
    flagged = 0
    for name, layers in MODELS.items():
        model = build_model((args.batch_size, *INPUT), layers, seed=0)
        split = measure_prefixes(model, lambda k: SimMeter(args.profile, seed=k), settings,
                                 runtime_info(), optimizer="adam", rounds=args.rounds)
        events, truth = split.agreement("events"), split.agreement("truth")
        print(f"\n{name}: step {split.step_energy_j * 1e6:.1f} uJ, additivity "
              f"{split.additivity:.3f}")
        print(f"{'layer':>5} {'op':<20}{'events uJ':>11}{'subtr. uJ':>11}{'truth uJ':>11}"
              f"{'subtr-ev %':>11}{'subtr-tr %':>11}{'share':>7}")
        for x, d_ev, d_tr, share in zip(split.layers, events.relative, truth.relative,
                                        truth.shares, strict=True):
            print(f"{x.layer:>5} {x.op:<20}{x.event_energy_j * 1e6:>11.1f}"
                  f"{x.subtraction_energy_j * 1e6:>11.1f}{(x.true_energy_j or 0) * 1e6:>11.1f}"
                  f"{d_ev * 100:>11.1f}{d_tr * 100:>11.1f}{share:>7.2f}")
        large += [abs(r) for x, r, share in zip(split.layers, truth.relative, truth.shares,
                                                strict=True)
                  if share >= LARGE_SHARE and not x.contended]
        flagged += sum(x.contended for x in split.layers)
        vs_events += [abs(r) for r in events.relative]
        vs_truth += [abs(r) for r in truth.relative]
        additivity.append(split.additivity)
    print(f"\nmedian |subtraction - events| / events: "
          f"{statistics.median(r for r in vs_events if r == r):.1%} (all layers)")
    print(f"median |subtraction - truth| / truth: "
          f"{statistics.median(r for r in vs_truth if r == r):.1%} (all layers)")
    print("additivity (layers' events / step): "
          + ", ".join(f"{a:.3f}" for a in additivity))
    print(f"layers not vouched for (a prefix ran only cpu_contended): {flagged}")
    print(f"layers >= {LARGE_SHARE:.0%} of the step: median |subtraction - truth| / truth "
          f"{statistics.median(large):.1%}, largest {max(large):.1%} ({len(large)} layers)")


if __name__ == "__main__":
    main()
