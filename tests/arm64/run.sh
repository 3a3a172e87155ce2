#!/usr/bin/env bash
# arm64 device by emulation: provision the agent onto an emulated Raspberry Pi and measure on it
# ============================================================================================
#
# What it proves: the agent installs, builds and runs on 64-bit ARM Debian (what a Raspberry Pi
# runs), reached the way a real device is. An arm64 Debian trixie root (python3.13, rustc 1.85)
# is built with mmdebstrap and run under qemu-user through binfmt_misc; an sshd runs INSIDE
# that root (chroot; loopback is shared with this host), and that chroot is "the device". From
# this host the real controller CLI then
#   1. provisions it: `joulefarm provision arm64-emu --trust-new-host`: the probe must report
#      Linux aarch64; venv; the joulefarm wheel (abi3, aarch64); ai-edge-litert's manylinux
#      aarch64 wheel, grpcio and numpy from PyPI; the agent started under the shell supervisor
#      and checked over gRPC;
#   2. runs a layers job (`joulefarm sweep run`, recipe mlp, simulated rpi4 meter) against it
#      over loopback, stored in a DuckDB file;
#   3. checks with `joulefarm query` that layer rows exist for the device and that the stored
#      device facts (devices.machine and facts->>'machine') say aarch64.
# On exit, success or failure, it stops the agent (the prefix's stop-agent.sh), sshd and any
# process left in the root, and unmounts everything. The root stays cached.
#
# The Rust core (JOULEFARM_ARM64_BUILD):
#   device (default) `build_on_device = true`: the sdist is copied to the device and maturin
#                    compiles it THERE, emulated, as for a real Pi; needs only Debian packages
#                    and crates.io. The Cargo target directory stays under the agent's prefix
#                    inside the cached root, so a warm run recompiles nothing.
#   cross            the aarch64 wheel is cross-built on this host (rustup's
#                    aarch64-unknown-linux-gnu std, Debian's gcc-aarch64-linux-gnu as linker,
#                    target dir cached beside the root) and given with `provision --wheel`.
# The default is the on-device build: it is the path a real Pi takes, needs only Debian and
# crates.io, and its cold time (13 min with qemu 10) is tolerable and paid once per cache.
#
# Emulator: bookworm's qemu-user-static 7.2 made the on-device build ~43 min cold (rustc ~3x
# slower than under qemu 10.0) and once deadlocked it (a forked cargo child stuck on a futex
# before exec'ing rustc). So the static qemu-aarch64 10.0.2 of bookworm-backports is used
# (fetched with a private apt state, cached, registered for the run only; details below);
# JOULEFARM_ARM64_QEMU=system keeps the host's.
#
# Timings (2-core Debian 12 x86_64 host, shared with another test run while measuring):
#   qemu 10.0.2, on-device build, cold (empty cache):  1277 s (21 min) =
#     host setup 6 s (fetching qemu) + root build 192 s + apt in the root 186 s + sshd 1 s
#     + provision 882 s [venv 24 s, on-device Rust build 800 s, pip requirements 44 s]
#     + layers job 5 s + db check 4 s
#   qemu 10.0.2, on-device build, warm:  40 s (provision 27 s, maturin 7 s: cargo up to date)
#   ... warm, but the Rust sources changed: 390 s (our two crates recompiled on the device)
#   qemu 10.0.2, cross-built wheel: cross-build 19 s cold / 1 s warm; with the root cached
#     52 s (cold target dir) / 33 s (warm) in all
#   qemu 7.2 (JOULEFARM_ARM64_QEMU=system), on-device build: root build 100 s, apt 385 s,
#     provision 2795 s (venv ~6 min, on-device Rust build ~43 min); warm 94 s
#
# Workarounds in here (comments at each): /sys/devices/system/cpu is masked inside the root
# (LiteRT's cpuinfo crashed on the host's CPU lists under qemu 7.2); the host's local CA
# certificates are given to the root (cargo and pip behind a TLS-inspecting proxy); and when
# the Rust sources changed since the device's last build, the Cargo fingerprints of our own
# two crates are dropped, because build_on_device unpacks an sdist whose files all carry one
# fixed mtime (2006) and cargo would otherwise keep the stale build (a project bug).
#
# Usage: tests/arm64/run.sh, as root (it mounts, chroots, registers binfmt, may apt-get install)
# Environment:
#   JOULEFARM_ARM64_ROOT    the cached arm64 root (default ~/.cache/joulefarm/arm64-root);
#                           delete it (and ROOT-cross-target) for a cold run
#   JOULEFARM_ARM64_BUILD   device (default) or cross: where the Rust core is compiled
#   JOULEFARM_ARM64_QEMU    backports (default: qemu-user 10 of bookworm-backports, cached in
#                           ~/.cache/joulefarm/qemu-user-bookworm-backports) or system
#   JOULEFARM_ARM64_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   JOULEFARM_ARM64_KEEP=1  keep the work directory (logs, devices.toml, the DuckDB file)
# Last line: `arm64 device: OK (cold|warm, N s)`; on failure `arm64 device: FAILED (...)`, exit 1.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ROOT=${JOULEFARM_ARM64_ROOT:-$HOME/.cache/joulefarm/arm64-root}
BUILD=${JOULEFARM_ARM64_BUILD:-device}
QEMU=${JOULEFARM_ARM64_QEMU:-backports}
MIRROR=${JOULEFARM_ARM64_MIRROR:-http://deb.debian.org/debian}
SUITE=trixie
DEVICE=arm64-emu
PREFIX=/root/.joulefarm  # the agent's prefix, inside the root
TARGET=aarch64-unknown-linux-gnu
CROSS_TARGET_DIR="$ROOT-cross-target"
# What the device needs (apt, inside the root; the same for both build modes, so they share
# the root). python3-maturin is Debian's maturin (1.8.3 in trixie).
ROOT_PACKAGES=(python3 python3-venv python3-dev openssh-server rustc cargo gcc libc6-dev
               python3-maturin ca-certificates)
HOST_PACKAGES=(mmdebstrap qemu-user-static binfmt-support arch-test openssh-client)
CROSS_HOST_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
MARKER=.joulefarm-arm64-root  # written once the root is complete
# The hash of the Rust sources the device's Cargo target directory was last built from.
RUST_STAMP=/var/lib/joulefarm-arm64/rust-sources.sha256  # inside the root

QEMU_DIR="$(dirname "$ROOT")/qemu-user-bookworm-backports"
QEMU_BIN="$QEMU_DIR/qemu-aarch64"
OUR_BINFMT=joulefarm-aarch64  # this run's binfmt_misc entry (removed on exit)

case "$BUILD" in device | cross) ;; *) echo "JOULEFARM_ARM64_BUILD: device or cross" >&2; exit 2 ;; esac
case "$QEMU" in backports | system) ;; *) echo "JOULEFARM_ARM64_QEMU: backports or system" >&2; exit 2 ;; esac

