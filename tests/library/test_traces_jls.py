"""Joulescope JLS v2 import. No public JLS file with samples exists, so each test writes one
with ``pyjls.Writer`` the way the Joulescope software lays it out (a source per instrument,
float32 ``current``/``voltage``/``power`` signals, a UTC time map)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from joulefarm.errors import TraceFormatError
from joulefarm.traces import detect_format, import_trace, summarize

pyjls = pytest.importorskip("pyjls", reason="pyjls (Joulescope JLS reader) is not installed")

RATE_HZ = 100_000
UTC_T0 = 1_700_000_000.25


def _write_jls(path: Path, signals: dict[str, tuple[str, np.ndarray]],
               utc_t0: float | None = UTC_T0) -> Path:
    with pyjls.Writer(str(path)) as w:
        w.source_def(source_id=1, name="JS220-000415", vendor="Jetperch", model="JS220",
                     version="1.0.0", serial_number="000415")
        for signal_id, (name, (units, data)) in enumerate(signals.items(), start=1):
            w.signal_def(signal_id, source_id=1, sample_rate=RATE_HZ, name=name, units=units)
            w.fsr_f32(signal_id, 0, data.astype(np.float32))
            if utc_t0 is not None:
                n = len(data)
                w.utc(signal_id, 0, pyjls.time64.as_time64(utc_t0))
                w.utc(signal_id, n - 1, pyjls.time64.as_time64(utc_t0 + (n - 1) / RATE_HZ))
    return path


def _steps(n: int) -> tuple[np.ndarray, np.ndarray]:
    current = np.where(np.arange(n) < n // 2, 0.1, 0.3)  # A
    voltage = np.full(n, 5.0)  # V
    return current, voltage


def test_jls_current_and_voltage(tmp_path: Path) -> None:
    n = 20_000  # 0.2 s at 100 kHz
    current, voltage = _steps(n)
    path = _write_jls(tmp_path / "capture.jls", {"current": ("A", current),
                                                 "voltage": ("V", voltage)})
    assert detect_format(path) == "jls"
    trace = import_trace(path)
    assert trace.meta["source_format"] == "jls"
    assert trace.uniform and trace.sample_rate_hz == RATE_HZ and trace.t0_s == 0.0
    assert trace.samples == n
    assert trace.meta["utc_t0_unix"] == pytest.approx(UTC_T0, abs=1e-6)
    assert trace.meta["meter"] == "Jetperch JS220 000415"
    assert trace.meta["power_from"] == "'current' x 'voltage'"
    assert trace.power_w.dtype == np.float32
    np.testing.assert_allclose(trace.power_w[: n // 2], 0.5, rtol=1e-6)
    np.testing.assert_allclose(trace.power_w[n // 2:], 1.5, rtol=1e-6)
    np.testing.assert_allclose(trace.channels["voltage_v"], 5.0)
    # 0.1 s at 0.5 W + 0.1 s at 1.5 W.
    assert summarize(trace).energy_j == pytest.approx(0.2, rel=1e-6)


def test_jls_power_signal_preferred(tmp_path: Path) -> None:
    n = 1_000
    current, voltage = _steps(n)
    path = _write_jls(tmp_path / "p.jls", {"current": ("A", current), "voltage": ("V", voltage),
                                           "power": ("W", np.full(n, 2.0))}, utc_t0=None)
    trace = import_trace(path, "jls")
    assert trace.meta["power_from"] == "signal 'power'"
    assert trace.meta["utc_t0_unix"] is None
    np.testing.assert_allclose(trace.power_w, 2.0)


def test_jls_without_power_signals(tmp_path: Path) -> None:
    path = _write_jls(tmp_path / "v.jls", {"voltage": ("V", np.full(100, 5.0))})
    with pytest.raises(TraceFormatError, match="no source with a power signal"):
        import_trace(path)


def test_corrupt_jls(tmp_path: Path) -> None:
    path = tmp_path / "broken.jls"
    path.write_bytes(b"jlsfmt\r\n" + b"\0" * 64)
    with pytest.raises(TraceFormatError, match=r"broken\.jls: cannot open as JLS v2"):
        import_trace(path)
