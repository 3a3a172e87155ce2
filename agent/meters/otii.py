"""Qoitech Otii Arc / Ace through the Otii application's TCP server (JSON, port 1905).

The wire protocol is the one PyPI ``otii_tcp_client`` (1.0.x) speaks, implemented here so the
agent needs no extra package: one JSON object per message, each terminated by ``\\r\\n``. On
connect the server sends ``{"type": "information", "info": "connected", "data": {...}}``.
A request is ``{"type": "request", "cmd": ..., "data": {...}, "trans_id": "<n>"}``; the answer
is ``{"type": "response", "cmd": ..., "data": {...}, "trans_id": "<n>"}`` or ``{"type":
"error", "errorcode": ..., "cmd": ..., "data": {...}, "trans_id": "<n>"}``; ``"progress"`` and
unsolicited ``"information"`` messages may come in between.

A run: ``otii_get_devices`` (pick the Arc/Ace), ``arc_enable_channel`` (``mp``, main power in
W, and ``i1``/``i2`` when GPI is wanted), ``arc_set_channel_samplerate``,
``otii_get_active_project`` (or ``otii_create_project``), ``project_start_recording``,
``project_get_last_recording``; while it records a thread polls
``recording_get_channel_data_count`` and fetches new samples with ``recording_get_channel_data``
(``{"data_type": "analog", "timestamp": s, "interval": s, "values": [...]}``), so a run that
loses the server keeps what arrived. ``stop()``: ``project_stop_recording``, the last samples,
the digital inputs (``{"data_type": "digital", "values": [{"timestamp", "value"}...]}``),
``arc_is_connected``, and ``recording_delete`` unless ``keep_recording``.

Timestamps are recording-relative seconds; recording time 0 is put on the agent clock at the
midpoint of the ``project_start_recording`` round trip, or earlier when a sample count
arrived too soon for it (the arrival bound of ``lab.ArrivalAnchor``). The sync pattern
measures what is left (the Arc's start latency).

Otii 3 serves TCP only to a logged-in user holding an Automation license. With
``licensing="auto"`` the driver logs in from ``OTII_USERNAME``/``OTII_PASSWORD`` in the agent's
environment when nobody is logged in, reserves a free Automation license when none is held,
and gives back what it took at the end (what ``otii_client.OtiiClient`` does). Otii 2 has no
licensing commands; they are skipped. The driver never touches main output or voltage: the
device under test (maybe the agent's own host) may run from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from agent.meters.base import Meter, MeterDescription, MeterError
from agent.meters.lab import SampleChunks, wait_until
from joulefarm.traces.model import FLAG_GAPS, FLAG_METER_ERROR, FLAG_METER_VANISHED, Trace

KIND = "otii"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1905
DEFAULT_RATE_HZ = 4000.0
POWER_CHANNELS = ("mp", "ap")  # main power, ADC power (W)
GPI_CHANNELS = ("i1", "i2")  # digital inputs -> GPI bits 0, 1
DEVICE_TYPES = ("Arc", "Ace")
SIMULATOR_TYPE = "Simulator"  # the Otii application's simulated device: only when named
# License types that include Automation (otii_tcp_client.otii_client.LICENSE_MAP).
AUTOMATION_LICENSES = ("Admin", "All", "Automation", "Enterprise")
CHUNK = 40_000  # values per recording_get_channel_data, as otii_tcp_client fetches them
POLL_INTERVAL_S = 0.2
REQUEST_TIMEOUT_S = 10.0
DEVICE_WAIT_S = 3  # otii_get_devices waits this long for a device to enumerate
START_TIMEOUT_S = 5.0  # first samples after project_start_recording
# A trace ending more than this before stop() means the Arc stopped delivering.
SHORT_TOLERANCE_S = 0.25


class OtiiError(MeterError):
    """The server answered a request with ``"type": "error"``."""

    def __init__(self, cmd: str, errorcode: str, data: Any) -> None:
        self.cmd, self.errorcode, self.data = cmd, errorcode, data
        detail = data.get("message") if isinstance(data, dict) else None
        super().__init__(f"otii: {cmd} failed: {errorcode}"
                         + (f": {detail}" if detail else f" {data}" if data else ""))


class OtiiDisconnected(MeterError):
    """The TCP connection to the Otii server broke or timed out."""


class OtiiConnection:
    """One TCP connection to the Otii server; ``request`` is safe to call from two threads."""

    def __init__(self, host: str, port: int, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.where = f"{host}:{port}"
        self.timeout_s = timeout_s
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as e:
            raise MeterError(f"otii: cannot reach the Otii server at {self.where}: {e} (is "
                             "the Otii application running with its TCP server enabled?)"
                             ) from None
        self._buffer = b""
        self._lock = threading.Lock()
        self._next_id = 0
        self.notices: list[dict[str, Any]] = []
        hello = self._receive(timeout_s)
        if hello.get("type") == "error":
            self.close()
            raise MeterError(f"otii: the server at {self.where} refused the connection: "
                             f"{hello.get('errorcode')} {hello.get('data', '')}")
        self.server_info = hello.get("data") or {}

    def _receive(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while b"\r\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OtiiDisconnected(f"otii: no answer from {self.where} within "
                                       f"{timeout_s:g} s")
            try:
                self._sock.settimeout(remaining)
                chunk = self._sock.recv(1 << 17)
            except TimeoutError:
                continue
            except OSError as e:
                raise OtiiDisconnected(f"otii: connection to {self.where} lost: {e}") from None
            if not chunk:
                raise OtiiDisconnected(f"otii: the server at {self.where} closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        try:
            message = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MeterError(f"otii: not a JSON message from {self.where}: {line[:200]!r}"
                             ) from None
        if not isinstance(message, dict):
            raise MeterError(f"otii: unexpected message from {self.where}: {line[:200]!r}")
        return message

    def request(self, cmd: str, data: dict[str, Any] | None = None,
                timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request and return the ``data`` of its response."""
        with self._lock:
            self._next_id += 1
            trans_id = str(self._next_id)
            message: dict[str, Any] = {"type": "request", "cmd": cmd}
            if data is not None:
                message["data"] = data
            message["trans_id"] = trans_id
            try:
                self._sock.sendall(json.dumps(message).encode() + b"\r\n")
            except OSError as e:
                raise OtiiDisconnected(f"otii: connection to {self.where} lost: {e}") from None
            while True:
                reply = self._receive(timeout_s or self.timeout_s)
                kind = reply.get("type")
                if kind in ("progress", "information"):
                    if kind == "information":
                        self.notices.append(reply)
                    continue
                if reply.get("trans_id") != trans_id:
                    continue  # the late answer of a request that timed out
                if kind == "error":
                    raise OtiiError(cmd, str(reply.get("errorcode")), reply.get("data"))
                return reply.get("data") or {}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