WORK=""
SSHD_PID=""
OUR_BINFMT_SET=0
MOUNTED=()
PHASE="start"
PHASE_NAMES=()
PHASE_SECONDS=()
PHASE_NOTES=()
RUN=cold

now_us() { echo "${EPOCHREALTIME/./}"; }
T0=$(now_us)
elapsed_s() { echo $(( ($(now_us) - $1 + 500000) / 1000000 )); }
log() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

PHASE_T=0
phase() {  # phase SHORT-NAME DESCRIPTION
    PHASE=$1
    PHASE_T=$(now_us)
    log ""
    log "== $1: $2"
}
phase_done() {  # phase_done [NOTE]
    PHASE_NAMES+=("$PHASE")
    PHASE_SECONDS+=("$(elapsed_s "$PHASE_T")")
    PHASE_NOTES+=("${1:-}")
    log "   ($PHASE: ${PHASE_SECONDS[-1]} s${1:+; $1})"
}
phase_extra() {  # phase_extra NAME SECONDS NOTE: a part of the phase before, shown indented
    PHASE_NAMES+=("  $1")
    PHASE_SECONDS+=("$2")
    PHASE_NOTES+=("$3")
}

print_timings() {
    log ""
    log "== timings ($RUN run, Rust core built: $BUILD)"
    local i
    for i in "${!PHASE_NAMES[@]}"; do
        printf '   %-22s %6s s  %s\n' "${PHASE_NAMES[$i]}" "${PHASE_SECONDS[$i]}" \
            "${PHASE_NOTES[$i]}"
    done
    printf '   %-22s %6s s\n' "total" "$(elapsed_s "$T0")"
}

