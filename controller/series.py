"""Measurement series: which runs of different nights may be compared with one another.

Two nights' runs are comparable when everything that decides the measurement is the same:
the device (its name and fingerprint), the model (its name and sha256), the measuring settings
(the job's config), the runtime and its version, and the meter (its kind, and whether it is
simulated). These fields are the series key; ``series_id`` is a short hash of them. A change
of any of them starts a new series, and is itself reported (``series_changes``): "runtime
2.3.0 -> 2.3.1 on pi4-lab-1".

What varies between the repetitions of one configuration is not part of the key: a suite's
``repetitions`` run the same settings as separate jobs with ``seed + k`` and ``repetition = k``
in their config (controller.farm.sweep.job_configs), so both are left out of ``settings``.
The meter's options (a profile, a sample rate) are not in the key either: they are how it is
read, not what is measured.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

SERIES_FIELDS: tuple[str, ...] = (
    "device_name", "device_fingerprint", "model_name", "model_sha256", "settings",
    "runtime_name", "runtime_version", "meter_kind", "simulated",
)
"""The series key, in the order it is hashed (the ``runs`` frame's columns)."""
REPETITION_KEYS: frozenset[str] = frozenset({"seed", "repetition"})
"""Job config keys that differ between the repetitions of one configuration."""
_HASH_CHARS = 16
_SHORT_HASH = 12  # how much of a sha256 or fingerprint a message shows


def settings_text(config: str | Mapping[str, object] | None) -> str:
    """A job's measuring settings as canonical JSON (sorted keys), without the keys that vary
    between repetitions: equal settings give equal text."""
    data = json.loads(config) if isinstance(config, str) else dict(config or {})
    kept = {k: v for k, v in data.items() if k not in REPETITION_KEYS}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"))


def series_id(key: Sequence[object]) -> str:
    """The short, stable id of a series key (``SERIES_FIELDS``' values, in order)."""
    text = "\x1f".join("" if v is None else str(v) for v in key)
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def with_series(runs: pl.DataFrame) -> pl.DataFrame:
    """``runs`` (with a ``config`` column: the job's JSON) with ``settings`` and ``series_id``
    added; ``config`` itself is kept."""
    runs = runs.with_columns(pl.col("config").fill_null("{}"))
    texts = {c: settings_text(c) for c in runs["config"].unique().to_list()}
    runs = runs.with_columns(
        pl.col("config").replace_strict(texts, return_dtype=pl.String).alias("settings"))
    keys = runs.select(SERIES_FIELDS).rows()
    return runs.with_columns(pl.Series("series_id", [series_id(k) for k in keys],
                                       dtype=pl.String))


@dataclass(frozen=True)
class SeriesChange:
    """One field of a series key that changed between two nights, on one device and model."""

    device_name: str
    model_name: str
    field: str
    """A series field, or ``settings.KEY`` for one measuring setting."""
    before: str
    after: str
    before_series: str
    after_series: str

    def describe(self) -> str:
        """``runtime_version 2.3.0 -> 2.3.1 on pi4-lab-1 (mobilenet)``."""
        return (f"{self.field} {self.before or '(none)'} -> {self.after or '(none)'} on "
                f"{self.device_name} ({self.model_name})")


def _shown(field: str, value: object) -> str:
    if value is None:
        return ""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text[:_SHORT_HASH] if field in ("device_fingerprint", "model_sha256") else text


def _differences(before: Mapping[str, object], after: Mapping[str, object]
                 ) -> list[tuple[str, str, str]]:
    """(field, before, after) for every key field that differs; settings key by key."""
    out: list[tuple[str, str, str]] = []
    for field in SERIES_FIELDS:
        b, a = before[field], after[field]
        if b == a:
            continue
        if field == "settings":
            sb, sa = json.loads(str(b)), json.loads(str(a))
            for key in sorted(set(sb) | set(sa)):
                if sb.get(key) != sa.get(key):
                    out.append((f"settings.{key}", _json_value(sb, key), _json_value(sa, key)))
        else:
            out.append((field, _shown(field, b), _shown(field, a)))
    return out


def _json_value(settings: Mapping[str, object], key: str) -> str:
    return json.dumps(settings[key]) if key in settings else ""


def _keys(runs: pl.DataFrame) -> dict[tuple[str, str], list[dict[str, object]]]:
    """The distinct series keys of each (device, model), with their ids."""
    out: dict[tuple[str, str], list[dict[str, object]]] = {}
    for row in runs.select([*SERIES_FIELDS, "series_id"]).unique(maintain_order=True).iter_rows(
            named=True):
        out.setdefault((str(row["device_name"]), str(row["model_name"])), []).append(row)
    return out


def _closest(candidates: Sequence[Mapping[str, object]], key: Mapping[str, object]
             ) -> Mapping[str, object]:
    """The candidate key that differs from ``key`` in the fewest fields (the first of equals)."""
    return min(candidates, key=lambda c: len(_differences(c, key)))


def series_changes(before: pl.DataFrame, after: pl.DataFrame) -> list[SeriesChange]:
    """What changed in the series key from ``before``'s runs to ``after``'s, for each device
    and model measured in both: every series of ``after`` not in ``before`` is set against the
    one of ``before`` it differs from least. A device or model new in ``after`` is no change."""
    old = _keys(before)
    changes: list[SeriesChange] = []
    for (device, model), keys in _keys(after).items():
        previous = old.get((device, model))
        if not previous:
            continue
        known = {str(k["series_id"]) for k in previous}
        for key in keys:
            if key["series_id"] in known:
                continue
            closest = _closest(previous, key)
            changes.extend(SeriesChange(device, model, field, b, a,
                                        str(closest["series_id"]), str(key["series_id"]))
                           for field, b, a in _differences(closest, key))
    return changes


__all__ = ["REPETITION_KEYS", "SERIES_FIELDS", "SeriesChange", "series_changes", "series_id",
           "settings_text", "with_series"]
