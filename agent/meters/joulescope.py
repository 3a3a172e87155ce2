"""Joulescope JS110 / JS220, live, through PyPI ``joulescope`` (its v1 API, which runs on
``pyjoulescope_driver``).

The documented streaming path (Jetperch's ``read_by_callback.py`` example):
``scan_require_one(config='auto')`` (or ``scan(config=...)`` to pick a serial), ``open()``,
``parameter_set('sampling_frequency', fs)``, ``stream_process_register(obj)``,
``start(stop_fn=...)``; the driver's thread then calls ``obj.stream_notify(stream_buffer)``
whenever new samples are in the device's ``StreamBuffer`` (a ring of ``buffer_duration`` s),
and ``obj`` copies ``samples_get(next_id, end, fields=[...])`` out of it. ``stop()``/``close()``
end the capture. ``device.read(contiguous_duration=...)`` is not used: it needs the duration
up front and keeps only what fits in the ring.

Samples are ``power`` (W, computed on the instrument from current x voltage, then decimated to
``fs`` by the instrument's filter) on the device's sample-id clock at exactly ``fs``. Sample
ids the driver skipped are NaN in the ring; they stay NaN here, are counted in ``missing`` and
flag ``gaps``. The general-purpose inputs travel in the same stream (fields ``current_lsb`` and
``voltage_lsb``, which the v1 backend fills from the ``s/gpi/0`` and ``s/gpi/1`` streams) and
become ``Trace.gpi`` bits 0 and 1, sample-synchronous with power.

``t0_s`` is placed from arrival times (``lab.ArrivalAnchor``); ``start()`` returns once samples
flow and ``stop()`` waits until samples covering the call have arrived. If the device stops
streaming on its own (unplugged: the driver closes it and calls ``stop_fn``), or samples stop
arriving, the trace ends there with ``meter_vanished``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from agent.meters.base import Meter, MeterDescription, MeterError
from agent.meters.lab import ArrivalAnchor, SampleChunks, import_vendor, wait_until
from joulefarm.traces.model import FLAG_GAPS, FLAG_METER_ERROR, FLAG_METER_VANISHED, Trace

KIND = "joulescope"
# 100 kS/s resolves 10 us, far below a layer window, at 400 kB/s of float32; both models
# support it (JS220 output rates run 1 S/s .. 1 MS/s, JS110 up to 2 MS/s).
DEFAULT_RATE_HZ = 100_000.0
# (vendor id, product id) -> model, from Jetperch's udev rules (72-joulescope.rules).
USB_IDS = {(0x16D0, 0x0E88): "JS110", (0x1FC9, 0xFC93): "JS110", (0x16D0, 0x10BA): "JS220"}
GPI_FIELDS = ("current_lsb", "voltage_lsb")  # GPI0, GPI1 in the v1 StreamBuffer
START_TIMEOUT_S = 5.0  # first samples after start()
STOP_TIMEOUT_S = 2.0  # samples covering stop() (USB latency is milliseconds)


def load_api() -> Any:
    return import_vendor("joulescope", kind=KIND, package="joulescope")


class StreamCollector:
    """The stream-process object registered with the device. ``stream_notify`` runs on the
    driver's USB thread: it only copies new samples out of the ring. Returning True asks the
    device to stop, which it does after a failure here (reported as ``meter_error``)."""

    def __init__(self, rate_hz: float, gpi: bool) -> None:
        self.chunks = SampleChunks(gpi)
        self.anchor = ArrivalAnchor(rate_hz)
        self.fields = ["power", *GPI_FIELDS] if gpi else ["power"]
        self.first_id: int | None = None
        self.next_id: int | None = None
        self.last_arrival_s: float | None = None
        self.error: str | None = None
        self.driver_active = True  # the device's stream-process bookkeeping

    def stream_notify(self, stream_buffer: Any) -> bool:
        now = time.perf_counter()
        try:
            start, end = stream_buffer.sample_id_range
            if start is None or end is None or end <= start:
                return False
            if self.next_id is None:
                self.first_id = self.next_id = int(start)
            assert self.first_id is not None
            if start > self.next_id:  # the ring overwrote samples before we read them
                self.chunks.append_missing(int(start) - self.next_id)
                self.next_id = int(start)
            if end <= self.next_id:
                return False
            signals = stream_buffer.samples_get(self.next_id, int(end),
                                                fields=self.fields)["signals"]
            power = np.asarray(signals["power"]["value"])
            gpi = None
            if self.chunks.with_gpi:
                gpi = np.zeros(len(power), np.uint8)
                for bit, name in enumerate(GPI_FIELDS):
                    if name in signals:
                        gpi |= (np.asarray(signals[name]["value"], np.uint8) & 1) << bit
            self.chunks.append(power, gpi)
            self.next_id += len(power)
            self.anchor.observe(now, self.next_id - self.first_id)
            self.last_arrival_s = now
        except Exception as e:  # noqa: BLE001 - must not escape into the driver's thread
            self.error = f"{type(e).__name__}: {e}"
            return True
        return False

    def covers(self, t_s: float) -> bool:
        """Whether the samples received so far reach agent time ``t_s``."""
        anchor = self.anchor
        return anchor.known and anchor.t0_s + self.chunks.n / anchor.rate_hz >= t_s


class JoulescopeMeter(Meter):
    """One Joulescope streaming power (and GPI) at ``sample_rate_hz``.

    ``api`` stands in for the ``joulescope`` module (tests); by default it is imported.
    ``config`` is the scan configuration ('auto' sets auto current range and the 15 V range).
    """

    def __init__(self, *, serial: str | None = None, sample_rate_hz: float | None = None,
                 gpi: bool = True, config: str = "auto", api: Any = None) -> None:
        rate = float(sample_rate_hz or DEFAULT_RATE_HZ)
        if not rate > 0 or rate != int(rate):
            raise MeterError(f"joulescope: sample_rate_hz must be a whole number > 0, got "
                             f"{sample_rate_hz}")
        self.api = api if api is not None else load_api()
        self.gpi = bool(gpi)
        self.device = self._find(serial, config)
        self.name = str(self.device)
        self.description = MeterDescription(
            kind=KIND, simulated=False, sample_rate_hz=rate,
            description=f"Joulescope {self.name} power at {rate:g} Hz"
                        + (" with GPI0/GPI1" if self.gpi else ""),
        )
        self._collector: StreamCollector | None = None
        self._device_stop: tuple[Any, Any] | None = None
        self._stopping = False
        self._stopped = False

    def _find(self, serial: str | None, config: str) -> Any:
        try:
            if serial is None:
                return self.api.scan_require_one(config=config)
            devices = list(self.api.scan(config=config))
        except RuntimeError as e:
            if "multiple" in str(e):
                names = ", ".join(str(d) for d in self.api.scan(config=config))
                raise MeterError(f"joulescope: several Joulescopes found ({names}): choose one "
                                 "with the 'serial' option") from None
            raise MeterError(f"joulescope: no Joulescope found on USB ({e}): check the cable "
                             "and the udev rules (72-joulescope.rules)") from None
        except Exception as e:  # noqa: BLE001 - the native driver failed to load or scan
            raise MeterError(f"joulescope: cannot scan for Joulescopes: {e}") from None
        wanted = str(serial).lstrip("0")
        matches = [d for d in devices
                   if str(getattr(d, "serial_number", "")).lstrip("0") == wanted
                   or str(d).lower() == str(serial).lower()]
        if not matches:
            names = ", ".join(str(d) for d in devices) or "none"
            raise MeterError(f"joulescope: no Joulescope with serial {serial} (found: {names})")
        return matches[0]

    def _on_device_stop(self, event: Any = 0, message: Any = "") -> None:
        # Called from the driver's thread: by our own stop(), or because the device stopped.
        if not self._stopping and self._device_stop is None:
            self._device_stop = (event, message)

    def start(self) -> None:
        if self._collector is not None:
            raise MeterError("joulescope: meter already started")
        dev = self.device
        rate = self.description.sample_rate_hz
        try:
            dev.open()
        except Exception as e:  # noqa: BLE001 - in use by another program, unplugged...
            raise MeterError(f"joulescope: cannot open {self.name}: {e}") from None
        try:
            dev.parameter_set("sampling_frequency", int(rate))
        except (KeyError, ValueError) as e:
            _quietly(dev.close)
            raise MeterError(f"joulescope: {self.name} cannot sample at {rate:g} Hz: "
                             f"{e}") from None
        actual = getattr(dev, "output_sampling_frequency", rate)
        if actual and float(actual) != rate:
            _quietly(dev.close)
            raise MeterError(f"joulescope: {self.name} samples at {actual} Hz, not {rate:g}")
        collector = self._collector = StreamCollector(rate, self.gpi)
        dev.stream_process_register(collector)
        dev.start(stop_fn=self._on_device_stop)
        wait_until(lambda: collector.chunks.n > 0 or self._device_stop is not None
                   or collector.error is not None, START_TIMEOUT_S)
        if collector.chunks.n == 0:
            self._stopping = self._stopped = True
            _quietly(dev.stop)
            _quietly(dev.close)
            why = collector.error or (f"device stopped: {self._device_stop}"
                                      if self._device_stop else "")
            raise MeterError(f"joulescope: {self.name} sent no sample within "
                             f"{START_TIMEOUT_S:g} s{': ' + why if why else ''}")

    def stop(self) -> Trace:
        c = self._collector
        if c is None or self._stopped:
            raise MeterError("joulescope: stop() without a matching start()")
        self._stopped = True
        t_stop = time.perf_counter()
        wait_until(lambda: c.covers(t_stop) or self._device_stop is not None
                   or c.error is not None, STOP_TIMEOUT_S)
        self._stopping = True
        dev = self.device
        _quietly(dev.stop)
        _quietly(lambda: dev.stream_process_unregister(c))
        _quietly(dev.close)
        return self._trace(c, t_stop)

    def _trace(self, c: StreamCollector, t_stop: float) -> Trace:
        fs = self.description.sample_rate_hz
        power, gpi = c.chunks.arrays()
        flags: list[str] = []
        errors: list[str] = []
        if c.error is not None:
            flags.append(FLAG_METER_ERROR)
            errors.append(f"joulescope: reading the stream failed: {c.error}")
        elif self._device_stop is not None:
            flags.append(FLAG_METER_VANISHED)
            errors.append(f"joulescope: {self.name} stopped streaming mid-run "
                          f"(stop_fn{self._device_stop})")
        elif not c.covers(t_stop):
            flags.append(FLAG_METER_VANISHED)
            errors.append(f"joulescope: no samples arrived for the last "
                          f"{t_stop - (c.last_arrival_s or t_stop):.3f} s before stop()")
        # The ring marks samples skipped while the stream starts as NaN: they precede start().
        finite = np.flatnonzero(np.isfinite(power))
        lead = int(finite[0]) if len(finite) else len(power)
        power = power[lead:]
        gpi = None if gpi is None else gpi[lead:]
        missing = int(np.count_nonzero(np.isnan(power)))
        if missing:
            flags.append(FLAG_GAPS)
            errors.append(f"joulescope: {missing} samples lost in transfer (NaN)")
        t0 = c.anchor.t0_s + lead / fs if c.anchor.known else t_stop
        return Trace(power_w=power, t0_s=float(t0), sample_rate_hz=fs,
                        flags=tuple(dict.fromkeys(flags)), gpi=gpi, missing=missing,
                        error="; ".join(errors) or None, source=f"Joulescope {self.name}")


def _quietly(fn: Any) -> None:
    # Cleanup of a device that may be gone: whatever it raises changes nothing.
    with contextlib.suppress(Exception):
        fn()
