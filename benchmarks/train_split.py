"""Where a training step's energy goes, per layer type: forward : backward : update.

    python benchmarks/train_split.py [--profile rpi4] [--min-duration-s 1] [--batch-size 8]

Three generated CNNs (``joulefarm.tflite.builder`` specs: a plain CNN, a MobileNet-like
depthwise-separable one, one with pooling and a wider head) are made trainable
(``joulefarm.tflite.training``, softmax cross-entropy, Adam) and measured in train mode
(``agent.measure_train``) with the simulated meter. Per layer type, summed over every layer
of that type in the three models, it prints the energy per step of the forward, backward
(activation, input and weight gradients) and update phases, and their split. The meter is
simulated: the split follows the simulator's power model (MACs and bytes moved per op
window), on this machine's op timings.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from agent.measure_train import TrainResult, measure_train
from agent.meters.sim import SimMeter
from agent.runtimes.backend import runtime_info
from joulefarm.results import MeasureSettings
from joulefarm.tflite.builder import (
    Conv2D,
    DepthwiseConv2D,
    Flatten,
    FullyConnected,
    LayerSpec,
    MaxPool2D,
    Mean,
    Softmax,
)
from joulefarm.tflite.training import trainable_model

INPUT = (32, 32, 3)
CLASSES = 10
MODELS: dict[str, list[LayerSpec]] = {
    "plain_cnn": [Conv2D(16), Conv2D(16, stride=(2, 2)), Conv2D(32), Flatten(),
                  FullyConnected(CLASSES), Softmax()],
    "separable": [Conv2D(16, stride=(2, 2)), DepthwiseConv2D(), Conv2D(32, kernel=(1, 1)),
                  DepthwiseConv2D(stride=(2, 2)), Conv2D(64, kernel=(1, 1)), Mean(),
                  FullyConnected(CLASSES), Softmax()],
    "pooled": [Conv2D(16), MaxPool2D(), Conv2D(32), MaxPool2D(), Flatten(),
               FullyConnected(64), FullyConnected(CLASSES), Softmax()],
}
GROUPS = ("forward", "backward", "update")


def measure_model(layers: list[LayerSpec], profile: str, settings: MeasureSettings,
                  batch_size: int) -> TrainResult:
    model = trainable_model(layers, INPUT, loss="softmax_cross_entropy", optimizer="adam",
                            batch_size=batch_size, seed=0)
    return measure_train(model, "train_split", SimMeter(profile, seed=0), settings,
                         runtime_info())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="rpi4", help="simulated device profile")
    parser.add_argument("--min-duration-s", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    settings = MeasureSettings(mode="train", min_duration_s=args.min_duration_s,
                               idle_duration_s=0.1)
    by_type: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(GROUPS, 0.0))
    print(f"SIMULATED meter ({args.profile}), batch {args.batch_size}, Adam, "
          "softmax cross-entropy; energy per training step")
    for name, layers in MODELS.items():
        done = measure_model(layers, args.profile, settings, args.batch_size)
        whole = done.result.whole
        assert whole is not None
        phases = sum(r.energy_j for r in done.phases)
        print(f"  {name}: step {whole.energy_j * 1e3:.3f} mJ, {whole.latency_mean_s * 1e3:.3f} "
              f"ms ({whole.iterations} steps); op windows hold {phases / whole.energy_j:.0%} "
              f"of its energy, {done.attributed_latency_s / whole.latency_mean_s:.0%} of its "
              "time")
        for layer in sorted({r.layer for r in done.phases if r.layer is not None}):
            op = next(r.op for r in done.phases if r.layer == layer)
            for group, (energy, _) in done.split(layer).items():
                by_type[op][group] += energy
    print(f"\n{'layer type':<20}{'forward uJ':>12}{'backward uJ':>13}{'update uJ':>11}"
          f"   forward : backward : update")
    for op, energy in sorted(by_type.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(energy.values())
        if total <= 0:
            continue
        split = " : ".join(f"{energy[g] / total:.2f}" for g in GROUPS)
        ratio = (f"  (backward/forward {energy['backward'] / energy['forward']:.2f})"
                 if energy["forward"] > 0 else "")
        print(f"{op:<20}{energy['forward'] * 1e6:>12.1f}{energy['backward'] * 1e6:>13.1f}"
              f"{energy['update'] * 1e6:>11.1f}   {split}{ratio}")


if __name__ == "__main__":
    main()
