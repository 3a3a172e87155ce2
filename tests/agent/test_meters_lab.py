"""Lab instruments: replay, Otii (over a real socket), Joulescope and Monsoon (fakes at the call
level of their Python packages, which need hardware), and the factory's dispatch for them.

The fakes produce a known power signal on the agent clock (``square_w``), so each test checks
that the driver placed ``t0_s`` where the first sample really began. No Monsoon CSV from a real
capture is public: ``monsoon_hvpm_main_synthetic.csv`` is synthetic, laid out exactly as
``sampleEngine.enableCSVOutput`` writes it with numpy >= 2 (``np.float64(...)`` cells, seconds
in the ``Time(ms)`` column, one stamp per 3-sample USB packet, packets arriving in bursts).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from agent.meters import joulescope as js_mod
from agent.meters import monsoon as monsoon_mod
from agent.meters import otii as otii_mod
from agent.meters.base import MeterError
from agent.meters.factory import discover_meters, open_meter
from agent.meters.joulescope import JoulescopeMeter
from agent.meters.monsoon import MonsoonMeter
from agent.meters.otii import OtiiMeter
from agent.meters.replay import (
    FLAG_REPLAY_SHORT,
    ReplayMeter,
    load_recording,
    replay_points,
    replay_uniform,
)
from joulefarm.enums import METER_OPTIONS
from joulefarm.errors import TraceFormatError
from joulefarm.traces.model import FLAG_GAPS, FLAG_METER_ERROR, FLAG_METER_VANISHED, Trace
from joulefarm.traces.monsoon import read_monsoon_csv
from tests.helpers import FIXTURES as HELPERS_FIXTURES
from tests.helpers import REPO

FIXTURES = HELPERS_FIXTURES / "meters"
MONSOON_CSV = FIXTURES / "monsoon_hvpm_main_synthetic.csv"
HALF_PERIOD_S = 0.02
GPI_HALF_PERIOD_S = 0.05


def square_w(t: np.ndarray | float) -> np.ndarray:
    """The true power at agent time ``t``: 1.0 W and 1.6 W alternating every 20 ms."""
    return np.where(np.floor(np.asarray(t) / HALF_PERIOD_S) % 2 == 0, 1.0, 1.6)


def gpi_truth(t: np.ndarray | float) -> np.ndarray:
    return (np.floor(np.asarray(t) / GPI_HALF_PERIOD_S) % 2).astype(np.uint8)


def assert_placed(trace: Trace, true_t0: float, tol_s: float) -> None:
    """``t0_s`` within ``tol_s`` of the truth, and the samples follow the true signal there."""
    assert abs(trace.t0_s - true_t0) < tol_s, (trace.t0_s - true_t0)
    fs = trace.sample_rate_hz
    t = true_t0 + (np.arange(len(trace.power_w)) + 0.5) / fs
    phase = np.mod(t, HALF_PERIOD_S)
    away_from_edges = (phase > tol_s + 1 / fs) & (phase < HALF_PERIOD_S - tol_s - 1 / fs)
    ok = np.isclose(trace.power_w, square_w(t), atol=1e-3) | ~away_from_edges
    assert ok.mean() > 0.999


# -- shared -----------------------------------------------------------------------------------

def test_lab_trace_is_a_meter_clock_trace_with_gpi_windows() -> None:
    gpi = np.array([0, 1, 1, 0, 3, 2, 0, 1], np.uint8)
    trace = Trace(np.ones(8, np.float32), t0_s=10.0, sample_rate_hz=10.0, gpi=gpi)
    assert isinstance(trace, Trace) and trace.clock == "meter"
    starts, ends = trace.gpi_windows(0)
    np.testing.assert_allclose(starts, [10.1, 10.4, 10.7])
    np.testing.assert_allclose(ends, [10.3, 10.5, 10.8])
    starts, ends = trace.gpi_windows(1)
    np.testing.assert_allclose([starts[0], ends[0]], [10.4, 10.6])
    assert trace.to_timestamped().t_s[-1] == pytest.approx(10.8)


def test_the_lab_drivers_do_not_pull_controller_dependencies() -> None:
    code = ("import sys, agent.meters.factory, agent.meters.replay, agent.meters.otii, "
            "agent.meters.joulescope, agent.meters.monsoon\n"
            "bad = [m for m in ('pyarrow', 'duckdb', 'polars', 'typer', 'rich', 'controller', "
            "'joulescope', 'Monsoon', 'pyjls') if m in sys.modules]\n"
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr


# -- replay -----------------------------------------------------------------------------------

def _npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def test_replay_uniform_slice_keeps_the_grid_and_lands_on_start(tmp_path: Path) -> None:
    power = np.arange(1000, dtype=np.float64)  # 1 s at 1 kHz; value = sample index
    rec = load_recording(_npz(tmp_path / "r.npz", power_w=power, sample_rate_hz=1000.0,
                              t0_s=5.0))
    assert rec.uniform and rec.t0_s == 5.0
    trace = replay_uniform(rec, offset_s=0.2505, duration_s=0.1, start_s=100.0)
    # Sample 250 covers [0.250, 0.251): it begins half a period before start().
    assert trace.power_w[0] == 250 and trace.t0_s == pytest.approx(100.0 - 0.0005)
    assert trace.t0_s + len(trace.power_w) / 1000 >= 100.1
    assert len(trace.power_w) == 101 and trace.flags == ()
    short = replay_uniform(rec, offset_s=0.9, duration_s=0.5, start_s=0.0)
    assert short.flags == (FLAG_REPLAY_SHORT,) and len(short.power_w) == 100
    assert "ends 0.400 s before stop()" in (short.error or "")


def test_replay_meter_runs_from_start_to_stop(tmp_path: Path) -> None:
    path = _npz(tmp_path / "r.npz", power_w=np.full(2000, 2.5), sample_rate_hz=1000.0,
                gpi=(np.arange(2000) % 2).astype(np.uint8))
    meter = ReplayMeter(path, offset_s=0.5)
    assert meter.description.kind == "replay" and not meter.description.simulated
    t_a = time.perf_counter()
    meter.start()
    time.sleep(0.05)
    trace = meter.stop()
    t_b = time.perf_counter()
    assert isinstance(trace, Trace) and trace.gpi is not None
    assert t_a <= trace.t0_s + 1e-3 and trace.t0_s + trace.duration_s >= trace.t0_s + 0.05
    assert trace.t0_s + trace.duration_s <= t_b + 2e-3
    assert trace.gpi[0] == 0 and np.all(trace.power_w == 2.5)
    with pytest.raises(MeterError, match="without a matching start"):
        meter.stop()


def test_replay_csv_with_and_without_sidecar(tmp_path: Path) -> None:
    t = 3.0 + np.arange(500) / 250.0
    rows = "\n".join(f"{a},{b},7" for a, b in zip(t.tolist(), np.linspace(1, 2, 500).tolist(),
                                                     strict=True))
    csv = tmp_path / "cap.csv"
    csv.write_text(f"# from a bench logger\nt_s,power_w,other\n{rows}\n")
    rec = load_recording(csv)
    assert rec.uniform and rec.sample_rate_hz == 250.0 and rec.t0_s == pytest.approx(3.0)
    (tmp_path / "cap.csv.json").write_text(json.dumps({"uniform": False, "simulated": True}))
    rec = load_recording(csv)
    assert not rec.uniform and rec.meta["simulated"]
    meter = ReplayMeter(csv)
    assert meter.description.simulated  # the file says its power came from a model
    (tmp_path / "cap.csv.json").write_text(json.dumps({"sample_rate_hz": 250, "t0_s": 2.5}))
    rec = load_recording(csv)
    assert rec.uniform and rec.t0_s == 2.5
    (tmp_path / "cap.csv.json").write_text(json.dumps({"rate": 250}))
    with pytest.raises(MeterError, match="unknown key"):
        load_recording(csv)


def test_replay_points_hold_and_clip(tmp_path: Path) -> None:
    # tegrastats-like: 1 Hz points with jitter (not uniform).
    t = np.array([0.0, 1.02, 1.98, 3.05, 4.0])
    p = np.array([5.0, 6.0, 7.0, 8.0, 9.0])
    rec = load_recording(_npz(tmp_path / "p.npz", t_s=t, power_w=p))
    assert not rec.uniform
    trace = replay_points(rec, offset_s=0.5, duration_s=2.0, start_s=100.0)
    assert trace.clock == "agent" and trace.flags == ()
    np.testing.assert_allclose(trace.t_s, [100.0, 100.52, 101.48, 102.0])
    np.testing.assert_allclose(trace.power_w, [5.0, 6.0, 7.0, 7.0])
    short = replay_points(rec, offset_s=3.5, duration_s=2.0, start_s=0.0)
    assert short.flags == (FLAG_REPLAY_SHORT,)
    # The recording's last reading holds for its median interval (0.99 s), as a log reads.
    np.testing.assert_allclose(short.t_s, [0.0, 0.5, 1.49])


def _plain_floats(path: Path, out: Path) -> Path:
    """The same CSV as the monsoon package writes it under numpy < 2 (bare numbers)."""
    out.write_text(re.sub(r"np\.float64\(([^)]*)\)", r"\1", path.read_text()))
    return out


def test_replay_a_parquet_trace_from_joulefarm_trace_import(tmp_path: Path) -> None:
    from joulefarm.traces import import_trace
    from joulefarm.traces.parquet import write_trace

    trace = import_trace(MONSOON_CSV)
    write_trace(trace, tmp_path / "m.parquet")
    rec = load_recording(tmp_path / "m.parquet")
    assert rec.uniform and rec.sample_rate_hz == 5000.0
    assert rec.t0_s == pytest.approx(float(trace.t_s[0]))
    np.testing.assert_allclose(rec.power_w, trace.power_w, rtol=1e-6)


def test_replay_a_jls_capture_with_gpi(tmp_path: Path) -> None:
    pyjls = pytest.importorskip("pyjls")
    n, rate = 20_000, 100_000
    power = np.where(np.arange(n) < n // 2, 0.5, 1.5).astype(np.float32)
    gpi0 = ((np.arange(n) // 1000) % 2).astype(np.uint8)
    path = tmp_path / "capture.jls"
    with pyjls.Writer(str(path)) as w:
        w.source_def(source_id=1, name="JS220-000415", vendor="Jetperch", model="JS220",
                     version="1.0.0", serial_number="000415")
        w.signal_def(1, source_id=1, sample_rate=rate, name="power", units="W")
        w.fsr_f32(1, 0, power)
        w.signal_def(2, source_id=1, sample_rate=rate, name="gpi[0]", units="",
                     data_type=pyjls.DataType.U1)
        w.fsr(2, 0, np.packbits(gpi0, bitorder="little"))
    meter = ReplayMeter(path, offset_s=0.05)
    assert "JS220 000415" in meter.description.description
    rec = meter.recording
    np.testing.assert_array_equal(rec.gpi, gpi0)
    trace = replay_uniform(rec, 0.05, 0.1, start_s=10.0)
    assert trace.t0_s == pytest.approx(10.0) and len(trace.power_w) == 10_000
    np.testing.assert_allclose(trace.power_w[:5000], 0.5)
    np.testing.assert_allclose(trace.power_w[5000:], 1.5)
    starts, _ends = trace.gpi_windows(0)
    np.testing.assert_allclose(starts[:2], [10.0, 10.02])


def test_replay_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MeterError, match="no recording at"):
        ReplayMeter(tmp_path / "missing.npz")
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,power_w\n0.0,1.0\n0.1,oops\n")
    with pytest.raises(MeterError, match=r"bad.csv:3: column 'power_w': cannot read 'oops'"):
        ReplayMeter(bad)
    path = _npz(tmp_path / "r.npz", power_w=np.ones(100), sample_rate_hz=100.0)
    with pytest.raises(MeterError, match=r"offset_s must be within \[0, 1\) s"):
        ReplayMeter(path, offset_s=1.0)
    with pytest.raises(MeterError, match="recorded at 100 Hz, not 50 Hz"):
        ReplayMeter(path, sample_rate_hz=50)
    with pytest.raises(MeterError, match="format must be one of"):
        ReplayMeter(path, fmt="hdf5")
    with pytest.raises(MeterError, match="no 'power_w'"):
        ReplayMeter(_npz(tmp_path / "x.npz", watts=np.ones(3)))


# -- Monsoon ----------------------------------------------------------------------------------

def test_monsoon_csv_quirk_time_is_rebuilt_at_5khz() -> None:
    csv = read_monsoon_csv(MONSOON_CSV)
    assert csv.channel == "main" and len(csv.stamps_s) == 600
    # Stamps repeat per packet and jump per burst; the rebuilt base is exactly 5 kHz.
    assert len(np.unique(csv.stamps_s)) < 250
    assert csv.t0_by_arrival() == pytest.approx(0.6125, abs=0.0015)
    assert csv.stamp_mismatch() is None
    np.testing.assert_allclose(csv.power_w[:200], 0.120 * 4.2, rtol=0.06)
    np.testing.assert_allclose(csv.power_w[200:400], 0.380 * 4.2, rtol=0.03)
    rec = load_recording(MONSOON_CSV)  # replay detects the layout
    assert rec.uniform and rec.sample_rate_hz == 5000 and rec.t0_s == csv.t0_by_arrival()


def test_monsoon_csv_numpy1_spelling_reads_the_same(tmp_path: Path) -> None:
    plain = read_monsoon_csv(_plain_floats(MONSOON_CSV, tmp_path / "plain.csv"))
    np.testing.assert_array_equal(plain.power_w, read_monsoon_csv(MONSOON_CSV).power_w)


def test_monsoon_csv_plain_floats_usb_channel_and_dropped_samples(tmp_path: Path) -> None:
    lines = ["Time(ms),Main(mA),USB(mA),Main Voltage(V),USB Voltage(V),"]
    stamps = np.repeat(np.arange(100) * 0.0006, 3)[:300]
    stamps[150:] += 0.5  # 0.5 s of samples lost: stamps run ahead of the 5 kHz base
    lines += [f"{s!r},0.0,{10.0 + k % 2},4.2,5.0," for k, s in enumerate(stamps)]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(lines) + "\n" + "0.9,1.0,2")  # last line still being written
    csv = read_monsoon_csv(path)
    assert csv.channel == "main" and len(csv.stamps_s) == 300
    usb = read_monsoon_csv(path, "usb")
    np.testing.assert_allclose(usb.power_w[:2], [0.05, 0.055])
    assert "samples were dropped" in (csv.stamp_mismatch() or "")
    path.write_text(lines[0] + "\n0.1,2.0,3.0,4.0\n")
    with pytest.raises(TraceFormatError, match=r"m.csv:2: 4 cells for 5 columns"):
        read_monsoon_csv(path)


class FakeUSBError(OSError):
    """pyusb's ``usb.core.USBError`` derives from IOError (OSError)."""


