"""A recorded trace replayed as a meter: reproducible runs, and re-analysis of a capture.

``stop()`` returns the part of the recording that spans the run: recording time
``start + offset_s`` is mapped to the agent time of ``start()`` and the slice runs for as long as
the run did. A uniform recording comes back as a ``LabTrace`` (sample grid kept, ``t0_s`` on the
agent clock, so alignment finds an offset near 0); a timestamped one as a ``TimestampedTrace``
on the agent clock, its points held (hold model) and clipped to the run. A recording shorter
than the run ends the trace early with the ``replay_short`` flag; nothing is padded.

Formats (``format`` option, ``auto`` guesses from the name and the first bytes). The agent
needs nothing beyond numpy for the first two; prefer them on devices:

* ``npz`` (``numpy.savez``): ``power_w`` (W), and either ``sample_rate_hz`` [+ ``t0_s``] for a
  uniform recording (sample ``i`` covers ``[t0 + i/fs, t0 + (i+1)/fs)``) or ``t_s`` (s) point
  stamps (uniform when within 1 % of a period of a straight line); optional ``gpi`` (uint8 per
  sample, bit k = input k) and ``simulated`` (bool).
* ``csv``: a header row with ``t_s`` and ``power_w`` (other columns ignored, ``gpi`` kept),
  ``#`` comment lines skipped. A sidecar ``<file>.json`` may say ``{"sample_rate_hz": fs,
  "t0_s": t0}`` (uniform, exact rate), ``{"uniform": false}`` (points, even if regular),
  ``"simulated": true`` and ``"source": "..."``. Without it uniformity is detected from ``t_s``.
* ``parquet``: a trace written by ``joulefarm trace import`` (needs pyarrow; the controller has
  it, a device usually does not: export to npz/csv there).
* ``jls``: a Joulescope JLS v2 file (needs ``pyjls``): ``power``, else ``current`` x
  ``voltage``; ``gpi[k]`` signals become GPI bits.
* ``monsoon``: a CSV from the ``monsoon`` package (``Time(ms)`` quirk: time rebuilt at 5 kHz from
  the first stamp, as ``joulefarm trace import`` does).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.meters.base import Meter, MeterDescription, MeterError, MeterParseError
from agent.meters.lab import LabTrace
from joulefarm.traces.model import AnyTrace, TimestampedTrace

KIND = "replay"
FORMATS = ("auto", "npz", "csv", "parquet", "jls", "monsoon")
FLAG_REPLAY_SHORT = "replay_short"  # the recording ended before stop(): the trace ends there
# Stamps within this fraction of one period of a straight line count as uniform (the rule of
# ``joulefarm trace import``, so a file reads the same on both sides).
UNIFORM_TOLERANCE = 0.01
_GPI_SIGNAL = re.compile(r"^(?:gpi|in)\[?(\d)\]?$", re.IGNORECASE)


@dataclass(frozen=True)
class Recording:
    """A loaded recording on its own time base. ``t_s`` is None for a uniform recording."""

    power_w: np.ndarray
    t0_s: float
    sample_rate_hz: float
    t_s: np.ndarray | None = None
    gpi: np.ndarray | None = None
    source: str = ""
    simulated: bool = False

    @property
    def uniform(self) -> bool:
        return self.t_s is None

    @property
    def duration_s(self) -> float:
        if self.t_s is None:
            return len(self.power_w) / self.sample_rate_hz
        return float(self.t_s[-1] - self.t_s[0]) if len(self.t_s) > 1 else 0.0


def uniform_fit(t: np.ndarray, tolerance: float = UNIFORM_TOLERANCE
                ) -> tuple[float, float] | None:
    """``(sample_rate_hz, t0)`` when ``t`` is uniform within ``tolerance`` of a period."""
    n = len(t)
    if n < 2 or not np.all(np.isfinite(t)):
        return None
    span = float(t[-1] - t[0])
    if span <= 0 or not np.all(np.diff(t) > 0):
        return None
    rate = (n - 1) / span
    if abs(rate - round(rate)) <= 1e-6 * rate:
        rate = float(round(rate))
    t0 = float(t[0])
    if float(np.max(np.abs(t - (t0 + np.arange(n) / rate)))) > tolerance / rate:
        return None
    return rate, t0


def _from_stamps(path: Path, t: np.ndarray, power: np.ndarray, gpi: np.ndarray | None,
                 source: str, simulated: bool, force_points: bool = False) -> Recording:
    t = np.asarray(t, dtype=np.float64)
    if len(t) < 2:
        raise MeterError(f"{path}: a recording needs at least 2 samples, found {len(t)}")
    if not np.all(np.diff(t) > 0):
        bad = int(np.flatnonzero(np.diff(t) <= 0)[0]) + 1
        raise MeterError(f"{path}: t_s must increase (sample {bad}: {t[bad]!r} after "
                         f"{t[bad - 1]!r})")
    fit = None if force_points else uniform_fit(t)
    if fit is not None:
        return Recording(power, fit[1], fit[0], None, gpi, source, simulated)
    rate = (len(t) - 1) / float(t[-1] - t[0])
    return Recording(power, float(t[0]), rate, t, None, source, simulated)


def _check_gpi(path: Path, gpi: np.ndarray | None, n: int) -> np.ndarray | None:
    if gpi is None:
        return None
    gpi = np.asarray(gpi)
    if gpi.shape != (n,):
        raise MeterError(f"{path}: gpi has shape {gpi.shape}, expected ({n},)")
    return gpi.astype(np.uint8)


# -- loaders ------------------------------------------------------------------------------------

def _load_npz(path: Path) -> Recording:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (OSError, ValueError) as e:
        raise MeterError(f"{path}: cannot read as .npz: {e}") from None
    if "power_w" not in arrays:
        raise MeterError(f"{path}: no 'power_w' array (arrays: {sorted(arrays)})")
    power = arrays["power_w"].astype(np.float64).ravel()
    gpi = _check_gpi(path, arrays.get("gpi"), len(power))
    simulated = bool(arrays["simulated"]) if "simulated" in arrays else False
    source = f"{path.name} (npz)"
    if "sample_rate_hz" in arrays:
        rate = float(arrays["sample_rate_hz"])
        if not rate > 0:
            raise MeterError(f"{path}: sample_rate_hz must be > 0, got {rate}")
        if "t0_s" in arrays:
            t0 = float(arrays["t0_s"])
        else:
            t0 = float(arrays["t_s"].ravel()[0]) if "t_s" in arrays else 0.0
        if len(power) == 0:
            raise MeterError(f"{path}: power_w is empty")
        return Recording(power, t0, rate, None, gpi, source, simulated)
    if "t_s" not in arrays:
        raise MeterError(f"{path}: needs 't_s' stamps or 'sample_rate_hz' (arrays: "
                         f"{sorted(arrays)})")
    t = arrays["t_s"].ravel()
    if len(t) != len(power):
        raise MeterError(f"{path}: t_s has {len(t)} values but power_w {len(power)}")
    return _from_stamps(path, t, power, gpi, source, simulated)


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(path.name + ".json")
    if not side.exists():
        return {}
    try:
        data = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MeterError(f"{side}: unreadable sidecar: {e}") from None
    if not isinstance(data, dict):
        raise MeterError(f"{side}: the sidecar must be a JSON object")
    unknown = set(data) - {"sample_rate_hz", "t0_s", "uniform", "simulated", "source"}
    if unknown:
        raise MeterError(f"{side}: unknown key(s) {sorted(unknown)}")
    return data


def _load_csv(path: Path) -> Recording:
    side = _sidecar(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = [(no, line) for no, line in enumerate(lines, start=1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise MeterParseError(str(path), 0, "", "no header row")
    header_no, header = rows[0]
    names = [c.strip() for c in header.split(",")]
    if "t_s" not in names or "power_w" not in names:
        raise MeterParseError(str(path), header_no, header,
                              "the header needs columns 't_s' and 'power_w'")
    cols = [names.index("t_s"), names.index("power_w")]
    has_gpi = "gpi" in names
    if has_gpi:
        cols.append(names.index("gpi"))
    values = np.empty((len(rows) - 1, len(cols)), np.float64)
    for k, (no, line) in enumerate(rows[1:]):
        cells = line.split(",")
        try:
            values[k] = [float(cells[c]) for c in cols]
        except (ValueError, IndexError):
            raise MeterParseError(str(path), no, line, "expected numbers in the t_s, "
                                  "power_w columns") from None
    t, power = values[:, 0], values[:, 1]
    gpi = values[:, 2].astype(np.uint8) if has_gpi else None
    source = str(side.get("source") or f"{path.name} (csv)")
    simulated = bool(side.get("simulated", False))
    if "sample_rate_hz" in side:
        rate = float(side["sample_rate_hz"])
        if not rate > 0 or len(power) == 0:
            raise MeterError(f"{path}: sidecar sample_rate_hz must be > 0 and the file must "
                             "hold samples")
        t0 = float(side.get("t0_s", t[0]))
        return Recording(power, t0, rate, None, gpi, source, simulated)
    points = side.get("uniform") is False
    return _from_stamps(path, t, power, None if points else gpi, source, simulated,
                        force_points=points)


def _load_parquet(path: Path) -> Recording:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MeterError(f"{path}: replaying Parquet needs pyarrow, which this agent lacks: "
                         "export the trace as .npz or as .csv with t_s,power_w") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError...
        raise MeterError(f"{path}: cannot read as Parquet: {e}") from None
    missing = [c for c in ("t_s", "power_w") if c not in table.column_names]
    if missing:
        raise MeterError(f"{path}: not a joulefarm trace: no column(s) {missing}")
    meta: dict[str, Any] = {}
    for key, value in (table.schema.metadata or {}).items():
        try:
            meta[key.decode()] = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # written by another tool
    t = table.column("t_s").to_numpy().astype(np.float64)
    power = table.column("power_w").to_numpy().astype(np.float64)
    simulated = bool(meta.get("simulated", False))
    source = f"{path.name} (parquet, {meta.get('source_format', 'trace')})"
    if meta.get("uniform") is True and meta.get("sample_rate_hz"):
        t0 = float(meta.get("t0", t[0] if len(t) else 0.0))
        return Recording(power, t0, float(meta["sample_rate_hz"]), None, None, source,
                         simulated)
    return _from_stamps(path, t, power, None, source, simulated,
                        force_points=meta.get("uniform") is False)


def _load_jls(path: Path) -> Recording:
    try:
        import pyjls
    except ImportError:
        raise MeterError(f"{path}: replaying JLS needs the 'pyjls' package "
                         "(pip install 'joulefarm[jls]')") from None
    try:
        reader = pyjls.Reader(str(path))
    except Exception as e:  # noqa: BLE001 - pyjls raises RuntimeError with a code
        raise MeterError(f"{path}: cannot open as JLS v2: {e}") from None
    with reader as r:
        fsr = [s for s in r.signals.values() if s.signal_type == pyjls.SignalType.FSR]
        for source_id in sorted({s.source_id for s in fsr}):
            signals = {(s.name or "").lower(): s for s in fsr if s.source_id == source_id}
            if "power" in signals or {"current", "voltage"} <= signals.keys():
                break
        else:
            raise MeterError(f"{path}: no source with a 'power' signal or 'current' and "
                             f"'voltage' signals (signals: {[s.name for s in fsr]})")
        main = [signals["power"]] if "power" in signals else [signals["current"],
                                                              signals["voltage"]]
        rate = float(main[0].sample_rate)
        if any(float(s.sample_rate) != rate for s in main):
            raise MeterError(f"{path}: current and voltage have different sample rates")
        n = min(int(s.length) for s in main)
        if n == 0:
            raise MeterError(f"{path}: the signals hold no samples")
        data = [np.asarray(r.fsr(s.signal_id, 0, n), dtype=np.float64) for s in main]
        power = data[0] if len(data) == 1 else data[0] * data[1]
        gpi = None
        for name, s in signals.items():
            match = _GPI_SIGNAL.match(name)
            if not match or float(s.sample_rate) != rate or int(s.length) < n:
                continue
            raw = np.asarray(r.fsr(s.signal_id, 0, n))
            bits = np.unpackbits(raw, bitorder="little")[:n] if len(raw) < n else raw[:n]
            gpi = np.zeros(n, np.uint8) if gpi is None else gpi
            gpi |= (bits.astype(np.uint8) & 1) << int(match.group(1))
        src = r.sources[main[0].source_id]
        name = " ".join(x for x in (src.model, src.serial_number) if x) or src.name
    return Recording(power, 0.0, rate, None, gpi, f"{path.name} (jls, {name})")


def _load_monsoon(path: Path) -> Recording:
    from joulefarm.traces.monsoon import MONSOON_RATE_HZ, read_monsoon_csv

    csv = read_monsoon_csv(path)
    if len(csv.stamps_s) == 0:
        raise MeterError(f"{path}: no samples after the Monsoon header")
    return Recording(csv.power_w, float(csv.stamps_s[0]), MONSOON_RATE_HZ, None, None,
                     f"{path.name} (monsoon CSV, {csv.channel})")


_LOADERS = {"npz": _load_npz, "csv": _load_csv, "parquet": _load_parquet, "jls": _load_jls,
            "monsoon": _load_monsoon}


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(4096)
    if suffix == ".npz" or head.startswith(b"PK\x03\x04"):
        return "npz"
    if suffix in (".parquet", ".pq") or head.startswith(b"PAR1"):
        return "parquet"
    if suffix == ".jls" or head.startswith(b"jlsfmt\r\n"):
        return "jls"
    from joulefarm.traces.monsoon import looks_like_monsoon_header

    first = head.decode("utf-8", errors="replace").split("\n", 1)[0]
    return "monsoon" if looks_like_monsoon_header(first) else "csv"


def load_recording(path: Path, fmt: str = "auto") -> Recording:
    """Load a recording; MeterError (or MeterParseError) says what is wrong with the file."""
    if fmt not in FORMATS:
        raise MeterError(f"replay: format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not path.is_file():
        raise MeterError(f"replay: no recording at {path}")
    return _LOADERS[detect_format(path) if fmt == "auto" else fmt](path)


# -- the meter ----------------------------------------------------------------------------------

class ReplayMeter(Meter):
    """Replays ``path`` from recording time ``start + offset_s``. Labelled ``simulated`` only
    when the file says its power came from a model."""

    def __init__(self, path: Path | str, *, offset_s: float = 0.0, fmt: str = "auto",
                 sample_rate_hz: float | None = None) -> None:
        self.path = Path(path)
        self.recording = rec = load_recording(self.path, fmt)
        self.offset_s = float(offset_s)
        if not 0.0 <= self.offset_s < rec.duration_s:
            raise MeterError(f"replay: offset_s must be within [0, {rec.duration_s:g}) s, the "
                             f"recording's length; got {offset_s}")
        if (sample_rate_hz is not None and rec.uniform
                and abs(float(sample_rate_hz) - rec.sample_rate_hz) > 1e-9 * rec.sample_rate_hz):
            raise MeterError(f"replay: {self.path.name} was recorded at {rec.sample_rate_hz:g} "
                             f"Hz, not {sample_rate_hz:g} Hz: drop sample_rate_hz")
        layout = (f"uniform at {rec.sample_rate_hz:g} Hz" if rec.uniform
                  else f"timestamped, ~{rec.sample_rate_hz:.3g} Hz")
        self.description = MeterDescription(
            kind=KIND, simulated=rec.simulated, sample_rate_hz=rec.sample_rate_hz,
            description=f"replay of {rec.source}: {len(rec.power_w)} samples, {layout}, from "
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
        if self.recording.uniform:
            return replay_uniform(self.recording, self.offset_s, duration, self._start_s)
        return replay_points(self.recording, self.offset_s, duration, self._start_s)


def replay_uniform(rec: Recording, offset_s: float, duration_s: float, start_s: float
                   ) -> LabTrace:
    """Samples covering recording time ``[t0 + offset, t0 + offset + duration]``, shifted so
    that ``t0 + offset`` falls on ``start_s``; the grid is kept (the first sample may begin a
    fraction of a period before ``start_s``)."""
    fs = rec.sample_rate_hz
    n = len(rec.power_w)
    i0 = int(np.floor(offset_s * fs + 1e-9))
    end = int(np.ceil((offset_s + duration_s) * fs - 1e-9))
    i1 = min(max(end, i0 + 1), n)
    flags = (FLAG_REPLAY_SHORT,) if end > n else ()
    return LabTrace(
        power_w=np.asarray(rec.power_w[i0:i1], dtype=np.float32),
        t0_s=start_s - (offset_s - i0 / fs), sample_rate_hz=fs, flags=flags,
        gpi=None if rec.gpi is None else rec.gpi[i0:i1].copy(),
        error=(f"replay: the recording ends {(end - n) / fs:.3f} s before stop()"
               if flags else None),
        source=rec.source,
    )


def replay_points(rec: Recording, offset_s: float, duration_s: float, start_s: float
                  ) -> TimestampedTrace:
    """The held points over the run, on the agent clock: the value held at the slice's start
    opens it, a copy of the last held value closes it at the end (hold model)."""
    assert rec.t_s is not None
    t, p = rec.t_s, np.asarray(rec.power_w, dtype=np.float64)
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
        flags=(FLAG_REPLAY_SHORT,) if short else (), target_rate_hz=rec.sample_rate_hz,
        error=f"replay: the recording ends {b - t[-1]:.3f} s before stop()" if short else None,
    )
