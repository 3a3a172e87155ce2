"""A recorded trace replayed as a meter: reproducible runs, and re-analysis of a capture.

``stop()`` returns the part of the recording that spans the run: recording time
``start + offset_s`` is mapped to the agent time of ``start()`` and the slice runs for as long as
the run did. A uniform recording comes back as a uniform ``Trace`` (sample grid kept, ``t0_s``
on the agent clock, so alignment finds an offset near 0); a point recording as a
``TimestampedTrace`` on the agent clock, its points held (hold model) and clipped to the run. A
recording shorter than the run ends the trace early with the ``replay_short`` flag; nothing is
padded.

Recordings are read by ``joulefarm.traces.read_trace``, the readers ``joulefarm trace import``
uses, so a file means the same here as on the controller: ``npz`` and ``csv`` (with its
optional sidecar JSON) need nothing beyond numpy, so prefer them on devices; ``parquet`` needs
pyarrow, ``jls`` needs pyjls; ``monsoon``, ``spl`` and ``tegrastats`` logs replay too (see the
``joulefarm.traces`` docstring for each format). ``format`` picks one; ``auto`` detects it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agent.meters.base import Meter, MeterDescription, MeterError
from joulefarm.errors import TraceInputError
from joulefarm.traces import FORMATS, read_trace
from joulefarm.traces.model import FLAG_REPLAY_SHORT, AnyTrace, TimestampedTrace, Trace

KIND = "replay"


def load_recording(path: Path, fmt: str = "auto") -> Trace | TimestampedTrace:
    """Read a recording; MeterError says what is wrong with the file (or the format name)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise MeterError(f"replay: format must be one of auto, {', '.join(FORMATS)}, got "
                         f"{fmt!r}")
    if not path.is_file():
        raise MeterError(f"replay: no recording at {path}")
    try:
        recording = read_trace(path, fmt)
    except TraceInputError as e:
        raise MeterError(f"replay: {e}") from None
    if recording.samples < 2 and not recording.uniform:
        raise MeterError(f"replay: {path} holds fewer than 2 readings")
    return recording


def _source(rec: Trace | TimestampedTrace) -> str:
    return rec.source if isinstance(rec, Trace) and rec.source else str(
        rec.meta.get("source_file", "recording"))


# -- the meter ----------------------------------------------------------------------------------

class ReplayMeter(Meter):
    """Replays ``path`` from recording time ``start + offset_s``. Labelled ``simulated`` only
    when the file says its power came from a model."""

    def __init__(self, path: Path | str, *, offset_s: float = 0.0, fmt: str = "auto",
                 sample_rate_hz: float | None = None) -> None:
        self.path = Path(path)
        self.recording = rec = load_recording(self.path, fmt)
        self.offset_s = float(offset_s)
        rate = rec.sample_rate_hz if isinstance(rec, Trace) else (
            (rec.samples - 1) / rec.duration_s if rec.duration_s > 0 else 0.0)
        if not 0.0 <= self.offset_s < rec.duration_s:
            raise MeterError(f"replay: offset_s must be within [0, {rec.duration_s:g}) s, the "
                             f"recording's length; got {offset_s}")
        if (sample_rate_hz is not None and rec.uniform
                and abs(float(sample_rate_hz) - rate) > 1e-9 * rate):
            raise MeterError(f"replay: {self.path.name} was recorded at {rate:g} "
                             f"Hz, not {sample_rate_hz:g} Hz: drop sample_rate_hz")
        layout = (f"uniform at {rate:g} Hz" if rec.uniform else f"timestamped, ~{rate:.3g} Hz")
        self.description = MeterDescription(
            kind=KIND, simulated=bool(rec.meta.get("simulated", False)), sample_rate_hz=rate,
            description=f"replay of {_source(rec)}: {rec.samples} samples, {layout}, from "
                        f"{self.offset_s:g} s",
        )
        self._start_s: float | None = None
        self._stopped = False

    def start(self) -> None:
        if self._start_s is not None:
            raise MeterError("replay: meter already started")
        self._start_s = time.perf_counter()

    def stop(self) -> AnyTrace:
        if self._start_s is None or self._stopped:
            raise MeterError("replay: stop() without a matching start()")
        self._stopped = True
        duration = time.perf_counter() - self._start_s
        if isinstance(self.recording, Trace):
            return replay_uniform(self.recording, self.offset_s, duration, self._start_s)
        return replay_points(self.recording, self.offset_s, duration, self._start_s)


def replay_uniform(rec: Trace, offset_s: float, duration_s: float, start_s: float) -> Trace:
    """Samples covering recording time ``[t0 + offset, t0 + offset + duration]``, shifted so
    that ``t0 + offset`` falls on ``start_s``; the grid is kept (the first sample may begin a
    fraction of a period before ``start_s``)."""
    fs = rec.sample_rate_hz
    n = len(rec.power_w)
    i0 = int(np.floor(offset_s * fs + 1e-9))
    end = int(np.ceil((offset_s + duration_s) * fs - 1e-9))
    i1 = min(max(end, i0 + 1), n)
    flags = (FLAG_REPLAY_SHORT,) if end > n else ()
    return Trace(
        power_w=np.asarray(rec.power_w[i0:i1], dtype=np.float32),
        t0_s=start_s - (offset_s - i0 / fs), sample_rate_hz=fs, flags=flags,
        gpi=None if rec.gpi is None else rec.gpi[i0:i1].copy(),
        error=(f"replay: the recording ends {(end - n) / fs:.3f} s before stop()"
               if flags else None),
        source=_source(rec),
    )


def replay_points(rec: TimestampedTrace, offset_s: float, duration_s: float, start_s: float
                  ) -> TimestampedTrace:
    """The held points over the run, on the agent clock: the value held at the slice's start
    opens it, a copy of the last held value closes it at the end (hold model)."""
    t, p = rec.t_s, np.asarray(rec.power_w, dtype=np.float64)
    rate = (len(t) - 1) / float(t[-1] - t[0])
    a = float(t[0]) + offset_s
    b = a + duration_s
    k0 = int(np.searchsorted(t, a, side="right")) - 1
    short = b > t[-1]
    if short:
        times = np.concatenate(([a], t[k0 + 1:]))
        power = np.concatenate(([p[k0]], p[k0 + 1:]))
    else:
        k1 = max(int(np.searchsorted(t, b, side="left")), k0 + 1)
        held = np.concatenate(([p[k0]], p[k0 + 1:k1]))
        times = np.concatenate(([a], t[k0 + 1:k1], [b]))
        power = np.append(held, held[-1])
    return TimestampedTrace(
        t_s=times - a + start_s, power_w=power,
        flags=(FLAG_REPLAY_SHORT,) if short else (), target_rate_hz=rate,
        error=f"replay: the recording ends {b - t[-1]:.3f} s before stop()" if short else None,
    )
