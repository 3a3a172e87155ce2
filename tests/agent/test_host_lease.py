"""Agents that share a host never measure at the same time (agent.host_lease)."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.host_lease import measuring_lease
from agent.local import build_recipe
from agent.measure import measure
from agent.meters.sim import SimMeter
from agent.runtimes.backend import runtime_info
from joulefarm.results import MeasureSettings, Progress
from tests.helpers import REPO

FAST = MeasureSettings(min_layer_duration_s=0.005, idle_duration_s=0.05)

HOLDER = """
import sys, time
from pathlib import Path
from agent.host_lease import measuring_lease
with measuring_lease(Path(sys.argv[1])) as contended:
    assert not contended
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", time.time(), flush=True)
"""


def hold(lock: Path, seconds: float) -> subprocess.Popen[str]:
    """Another agent's process holding the lease for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(seconds)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def run(lock: Path, events: list[Progress], wait_s: float = 900.0) -> tuple[float, object]:
    model = build_recipe("mlp", 0)
    result = measure(model, hashlib.sha256(model).hexdigest(), SimMeter("host", seed=1), FAST,
                     runtime_info(), progress=events.append, host_lock=lock,
                     lease_wait_s=wait_s)
    return result.started_unix_s, result


def test_a_measurement_waits_for_the_agent_measuring_and_says_so(tmp_path: Path) -> None:
    lock = tmp_path / "measure.lock"
    holder = hold(lock, 1.0)
    events: list[Progress] = []
    started, result = run(lock, events)
    out, _ = holder.communicate(timeout=60)
    released = float(out.split()[-1])
    assert started >= released  # not one sample of this run overlaps the other's
    waits = [e for e in events if e.stage == "waiting"]
    assert waits and "another agent on this host is measuring" in waits[0].message
    assert "host_contended" not in result.flags  # type: ignore[attr-defined]


def test_a_lease_never_given_back_is_measured_beside_and_flagged(tmp_path: Path) -> None:
    lock = tmp_path / "measure.lock"
    holder = hold(lock, 30.0)
    try:
        _, result = run(lock, [], wait_s=0.2)
        assert "host_contended" in result.flags  # type: ignore[attr-defined]
    finally:
        holder.kill()
        holder.communicate()


def test_a_killed_holder_frees_the_host(tmp_path: Path) -> None:
    lock = tmp_path / "measure.lock"
    holder = hold(lock, 60.0)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    t = time.monotonic()
    with measuring_lease(lock, wait_s=5.0) as contended:
        assert not contended
    assert time.monotonic() - t < 5.0


def test_a_lease_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    # flock belongs to the open file, not the process: two agents served by one process
    # (tests, an embedded farm) exclude each other as well.
    lock = tmp_path / "measure.lock"
    with measuring_lease(lock) as first:
        assert not first
        with measuring_lease(lock, wait_s=0.1) as second:
            assert second