run_logged() {  # run_logged LOGFILE CMD...: output to LOGFILE, its tail on failure
    local logfile=$1
    shift
    if ! "$@" >>"$logfile" 2>&1; then
        log "---- last lines of $logfile:"
        tail -n 40 "$logfile" || true
        return 1
    fi
}

stamp_lines() {  # prefixes each line with the seconds since $1 (microseconds), e.g. [+  12s]
    local start=$1 line
    while IFS= read -r line; do
        printf '[+%4ds] %s\n' $(( ($(now_us) - start) / 1000000 )) "$line"
    done
}

CHILD=""
run_fg() {  # "$@" (a command or an exported function) in a process group of its own, waited
    # on in the background: bash runs a trap only between commands, so a long step in the
    # foreground would hold off cleanup after a signal until it ended; cleanup kills the group.
    setsid bash -c 'set -o pipefail; "$@"' run_fg "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}

provision_step() {  # provision_step START_US [--wheel PATH]: the CLI, its lines time-stamped
    joulefarm provision "$DEVICE" --devices "$WORK/devices.toml" --trust-new-host "${@:2}" 2>&1 \
        | stamp_lines "$1" | tee "$WORK/provision.log"
}

# --- the chroot -------------------------------------------------------------------------------

in_root() {  # a command inside the root with a clean environment
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

mounts_under() {  # mount points at or below $1, deepest first
    findmnt -rn -o TARGET | awk -v p="$1" '$0 == p || index($0, p "/") == 1' | sort -r
}

mount_root() {
    local m
    for m in proc sys dev dev/pts dev/shm; do
        mkdir -p "$ROOT/$m"
    done
    mount -t proc proc "$ROOT/proc" && MOUNTED+=("$ROOT/proc")
    mount --bind /sys "$ROOT/sys" && MOUNTED+=("$ROOT/sys")
    # qemu-user 7.2 (bookworm's) passes this host's x86 /proc/cpuinfo through to the guest;
    # with the host's CPU lists in sysfs beside it, the cpuinfo library inside LiteRT (XNNPACK,
    # ruy) takes the machine for an ARM one it cannot describe and crashes (SIGSEGV creating
    # any Interpreter). An empty /sys/devices/system/cpu makes it give up cleanly instead
    # ("Error in cpuinfo: failed to parse the list of possible processors"), under any qemu:
    # no CPU frequencies in the device facts, which here would be the host's anyway.
    mount -t tmpfs -o ro,size=4k,mode=755 joulefarm-no-cpus "$ROOT/sys/devices/system/cpu" \
        && MOUNTED+=("$ROOT/sys/devices/system/cpu")
    mount --bind /dev "$ROOT/dev" && MOUNTED+=("$ROOT/dev")
    mount --bind /dev/pts "$ROOT/dev/pts" && MOUNTED+=("$ROOT/dev/pts")
    if mountpoint -q /dev/shm; then
        mount --bind /dev/shm "$ROOT/dev/shm" && MOUNTED+=("$ROOT/dev/shm")
    fi
}

unmount_root() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" \
            || log "warning: could not unmount ${MOUNTED[$i]}"
    done
    MOUNTED=()
}

pids_in_root() {  # processes whose root directory is $ROOT (ours: the lock says so)
    local real p
    real=$(readlink -f "$ROOT")
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/root" 2>/dev/null)" = "$real" ] && echo "${p#/proc/}"
    done
    return 0
}

