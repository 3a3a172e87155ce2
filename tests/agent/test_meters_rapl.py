"""RAPL through powercap: package domains only, wrap-around, unreadable counters."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from agent.meters import open_meter
from agent.meters.base import MeterError
from agent.meters.rapl import RaplMeter, discover, discover_all

WRAP_UJ = 262_143_328_850


def _write(path: Path, text: str) -> None:
    """Replace a sysfs-like file atomically, so a concurrent reader never sees it empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _domain(root: Path, name: str, label: str, energy_uj: int, wrap: int = WRAP_UJ) -> Path:
    d = root / "sys/class/powercap" / name
    _write(d / "name", f"{label}\n")
    _write(d / "energy_uj", f"{energy_uj}\n")
    _write(d / "max_energy_range_uj", f"{wrap}\n")
    return d


@pytest.fixture
def laptop(tmp_path: Path) -> Path:
    """Two packages with sub-domains, a psys domain and the MMIO mirror of package 0."""
    _domain(tmp_path, "intel-rapl:0", "package-0", WRAP_UJ - 1000)
    _domain(tmp_path, "intel-rapl:0:0", "core", 5_000)
    _domain(tmp_path, "intel-rapl:0:2", "dram", 7_000, wrap=65_712_999_613)
    _domain(tmp_path, "intel-rapl:1", "package-1", 10_000_000)
    _domain(tmp_path, "intel-rapl:2", "psys", 99_000_000)
    _domain(tmp_path, "intel-rapl-mmio:0", "package-0", 1)
    (tmp_path / "sys/class/powercap/intel-rapl").mkdir()  # the control type, not a domain
    return tmp_path


def test_discovery_keeps_packages_and_skips_subdomains_psys_and_mmio(laptop: Path) -> None:
    assert [d.name for d in discover_all(laptop)] == [
        "package-0", "core", "dram", "package-1", "psys"]
    pkgs = discover(laptop)
    assert [(d.path.name, d.name) for d in pkgs] == [("intel-rapl:0", "package-0"),
                                                     ("intel-rapl:1", "package-1")]
    assert pkgs[0].max_energy_range_uj == WRAP_UJ
    assert [d.name for d in discover(laptop, ["psys"])] == ["psys"]


def test_energy_sums_packages_across_a_wrap(laptop: Path) -> None:
    meter = open_meter("rapl", root=laptop, sample_rate_hz=500)
    assert isinstance(meter, RaplMeter) and not meter.description.simulated
    meter.start()
    time.sleep(0.03)
    # Package 0 wraps: from max-1000 to 500 is 1500 uJ; package 1 adds 2500 uJ.
    _write(laptop / "sys/class/powercap/intel-rapl:0/energy_uj", "500\n")
    _write(laptop / "sys/class/powercap/intel-rapl:1/energy_uj", "10002500\n")
    time.sleep(0.03)
    trace = meter.stop()
    # A sampler the CPU starves is late and says so ("gaps"); nothing else may be flagged.
    assert trace.clock == "agent" and set(trace.flags) <= {"gaps"}
    assert trace.total_energy_j == pytest.approx(4000e-6)
    assert trace.rails_j["intel-rapl:0:package-0"][-1] == pytest.approx(1500e-6)
    assert np.all(np.diff(trace.t_s) > 0) and np.all(np.diff(trace.energy_j) >= 0)
    power = trace.to_timestamped()
    assert np.nansum(power.power_w[:-1] * np.diff(power.t_s)) == pytest.approx(4000e-6)


def test_a_domain_that_disappears_mid_run_is_flagged(laptop: Path) -> None:
    meter = RaplMeter(root=laptop, sample_rate_hz=500)
    meter.start()
    time.sleep(0.02)
    (laptop / "sys/class/powercap/intel-rapl:1/energy_uj").unlink()
    time.sleep(0.02)
    trace = meter.stop()
    assert "meter_vanished" in trace.flags
    assert "energy_uj" in trace.error


def test_unreadable_counters_are_not_found_and_say_why(tmp_path: Path) -> None:
    d = _domain(tmp_path, "intel-rapl:0", "package-0", 0)
    (d / "energy_uj").unlink()
    (d / "energy_uj").mkdir()  # reading it fails with an OSError, like a 0400 file for a user
    assert discover(tmp_path) == []
    assert [x.readable for x in discover_all(tmp_path)] == [False]
    with pytest.raises(MeterError, match="not readable"):
        RaplMeter(root=tmp_path)
    with pytest.raises(MeterError, match="no readable RAPL"):
        RaplMeter(root=tmp_path / "nothing")
