"""Android On-Device Power Monitor (Pixel ODPM rails): cumulative energy per rail.

Two ways in, both cumulative (energy over a window = difference of two snapshots):

* root sysfs, one file per PMIC: ``/sys/bus/iio/devices/iio:device<N>/energy_value``::

      t=123456
      CH0(T=123450)[S10M_VDD_TPU], 2245678901

  ``T`` is the boot-clock time (ms) of the channel's last refresh and the value is in uWs.
* ``dumpsys android.hardware.power.stats.IPowerStats/default`` (shell uid), whose energy meter
  section has rows ``[RAIL]:subsystem   12345.67 mWs`` (cumulative; with the ``delta`` argument
  a ``(delta)`` column follows). The HAL prints values through a float32, so they are
  resolved to about 7 significant digits; ``delta`` is not used because it resets state shared
  with every other caller.

The accumulators refresh every 20-50 ms or so: polling faster returns the same snapshot again.
Such stale sysfs snapshots (no ``T`` moved) are dropped, and when the ``T`` stamps map onto
the agent clock (through ``CLOCK_BOOTTIME``) they replace the read times. Total = sum of the
chosen rails: the metered rails, not the whole phone.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.meters.base import MeterDescription, MeterError, MeterParseError
from agent.meters.polled import SampledMeter, counter_trace
from agent.meters.sampler import PollingSampler, Samples
from agent.meters.sysfs import read_text, sort_numeric
from joulefarm.traces.model import CounterTrace

KIND = "android-odpm"
IIO_DIR = "sys/bus/iio/devices"
DUMPSYS = ("dumpsys", "android.hardware.power.stats.IPowerStats/default")
DUMPSYS_TIMEOUT_S = 10.0
SYSFS_RATE_HZ = 20.0
DUMPSYS_RATE_HZ = 2.0
UWS_TO_J = 1e-6
MWS_TO_J = 1e-3
# A refresh stamp mapped onto the agent clock must fall this close before its read.
MAX_REFRESH_AGE_S = 1.0
CLOCK_SLACK_S = 0.005
FLAG_DEVICE_CLOCK_UNMAPPED = "device_clock_unmapped"
FLAG_COUNTER_RESET = "counter_reset"

_HEADER_RE = re.compile(r"^t=(\d+)\s*$")
_CHANNEL_RE = re.compile(r"^CH(\d+)\(T=(\d+)\)\[([^\]]+)\],\s*(\d+)\s*$")
_DUMPSYS_ROW_RE = re.compile(
    r"^\s*\[(?P<rail>[^\]]+)\]:(?P<subsys>.*?)\s+(?P<energy>-?\d+(?:\.\d+)?)\s*mWs"
    r"(?:\s*\(\s*(?P<delta>-?\d+(?:\.\d+)?)\s*\))?\s*$"
)


@dataclass(frozen=True)
class EnergyValue:
    """One parsed ``energy_value`` file: its ``t`` and, per rail, (refresh ms, uWs)."""

    t_ms: int
    rails: dict[str, tuple[int, int]]


def parse_energy_value(text: str, source: str = "energy_value") -> EnergyValue:
    """Parse the sysfs format; MeterParseError names the first bad line."""
    t_ms: int | None = None
    rails: dict[str, tuple[int, int]] = {}
    for no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if t_ms is None:
            m = _HEADER_RE.match(line.strip())
            if m is None:
                raise MeterParseError(source, no, line, "expected 't=<ms>' first")
            t_ms = int(m[1])
            continue
        m = _CHANNEL_RE.match(line.strip())
        if m is None:
            raise MeterParseError(source, no, line, "expected 'CH<n>(T=<ms>)[<rail>], <uWs>'")
        rails[m[3]] = (int(m[2]), int(m[4]))
    if t_ms is None or not rails:
        raise MeterParseError(source, 0, text[:80], "no 't=' header or no channel")
    return EnergyValue(t_ms, rails)


def parse_dumpsys_energy(text: str) -> dict[str, float]:
    """Cumulative energy in mWs per rail (the name in brackets) from the dumpsys output.

    Rows of other sections (energy consumers, state residencies) do not have the
    ``[RAIL]:subsystem`` shape and are ignored. MeterParseError when there is no row at all.
    """
    rails: dict[str, float] = {}
    for line in text.splitlines():
        m = _DUMPSYS_ROW_RE.match(line)
        if m is not None:
            rails[m["rail"]] = float(m["energy"])
    if not rails:
        first = next((ln for ln in text.splitlines() if ln.strip()), "")
        raise MeterParseError("dumpsys IPowerStats", 0, first,
                              "no energy meter row '[RAIL]:subsys  12345.67 mWs'")
    return rails


def discover(root: Path = Path("/")) -> list[Path]:
    """The ODPM ``energy_value`` files under ``root``."""
    return sort_numeric([p.parent for p in (root / IIO_DIR).glob("iio:device*/energy_value")])


def run_dumpsys() -> str:
    done = subprocess.run(DUMPSYS, capture_output=True, text=True, timeout=DUMPSYS_TIMEOUT_S,
                          check=False)
    if done.returncode != 0:
        raise MeterError(f"{' '.join(DUMPSYS)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def cumulative_joules(energy: np.ndarray, scale: float) -> tuple[np.ndarray, bool]:
    """Per-column cumulative joules from the first row; a decrease (counter reset) counts as
    no energy for that step and is reported."""
    steps = np.diff(np.asarray(energy, dtype=np.float64), axis=0)
    reset = bool(np.any(steps < 0))
    steps = np.where(steps < 0, 0.0, steps)
    zero = np.zeros((1, energy.shape[1]))
    return np.concatenate((zero, np.cumsum(steps, axis=0))) * scale, reset


def fresh_rows(refresh_ms: np.ndarray) -> np.ndarray:
    """Indices of snapshots in which at least one PMIC's refresh stamp moved (first kept):
    a repeated snapshot carries no news and would read as zero power, then double."""
    if len(refresh_ms) == 0:
        return np.arange(0)
    moved = np.any(np.diff(refresh_ms, axis=0) != 0, axis=1)
    return np.concatenate(([0], np.flatnonzero(moved) + 1))


def refresh_times(refresh_ms: np.ndarray, read_t_s: np.ndarray,
                  boot_to_agent_s: float | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows to keep and their times on the agent clock, from the refresh stamps.

    A snapshot is dated by its newest PMIC refresh; of several snapshots with the same date
    the last is kept (it may hold another PMIC's later refresh). None when there is no mapping
    or the dates do not land just before their reads (another clock, a reset stamp).
    """
    if boot_to_agent_s is None or len(read_t_s) == 0:
        return None
    stamp = refresh_ms.max(axis=1)
    rows = np.flatnonzero(np.append(np.diff(stamp) != 0, True))
    t = stamp[rows] * 1e-3 + boot_to_agent_s
    age = read_t_s[rows] - t
    if np.all((age >= -CLOCK_SLACK_S) & (age <= MAX_REFRESH_AGE_S)) and np.all(np.diff(t) > 0):
        return rows, t
    return None