class Licensing:
    """Log in and reserve an Automation license if needed; ``release`` undoes only that."""

    def __init__(self, conn: OtiiConnection, mode: str) -> None:
        self.conn = conn
        self.mode = mode
        self.reserved: list[Any] = []
        self.logged_in = False

    def acquire(self) -> None:
        if self.mode == "manual":
            return
        try:
            logged_in = bool(self.conn.request("otii_is_logged_in").get("logged_in"))
        except OtiiError as e:
            if e.errorcode == "Invalid command":
                return  # Otii 2: no licensing
            raise
        if not logged_in:
            user, password = os.environ.get("OTII_USERNAME"), os.environ.get("OTII_PASSWORD")
            if not user or not password:
                raise MeterError("otii: Otii 3 needs a logged-in user with an Automation "
                                 "license: log in in the Otii application, or set "
                                 "OTII_USERNAME and OTII_PASSWORD for the agent")
            self.conn.request("otii_login", {"username": user, "password": password})
            self.logged_in = True
        held = self.conn.request("otii_has_license", {"license_type": "Automation"})
        if held.get("has_license"):
            return
        licenses = self.conn.request("otii_get_licenses").get("licenses", [])
        free = [lic for lic in licenses if lic.get("available") and not lic.get("reserved_to")
                and lic.get("type") in AUTOMATION_LICENSES]
        if not free:
            raise MeterError("otii: no free Automation license for the TCP server (licenses: "
                             + ", ".join(f"{lic.get('type')}#{lic.get('id')} reserved to "
                                         f"{lic.get('reserved_to')!r}" for lic in licenses)
                             + ")")
        self.conn.request("otii_reserve_license", {"license_id": free[0]["id"]})
        self.reserved.append(free[0]["id"])

    def release(self) -> None:
        for license_id in self.reserved:
            _quietly(lambda lid=license_id: self.conn.request("otii_return_license",
                                                              {"license_id": lid}))
        self.reserved.clear()
        if self.logged_in:
            _quietly(lambda: self.conn.request("otii_logout"))
            self.logged_in = False