class MonsoonBench:
    """A bench of fake HVPMs behind a fake ``Monsoon`` package (HVPM + sampleEngine)."""

    def __init__(self, serials: tuple[str, ...] = ("20420",), *, calibration_s: float = 0.03,
                 fail_after_s: float | None = None, present_on_open: bool = True) -> None:
        self.serials = list(serials)
        self.calibration_s = calibration_s
        self.fail_after_s = fail_after_s
        self.present_on_open = present_on_open
        self.calls: list[tuple[Any, ...]] = []
        self.true_t0: float | None = None
        self.api = SimpleNamespace(HVPM=SimpleNamespace(Monsoon=self._hvpm_class()),
                                   sampleEngine=self._engine_module())

    def _hvpm_class(self) -> type:
        bench = self

        class Monsoon:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self.Protocol = None
                self.statusPacket = SimpleNamespace()

            def enumerateDevices(self) -> list[str]:
                return list(bench.serials)

            def setup_usb(self, serialno: Any = None, Protocol: Any = None) -> None:
                bench.calls.append(("setup_usb", serialno))
                found = bench.present_on_open and (serialno is None
                                                   or str(serialno) in bench.serials)
                # The real one prints 'Unable to find device' and returns.
                self.Protocol = SimpleNamespace(DEVICE=object() if found else None)

            def fillStatusPacket(self) -> None:
                bench.calls.append(("fillStatusPacket",))

            def setVout(self, value: float) -> None:
                bench.calls.append(("setVout", value))

            def closeDevice(self) -> None:
                bench.calls.append(("closeDevice",))

        return Monsoon

    def _engine_module(self) -> SimpleNamespace:
        bench = self
        channels = SimpleNamespace(timeStamp=0, MainCurrent=1, USBCurrent=2, AuxCurrent=3,
                                   MainVoltage=4, USBVoltage=5)
        names = ["Time(ms)", "Main(mA)", "USB(mA)", "Aux(mA)", "Main Voltage(V)",
                 "USB Voltage(V)"]

        class triggers:  # noqa: N801 - the package's names
            SAMPLECOUNT_INFINITE = 0xFFFFFFFF

            @staticmethod
            def GREATER_THAN(x: float, y: float) -> bool:  # noqa: N802
                return x > y

            @staticmethod
            def LESS_THAN(x: float, y: float) -> bool:  # noqa: N802
                return x < y

        modes = SimpleNamespace(off=0, full=1, debug=2)

        class SampleEngine:
            def __init__(self, Monsoon: Any, bulkProcessRate: int = 128,  # noqa: N803
                         errorMode: int = 1, calsToKeep: int = 5) -> None:  # noqa: N803
                bench.calls.append(("SampleEngine", errorMode))
                self.enabled = [True, True, False, False, True, False]
                self.stop_level: float = triggers.SAMPLECOUNT_INFINITE
                self.f: Any = None

            def ConsoleOutput(self, value: bool) -> None:  # noqa: N802
                bench.calls.append(("ConsoleOutput", value))

            def enableChannel(self, ch: int) -> None:  # noqa: N802
                self.enabled[ch] = True

            def disableChannel(self, ch: int) -> None:  # noqa: N802
                self.enabled[ch] = False

            def setTriggerChannel(self, ch: int) -> None:  # noqa: N802
                assert ch == channels.timeStamp

            def setStartTrigger(self, style: Any, level: float) -> None:  # noqa: N802
                assert style is triggers.GREATER_THAN and level == 0

            def setStopTrigger(self, style: Any, level: float) -> None:  # noqa: N802
                assert style is triggers.GREATER_THAN
                self.stop_level = level

            def enableCSVOutput(self, filename: str) -> None:  # noqa: N802
                self.f = open(filename, "w")  # noqa: SIM115 - closed by disableCSVOutput

            def disableCSVOutput(self) -> None:  # noqa: N802
                if self.f is not None:
                    self.f.close()
                    self.f = None

            def startSampling(self, samples: int = 5000, granularity: int = 1,  # noqa: N802
                              legacy_timestamp: bool = False, calTime: int = 1250) -> None:  # noqa: N803
                bench.calls.append(("startSampling", samples))
                start = time.time()
                self.f.write("".join(n + "," for n, on in zip(names, self.enabled, strict=True)
                                     if on) + "\n")
                origin = time.perf_counter() + bench.calibration_s
                bench.true_t0 = origin
                k = 0
                while True:
                    time.sleep(0.003)  # a burst of packets per host read
                    now = time.perf_counter()
                    if bench.fail_after_s is not None and now - origin > bench.fail_after_s:
                        raise FakeUSBError(19, "No such device (it may have been disconnected)")
                    due = int((now - 0.0005 - origin) * 5000) // 3 * 3
                    rows = []
                    for first in range(k, due, 3):
                        stamp = time.time() - start
                        for i in range(first, first + 3):
                            p = float(square_w(origin + i / 5000))
                            cells = [stamp, p / 4.2 * 1000, 0.0, 0.0, 4.2, 5.0]
                            rows.append("".join(repr(np.float64(c)) + ","
                                                for c, on in zip(cells, self.enabled,
                                                                 strict=True) if on))
                    k = max(k, due)
                    self.f.write("".join(r + "\n" for r in rows))
                    if rows and time.time() - start > self.stop_level:
                        break
                self.disableCSVOutput()

        return SimpleNamespace(SampleEngine=SampleEngine, channels=channels, triggers=triggers,
                               ErrorHandlingModes=modes)