def boot_to_agent_offset(boot_clock: Callable[[], float]) -> float:
    """``perf_counter() - boot_clock()``, read back to back (midpoint of two perf reads)."""
    a = time.perf_counter()
    b = boot_clock()
    c = time.perf_counter()
    return 0.5 * (a + c) - b


def _default_boot_clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class OdpmSysfsMeter(SampledMeter):
    """ODPM rails from the root sysfs ``energy_value`` files, as a ``CounterTrace``."""

    def __init__(self, devices: Sequence[Path] | None = None, *, root: Path = Path("/"),
                 sample_rate_hz: float | None = None, rails: Sequence[str] | None = None,
                 boot_clock: Callable[[], float] | None = _default_boot_clock) -> None:
        devices = list(devices) if devices is not None else discover(root)
        if not devices:
            raise MeterError(f"android-odpm: no iio:device*/energy_value under {root / IIO_DIR}")
        self.files = [d / "energy_value" for d in devices]
        try:
            first = [parse_energy_value(read_text(f), str(f)) for f in self.files]
        except OSError as e:
            raise MeterError(f"android-odpm: cannot read energy_value (root needed): {e}") from e
        available = [(k, name) for k, ev in enumerate(first) for name in ev.rails]
        names = [name for _, name in available]
        if rails is not None:
            missing = [r for r in rails if r not in names]
            if missing:
                raise MeterError(f"android-odpm: unknown rails {missing}; have {names}")
            available = [(k, name) for k, name in available if name in rails]
        self.rails = tuple(name for _, name in available)
        self._boot_clock = boot_clock
        self._boot_to_agent: float | None = None
        self._sampler: PollingSampler | None = None
        self._layout = available
        super().__init__(MeterDescription(
            kind=KIND, simulated=False, sample_rate_hz=float(sample_rate_hz or SYSFS_RATE_HZ),
            description=f"Pixel ODPM sysfs ({len(self.files)} PMIC), sum of "
                        f"{len(self.rails)} rails: {', '.join(self.rails)}"))

    def _read(self) -> list[float]:
        parsed = [parse_energy_value(read_text(f), str(f)) for f in self.files]
        refresh = [float(max(t for t, _ in ev.rails.values())) for ev in parsed]
        try:
            energy = [float(parsed[k].rails[name][1]) for k, name in self._layout]
        except KeyError as e:
            raise MeterParseError(str(self.files[0]), 0, str(e), "rail disappeared") from None
        return refresh + energy

    def start(self) -> None:
        if self._sampler is not None:
            raise MeterError("android-odpm: meter already started")
        if self._boot_clock is not None:
            try:
                self._boot_to_agent = boot_to_agent_offset(self._boot_clock)
            except (OSError, AttributeError):
                self._boot_to_agent = None
        self._sampler = PollingSampler(self._read, rate_hz=self.description.sample_rate_hz,
                                       width=len(self.files) + len(self.rails), name=KIND)
        self._sampler.start()

    def stop(self) -> CounterTrace:
        if self._sampler is None:
            raise MeterError("android-odpm: stop() without a matching start()")
        samples = self._sampler.stop()
        n_dev = len(self.files)
        refresh = samples.values[:, :n_dev]
        extra = []
        mapped = refresh_times(refresh, samples.t_s, self._boot_to_agent)
        if mapped is None:  # date each fresh snapshot by the read that first saw it
            extra.append(FLAG_DEVICE_CLOCK_UNMAPPED)
            rows, t = fresh_rows(refresh), None
        else:
            rows, t = mapped
        kept = _select(samples, rows)
        joules, reset = cumulative_joules(kept.values[:, n_dev:], UWS_TO_J)
        if reset:
            extra.append(FLAG_COUNTER_RESET)
        return counter_trace(kept, self.rails, joules, self._flags(samples, extra), t_s=t)