def _quietly(fn: Any) -> None:
    with contextlib.suppress(MeterError):
        fn()


def pick_device(devices: Iterable[dict[str, Any]], wanted: str | None) -> dict[str, Any]:
    """The Arc/Ace named (by name or device id) ``wanted``, else the only one. The
    application's simulated device is taken only when named (its trace is then labelled
    simulated)."""
    devices = list(devices)
    usable = [d for d in devices if d.get("type") in DEVICE_TYPES]
    names = ", ".join(f"{d.get('name')} ({d.get('type')}, {d.get('device_id')})"
                      for d in usable) or "none"
    if wanted is not None:
        match = [d for d in devices if d.get("type") in (*DEVICE_TYPES, SIMULATOR_TYPE)
                 and wanted in (d.get("name"), d.get("device_id"))]
        if not match:
            raise MeterError(f"otii: no Arc/Ace named {wanted!r} (connected: {names})")
        return match[0]
    if not usable:
        raise MeterError("otii: no Arc or Ace is connected to the Otii application")
    if len(usable) > 1:
        raise MeterError(f"otii: several devices ({names}): choose one with the 'device' "
                         "option")
    return usable[0]


def gpi_bits(edges: Sequence[dict[str, Any]], grid_s: np.ndarray) -> np.ndarray:
    """A digital channel's ``[{"timestamp", "value"}]`` changes, sampled at ``grid_s``
    (recording time of each sample's start): the value of the latest change at or before it;
    before the first change, the opposite of that change."""
    if not edges:
        return np.zeros(len(grid_s), np.uint8)
    times = np.asarray([float(e["timestamp"]) for e in edges])
    values = np.asarray([bool(e["value"]) for e in edges], dtype=np.uint8)
    idx = np.searchsorted(times, grid_s, side="right") - 1
    before = np.uint8(1 - values[0])
    return np.where(idx >= 0, values[np.maximum(idx, 0)], before).astype(np.uint8)