kill_pids_in_root() {
    local pids
    pids=$(pids_in_root)
    [ -z "$pids" ] && return 0
    log "stopping processes still running in the root: $(tr '\n' ' ' <<<"$pids")"
    # shellcheck disable=SC2086  # one pid a word
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 50); do
        pids=$(pids_in_root)
        [ -z "$pids" ] && return 0
        sleep 0.2
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.5
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "$CHILD" ]; then  # a step a signal interrupted
        kill -TERM -- "-$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    if [ -n "$WORK" ] && [ -d "$ROOT" ]; then
        if [ -f "$ROOT$PREFIX/stop-agent.sh" ] && ((${#MOUNTED[@]})); then
            log "stopping the agent ($PREFIX/stop-agent.sh)"
            in_root /bin/sh "$PREFIX/stop-agent.sh"
        fi
        if [ -n "$SSHD_PID" ]; then
            kill -TERM "$SSHD_PID" 2>/dev/null
            wait "$SSHD_PID" 2>/dev/null
            log "stopped sshd (pid $SSHD_PID)"
        fi
        kill_pids_in_root
        unmount_root
    fi
    ((OUR_BINFMT_SET)) && echo -1 >"/proc/sys/fs/binfmt_misc/$OUR_BINFMT"
    if ((rc != 0)) && [ -n "$WORK" ]; then
        if [ -f "$WORK/sshd.log" ]; then
            log "---- sshd log (last lines):"
            tail -n 20 "$WORK/sshd.log"
        fi
        if [ -f "$ROOT$PREFIX/agent.log" ]; then
            log "---- agent log (last lines):"
            tail -n 30 "$ROOT$PREFIX/agent.log"
        fi
    fi
    if [ -n "$WORK" ]; then
        if [ "${JOULEFARM_ARM64_KEEP:-0}" = 1 ] || ((rc != 0)); then
            log "work directory kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    if ((rc == 0)); then
        log "arm64 device: OK ($RUN, $(elapsed_s "$T0") s)"
    else
        log "arm64 device: FAILED (in phase '$PHASE', exit $rc, $(elapsed_s "$T0") s)"
        exit 1
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_listening() {  # wait_listening PORT SECONDS PID
    python3 - "$@" <<'EOF'
import os, socket, sys, time
port, seconds, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"pid {pid} exited before listening on {port}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            sys.exit(0)
    except OSError:
        time.sleep(0.2)
sys.exit(f"nothing listens on 127.0.0.1:{port} after {seconds:.0f} s")
EOF
}

joulefarm() {  # the controller CLI of THIS checkout (whatever an editable install points at)
    env -u SSH_AUTH_SOCK PYTHONPATH="$REPO" python3 -c \
        'from controller.cli.app import main; main()' "$@"
}

rust_sources_hash() {  # what the Rust core is compiled from, as the sdist carries it
    (cd "$REPO" && find rust_core -name target -prune -o -type f \
        \( -name '*.rs' -o -name 'Cargo.*' \) -print | LC_ALL=C sort | xargs sha256sum \
        | sha256sum | cut -d' ' -f1)
}

# --- phases -----------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root (it mounts, chroots and apt-get installs): sudo $0"
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock -n 9 || die "another run holds $ROOT.lock"
WORK=$(mktemp -d -t joulefarm-arm64.XXXXXX)
chmod 700 "$WORK"
# What the steps run_fg starts in a new bash need.
export REPO ROOT WORK DEVICE
export -f log now_us run_logged in_root joulefarm stamp_lines provision_step
log "arm64 device test: root $ROOT, Rust core built: $BUILD, work directory $WORK"

phase "host setup" "packages, binfmt_misc, the controller"
wanted=("${HOST_PACKAGES[@]}")
[ "$BUILD" = cross ] && wanted+=("${CROSS_HOST_PACKAGES[@]}")
missing=()
for p in "${wanted[@]}"; do
    # shellcheck disable=SC2016  # dpkg-query's format, not the shell's
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    run_logged "$WORK/host-apt.log" apt-get update -q
    run_logged "$WORK/host-apt.log" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The emulator. bookworm's qemu-user-static 7.2 is ~3x slower than 10.0 on rustc and, worse,
# its fork() in a threaded guest can deadlock: a cargo child stuck before exec'ing rustc
# hung a build for good. So (unless JOULEFARM_ARM64_QEMU=system, or the host's qemu is >= 8)
# the static qemu-aarch64 of bookworm-backports' qemu-user is fetched with a PRIVATE apt
# state (the host's sources and dpkg are not touched), cached beside the root, and
# registered for this run only as a binfmt_misc entry of its own, which the kernel tries
# before the system's qemu-aarch64 (newest first); cleanup removes it.
BINFMT=/proc/sys/fs/binfmt_misc
[ -e "$BINFMT/status" ] || mount -t binfmt_misc binfmt_misc "$BINFMT"
AARCH64_MAGIC='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
AARCH64_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
binfmt_ok() {  # $1 registered, enabled, with F (the interpreter is opened now: works in chroots)
    [ -e "$BINFMT/$1" ] && grep -qx enabled "$BINFMT/$1" && grep -q '^flags:.*F' "$BINFMT/$1"
}
binfmt_register() {  # binfmt_register NAME INTERPRETER
    printf '%s' ":$1:M::$AARCH64_MAGIC:$AARCH64_MASK:$2:FP" >"$BINFMT/register"
}
fetch_backports_qemu() {  # the static qemu-aarch64 of bookworm-backports into $QEMU_BIN
    local apt="$QEMU_DIR/apt" o
    rm -rf "$apt"
    mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/sources.list.d"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR" \
        "bookworm-backports main" >"$apt/sources.list"
    o=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
       -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt" -o "APT::Sandbox::User=root")
    run_logged "$WORK/qemu-fetch.log" apt-get "${o[@]}" update -q \
        && (cd "$apt" && run_logged "$WORK/qemu-fetch.log" apt-get "${o[@]}" download qemu-user) \
        && run_logged "$WORK/qemu-fetch.log" dpkg-deb -x "$(ls "$apt"/qemu-user_*.deb)" "$apt/x" \
        && "$apt/x/usr/bin/qemu-aarch64" --version >/dev/null \
        && cp "$apt/x/usr/bin/qemu-aarch64" "$QEMU_BIN.partial" \
        && mv "$QEMU_BIN.partial" "$QEMU_BIN"
    local rc=$?
    rm -rf "$apt"
    return $rc
}
# The system's registration (qemu-user-static, binfmt-support): the fallback, and arch-test's.
if ! binfmt_ok qemu-aarch64; then
    if [ -e "$BINFMT/qemu-aarch64" ]; then
        log "replacing the qemu-aarch64 binfmt entry (disabled or without the F flag)"
        echo -1 >"$BINFMT/qemu-aarch64"
    fi
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
if ! binfmt_ok qemu-aarch64; then
    [ -e "$BINFMT/qemu-aarch64" ] && echo -1 >"$BINFMT/qemu-aarch64"
    log "registering qemu-aarch64 with binfmt_misc (flags FP)"
    binfmt_register qemu-aarch64 /usr/bin/qemu-aarch64-static
fi
binfmt_ok qemu-aarch64 || die "qemu-aarch64 is not registered with binfmt_misc (flag F)"
[ -e "$BINFMT/$OUR_BINFMT" ] && echo -1 >"$BINFMT/$OUR_BINFMT"  # left by a killed run
system_qemu=$(qemu-aarch64-static --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
if [ "$QEMU" = backports ] && [ "${system_qemu:-0}" -lt 8 ]; then
    mkdir -p "$QEMU_DIR"
    if [ -x "$QEMU_BIN" ] || { log "fetching qemu-user from bookworm-backports (cached in" \
            "$QEMU_DIR)"; fetch_backports_qemu; }; then
        binfmt_register "$OUR_BINFMT" "$QEMU_BIN"
        OUR_BINFMT_SET=1
        binfmt_ok "$OUR_BINFMT" || die "could not register $QEMU_BIN with binfmt_misc"
    else
        log "warning: no qemu-user from bookworm-backports; using the system's (slower, and" \
            "its fork() can deadlock a cargo build)"
    fi
fi
if [ -e "$BINFMT/$OUR_BINFMT" ]; then
    EMULATOR="$QEMU_BIN ($("$QEMU_BIN" --version | head -n 1)), binfmt entry $OUR_BINFMT"
else
    EMULATOR="$(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64") ($(qemu-aarch64-static \
        --version | head -n 1)), binfmt entry qemu-aarch64"
fi
log "emulator: $EMULATOR"
# The controller runs from this checkout; a fresh clone needs its Rust core and dependencies.
if ! (cd "$REPO" && PYTHONPATH="$REPO" python3 -c \
        'import controller.cli.app, joulefarm._core, duckdb, paramiko' 2>/dev/null); then
    log "installing joulefarm (pip install -e $REPO)"
    run_logged "$WORK/pip.log" python3 -m pip install --quiet -e "$REPO"
fi
# The sdist for the device (and the cross-built wheel) are made with maturin.
command -v maturin >/dev/null || run_logged "$WORK/pip.log" \
    python3 -m pip install --quiet 'maturin>=1.9,<2'
if [ "$BUILD" = cross ] && command -v rustup >/dev/null \
        && ! rustup target list --installed | grep -qx "$TARGET"; then
    run_logged "$WORK/rustup.log" rustup target add "$TARGET"
fi
phase_done

phase "root build" "mmdebstrap --arch=arm64 $SUITE"
# Leftovers of a run that was killed (the lock says none is running): its mounts.
for m in $(mounts_under "$ROOT"); do
    log "unmounting a leftover mount: $m"
    umount "$m" 2>/dev/null || umount -l "$m"
done
if [ -f "$ROOT/$MARKER" ]; then
    ROOT_CACHED=1
    phase_done "cached ($ROOT, built $(cat "$ROOT/$MARKER"))"
else
    ROOT_CACHED=0
    [ -e "$ROOT" ] && die "$ROOT exists but is not a finished root (no $MARKER): remove it"
    partial="$ROOT.partial"
    if [ -e "$partial" ]; then
        [ -z "$(mounts_under "$partial")" ] || die "$partial has mounts; unmount them first"
        rm -rf --one-file-system "$partial"
    fi
    log "building $ROOT (log: $WORK/mmdebstrap.log)"
    run_fg run_logged "$WORK/mmdebstrap.log" mmdebstrap --arch=arm64 --variant=minbase \
        --include=ca-certificates "$SUITE" "$partial" "$MIRROR"
    mv "$partial" "$ROOT"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$ROOT/$MARKER"
    phase_done "built, $(du -sh "$ROOT" | cut -f1)"
fi
if ((ROOT_CACHED)); then
    if [ "$BUILD" = device ] && [ -d "$ROOT$PREFIX/build/target/release" ]; then
        RUN=warm
    elif [ "$BUILD" = cross ] && [ -d "$CROSS_TARGET_DIR/$TARGET/release" ]; then
        RUN=warm
    fi
fi
[ "$(chroot "$ROOT" /usr/bin/uname -m)" = aarch64 ] || die "the root does not run as aarch64"

# Name resolution for apt, cargo and pip inside; no service starts from a package's postinst.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -s "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n' \
    >"$ROOT/etc/hosts"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
mount_root

phase "apt in the root" "${ROOT_PACKAGES[*]}"
# The device trusts what this host trusts: a CI host behind a TLS-inspecting proxy has its CA
# in /usr/local/share/ca-certificates, and cargo and pip inside need it to reach crates.io and
# PyPI. Copied (and update-ca-certificates run, slow under emulation) only when they change.
tree_sums() { [ -d "$1" ] && (cd "$1" && find . -type f -name '*.crt' -exec sha256sum {} + \
    | sort); return 0; }
HOST_CAS=/usr/local/share/ca-certificates
ROOT_CAS=$ROOT/usr/local/share/ca-certificates/joulefarm-host
notes=""
if [ "$(tree_sums "$HOST_CAS")" != "$(tree_sums "$ROOT_CAS")" ]; then
    log "giving the device this host's local CA certificates ($HOST_CAS)"
    rm -rf "$ROOT_CAS"
    mkdir -p "$ROOT_CAS"
    [ -d "$HOST_CAS" ] && cp -a "$HOST_CAS/." "$ROOT_CAS/"
    run_logged "$WORK/root-ca.log" in_root update-ca-certificates
    notes="local CA certificates updated; "
fi
missing=()
for p in "${ROOT_PACKAGES[@]}"; do
    # shellcheck disable=SC2016  # dpkg-query's format, not the shell's
    in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]} (emulated; log: $WORK/root-apt.log)"
    run_fg run_logged "$WORK/root-apt.log" in_root apt-get update -q
    run_fg run_logged "$WORK/root-apt.log" in_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    in_root apt-get clean
    notes+="installed ${#missing[@]} packages and their dependencies"
else
    notes+="cached: all installed"
fi
phase_done "$notes"
log "device: $(in_root uname -m), Debian $(cat "$ROOT/etc/debian_version"), \
$(in_root python3 --version), $(in_root rustc --version | cut -d' ' -f1-2), \
$(in_root maturin --version)"

phase "sshd" "an OpenSSH server inside the root on 127.0.0.1"
SSHD_DIR=/etc/joulefarm-sshd  # inside the root; keys are throwaway, made fresh every run
rm -rf "$ROOT$SSHD_DIR"
mkdir -p "$ROOT$SSHD_DIR" "$ROOT/run/sshd"
chmod 700 "$ROOT$SSHD_DIR"
chmod 755 "$ROOT/run/sshd"
ssh-keygen -q -t ed25519 -N '' -C joulefarm-arm64-host -f "$ROOT$SSHD_DIR/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C joulefarm-arm64-client -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$ROOT$SSHD_DIR/authorized_keys"
# OpenSSH refuses keys for a locked account ("!" password) when PAM is off.
if grep -q '^root:!' "$ROOT/etc/shadow"; then
    in_root usermod -p '*' root
fi
for attempt in 1 2 3; do  # a free port can be taken between the probe and the bind
    SSH_PORT=$(free_port)
    cat >"$ROOT$SSHD_DIR/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSHD_DIR/ssh_host_ed25519_key
PidFile /run/joulefarm-sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF
    chroot "$ROOT" /usr/sbin/sshd -D -e -f "$SSHD_DIR/sshd_config" >"$WORK/sshd.log" 2>&1 9>&- &
    SSHD_PID=$!
    if wait_listening "$SSH_PORT" 60 "$SSHD_PID"; then
        break
    fi
    kill "$SSHD_PID" 2>/dev/null || true
    wait "$SSHD_PID" 2>/dev/null || true
    SSHD_PID=""
    ((attempt < 3)) || die "sshd did not start: $(tail -c 1000 "$WORK/sshd.log")"
done
log "sshd (pid $SSHD_PID) runs under $(readlink "/proc/$SSHD_PID/exe")"
phase_done "127.0.0.1:$SSH_PORT, pid $SSHD_PID"

WHEEL_ARGS=()
if [ "$BUILD" = cross ]; then
    phase "cross-build" "maturin build --target $TARGET on this host"
    command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc is missing"
    rustup target list --installed 2>/dev/null | grep -qx "$TARGET" \
        || die "Rust's $TARGET std is missing: rustup target add $TARGET"
    rm -rf "$WORK/wheels"
    run_logged "$WORK/cross-build.log" env CARGO_TARGET_DIR="$CROSS_TARGET_DIR" \
        CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
        maturin build --release --target "$TARGET" --out "$WORK/wheels" \
        --manifest-path "$REPO/rust_core/python/Cargo.toml"
    wheel=$(ls "$WORK"/wheels/joulefarm-*aarch64.whl)
    WHEEL_ARGS=(--wheel "$wheel")
    phase_done "$(basename "$wheel")"
fi

phase "provision" "joulefarm provision $DEVICE ($([ "$BUILD" = device ] \
    && echo "Rust core built on the device" || echo "cross-built wheel"))"
AGENT_PORT=$(free_port)
cat >"$WORK/devices.toml" <<EOF
schema_version = 1

[[device]]
name = "$DEVICE"
platform = "linux"
address = "127.0.0.1"
port = $AGENT_PORT
token_file = "$WORK/$DEVICE.token"
tags = ["arm64-emu"]
description = "Debian $SUITE arm64 chroot under qemu-user (tests/arm64/run.sh)"

[device.meter]
kind = "sim"
profile = "rpi4"

[device.ssh]
user = "root"
port = $SSH_PORT
key = "$WORK/client_key"
known_hosts = "$WORK/known_hosts"
python = "/usr/bin/python3"
prefix = "$PREFIX"
service = "supervised"
build_on_device = $([ "$BUILD" = device ] && echo true || echo false)
EOF
CORE_SO="$ROOT$PREFIX/build/target/release/lib_core.so"
core_before=$(stat -c %Y "$CORE_SO" 2>/dev/null || echo none)
rust_hash=$(rust_sources_hash)
if [ "$BUILD" = device ] && [ -d "$ROOT$PREFIX/build/target/release/.fingerprint" ] \
        && [ "$(cat "$ROOT$RUST_STAMP" 2>/dev/null)" != "$rust_hash" ]; then
    # build_on_device unpacks the sdist, whose files all carry maturin's fixed mtime (2006),
    # so cargo would take changed Rust sources for the ones it built before. Dropping the
    # fingerprints of our own two crates makes it rebuild them (dependencies stay built).
    log "the Rust sources changed since the device's last build: cargo rebuilds joulefarm's crates"
    rm -rf "$ROOT$PREFIX"/build/target/release/.fingerprint/joulefarm-{energy,python}-*
fi
run_fg provision_step "$PHASE_T" "${WHEEL_ARGS[@]}"
grep -q "\] device: Linux aarch64" "$WORK/provision.log" \
    || die "the probe did not report Linux aarch64"
grep -q "\[$DEVICE\] healthy" "$WORK/provision.log" \
    || die "provisioning did not report a healthy agent"
wheel=$(sed -n 's/.*installing \(joulefarm-[^ ]*\.whl\).*/\1/p' "$WORK/provision.log" | tail -n 1)
phase_done "$wheel"
if [ "$BUILD" = device ]; then
    mkdir -p "$(dirname "$ROOT$RUST_STAMP")"
    echo "$rust_hash" >"$ROOT$RUST_STAMP"
    # The on-device build: from "building the agent on the device" to installing its wheel.
    secs() { sed -n "s/^\[+ *\([0-9]*\)s\] .*$1.*/\1/p" "$WORK/provision.log" | head -n 1; }
    b0=$(secs "building the agent on the device")
    b1=$(secs "installing joulefarm-")
    if [ "$(stat -c %Y "$CORE_SO" 2>/dev/null || echo none)" != "$core_before" ]; then
        compiled="cargo compiled the Rust core"
    else
        compiled="cargo: Rust core up to date"
    fi
    [ -n "$b0" ] && [ -n "$b1" ] && phase_extra "on-device build" "$((b1 - b0))" \
        "maturin on the device; $compiled"
fi

phase "layers job" "joulefarm sweep run (mode layers, recipe mlp)"
cat >"$WORK/suite.toml" <<EOF
schema_version = 1
name = "arm64-emu"
description = "one layers job on the emulated arm64 device (tests/arm64/run.sh)"

[select]
names = ["$DEVICE"]

[measure]
mode = "layers"
min_layer_duration_s = 0.02
idle_duration_s = 0.1
timeout_s = 900

[[model]]
name = "mlp"
recipe = "mlp"
EOF
DB="$WORK/arm64.duckdb"
run_fg joulefarm sweep run "$WORK/suite.toml" --devices "$WORK/devices.toml" --db "$DB"
phase_done

phase "db check" "joulefarm query on $DB"
query() { joulefarm query --db "$DB" --format csv "$1" | tail -n +2; }
machines=$(query "SELECT DISTINCT machine FROM devices WHERE name = '$DEVICE'")
fact_machine=$(query "SELECT DISTINCT facts->>'machine' FROM devices WHERE name = '$DEVICE'")
layers=$(query "SELECT count(*) FROM layer_energy WHERE device_name = '$DEVICE'")
done_jobs=$(query "SELECT count(*) FROM jobs WHERE device_name = '$DEVICE' AND status = 'done'")
joulefarm query --db "$DB" "SELECT name, machine, os, python_version, runtime_name AS runtime,
    runtime_version AS version, rust_core_profile AS rust_core, meter_kind AS meter
    FROM devices WHERE name = '$DEVICE'"
joulefarm query --db "$DB" "SELECT layer_index, op, macs, latency_s, energy_j, energy_source
    FROM layer_energy WHERE device_name = '$DEVICE' ORDER BY layer_index"
log "devices.machine: ${machines:-<none>}; devices.facts->>'machine': ${fact_machine:-<none>}"
log "layer rows for $DEVICE: $layers; jobs done: $done_jobs"
[ "$machines" = aarch64 ] || die "stored device machine is '$machines', not aarch64"
[ "$fact_machine" = aarch64 ] || die "stored device facts say machine '$fact_machine', not aarch64"
[ "${layers:-0}" -gt 0 ] || die "no layer rows stored for $DEVICE"
[ "${done_jobs:-0}" -ge 1 ] || die "no job of $DEVICE is done"
phase_done "aarch64 in devices and facts, $layers layer rows"

print_timings
