"""The agent's own cost: inference latency with the meter sampling vs without.

    python benchmarks/bench_agent_overhead.py [--model tiny_cnn] [--seconds 3] [--rate-hz 500]

A polled meter samples in a Python thread of the agent, so it competes with inference for the
GIL and the CPU. This measures whole-model latency (median of per-call latencies, interleaved
rounds so drift on a shared machine hits both sides alike) with no meter and with an INA2xx
driver reading a sysfs tree laid out like a Raspberry Pi's (files on tmpfs stand in for the
I2C reads), at the driver's normal rate. Target: <= 2% slowdown.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.local import build_recipe
from agent.measure import RECORDING_SWITCH_INTERVAL_S
from agent.meters import open_meter
from agent.runtimes.chain import WholeModel


def make_ina219(root: Path) -> None:
    client = root / "sys/devices/platform/soc/fe804000.i2c/i2c-1/1-0040"
    hwmon = root / "sys/class/hwmon/hwmon2"
    client.mkdir(parents=True)
    hwmon.mkdir(parents=True)
    (hwmon / "device").symlink_to(client)
    (hwmon / "name").write_text("ina219\n")
    for name, value in (("in1_input", 5104), ("curr1_input", 712), ("power1_input", 3634000)):
        (hwmon / name).write_text(f"{value}\n")


def latencies(model: WholeModel, seconds: float) -> np.ndarray:
    invoke, clock = model.interpreter.invoke, time.perf_counter
    out = []
    end = clock() + seconds
    before = clock()
    while before < end:
        invoke()
        after = clock()
        out.append(after - before)
        before = after
    return np.asarray(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_cnn")
    parser.add_argument("--seconds", type=float, default=3.0, help="per side, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate-hz", type=float, default=500.0)
    ns = parser.parse_args()
    model = WholeModel(build_recipe(ns.model, 0))
    model.set_inputs(model.random_inputs(0))
    latencies(model, 0.5)  # warm-up
    sys.setswitchinterval(RECORDING_SWITCH_INTERVAL_S)  # as while recording
    off, on, samples = [], [], 0
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").exists() else None) as d:
        make_ina219(Path(d))
        for _ in range(ns.rounds):
            off.append(latencies(model, ns.seconds))
            meter = open_meter("ina2xx", sample_rate_hz=ns.rate_hz, root=Path(d))
            meter.start()
            on.append(latencies(model, ns.seconds))
            trace = meter.stop()
            samples += len(trace.power_w)
    off_all, on_all = np.concatenate(off), np.concatenate(on)
    med_off, med_on = np.median(off_all), np.median(on_all)
    achieved = samples / (ns.rounds * ns.seconds)
    print(f"model {ns.model}: median latency {med_off * 1e3:.3f} ms without a meter, "
          f"{med_on * 1e3:.3f} ms with ina2xx sampling at {achieved:.0f} Hz "
          f"(asked {ns.rate_hz:g} Hz)")
    print(f"slowdown: {100 * (med_on / med_off - 1):+.2f}% (target <= 2%); mean "
          f"{100 * (on_all.mean() / off_all.mean() - 1):+.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