class OtiiMeter(Meter):
    """An Otii Arc/Ace recording main power (``channel``) at ``sample_rate_hz``."""

    def __init__(self, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 device: str | None = None, sample_rate_hz: float | None = None,
                 channel: str = "mp", gpi: Sequence[str] = (), keep_recording: bool = False,
                 licensing: str = "auto", timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        if channel not in POWER_CHANNELS:
            raise MeterError(f"otii: channel must be one of {POWER_CHANNELS} (power in W), "
                             f"got {channel!r}")
        gpi = [gpi] if isinstance(gpi, str) else list(gpi)
        bad = [g for g in gpi if g not in GPI_CHANNELS]
        if bad:
            raise MeterError(f"otii: gpi takes channels {GPI_CHANNELS}, got {bad}")
        if licensing not in ("auto", "manual"):
            raise MeterError(f"otii: licensing must be 'auto' or 'manual', got {licensing!r}")
        rate = float(sample_rate_hz or DEFAULT_RATE_HZ)
        if not rate > 0 or rate != int(rate):
            raise MeterError(f"otii: sample_rate_hz must be a whole number > 0, got {rate}")
        self.host, self.port, self.channel = host, int(port), channel
        self.gpi_channels = tuple(gpi)
        self.keep_recording = bool(keep_recording)
        self.licensing = licensing
        self.timeout_s = float(timeout_s)
        self.requested_rate_hz = rate
        # Check now that the server answers and the device is there (open_meter fails early).
        conn = OtiiConnection(self.host, self.port, self.timeout_s)
        lic = Licensing(conn, licensing)
        try:
            lic.acquire()
            self.device = pick_device(self._devices(conn), device)
        finally:
            lic.release()
            conn.close()
        self.device_id = str(self.device["device_id"])
        self.description = MeterDescription(
            kind=KIND, simulated=self.device.get("type") == SIMULATOR_TYPE, sample_rate_hz=rate,
            description=f"Qoitech Otii {self.device.get('type')} {self.device.get('name')!r}, "
                        f"channel {channel} at {rate:g} Hz via TCP {host}:{port}"
                        + (f", GPI {'/'.join(self.gpi_channels)}" if self.gpi_channels else ""),
        )
        self._conn: OtiiConnection | None = None
        self._stopped = False

    @staticmethod
    def _devices(conn: OtiiConnection) -> list[dict[str, Any]]:
        data = conn.request("otii_get_devices", {"timeout": DEVICE_WAIT_S},
                            timeout_s=DEVICE_WAIT_S + conn.timeout_s)
        return list(data.get("devices") or [])

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._conn is not None:
            raise MeterError("otii: meter already started")
        conn = self._conn = OtiiConnection(self.host, self.port, self.timeout_s)
        self._licensing = Licensing(conn, self.licensing)
        try:
            self._licensing.acquire()
            self._configure(conn)
            t_a = time.perf_counter()
            conn.request("project_start_recording", {"project_id": self._project_id})
            t_b = time.perf_counter()
            recording = conn.request("project_get_last_recording",
                                     {"project_id": self._project_id})
            self._recording_id = recording.get("recording_id", -1)
            if self._recording_id == -1:
                raise MeterError("otii: the recording did not start (no last recording)")
        except MeterError:
            self._licensing.release()
            conn.close()
            self._conn = None
            raise
        self._start_mid_s = 0.5 * (t_a + t_b)
        self._chunks = SampleChunks(with_gpi=False)
        self._counts: list[tuple[float, int]] = []
        self._ts0: float | None = None
        self._rate: float | None = None
        self._failure: tuple[str, str] | None = None
        self._halt = threading.Event()
        if not wait_until(lambda: self._poll_once() or self._failure is not None,
                          START_TIMEOUT_S, interval_s=0.01) or self._chunks.n == 0:
            why = self._failure[1] if self._failure else "no samples"
            self._finish_recording()
            self._close()
            raise MeterError(f"otii: {self.device.get('name')} recorded nothing within "
                             f"{START_TIMEOUT_S:g} s ({why})")
        self._poller = threading.Thread(target=self._poll_loop, name="meter-otii", daemon=True)
        self._poller.start()

    def _configure(self, conn: OtiiConnection) -> None:
        dev = self.device_id
        if not any(d.get("device_id") == dev for d in self._devices(conn)):
            raise MeterError(f"otii: {self.device.get('name')} ({dev}) is no longer connected")
        for ch in (self.channel, *self.gpi_channels):
            conn.request("arc_enable_channel", {"device_id": dev, "channel": ch,
                                                "enable": True})
        rate = int(self.requested_rate_hz)
        try:
            conn.request("arc_set_channel_samplerate",
                         {"device_id": dev, "channel": self.channel, "value": rate})
        except OtiiError as e:
            # Older servers have a fixed 4 kS/s: fine when that is what was asked for.
            if rate != int(DEFAULT_RATE_HZ):
                raise MeterError(f"otii: cannot record {self.channel} at {rate} Hz: {e}"
                                 ) from None
        project = conn.request("otii_get_active_project").get("project_id", -1)
        if project == -1:
            project = conn.request("otii_create_project")["project_id"]
        self._project_id = project

    # -- polling -----------------------------------------------------------------------------

    def _channel_request(self, cmd: str, channel: str, **extra: Any) -> dict[str, Any]:
        assert self._conn is not None
        return self._conn.request(cmd, {"recording_id": self._recording_id,
                                        "device_id": self.device_id, "channel": channel,
                                        **extra})

    def _poll_once(self) -> bool:
        """Fetch what the server holds beyond what we have. True when samples arrived."""
        try:
            count = int(self._channel_request("recording_get_channel_data_count",
                                              self.channel)["count"])
            answered = time.perf_counter()
            self._counts.append((answered, count))
            got = False
            while self._chunks.n < count:
                data = self._channel_request("recording_get_channel_data", self.channel,
                                             index=self._chunks.n,
                                             count=min(count - self._chunks.n, CHUNK))
                values = data.get("values") or []
                if not values:
                    break
                if self._ts0 is None:
                    self._ts0 = float(data["timestamp"])
                    self._rate = 1.0 / float(data["interval"])
                self._chunks.append(np.asarray(values, dtype=np.float32))
                got = True
            return got
        except OtiiDisconnected as e:
            self._failure = (FLAG_METER_VANISHED, str(e))
        except OtiiError as e:
            vanished = e.errorcode == "Device not connected"
            self._failure = (FLAG_METER_VANISHED if vanished else FLAG_METER_ERROR, str(e))
        except (KeyError, TypeError, ValueError) as e:
            self._failure = (FLAG_METER_ERROR, f"otii: malformed data message: {e!r}")
        return False

    def _poll_loop(self) -> None:
        while not self._halt.wait(POLL_INTERVAL_S):
            self._poll_once()
            if self._failure is not None:
                return

    # -- stop --------------------------------------------------------------------------------

    def _finish_recording(self) -> bool:
        """Stop the recording; False when the server is gone."""
        try:
            assert self._conn is not None
            self._conn.request("project_stop_recording", {"project_id": self._project_id})
            return True
        except OtiiDisconnected as e:
            self._failure = self._failure or (FLAG_METER_VANISHED, str(e))
        except OtiiError as e:
            self._failure = self._failure or (FLAG_METER_ERROR, str(e))
        return False

    def _close(self) -> None:
        if self._conn is not None:
            self._licensing.release()
            self._conn.close()

    def stop(self) -> Trace:
        if self._conn is None or self._stopped:
            raise MeterError("otii: stop() without a matching start()")
        self._stopped = True
        t_stop = time.perf_counter()
        self._halt.set()
        self._poller.join(self.timeout_s + CHUNK / self.requested_rate_hz)
        gpi = None
        connected = True
        if self._failure is None and self._finish_recording():
            self._poll_once()  # the samples recorded since the last poll
            gpi = self._fetch_gpi()
            connected = self._is_connected()
            if not self.keep_recording:
                with contextlib.suppress(MeterError):
                    self._conn.request("recording_delete", {"recording_id": self._recording_id})
        self._close()
        return self._trace(t_stop, gpi, connected)

    def _is_connected(self) -> bool:
        assert self._conn is not None
        try:
            reply = self._conn.request("arc_is_connected", {"device_id": self.device_id})
        except OtiiError as e:
            return e.errorcode != "Device not connected"
        except MeterError:
            return True  # unknown: the sample count check still applies
        return bool(reply.get("connected", True))

    def _fetch_gpi(self) -> np.ndarray | None:
        if not self.gpi_channels or self._ts0 is None or self._rate is None:
            return None
        grid = self._ts0 + np.arange(self._chunks.n) / self._rate
        bits = np.zeros(len(grid), np.uint8)
        try:
            for bit, ch in enumerate(GPI_CHANNELS):
                if ch not in self.gpi_channels:
                    continue
                count = int(self._channel_request("recording_get_channel_data_count",
                                                  ch)["count"])
                data = self._channel_request("recording_get_channel_data", ch, index=0,
                                             count=count) if count else {"values": []}
                bits |= gpi_bits(data.get("values") or [], grid) << bit
        except MeterError as e:
            self._failure = self._failure or (FLAG_METER_ERROR, f"otii: GPI: {e}")
            return None
        return bits

    def _trace(self, t_stop: float, gpi: np.ndarray | None, connected: bool) -> Trace:
        power, _ = self._chunks.arrays()
        fs = self._rate or self.requested_rate_hz
        ts0 = self._ts0 or 0.0
        flags: list[str] = []
        errors: list[str] = []
        if self._failure is not None:
            flags.append(self._failure[0])
            errors.append(self._failure[1])
        # Recording time 0 on the agent clock: the start request's midpoint, or earlier if
        # samples arrived sooner than that allows.
        zero = self._start_mid_s
        for answered, count in self._counts:
            if count:
                zero = min(zero, answered - (ts0 + count / fs))
        t0 = zero + ts0
        end = t0 + len(power) / fs
        if not connected:
            flags.append(FLAG_METER_VANISHED)
            errors.append(f"otii: {self.device.get('name')} disconnected during the run")
        elif not flags and end < t_stop - SHORT_TOLERANCE_S:
            flags.append(FLAG_METER_VANISHED)
            errors.append(f"otii: samples end {t_stop - end:.3f} s before stop()")
        missing = int(np.count_nonzero(np.isnan(power)))
        if missing:
            flags.append(FLAG_GAPS)
        return Trace(power_w=power, t0_s=float(t0), sample_rate_hz=float(fs),
                        flags=tuple(dict.fromkeys(flags)), gpi=gpi, missing=missing,
                        error="; ".join(errors) or None,
                        source=f"Otii {self.device.get('type')} {self.device.get('name')} "
                               f"({self.device_id}) {self.channel}")