def test_monsoon_live_capture_covers_the_run(tmp_path: Path) -> None:
    bench = MonsoonBench()
    meter = MonsoonMeter(api=bench.api)
    assert meter.serial == "20420" and meter.description.sample_rate_hz == 5000
    meter.start()
    t_start = time.perf_counter()
    time.sleep(0.25)
    # The capture covers the run up to the stop call; stop itself may take long on a busy
    # machine (it joins the capture thread), and nothing after the call is promised.
    t_stop = time.perf_counter()
    trace = meter.stop()
    assert isinstance(trace, Trace) and trace.flags == () and trace.error is None
    assert bench.true_t0 is not None
    assert_placed(trace, bench.true_t0, tol_s=0.003)
    assert trace.t0_s <= t_start and trace.t0_s + trace.duration_s >= t_stop - 0.06
    names = [c[0] for c in bench.calls]
    assert names[:3] == ["setup_usb", "fillStatusPacket", "SampleEngine"]
    assert ("SampleEngine", 0) in bench.calls  # ErrorHandlingModes.off: no silent restart
    assert ("ConsoleOutput", False) in bench.calls and "setVout" not in names
    assert ("startSampling", 0xFFFFFFFF) in bench.calls and names[-1] == "closeDevice"
    assert not meter._csv.exists()  # the temporary CSV is removed


