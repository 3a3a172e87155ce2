"""Monsoon HVPM through PyPI ``monsoon`` (``Monsoon.HVPM`` + ``Monsoon.sampleEngine``).

The documented capture path: ``HVPM.Monsoon().setup_usb(serial)``, ``fillStatusPacket()``
(the calibration scales the engine needs), optionally ``setVout(V)``, then a
``sampleEngine.SampleEngine`` with ``enableCSVOutput(file)`` and ``startSampling(n)``, which
blocks until ``n`` samples or a stop trigger. Here it runs on a background thread with
``n = triggers.SAMPLECOUNT_INFINITE``; ``stop()`` sets a stop trigger on the time channel just
past now, so the capture covers the whole run and ends cleanly (the engine flushes and closes
the CSV). The CSV is the stream: samples survive a disconnect, and ``start()`` returns once
the first rows are written (after the engine's start-up calibration), so nothing of the run is
missed.

The CSV quirk: the column named ``Time(ms)`` holds *seconds* since sampling started, stamped
with ``time.time()`` once per USB packet, so it repeats and jumps. The HVPM samples at a fixed
5 kHz, so sample ``i`` is placed at ``t0 + i / 5000``; ``t0`` is the smallest
``stamp_i - (i + 1) / 5000`` (a sample cannot arrive before it ends, see ``lab.ArrivalAnchor``),
mapped to the agent clock. With numpy >= 2 the package writes values with ``repr``, so cells
read ``np.float64(0.1234)``: both spellings are parsed.

The engine runs with ``ErrorHandlingModes.off``: in its default mode a USB error makes it
reconnect and start over, truncating the CSV, which would hide a vanished meter. Here a USB
error (pyusb's ``USBError`` is an ``OSError``) ends the trace with ``meter_vanished``.
Monsoon's decimation (``granularity``) keeps one sample in k instead of averaging, so only the
native 5 kHz is offered. Its sampling loop is Python code on the agent: under heavy CPU load it
may drop samples, which shows as packet stamps that drift from the rebuilt time base (``gaps``).

The driver never switches the main output off or on: the device under test (maybe the agent's
own host) may be powered by it. ``vout`` sets the output voltage only when given.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from agent.meters.base import Meter, MeterDescription, MeterError
from agent.meters.lab import import_vendor, wait_until
from joulefarm.traces.model import FLAG_GAPS, FLAG_METER_ERROR, FLAG_METER_VANISHED, Trace
from joulefarm.traces.monsoon import CHANNELS, MONSOON_RATE_HZ, MonsoonCsv, read_monsoon_csv

KIND = "monsoon"
USB_VENDOR_ID = 0x2AB9  # Monsoon Solutions (HVPM and LVPM share the product id)
USB_PRODUCT_ID = 0x0001

# The engine calibrates before it records (up to 20,000 samples, 4 s) after USB set-up.
START_TIMEOUT_S = 15.0
# stop() lets the engine run this long past the call, so the trace covers the call itself.
STOP_MARGIN_S = 0.05
# After the stop trigger, the engine ends within one USB read (its timeout is 1 s).
JOIN_TIMEOUT_S = 10.0


def _has_data_row(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16).count(b"\n") >= 2
    except OSError:
        return False


# -- the live meter -----------------------------------------------------------------------------

def load_api() -> SimpleNamespace:
    """``Monsoon.HVPM`` and ``Monsoon.sampleEngine`` (the package also needs pyusb, libusb1)."""
    hvpm = import_vendor("Monsoon.HVPM", kind=KIND, package="monsoon")
    engine = import_vendor("Monsoon.sampleEngine", kind=KIND, package="monsoon")
    return SimpleNamespace(HVPM=hvpm, sampleEngine=engine)


class MonsoonMeter(Meter):
    """A Monsoon HVPM on this machine's USB, sampling one output channel at 5 kHz.

    ``api`` stands in for the ``Monsoon`` package (tests); by default it is imported.
    """

    def __init__(self, *, serial: str | int | None = None, channel: str = "main",
                 vout: float | None = None, sample_rate_hz: float | None = None,
                 api: Any = None) -> None:
        if sample_rate_hz is not None and float(sample_rate_hz) != MONSOON_RATE_HZ:
            raise MeterError(f"monsoon: the HVPM samples at a fixed {MONSOON_RATE_HZ:g} Hz "
                             f"(got sample_rate_hz={sample_rate_hz}); its decimation keeps one "
                             "sample in k instead of averaging, so it is not offered")
        if channel not in CHANNELS:
            raise MeterError(f"monsoon: channel must be one of {sorted(CHANNELS)}, "
                             f"got {channel!r}")
        if vout is not None and not 0.0 <= float(vout) <= 13.5:
            raise MeterError(f"monsoon: vout must be within 0..13.5 V, got {vout}")
        self.api = api if api is not None else load_api()
        self.channel = channel
        self.vout = None if vout is None else float(vout)
        self.serial = self._find(serial)
        self.description = MeterDescription(
            kind=KIND, simulated=False, sample_rate_hz=MONSOON_RATE_HZ,
            description=f"Monsoon HVPM {self.serial}, {channel} channel (I x V) at "
                        f"{MONSOON_RATE_HZ:g} Hz via the 'monsoon' package",
        )
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._failure: BaseException | None = None
        self._workdir: Path | None = None

    def _find(self, serial: str | int | None) -> str:
        try:
            found = [str(s) for s in self.api.HVPM.Monsoon().enumerateDevices()]
        except Exception as e:  # noqa: BLE001 - pyusb raises NoBackendError, USBError...
            raise MeterError(f"monsoon: cannot list USB devices: {e}") from None
        if not found:
            raise MeterError(f"monsoon: no Monsoon power monitor on USB (vendor "
                             f"{USB_VENDOR_ID:04x}, product {USB_PRODUCT_ID:04x}): check the "
                             "cable, the power switch and the udev permissions")
        if serial is not None:
            if str(serial) not in found:
                raise MeterError(f"monsoon: no monitor with serial {serial} "
                                 f"(found: {', '.join(found)})")
            return str(serial)
        if len(found) > 1:
            raise MeterError(f"monsoon: several monitors found ({', '.join(found)}): choose "
                             "one with the 'serial' option")
        return found[0]

    # -- start ---------------------------------------------------------------------------------

    def _connect(self) -> Any:
        mon = self.api.HVPM.Monsoon()
        try:
            mon.setup_usb(self.serial)
        except Exception as e:  # noqa: BLE001 - USB permission errors and the like
            raise MeterError(f"monsoon: cannot open HVPM {self.serial}: {e}") from None
        # setup_usb prints 'Unable to find device' and returns when the serial is absent.
        if getattr(getattr(mon, "Protocol", None), "DEVICE", None) is None:
            raise MeterError(f"monsoon: HVPM {self.serial} disappeared before it was opened")
        try:
            mon.fillStatusPacket()
            if self.vout is not None:
                mon.setVout(self.vout)
        except Exception as e:  # noqa: BLE001
            _close(mon)
            raise MeterError(f"monsoon: cannot configure HVPM {self.serial}: {e}") from None
        return mon

    def _engine(self, mon: Any, csv_path: Path) -> Any:
        se = self.api.sampleEngine
        engine = se.SampleEngine(mon, errorMode=se.ErrorHandlingModes.off)
        engine.ConsoleOutput(False)
        if self.channel == "usb":
            engine.disableChannel(se.channels.MainCurrent)
            engine.disableChannel(se.channels.MainVoltage)
            engine.enableChannel(se.channels.USBCurrent)
            engine.enableChannel(se.channels.USBVoltage)
        else:
            engine.enableChannel(se.channels.MainCurrent)
            engine.enableChannel(se.channels.MainVoltage)
        # Start at once; stop only when stop() lowers the level on the time channel.
        engine.setTriggerChannel(se.channels.timeStamp)
        engine.setStartTrigger(se.triggers.GREATER_THAN, 0)
        engine.setStopTrigger(se.triggers.GREATER_THAN, se.triggers.SAMPLECOUNT_INFINITE)
        engine.enableCSVOutput(str(csv_path))
        return engine

    def start(self) -> None:
        if self._thread is not None:
            raise MeterError("monsoon: meter already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="joulefarm-monsoon-"))
        self._csv = self._workdir / "samples.csv"
        try:
            self._mon = self._connect()
            self._engine_obj = self._engine(self._mon, self._csv)
        except Exception:
            shutil.rmtree(self._workdir, ignore_errors=True)
            raise
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="meter-monsoon",
                                        daemon=True)
        self._thread.start()
        started.wait()
        thread = self._thread
        if not wait_until(lambda: _has_data_row(self._csv) or not thread.is_alive(),
                          START_TIMEOUT_S, interval_s=0.005) or not _has_data_row(self._csv):
            self._abort()
            why = f": {self._failure}" if self._failure else " (calibration failed?)"
            raise MeterError(f"monsoon: HVPM {self.serial} recorded no sample within "
                             f"{START_TIMEOUT_S:g} s{why}")

    def _run(self, started: threading.Event) -> None:
        se = self.api.sampleEngine
        # The engine stamps packets with time.time() - its start, taken right after this.
        self._p0 = time.perf_counter()
        started.set()
        try:
            self._engine_obj.startSampling(se.triggers.SAMPLECOUNT_INFINITE)
        except BaseException as e:  # noqa: BLE001 - reported in the trace's flags
            self._failure = e
        finally:
            with contextlib.suppress(Exception):  # flush and close after a failure too
                self._engine_obj.disableCSVOutput()

    def _request_stop(self, level_s: float) -> None:
        se = self.api.sampleEngine
        self._engine_obj.setStopTrigger(se.triggers.GREATER_THAN, level_s)

    def _abort(self) -> None:
        self._request_stop(0.0)
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)
        _close(self._mon)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._stopped = True

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> Trace:
        if self._thread is None or self._stopped:
            raise MeterError("monsoon: stop() without a matching start()")
        self._stopped = True
        t_stop = time.perf_counter()
        self._request_stop(t_stop - self._p0 + STOP_MARGIN_S)
        self._thread.join(STOP_MARGIN_S + JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            raise MeterError(f"monsoon: the sampling thread did not stop within "
                             f"{JOIN_TIMEOUT_S:g} s (a USB read is hanging)")
        _close(self._mon)
        try:
            csv = read_monsoon_csv(self._csv, self.channel)
        finally:
            assert self._workdir is not None
            shutil.rmtree(self._workdir, ignore_errors=True)
        return self._trace(csv, t_stop)

    def _trace(self, csv: MonsoonCsv, t_stop: float) -> Trace:
        fs = MONSOON_RATE_HZ
        flags: list[str] = []
        errors: list[str] = []
        if self._failure is not None:
            vanished = isinstance(self._failure, OSError)
            flags.append(FLAG_METER_VANISHED if vanished else FLAG_METER_ERROR)
            what = "USB error (monitor vanished)" if vanished else "sampling failed"
            errors.append(f"monsoon: {what} after {len(csv.stamps_s)} samples: "
                          f"{type(self._failure).__name__}: {self._failure}")
        n = len(csv.stamps_s)
        t0 = self._p0 + csv.t0_by_arrival(fs) if n else self._p0
        if n and self._failure is None and t0 + n / fs < t_stop - 0.25:
            flags.append(FLAG_METER_VANISHED)
            errors.append(f"monsoon: samples end {t_stop - (t0 + n / fs):.3f} s before stop()")
        mismatch = csv.stamp_mismatch(fs)
        if mismatch:
            flags.append(FLAG_GAPS)
            errors.append(f"monsoon: {mismatch}")
        return Trace(power_w=csv.power_w.astype(np.float32), t0_s=t0, sample_rate_hz=fs,
                        flags=tuple(dict.fromkeys(flags)), error="; ".join(errors) or None,
                        source=f"Monsoon HVPM {self.serial} ({csv.channel})")


def _close(mon: Any) -> None:
    with contextlib.suppress(Exception):  # a vanished device cannot be closed
        mon.closeDevice()