def _select(samples: Samples, rows: np.ndarray) -> Samples:
    return Samples(samples.t_s[rows], samples.read_s[rows], samples.values[rows], samples.flags,
                   samples.gaps, samples.max_interval_s, samples.target_rate_hz, samples.error)


class OdpmDumpsysMeter(SampledMeter):
    """ODPM rails from ``dumpsys`` snapshots (read-time stamps), as a ``CounterTrace``.

    ``runner`` returns the dumpsys output (tests pass recorded text).
    """

    def __init__(self, runner: Callable[[], str] | None = None, *,
                 sample_rate_hz: float | None = None,
                 rails: Sequence[str] | None = None) -> None:
        self._run = runner or run_dumpsys
        try:
            first = parse_dumpsys_energy(self._run())
        except OSError as e:
            raise MeterError(f"android-odpm: cannot run {' '.join(DUMPSYS)}: {e}") from e
        names = list(first)
        if rails is not None:
            missing = [r for r in rails if r not in names]
            if missing:
                raise MeterError(f"android-odpm: unknown rails {missing}; have {names}")
            names = [n for n in names if n in rails]
        self.rails = tuple(names)
        self._sampler: PollingSampler | None = None
        super().__init__(MeterDescription(
            kind=KIND, simulated=False, sample_rate_hz=float(sample_rate_hz or DUMPSYS_RATE_HZ),
            description=f"Pixel ODPM via dumpsys, sum of {len(names)} rails: "
                        f"{', '.join(names)}"))

    def _read(self) -> list[float]:
        got = parse_dumpsys_energy(self._run())
        try:
            return [got[name] for name in self.rails]
        except KeyError as e:
            raise MeterParseError("dumpsys IPowerStats", 0, str(e), "rail disappeared") from None

    def start(self) -> None:
        if self._sampler is not None:
            raise MeterError("android-odpm: meter already started")
        self._sampler = PollingSampler(self._read, rate_hz=self.description.sample_rate_hz,
                                       width=len(self.rails), name=KIND)
        self._sampler.start()

    def stop(self) -> CounterTrace:
        if self._sampler is None:
            raise MeterError("android-odpm: stop() without a matching start()")
        samples = self._sampler.stop()
        joules, reset = cumulative_joules(samples.values, MWS_TO_J)
        extra = [FLAG_COUNTER_RESET] if reset else []
        return counter_trace(samples, self.rails, joules, self._flags(samples, extra))


def open_odpm(*, root: Path = Path("/"), source: str = "auto",
              sample_rate_hz: float | None = None, rails: Sequence[str] | None = None,
              runner: Callable[[], str] | None = None) -> SampledMeter:
    """The sysfs meter when ``energy_value`` files exist (or ``source="sysfs"``), else dumpsys."""
    if source not in ("auto", "sysfs", "dumpsys"):
        raise MeterError(f"android-odpm: source must be auto, sysfs or dumpsys, got {source!r}")
    if source == "sysfs" or (source == "auto" and discover(root) and runner is None):
        return OdpmSysfsMeter(root=root, sample_rate_hz=sample_rate_hz, rails=rails)
    return OdpmDumpsysMeter(runner, sample_rate_hz=sample_rate_hz, rails=rails)
