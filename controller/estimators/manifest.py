"""The estimator directory's ``manifest.json``: names, versions and what every file holds.

Shared by ``export`` (writes) and ``predict`` (reads); numpy and the standard library only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from controller.estimators.errors import EstimatorError

MANIFEST_NAME = "manifest.json"
FORMAT = "joulefarm-estimator"
FORMAT_VERSION = 1
METRICS_CSV = "metrics.csv"
METRICS_MD = "metrics.md"

UNCERTAINTY_NOTE = (
    "log_std is the Gaussian process's standard deviation of ln(target) (normal in log "
    "space). A layer's prediction is the median exp(log_mean); its linear-space variance is "
    "the lognormal (exp(s^2)-1)*exp(2m+s^2). A model's total standard deviation is the square "
    "root of the sum of its layers' variances times the correction factor: layer errors are "
    "treated as independent, so it is a lower bound when errors are correlated."
)


def slug(text: str) -> str:
    """A file-name-safe form of a device or op name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "x"


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an estimator directory. Raises ``EstimatorError`` when missing, not
    JSON, or of another format."""
    path = Path(directory) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise EstimatorError(f"{directory}: not an estimator directory (no {MANIFEST_NAME}; "
                             "make one with `joulefarm fit`)") from e
    except (OSError, ValueError) as e:
        raise EstimatorError(f"{path}: cannot read the manifest: {e}") from e
    if data.get("format") != FORMAT:
        raise EstimatorError(f"{path}: not a joulefarm estimator manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise EstimatorError(f"{path}: manifest format version {data.get('format_version')} "
                             f"(this joulefarm reads {FORMAT_VERSION})")
    return data


def write_manifest(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / MANIFEST_NAME
    path.write_text(json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **data},
                               indent=2, allow_nan=True) + "\n")
    return path