def test_monsoon_mid_run_usb_error_keeps_the_samples_and_flags_vanished() -> None:
    bench = MonsoonBench(fail_after_s=0.1)
    meter = MonsoonMeter(api=bench.api, vout=4.2)
    meter.start()
    time.sleep(0.3)
    trace = meter.stop()
    assert FLAG_METER_VANISHED in trace.flags
    assert "USB error" in (trace.error or "") and "No such device" in (trace.error or "")
    assert 350 < len(trace.power_w) < 650  # ~0.1 s at 5 kHz, nothing invented after it
    assert ("setVout", 4.2) in bench.calls


def test_monsoon_missing_or_ambiguous_monitor() -> None:
    with pytest.raises(MeterError, match="no Monsoon power monitor on USB"):
        MonsoonMeter(api=MonsoonBench(serials=()).api)
    with pytest.raises(MeterError, match="several monitors found.*'serial'"):
        MonsoonMeter(api=MonsoonBench(serials=("1", "2")).api)
    with pytest.raises(MeterError, match="no monitor with serial 3"):
        MonsoonMeter(api=MonsoonBench(serials=("1", "2")).api, serial=3)
    with pytest.raises(MeterError, match="fixed 5000 Hz"):
        MonsoonMeter(api=MonsoonBench().api, sample_rate_hz=1000)
    gone = MonsoonMeter(api=MonsoonBench(present_on_open=False).api)
    with pytest.raises(MeterError, match="disappeared before it was opened"):
        gone.start()


# -- Joulescope -------------------------------------------------------------------------------

JS220_RATES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000,
               50_000, 100_000, 200_000, 500_000, 1_000_000)


class FakeStreamBuffer:
    """The v1 ``StreamBuffer`` surface: a ring of samples by sample id, skipped ids NaN."""

    FIELDS = {"power": "W", "current_lsb": "", "voltage_lsb": ""}

    def __init__(self, length: int) -> None:
        self.length = length
        self.data = {"power": np.full(length, np.nan, np.float32),
                     "current_lsb": np.zeros(length, np.uint8),
                     "voltage_lsb": np.zeros(length, np.uint8)}
        self.first: int | None = None
        self.head = 0

    @property
    def sample_id_range(self) -> tuple[int, int]:
        if self.first is None:
            return 0, 0
        return max(self.head - self.length + 1, self.first), self.head

    def add(self, sample_id: int, power: np.ndarray, gpi0: np.ndarray) -> None:
        if self.first is None:
            self.first = self.head = sample_id
        if sample_id > self.head:  # ids skipped by the driver
            idx = np.arange(self.head, sample_id) % self.length
            self.data["power"][idx] = np.nan
            self.head = sample_id
        idx = np.arange(sample_id, sample_id + len(power)) % self.length
        self.data["power"][idx] = power
        self.data["current_lsb"][idx] = gpi0
        self.data["voltage_lsb"][idx] = 0
        self.head = sample_id + len(power)

    def samples_get(self, start: int, stop: int, fields: Any = None) -> dict[str, Any]:
        s0, s1 = self.sample_id_range
        start, stop = max(start, s0), min(stop, s1)
        stop = max(stop, start)
        idx = np.arange(start, stop) % self.length
        return {"time": {"sample_id_range": {"value": [start, stop], "units": "samples"}},
                "signals": {f: {"value": self.data[f][idx], "units": self.FIELDS[f]}
                            for f in fields}}


