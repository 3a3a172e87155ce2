"""Android devices reached through Termux's sshd: what differs from a Linux board.

Facts this module relies on (termux-packages):
- Termux's sshd keeps the app's environment in every session (its ``session.c`` patch keeps
  ``PREFIX``, ``TERMUX_VERSION``, ``TMPDIR``, ``PATH``...), so a plain ``ssh`` command sees
  ``$TERMUX_VERSION`` and ``$PREFIX`` (``/data/data/com.termux/files/usr``).
- There is no ``/bin/sh`` on Android: scripts start with ``#!$PREFIX/bin/sh``.
- Python wheels on PyPI are manylinux (glibc); Termux is bionic, so numpy and grpcio come from
  Termux's own packages (``pkg install python-numpy python-grpcio``) and the agent's venv sees
  them through ``--system-site-packages``. No Python TFLite runtime exists there: the agent runs
  models through the LiteRT C API of Google's prebuilt ``libLiteRt.so`` instead.
- ``termux-services`` runs runit's ``runsvdir`` on ``$PREFIX/var/service``; a service is a
  directory with a ``run`` script, and a ``down`` file keeps it stopped.
- Android suspends the CPU and kills background processes: ``termux-wake-lock`` holds a wake
  lock, and Android 12+ has a "phantom process killer" that must be switched off over adb.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from controller.provision.errors import ProvisionError
from joulefarm.enums import LITERT_LIB_URL

# Termux packages the agent needs; `rust` and `maturin` only when the Rust core is built there.
PACKAGES = ("python", "python-numpy", "python-grpcio")
BUILD_PACKAGES = ("rust", "maturin")

# Google's prebuilt LiteRT runtime (https://ai.google.dev/edge/litert/next/cpp_sdk). 2.3.x has
# the C API layout agent/litert_capi.py was checked against.
LITERT_VERSION = "2.3.1"
_LITERT_URL_VERSION_RE = re.compile(r"/litert/binaries/([0-9][0-9A-Za-z.+-]*)/")
# `uname -m` on Android -> the platform directory of Google's binaries.
_ANDROID_PLATFORMS = {"aarch64": "android_arm64", "armv7l": "android_arm32",
                      "armv8l": "android_arm32", "x86_64": "android_x86_64"}
_LINUX_PLATFORMS = {"aarch64": "linux_arm64", "x86_64": "linux_x86_64"}

# ELF e_machine values (the library must match the device before the agent tries to load it).
_ELF_MACHINES = {0x3E: ("x86_64",), 0xB7: ("aarch64",), 0x28: ("armv7l", "armv8l", "armv6l")}

# The phantom process killer arrived with Android 12 (API level 31).
PHANTOM_KILLER_API = 31


@dataclass(frozen=True)
class TermuxEnv:
    """What a Termux session told us about itself."""

    version: str  # $TERMUX_VERSION
    prefix: str  # $PREFIX
    android_api: int | None  # `getprop ro.build.version.sdk`
    has_runit: bool  # termux-services: `sv` and $PREFIX/var/service
    has_wake_lock: bool  # termux-wake-lock

    @property
    def svdir(self) -> str:
        return posixpath.join(self.prefix, "var/service")

    @property
    def shell(self) -> str:
        return posixpath.join(self.prefix, "bin/sh")


# One shell round trip: the Termux variables, the Android API level, and the tools we use.
PROBE_COMMAND = (
    'printf "%s\\n" "${TERMUX_VERSION-}" "${PREFIX-}"; '
    "(getprop ro.build.version.sdk 2>/dev/null || echo); "
    'if command -v sv >/dev/null 2>&1 && [ -d "${PREFIX-}/var/service" ]; '
    "then echo runit; else echo; fi; "
    "if command -v termux-wake-lock >/dev/null 2>&1; then echo wakelock; else echo; fi"
)


def parse_probe(output: str) -> TermuxEnv | None:
    """The probe's answer; None when the session is not Termux's."""
    lines = (output.splitlines() + [""] * 5)[:5]
    version, prefix, api, runit, wake = (line.strip() for line in lines)
    if not version or not prefix.startswith("/"):
        return None
    return TermuxEnv(version, prefix, int(api) if api.isdigit() else None,
                     runit == "runit", wake == "wakelock")


def install_packages_command(packages: tuple[str, ...]) -> str:
    # `pkg` refreshes the package lists when they are old and is a no-op for installed ones.
    return "pkg install -y " + " ".join(packages)


def default_litert_url(machine: str, android: bool) -> str:
    """Google's prebuilt ``libLiteRt.so`` for a device's ``uname -m``."""
    platforms = _ANDROID_PLATFORMS if android else _LINUX_PLATFORMS
    platform = platforms.get(machine)
    if platform is None:
        raise ProvisionError(
            f"Google publishes no prebuilt libLiteRt.so for {'Android' if android else 'Linux'} "
            f"on {machine}; set ssh.litert_lib to a library built for it")
    return LITERT_LIB_URL.replace("<version>", LITERT_VERSION).replace("<platform>", platform)


def litert_version_label(source: str, given: str | None) -> str:
    """The version to record: the one configured, else the one in Google's URL, else unknown."""
    if given:
        return given
    match = _LITERT_URL_VERSION_RE.search(source)
    return match[1] if match else "unknown"


def elf_machine_problem(header: bytes, machine: str) -> str | None:
    """Why a library with this ELF header cannot load on a ``uname -m`` machine, or None."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return "it is not an ELF shared library"
    little = header[5] == 1
    e_machine = int.from_bytes(header[18:20], "little" if little else "big")
    fits = _ELF_MACHINES.get(e_machine)
    if fits is None:
        return f"it is built for ELF machine {e_machine:#x}, the device is {machine}"
    if machine not in fits:
        return f"it is built for {fits[0]}, the device is {machine}"
    return None


def warnings_for(env: TermuxEnv) -> list[str]:
    """What the user must do on the phone itself for long unattended runs."""
    notes = []
    if not env.has_wake_lock:
        notes.append("termux-wake-lock is missing (package termux-tools): Android may suspend "
                     "the CPU in the middle of a measurement")
    if env.android_api is not None and env.android_api >= PHANTOM_KILLER_API:
        notes.append(
            f"Android API {env.android_api} (12+) kills background processes it counts as "
            "'phantom'; switch that off once over adb: `adb shell settings put global "
            "settings_enable_monitor_phantom_procs false` (Android 12L+), or `adb shell "
            "device_config put activity_manager max_phantom_processes 2147483647`")
    return notes
