"""The agent's distribution: a joulefarm wheel built once per source state, cached, and checked
against each device before anything there changes.

Building compiles the Rust core (~10 s incremental, 1-3 min from cold), so wheels are cached
under ``~/.cache/joulefarm/wheels/<source hash>/``: the hash covers every file that goes into
the wheel, which a git revision alone would not (uncommitted edits).

The extension uses the stable ABI (PyO3 ``abi3-py310``), so one wheel fits every CPython >= 3.10
on devices with this machine's architecture and a glibc at least as new as its manylinux tag.
For any other device the check below stops with a plan: build a matching wheel (cross-compile
with ``maturin build --target ... --zig``) and pass it with ``--wheel``, or let provisioning
build the source distribution on the device (``ssh.build_on_device``, automatic on Termux),
which needs Rust and maturin there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

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
# manylinux tags from before PEP 600 name a glibc version by year.
_LEGACY_MANYLINUX = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}
# The probe does not read a musl device's musl version; musllinux wheels so far are 1_1 or 1_2.
MUSL_ASSUMED = (1, 2)


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
    """The tags a wheel's file name declares (a compressed tag set expanded)."""

    tags: frozenset[Tag]

    @classmethod
    def of(cls, wheel: Path) -> WheelTags:
        try:
            _, _, _, tags = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename as exc:
            raise ProvisionInputError(
                f"{wheel.name} is not a wheel file name "
                f"(name-version[-build]-python-abi-platform.whl): {exc}") from None
        return cls(tags)


def device_platforms(machine: str, glibc: tuple[int, int] | None) -> list[str]:
    """The platform tags a Linux device with this ``uname -m`` and C library takes, best first.

    `glibc` None means musl or unknown: musllinux up to `MUSL_ASSUMED` then (as before the
    probe tells musl from bionic), never manylinux. ``linux_<arch>`` always fits: a wheel built
    on such a device for itself.
    """
    if glibc is None:
        platforms = [f"musllinux_{MUSL_ASSUMED[0]}_{minor}_{machine}"
                     for minor in range(MUSL_ASSUMED[1], -1, -1)]
    else:
        platforms = []
        for minor in range(glibc[1], -1, -1):
            platforms.append(f"manylinux_{glibc[0]}_{minor}_{machine}")
            if legacy := _LEGACY_MANYLINUX.get((glibc[0], minor)):
                platforms.append(f"{legacy}_{machine}")
    return [*platforms, f"linux_{machine}"]


def device_tags(python: tuple[int, int], machine: str,
                glibc: tuple[int, int] | None) -> frozenset[Tag]:
    """Every tag a wheel may carry to install on the device (CPython `python`), as pip sees it:
    its own ABI, abi3 back to cp32, pure-Python ``py3*`` and ``any``."""
    platforms = device_platforms(machine, glibc)
    interpreter = f"cp{python[0]}{python[1]}"
    return frozenset([*cpython_tags(python, abis=[interpreter], platforms=platforms),
                      *compatible_tags(python, interpreter, platforms)])


def wheel_problem(wheel: Path, python: tuple[int, int], machine: str,
                  glibc: tuple[int, int] | None) -> str | None:
    """Why `wheel` cannot be installed on a device, or None when it fits.

    `python` is the device's (major, minor), `machine` its ``uname -m``, `glibc` its C library
    version (None for musl or unknown: then manylinux wheels do not fit, musllinux ones do).
    """
    tags = WheelTags.of(wheel).tags
    supported = device_tags(python, machine, glibc)
    if not tags.isdisjoint(supported):
        return None
    # packaging says whether it fits; the rest says why not, one tag part at a time (the tags
    # in a wheel name are every python x abi x platform combination, so the parts are separate).
    problems = [_python_problem(tags, supported, python),
                _platform_problem({t.platform for t in tags}, {t.platform for t in supported},
                                  machine, glibc)]
    return "; ".join(p for p in problems if p) or (
        f"none of its tags ({', '.join(sorted(map(str, tags)))}) is one the device takes")


def _python_problem(tags: frozenset[Tag], supported: frozenset[Tag],
                    python: tuple[int, int]) -> str | None:
    if {(t.interpreter, t.abi) for t in tags} & {(t.interpreter, t.abi) for t in supported}:
        return None
    interpreters = {t.interpreter for t in tags}
    abis = {t.abi for t in tags}
    what = ".".join(sorted(interpreters))
    if "abi3" in abis:
        what += " or newer (stable ABI)"
    elif abis - interpreters - {"none"}:
        what += f" with ABI {'.'.join(sorted(abis))}"
    return f"it is for Python {what}, the device runs {python[0]}.{python[1]}"


def _platform_problem(platforms: set[str], supported: set[str], machine: str,
                      glibc: tuple[int, int] | None) -> str | None:
    if platforms & supported:
        return None
    ours = sorted(p for p in platforms if p.endswith(f"_{machine}"))
    if not ours:
        return f"it is for {', '.join(sorted(platforms))}, the device is {machine}"
    # The same architecture: the C library is what differs.
    kind = ours[0].removesuffix(f"_{machine}")
    have = "musl or an unknown C library" if glibc is None else f"glibc {glibc[0]}.{glibc[1]}"
    if kind.startswith("musllinux_"):
        if glibc is not None:
            return f"it is for musl ({ours[0]}), the device has {have}"
        return (f"it is for {ours[0]}, newer than the musl {MUSL_ASSUMED[0]}.{MUSL_ASSUMED[1]} "
                "assumed for the device")
    needed = _glibc_needed(kind)
    if needed is not None:
        return f"it needs glibc >= {needed[0]}.{needed[1]}, the device has {have}"
    return f"it is for {ours[0]}, which the device ({have}) does not take"


def _glibc_needed(kind: str) -> tuple[int, int] | None:
    """The glibc a manylinux platform (without its architecture) needs, e.g. ``manylinux_2_28``
    or ``manylinux2014``; None for anything else."""
    for version, legacy in _LEGACY_MANYLINUX.items():
        if kind == legacy:
            return version
    parts = kind.split("_")
    if len(parts) == 3 and parts[0] == "manylinux" and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


def mismatch_plan(device: str, wheel: Path, problem: str) -> str:
    return (
        f"{device}: the agent wheel {wheel.name} does not fit: {problem}. Either build it on "
        "the device (set `build_on_device = true` in its [device.ssh]; needs Rust and maturin "
        "there), or build a wheel for it here with `rustup target add "
        "<arch>-unknown-linux-gnu && maturin build --release --target "
        "<arch>-unknown-linux-gnu --zig` (one abi3 wheel serves every Python >= 3.10) and "
        "pass it with --wheel PATH."
    )