class FakeJoulescope:
    """A JS220 at the ``joulescope`` v1 ``Device`` call level; a thread plays the USB thread."""

    def __init__(self, serial: str = "000415", *, latency_s: float = 0.002,
                 packet_s: float = 0.004, vanish_after_s: float | None = None,
                 drop: tuple[float, int] | None = None, notify_error: bool = False) -> None:
        self.serial_number = serial
        self.latency_s, self.packet_s = latency_s, packet_s
        self.vanish_after_s, self.drop, self.notify_error = vanish_after_s, drop, notify_error
        self.output_sampling_frequency = 1_000_000
        self.first_id = 1_234_567  # the device's sample counter is not 0 at start
        self.is_open = self.gone = False
        self.stream_buffer: FakeStreamBuffer | None = None
        self._objs: list[Any] = []
        self._stop_fn: Any = None
        self._streaming = False
        self._thread: threading.Thread | None = None
        self.true_t0: float | None = None
        self.calls: list[str] = []

    def __str__(self) -> str:
        return f"JS220-{self.serial_number}"

    def open(self, event_callback_fn: Any = None, mode: Any = None, timeout: Any = None) -> None:
        if self.gone:
            raise RuntimeError("open failed: device not found")
        self.calls.append("open")
        self.is_open = True

    def close(self, timeout: Any = None) -> None:
        self.calls.append("close")
        self.stop()
        self.is_open = False
        if self.gone:
            raise RuntimeError("close failed: device removed")

    def parameter_set(self, name: str, value: Any) -> None:
        if name == "sampling_frequency":
            value = min(int(value), 1_000_000)
            if value not in JS220_RATES:
                raise ValueError(f"invalid sampling frequency {value}")
            self.output_sampling_frequency = value

    def stream_process_register(self, obj: Any) -> None:
        obj.driver_active = True
        self._objs.append(obj)

    def stream_process_unregister(self, obj: Any) -> None:
        obj.driver_active = False

    def start(self, stop_fn: Any = None, duration: Any = None,
              contiguous_duration: Any = None) -> None:
        self.stop()
        self.calls.append("start")
        fs = self.output_sampling_frequency
        self.stream_buffer = FakeStreamBuffer(int(30 * fs))
        self._stop_fn = stop_fn
        self._streaming = True
        self._thread = threading.Thread(target=self._usb, daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        if not self._streaming:
            return False
        self._streaming = False
        fn, self._stop_fn = self._stop_fn, None
        if callable(fn):
            fn(0, "")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        return True

    def _usb(self) -> None:
        fs = self.output_sampling_frequency
        origin = self.true_t0 = time.perf_counter() + 0.01
        k = 0
        buf = self.stream_buffer
        assert buf is not None
        while self._streaming:
            time.sleep(self.packet_s)
            now = time.perf_counter()
            if self.vanish_after_s is not None and now - origin > self.vanish_after_s:
                self.gone = True
                self.stop()  # the driver closes a removed device: stop_fn(0, '')
                return
            due = int((now - self.latency_s - origin) * fs)
            if due <= k:
                continue
            t = origin + np.arange(k, due) / fs
            power, gpi0 = square_w(t).astype(np.float32), gpi_truth(t)
            if self.drop is not None and k <= int(self.drop[0] * fs) < due:
                cut, skip = int(self.drop[0] * fs) - k, self.drop[1]
                buf.add(self.first_id + k, power[:cut], gpi0[:cut])
                buf.add(self.first_id + k + cut + skip, power[cut + skip:], gpi0[cut + skip:])
            else:
                buf.add(self.first_id + k, power, gpi0)
            k = due
            if self.notify_error:
                buf.samples_get = None  # type: ignore[method-assign, assignment]
            for obj in list(self._objs):
                if obj.driver_active and obj.stream_notify(buf):
                    self.stop()
                    return


def _js_api(*devices: FakeJoulescope) -> SimpleNamespace:
    def scan(name: Any = None, config: Any = None) -> list[FakeJoulescope]:
        return [d for d in devices if not d.gone]

    def scan_require_one(name: Any = None, config: Any = None) -> FakeJoulescope:
        found = scan(name, config)
        if not found:
            raise RuntimeError("no devices found")
        if len(found) > 1:
            raise RuntimeError("multiple devices found")
        return found[0]

    return SimpleNamespace(scan=scan, scan_require_one=scan_require_one)


def test_joulescope_live_power_and_gpi_in_one_stream() -> None:
    dev = FakeJoulescope()
    meter = JoulescopeMeter(api=_js_api(dev), sample_rate_hz=10_000)
    assert meter.description.description.startswith("Joulescope JS220-000415 power at 10000")
    meter.start()
    t_start = time.perf_counter()
    time.sleep(0.3)
    t_stop = time.perf_counter()
    trace = meter.stop()
    assert trace.flags == () and trace.missing == 0 and trace.error is None
    assert dev.output_sampling_frequency == 10_000 and dev.calls[-1] == "close"
    assert dev.true_t0 is not None
    assert_placed(trace, dev.true_t0, tol_s=dev.latency_s + 0.003)
    assert trace.t0_s <= t_start and trace.t0_s + trace.duration_s >= t_stop
    true_t = dev.true_t0 + np.arange(len(trace.power_w)) / 10_000
    assert trace.gpi is not None
    assert np.mean(trace.gpi == gpi_truth(true_t + 0.5e-4)) > 0.99
    # Rising edges of GPI0 fall on odd multiples of 50 ms of the true clock.
    starts, ends = trace.gpi_windows(0)
    marks = (starts[1:] - (trace.t0_s - dev.true_t0)) / GPI_HALF_PERIOD_S
    np.testing.assert_allclose(marks, np.round(marks), atol=0.01)
    assert np.all(np.round(marks) % 2 == 1) and len(marks) >= 2
    np.testing.assert_allclose((ends - starts)[1:-1], GPI_HALF_PERIOD_S, atol=2e-4)


def test_joulescope_lost_samples_stay_nan_and_flag_gaps() -> None:
    dev = FakeJoulescope(drop=(0.05, 37))
    meter = JoulescopeMeter(api=_js_api(dev), sample_rate_hz=10_000, gpi=False)
    meter.start()
    time.sleep(0.15)
    trace = meter.stop()
    assert trace.flags == (FLAG_GAPS,) and trace.missing == 37 and trace.gpi is None
    assert int(np.isnan(trace.power_w).sum()) == 37


def test_joulescope_unplugged_mid_run_is_vanished_not_averaged() -> None:
    dev = FakeJoulescope(vanish_after_s=0.1)
    meter = JoulescopeMeter(api=_js_api(dev), sample_rate_hz=10_000)
    meter.start()
    time.sleep(0.3)
    trace = meter.stop()  # close() raises on the removed device: handled
    assert trace.flags == (FLAG_METER_VANISHED,)
    assert "stopped streaming mid-run" in (trace.error or "")
    assert 800 < len(trace.power_w) < 1200


def test_joulescope_stream_failure_is_a_meter_error() -> None:
    dev = FakeJoulescope(notify_error=True)
    meter = JoulescopeMeter(api=_js_api(dev), sample_rate_hz=10_000)
    with pytest.raises(MeterError, match="sent no sample.*TypeError"):
        meter.start()


def test_joulescope_finding_and_configuring() -> None:
    with pytest.raises(MeterError, match="no Joulescope found on USB"):
        JoulescopeMeter(api=_js_api())
    two = _js_api(FakeJoulescope("000415"), FakeJoulescope("001234"))
    with pytest.raises(MeterError, match="several Joulescopes.*JS220-001234.*'serial'"):
        JoulescopeMeter(api=two)
    assert JoulescopeMeter(api=two, serial="1234").name == "JS220-001234"
    with pytest.raises(MeterError, match="no Joulescope with serial 999"):
        JoulescopeMeter(api=two, serial="999")
    meter = JoulescopeMeter(api=_js_api(FakeJoulescope()), sample_rate_hz=3000)
    with pytest.raises(MeterError, match="cannot sample at 3000 Hz: invalid sampling"):
        meter.start()


# -- Otii -------------------------------------------------------------------------------------

ARC = {"device_id": "Arc12345678912345678912345678900001", "name": "Arc", "type": "Arc"}


class FakeOtiiServer:
    """The Otii application's TCP server on 127.0.0.1:0, speaking its JSON protocol: CRLF-
    terminated messages, an ``information`` greeting, ``response``/``error`` by ``trans_id``.
    A recording produces ``square_w`` at ``rate`` on the agent clock from when it started."""

    def __init__(self, *, devices: list[dict[str, Any]] | None = None, rate: int = 4000,
                 unplug_after_s: float | None = None, die_after_s: float | None = None,
                 licensing: str = "ok", fixed_rate: bool = False, latency_s: float = 0.003
                 ) -> None:
        self.devices = [ARC] if devices is None else devices
        self.rate, self.unplug_after_s, self.die_after_s = rate, unplug_after_s, die_after_s
        self.licensing, self.fixed_rate, self.latency_s = licensing, fixed_rate, latency_s
        self.logged_in = licensing != "needs_reserve"
        self.has_license = licensing != "needs_reserve"
        self.licenses = [{"id": 7, "type": "Automation", "available": True, "reserved_to": "",
                          "hostname": ""}]
        self.requests: list[dict[str, Any]] = []
        self.recordings: dict[int, dict[str, Any]] = {}
        self.enabled: set[str] = set()
        self._lock = threading.Lock()
        self.closed = False
        self._clients: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def close(self) -> None:
        self._drop_clients()
        self._accepting.join(5)
        for t in self._threads:
            t.join(5)

    def _drop_clients(self) -> None:
        """What the application quitting looks like to its clients."""
        self.closed = True
        with self._lock:
            for c in self._clients:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)  # wakes the handler blocked in recv()

    def _accept(self) -> None:
        self.listener.settimeout(0.02)  # a closed listener does not wake accept() on Linux
        with self.listener:
            while not self.closed:
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                conn.settimeout(None)
                with self._lock:
                    self._clients.append(conn)
                t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(t)
                t.start()

    @staticmethod
    def _send(conn: socket.socket, message: dict[str, Any]) -> None:
        conn.sendall(json.dumps(message).encode() + b"\r\n")

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._send(conn, {"type": "information", "info": "connected",
                              "data": {"otii_version": "3.5.5", "protocol_version": "0.1",
                                       "server": "otii-server"}})
            buf = b""
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                buf += chunk
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    message = json.loads(line)
                    with self._lock:
                        self.requests.append(message)
                    if self._died():
                        self._drop_clients()
                        return
                    self._send(conn, self._answer(message))
        except OSError:
            return
        finally:
            conn.close()

    def _died(self) -> bool:
        rec = self.recordings.get(max(self.recordings, default=0))
        return (self.die_after_s is not None and rec is not None
                and time.perf_counter() - rec["start"] > self.die_after_s)

    def _count(self, rec: dict[str, Any]) -> int:
        end = rec["stop"] if rec["stop"] is not None else time.perf_counter() - self.latency_s
        if self.unplug_after_s is not None:
            end = min(end, rec["start"] + self.unplug_after_s)
        return max(0, int((end - rec["start"]) * self.rate))

    def _edges(self, rec: dict[str, Any]) -> list[dict[str, Any]]:
        span = self._count(rec) / self.rate
        return [{"timestamp": round(k * GPI_HALF_PERIOD_S, 9), "value": bool(k % 2)}
                for k in range(int(span / GPI_HALF_PERIOD_S) + 1)]

    def _answer(self, msg: dict[str, Any]) -> dict[str, Any]:  # noqa: C901 - one per command
        cmd, data, tid = msg.get("cmd"), msg.get("data") or {}, msg.get("trans_id")

        def ok(payload: dict[str, Any] | None = None) -> dict[str, Any]:
            return {"type": "response", "cmd": cmd, "data": payload or {}, "trans_id": tid}

        def err(code: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
            return {"type": "error", "errorcode": code, "cmd": cmd, "data": payload or {},
                    "trans_id": tid}

        unplugged = self._unplugged()
        devices = [d for d in self.devices if not (unplugged and d is ARC)]
        if cmd == "otii_get_devices":
            return ok({"devices": devices})
        if cmd.startswith("otii_") and "license" in cmd or cmd in ("otii_is_logged_in",
                                                                    "otii_login", "otii_logout"):
            return self._license(cmd, data, ok, err)
        if cmd == "arc_is_connected":
            return ok({"connected": not unplugged})
        if cmd.startswith("arc_"):
            if data.get("device_id") not in {d["device_id"] for d in devices}:
                return err("Device not connected", {"device_id": data.get("device_id")})
            if cmd == "arc_enable_channel":
                self.enabled.add(data["channel"])
                return ok()
            if cmd == "arc_set_channel_samplerate":
                if self.fixed_rate:
                    return err("Invalid command")
                if data["value"] not in (1, 10, 50, 100, 500, 1000, 4000):
                    return err("Invalid key value", {"key": "value", "value": data["value"]})
                self.rate = data["value"]
                return ok()
        if cmd == "otii_get_active_project":
            return ok({"project_id": 1})
        if cmd == "project_start_recording":
            rec_id = len(self.recordings) + 1
            self.recordings[rec_id] = {"start": time.perf_counter(), "stop": None,
                                       "deleted": False}
            return ok()
        if cmd == "project_stop_recording":
            rec = self.recordings[max(self.recordings)]
            rec["stop"] = time.perf_counter()
            return ok()
        if cmd == "project_get_last_recording":
            rec_id = max(self.recordings, default=-1)
            return ok({"recording_id": rec_id, "name": f"Recording {rec_id}",
                       "start-time": "2025-01-01T12:00:00.000Z"})
        if cmd.startswith("recording_"):
            rec = self.recordings.get(data.get("recording_id"))
            if rec is None or rec["deleted"]:
                return err("Command failure", {"message": "no such recording"})
            ch = data.get("channel")
            if cmd == "recording_delete":
                rec["deleted"] = True
                return ok()
            if cmd == "recording_get_channel_data_count":
                n = len(self._edges(rec)) if ch in ("i1", "i2") else self._count(rec)
                return ok({"count": n})
            if cmd == "recording_get_channel_info":
                n = self._count(rec)
                return ok({"offset": 0.0, "from": 0.0, "to": n / self.rate,
                           "sample_rate": self.rate})
            if cmd == "recording_get_channel_data":
                index, count = data["index"], data["count"]
                if ch in ("i1", "i2"):
                    return ok({"data_type": "digital",
                               "values": self._edges(rec)[index:index + count]})
                n = min(index + count, self._count(rec))
                t = rec["start"] + np.arange(index, n) / self.rate
                return ok({"data_type": "analog", "timestamp": index / self.rate,
                           "interval": 1 / self.rate, "values": square_w(t).tolist()})
        return err("Invalid command")

    def _unplugged(self) -> bool:
        rec = self.recordings.get(max(self.recordings, default=0))
        return (self.unplug_after_s is not None and rec is not None
                and time.perf_counter() - rec["start"] > self.unplug_after_s)

    def _license(self, cmd: str, data: dict[str, Any], ok: Any, err: Any) -> dict[str, Any]:
        if self.licensing == "otii2":
            return err("Invalid command")
        if cmd == "otii_is_logged_in":
            return ok({"logged_in": self.logged_in})
        if cmd == "otii_login":
            if (data.get("username"), data.get("password")) != ("lab", "secret"):
                return err("Could not login")
            self.logged_in = True
            return ok()
        if cmd == "otii_logout":
            self.logged_in = False
            return ok()
        if not self.logged_in:
            return err("Not logged in")
        if cmd == "otii_has_license":
            return ok({"has_license": self.has_license})
        if cmd == "otii_get_licenses":
            return ok({"licenses": self.licenses})
        if cmd == "otii_reserve_license":
            self.licenses[0]["reserved_to"] = "agent"
            self.has_license = True
            return ok()
        if cmd == "otii_return_license":
            self.licenses[0]["reserved_to"] = ""
            self.has_license = False
            return ok()
        return err("Invalid command")

    def sent(self, cmd: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.requests if m.get("cmd") == cmd]


@pytest.fixture
def otii_server() -> Any:
    servers: list[FakeOtiiServer] = []

    def make(**kwargs: Any) -> FakeOtiiServer:
        servers.append(FakeOtiiServer(**kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_otii_records_main_power_and_gpi_over_tcp(otii_server: Any) -> None:
    server = otii_server()
    meter = OtiiMeter(port=server.port, gpi=["i1"])
    assert meter.description.sample_rate_hz == 4000 and not meter.description.simulated
    meter.start()
    t_start = time.perf_counter()
    time.sleep(0.45)
    t_stop = time.perf_counter()
    trace = meter.stop()
    assert trace.flags == () and trace.error is None, trace.error
    rec = server.recordings[1]
    assert_placed(trace, rec["start"], tol_s=0.005)
    assert trace.t0_s <= t_start and trace.t0_s + trace.duration_s >= t_stop
    assert len(trace.power_w) == server._count(rec)
    assert trace.gpi is not None
    ts = np.arange(len(trace.gpi)) / 4000
    assert np.mean(trace.gpi == gpi_truth(ts + 1e-6)) > 0.999
    # The exact request shapes of the protocol.
    start = server.sent("project_start_recording")[0]
    assert start == {"type": "request", "cmd": "project_start_recording",
                     "data": {"project_id": 1}, "trans_id": start["trans_id"]}
    assert server.sent("arc_enable_channel")[0]["data"] == {
        "device_id": ARC["device_id"], "channel": "mp", "enable": True}
    assert server.sent("arc_set_channel_samplerate")[0]["data"]["value"] == 4000
    fetch = server.sent("recording_get_channel_data")[0]["data"]
    assert set(fetch) == {"recording_id", "device_id", "channel", "index", "count"}
    assert server.enabled == {"mp", "i1"} and rec["deleted"]
    assert len(server.sent("recording_get_channel_data_count")) > 2  # polled during the run


def test_the_fake_otii_server_satisfies_the_official_client(otii_server: Any) -> None:
    otii_connection = pytest.importorskip("otii_tcp_client.otii_connection")
    from otii_tcp_client import otii as otii_application

    server = otii_server()
    connection = otii_connection.OtiiConnection("127.0.0.1", server.port)
    assert connection.connect_to_server()["info"] == "connected"
    try:
        otii = otii_application.Otii(connection)
        arc = otii.get_devices(timeout=1)[0]
        arc.enable_channel("mp", True)
        arc.set_channel_samplerate("mp", 1000)
        project = otii.get_active_project()
        project.start_recording()
        time.sleep(0.1)
        project.stop_recording()
        recording = project.get_last_recording()
        count = recording.get_channel_data_count(arc.id, "mp")
        data = recording.get_channel_data(arc.id, "mp", 0, count)
        assert count > 50 and len(data["values"]) == count and data["interval"] == 0.001
        assert recording.get_channel_info(arc.id, "mp")["sample_rate"] == 1000
        edges = recording.get_channel_data(arc.id, "i1", 0, 10)
        assert edges["data_type"] == "digital" and edges["values"][0]["value"] is False
    finally:
        connection.close_connection()


def test_otii_arc_unplugged_mid_run(otii_server: Any) -> None:
    server = otii_server(unplug_after_s=0.15)
    meter = OtiiMeter(port=server.port, sample_rate_hz=1000)
    meter.start()
    time.sleep(0.45)
    trace = meter.stop()
    assert trace.flags == (FLAG_METER_VANISHED,)
    assert "disconnected during the run" in (trace.error or "")
    assert trace.sample_rate_hz == 1000 and 140 <= len(trace.power_w) <= 151


def test_otii_server_lost_mid_run_keeps_what_arrived(otii_server: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otii_mod, "POLL_INTERVAL_S", 0.05)
    server = otii_server(die_after_s=0.2)
    meter = OtiiMeter(port=server.port)
    meter.start()
    time.sleep(0.45)
    trace = meter.stop()  # the server is gone: no exception, a flagged trace
    assert trace.flags == (FLAG_METER_VANISHED,)
    assert "closed the connection" in (trace.error or "")
    # What the polls fetched before the application quit; nothing after.
    assert 0.1 * 4000 < len(trace.power_w) <= 0.2 * 4000


def test_otii_licensing_login_reserve_and_give_back(otii_server: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server = otii_server(licensing="needs_reserve")
    monkeypatch.delenv("OTII_USERNAME", raising=False)
    with pytest.raises(MeterError, match="OTII_USERNAME"):
        OtiiMeter(port=server.port)
    monkeypatch.setenv("OTII_USERNAME", "lab")
    monkeypatch.setenv("OTII_PASSWORD", "secret")
    meter = OtiiMeter(port=server.port)
    meter.start()
    assert server.licenses[0]["reserved_to"] == "agent"
    time.sleep(0.05)
    meter.stop()
    assert server.licenses[0]["reserved_to"] == "" and not server.logged_in
    assert server.sent("otii_reserve_license")[-1]["data"] == {"license_id": 7}
    old = otii_server(licensing="otii2", fixed_rate=True)  # Otii 2: no licensing, fixed rate
    meter = OtiiMeter(port=old.port)
    meter.start()
    assert meter.stop().flags == ()
    with pytest.raises(MeterError, match="cannot record mp at 1000 Hz"):
        OtiiMeter(port=old.port, sample_rate_hz=1000).start()


def test_otii_missing_server_or_device(otii_server: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    with pytest.raises(MeterError, match="cannot reach the Otii server"):
        OtiiMeter(port=port)
    with pytest.raises(MeterError, match="no Arc or Ace is connected"):
        OtiiMeter(port=otii_server(devices=[]).port)
    two = otii_server(devices=[ARC, {**ARC, "device_id": "Arc2", "name": "Arc B"}])
    with pytest.raises(MeterError, match="several devices.*'device'"):
        OtiiMeter(port=two.port)
    assert OtiiMeter(port=two.port, device="Arc B").device_id == "Arc2"
    sim = otii_server(devices=[{"device_id": "Sim1", "name": "Sim", "type": "Simulator"}])
    with pytest.raises(MeterError, match="no Arc or Ace"):
        OtiiMeter(port=sim.port)
    assert OtiiMeter(port=sim.port, device="Sim").description.simulated
    with pytest.raises(MeterError, match="gpi takes channels"):
        OtiiMeter(port=two.port, gpi=["i3"])


# -- factory ----------------------------------------------------------------------------------

def test_factory_opens_lab_kinds_with_their_options(tmp_path: Path, otii_server: Any) -> None:
    for kind in ("replay", "joulescope", "monsoon", "otii"):
        assert kind in METER_OPTIONS
    (tmp_path / "captures").mkdir()
    np.savez(tmp_path / "captures" / "run.npz", power_w=np.ones(100), sample_rate_hz=100.0)
    meter = open_meter("replay", options={"path": "/captures/run.npz", "offset_s": 0.5},
                       root=tmp_path)
    assert isinstance(meter, ReplayMeter) and meter.offset_s == 0.5
    with pytest.raises(MeterError, match="needs option 'path'"):
        open_meter("replay")
    with pytest.raises(MeterError, match="does not take option"):
        open_meter("replay", options={"file": "x.npz"})
    server = otii_server()
    otii = open_meter("otii", sample_rate_hz=1000, options={"port": server.port,
                                                            "gpi": ["i1", "i2"]})
    assert isinstance(otii, OtiiMeter) and otii.gpi_channels == ("i1", "i2")


@pytest.mark.parametrize("kind,module", [("joulescope", "joulescope"), ("monsoon", "Monsoon")])
def test_factory_without_the_vendor_package_says_which_extra(kind: str, module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        with pytest.raises(MeterError, match=rf"pip install 'joulefarm\[{kind}\]'"):
            open_meter(kind)
    else:
        with pytest.raises(MeterError):  # installed, but no instrument on this machine
            open_meter(kind)


def test_discovery_finds_lab_instruments_on_usb(tmp_path: Path) -> None:
    def usb(name: str, vid: str, pid: str, serial: str) -> None:
        path = tmp_path / "sys/bus/usb/devices" / name
        path.mkdir(parents=True)
        (path / "idVendor").write_text(vid + "\n")
        (path / "idProduct").write_text(pid + "\n")
        (path / "serial").write_text(serial + "\n")

    usb("1-1", "16d0", "10ba", "000415")
    usb("1-2", "2ab9", "0001", "20420")
    usb("1-3", "046d", "c52b", "x")  # a mouse
    (tmp_path / "sys/bus/usb/devices/1-1:1.0").mkdir()  # an interface: no ids
    found = discover_meters(tmp_path)
    assert [m.kind for m in found] == ["joulescope", "monsoon"]
    assert "JS220 serial 000415" in found[0].description
    assert found[1].sample_rate_hz == 5000 and "20420" in found[1].description
    assert all(not m.simulated for m in found)


def test_monsoon_and_joulescope_constants_match_the_vendors() -> None:
    assert js_mod.USB_IDS[0x16D0, 0x10BA] == "JS220" and js_mod.GPI_FIELDS[0] == "current_lsb"
    assert (monsoon_mod.USB_VENDOR_ID, monsoon_mod.USB_PRODUCT_ID) == (0x2AB9, 0x0001)
    assert otii_mod.DEFAULT_PORT == 1905 and math.isclose(otii_mod.DEFAULT_RATE_HZ, 4000)
    _ = FLAG_METER_ERROR  # imported for the reader: the flag a failed stream read sets
