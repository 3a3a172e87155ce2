"""The agent's distribution: a joulefarm wheel built once per source state, cached, and checked
against each device before anything there changes.

Building compiles the Rust core (~10 s incremental, 1-3 min from cold), so wheels are cached
under ``~/.cache/joulefarm/wheels/<source hash>/``: the hash covers every file that goes into
the wheel, which a git revision alone would not (uncommitted edits).

A wheel built here only fits devices with this machine's architecture and Python version (the
extension is not abi3). For any other device the check below stops with a plan: build a
matching wheel (cross-compile with ``maturin build --target ... --zig``) and pass it with
``--wheel``, or let provisioning build the source distribution on the device
(``ssh.build_on_device``, automatic on Termux), which needs Rust and maturin there.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.provision.errors import ProvisionInputError, WheelError

# The source tree holding pyproject.toml (a checkout; an installed controller has none).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
# What goes into the wheel (pyproject: python-packages + the Rust core + metadata files).
WHEEL_INPUTS = ("pyproject.toml", "README.md", "agent", "controller", "protos", "joulefarm",
                "rust_core")
_SKIP_PARTS = {"target", "__pycache__", ".pytest_cache"}
_SKIP_SUFFIXES = (".pyc", ".so", ".pyd")
BUILD_TIMEOUT_S = 1200.0
KEEP_WHEELS = 5
_WHEEL_RE = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<python>[^-]+)-(?P<abi>[^-]+)"
    r"-(?P<platform>[^-]+)\.whl$")
_PLATFORM_RE = re.compile(
    r"(?P<kind>manylinux|musllinux|linux)"
    r"(?:_(?P<major>\d+)_(?P<minor>\d+)|(?P<legacy>1|2010|2014))?_(?P<arch>.+)")
_LEGACY_MANYLINUX = {"1": (2, 5), "2010": (2, 12), "2014": (2, 17)}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "joulefarm" / "wheels"


def _input_files(root: Path) -> list[Path]:
    """Files that make the wheel: git's view when it has one (respects .gitignore), else a walk."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
             *WHEEL_INPUTS],
            cwd=root, capture_output=True, check=True, timeout=60).stdout
        files = [root / name for name in listed.decode().split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        files = []
        for top in WHEEL_INPUTS:
            path = root / top
            files += [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sorted(
        p for p in files
        if p.is_file() and not _SKIP_PARTS & set(p.relative_to(root).parts)
        and not p.name.endswith(_SKIP_SUFFIXES)
    )


def source_hash(root: Path = SOURCE_ROOT) -> str:
    """sha256 over the names and contents of the wheel's inputs (first 16 hex digits)."""
    digest = hashlib.sha256()
    for path in _input_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _build_command(root: Path, out: Path) -> list[str]:
    if shutil.which("maturin"):
        return ["maturin", "build", "--release", "--interpreter", sys.executable, "--out",
                str(out), "--manifest-path", str(root / "rust_core/python/Cargo.toml")]
    # pip builds through maturin too, fetching it into an isolated environment.
    return [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out),
            str(root)]


def _sdist_command(root: Path, out: Path) -> list[str]:
    if shutil.which("maturin"):
        return ["maturin", "sdist", "--out", str(out), "--manifest-path",
                str(root / "rust_core/python/Cargo.toml")]
    return [sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(root)]


def build_wheel(root: Path = SOURCE_ROOT, *, cache: Path | None = None,
                on_event: Callable[[str], None] = lambda _: None) -> Path:
    """The joulefarm wheel for the current sources, from the cache or freshly built."""
    return _cached_build(root, cache or cache_dir(), "joulefarm-*.whl", _build_command,
                         "the agent wheel (compiles the Rust core", on_event)


def build_sdist(root: Path = SOURCE_ROOT, *, cache: Path | None = None,
                on_event: Callable[[str], None] = lambda _: None) -> Path:
    """The joulefarm source distribution for the current sources (for devices that build the
    Rust core themselves), from the cache or freshly made."""
    return _cached_build(root, cache or cache_dir().with_name("sdists"), "joulefarm-*.tar.gz",
                         _sdist_command, "the agent source distribution (no compiling", on_event)


def _cached_build(root: Path, cache: Path, pattern: str,
                  command_for: Callable[[Path, Path], list[str]], what: str,
                  on_event: Callable[[str], None]) -> Path:
    if not (root / "pyproject.toml").is_file() or not (root / "rust_core").is_dir():
        raise ProvisionInputError(
            f"no joulefarm source tree at {root} to build the agent from; pass a wheel with "
            "--wheel PATH")
    key = source_hash(root)
    slot = cache / key
    cached = sorted(slot.glob(pattern)) if slot.is_dir() else []
    name = what.split(" (")[0]
    if cached:
        on_event(f"{name.removeprefix('the ')} (cached): {cached[0]}")
        return cached[0]
    on_event(f"building {what}; cached under {slot})")
    cache.mkdir(parents=True, exist_ok=True)
    # Build beside the slot and rename it into place: a concurrent build, or one that was
    # interrupted, never leaves a half-written file where the cache is read.
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{key}-") as tmp:
        out = Path(tmp) / "out"
        command = command_for(root, out)
        try:
            done = subprocess.run(command, cwd=root, capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WheelError(f"building {name} failed: {exc}") from None
        built = sorted(out.glob(pattern))
        if done.returncode != 0 or not built:
            tail = (done.stdout + done.stderr)[-3000:]
            raise WheelError(f"building {name} failed ({' '.join(command[:2])}, exit "
                             f"{done.returncode}):\n{tail}")
        try:
            out.rename(slot)
        except OSError:
            if not any(slot.glob(pattern)):  # not a concurrent build that won
                raise
    result = sorted(slot.glob(pattern))[0]
    on_event(f"built {result}")
    _prune(cache, keep=slot)
    return result


def _prune(cache: Path, keep: Path) -> None:
    """Drop all but the newest `KEEP_WHEELS` source states: each edit makes a new one."""
    slots = sorted((p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for old in slots[KEEP_WHEELS:]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class WheelTags:
    python: str  # "cp311", "py3", ...
    abi: str  # "cp311", "abi3", "none"
    platform: str  # "manylinux_2_34_x86_64", "linux_aarch64", "any"

    @classmethod
    def of(cls, wheel: Path) -> WheelTags:
        match = _WHEEL_RE.match(wheel.name)
        if not match:
            raise ProvisionInputError(f"{wheel.name} is not a wheel file name "
                                      "(name-version-python-abi-platform.whl)")
        return cls(match["python"], match["abi"], match["platform"])


def wheel_problem(wheel: Path, python: tuple[int, int], machine: str,
                  glibc: tuple[int, int] | None) -> str | None:
    """Why `wheel` cannot be installed on a device, or None when it fits.

    `python` is the device's (major, minor), `machine` its ``uname -m``, `glibc` its C library
    version (None for musl or unknown: then manylinux wheels do not fit, musllinux ones do).
    """
    tags = WheelTags.of(wheel)
    problems = []
    if not any(_python_fits(tag, tags.abi, python) for tag in tags.python.split(".")):
        problems.append(f"it is for Python {tags.python}, the device runs "
                        f"{python[0]}.{python[1]}")
    platform_problems = [_platform_problem(p, machine, glibc) for p in tags.platform.split(".")]
    if None not in platform_problems:
        problems.append(platform_problems[0])
    return "; ".join(p for p in problems if p) or None


def _python_fits(tag: str, abi: str, python: tuple[int, int]) -> bool:
    if tag in (f"cp{python[0]}{python[1]}", f"py{python[0]}", f"py{python[0]}{python[1]}"):
        return True
    # An abi3 wheel for cp3X runs on every CPython 3.Y with Y >= X.
    match = re.fullmatch(r"cp3(\d+)", tag)
    return abi == "abi3" and match is not None and python >= (3, int(match[1]))


def _platform_problem(platform: str, machine: str, glibc: tuple[int, int] | None) -> str | None:
    if platform == "any":
        return None
    match = _PLATFORM_RE.fullmatch(platform)
    if match is None or match["arch"] != machine:
        return f"it is for {platform}, the device is {machine}"
    if match["kind"] == "musllinux":
        return None if glibc is None else "it is for musl, the device has glibc"
    if match["kind"] == "manylinux":
        needed = ((int(match["major"]), int(match["minor"])) if match["major"]
                  else _LEGACY_MANYLINUX[match["legacy"]])
        if glibc is None or glibc < needed:
            have = "musl or an unknown C library" if glibc is None else (
                f"glibc {glibc[0]}.{glibc[1]}")
            return f"it needs glibc >= {needed[0]}.{needed[1]}, the device has {have}"
    return None


def mismatch_plan(device: str, wheel: Path, problem: str) -> str:
    return (
        f"{device}: the agent wheel {wheel.name} does not fit: {problem}. Either build it on "
        "the device (set `build_on_device = true` in its [device.ssh]; needs Rust and maturin "
        "there), or build a wheel for it here with `maturin build --release --target "
        "<arch>-unknown-linux-gnu --zig -i python3.X` and pass it with --wheel PATH."
    )
