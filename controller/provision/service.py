"""Keeping the agent running on the device: a systemd user unit where a user systemd answers,
otherwise a small shell supervisor that restarts the agent when it dies, with pid files.

Both run the same ``run-agent.sh``, so what the agent is started with does not depend on how
it is kept alive. Provisioning stops whatever ran before (either kind) so that running it
again replaces the agent instead of racing a second one for the port.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass

from controller.provision.errors import ProvisionError
from controller.provision.install import RemoteLayout
from controller.provision.ssh import SshSession
from controller.registry import Device

START_TIMEOUT_S = 60.0
POLL_S = 0.25
LOG_TAIL_CHARS = 1500
SUPERVISED = "supervised"
SYSTEMD = "systemd"

_SUPERVISOR = """\
#!/bin/sh
# joulefarm agent supervisor (written by `joulefarm provision`; edits are overwritten).
# Starts the agent and restarts it whenever it exits (crash, OOM kill), waiting longer after
# quick successive failures so a broken install does not spin the CPU. SIGTERM stops the
# agent, then this loop.
cd "$(dirname "$0")" || exit 1
echo $$ > supervisor.pid
child=""
stop() {
    trap - TERM INT
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"
    rm -f supervisor.pid agent.pid
    exit 0
}
trap stop TERM INT
trap '' HUP
delay=1
while :; do
    started=$(date +%s)
    ./run-agent.sh >>agent.log 2>&1 &
    child=$!
    echo "$child" > agent.pid
    wait "$child"
    status=$?
    lived=$(( $(date +%s) - started ))
    [ "$lived" -ge 30 ] && delay=1
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) supervisor: agent pid $child exited with status" \\
        "$status after ${lived}s; restarting in ${delay}s" >>agent.log
    sleep "$delay" &
    wait $!
    [ "$delay" -lt 32 ] && delay=$((delay * 2))
done
"""

_STOP = """\
#!/bin/sh
# Stops this directory's joulefarm agent, however it was started; safe to run when none runs.
cd "$(dirname "$0")" || exit 1
unit={unit}
if [ -f "$HOME/.config/systemd/user/$unit" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --user disable --now "$unit" >/dev/null 2>&1
fi
alive() {{  # running and not a zombie (a container's init may never reap it)
    kill -0 "$1" 2>/dev/null || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ "$state" != Z ]
}}
stop_pid() {{  # $1 pid file, $2 text its command line must hold (pids get reused)
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    if [ -n "$pid" ] && alive "$pid" && tr '\\0' ' ' <"/proc/$pid/cmdline" | grep -q "$2"; then
        kill -TERM "$pid"
        i=0
        while alive "$pid" && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        alive "$pid" && kill -KILL "$pid"
    fi
    rm -f "$1"
}}
stop_pid supervisor.pid supervise.sh
stop_pid agent.pid "agent serve"
exit 0
"""

_UNIT = """\
# joulefarm agent (written by `joulefarm provision`; edits are overwritten)
[Unit]
Description=joulefarm agent {name}
After=network-online.target

[Service]
# $$ is systemd's escape for a literal $; sh appends to the log (no StandardOutput=append:
# before systemd 240, which JetPack 4 still ships).
ExecStart=/bin/sh -c 'exec "$$0" >>"$$1" 2>&1' {run} {log}
Restart=always
RestartSec=2

[Install]
WantedBy=default.target
"""


def unit_name(device: Device) -> str:
    return f"joulefarm-agent-{device.name}.service"


def bind_host(device: Device) -> str:
    """Behind a tunnel the agent listens on loopback only; otherwise on every interface."""
    assert device.ssh is not None
    if device.ssh.tunnel:
        return "127.0.0.1"
    return "::" if ":" in device.address else "0.0.0.0"


def run_script(device: Device, layout: RemoteLayout) -> str:
    """``run-agent.sh``: the agent's command line. The token is passed as a FILE name."""
    meter = device.meter
    args = [
        layout.python, "-m", "agent", "serve",
        "--name", device.name, "--platform", device.platform,
        "--host", bind_host(device), "--port", str(device.port),
        "--token-file", layout.token,
        "--meter", meter.kind,
        "--cache-dir", layout.path("cache"),
    ]
    if meter.profile:
        args += ["--profile", meter.profile]
    if meter.sample_rate_hz:
        args += ["--sample-rate-hz", repr(meter.sample_rate_hz)]
    return (
        "#!/bin/sh\n"
        "# Starts the joulefarm agent (written by `joulefarm provision`; edits are overwritten).\n"
        "# The working directory matters: `python -m` puts it first on sys.path.\n"
        f"cd {shlex.quote(layout.prefix)} || exit 1\n"
        f"exec {' '.join(shlex.quote(a) for a in args)}\n"
    )


def unit_text(device: Device, layout: RemoteLayout) -> str:
    return _UNIT.format(name=device.name, run=_systemd_quote(layout.path("run-agent.sh")),
                        log=_systemd_quote(layout.log))


def _systemd_quote(word: str) -> str:
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def choose_service(requested: str, systemd_available: bool, device: str) -> str:
    if requested == SYSTEMD and not systemd_available:
        raise ProvisionError(f"{device}: ssh.service = 'systemd' but no user systemd instance "
                             "answers on the device (systemctl --user); use 'supervised' or "
                             "'auto'")
    if requested == "auto":
        return SYSTEMD if systemd_available else SUPERVISED
    return requested


def write_scripts(session: SshSession, device: Device, layout: RemoteLayout) -> None:
    session.write_file(layout.path("run-agent.sh"), run_script(device, layout).encode(), 0o700)
    session.write_file(layout.path("supervise.sh"), _SUPERVISOR.encode(), 0o700)
    session.write_file(layout.path("stop-agent.sh"),
                       _STOP.format(unit=shlex.quote(unit_name(device))).encode(), 0o700)


def stop_agent(session: SshSession, device: Device, layout: RemoteLayout) -> None:
    """Stop the agent of an earlier provisioning, if any (the stop script is rewritten first,
    so this also works across joulefarm versions)."""
    session.write_file(layout.path("stop-agent.sh"),
                       _STOP.format(unit=shlex.quote(unit_name(device))).encode(), 0o700)
    session.run(f"sh {shlex.quote(layout.path('stop-agent.sh'))}", what="stopping the old agent",
                timeout_s=60)


@dataclass(frozen=True)
class RunningAgent:
    kind: str  # SUPERVISED or SYSTEMD
    pid: int
    warning: str | None = None


def start_agent(session: SshSession, device: Device, layout: RemoteLayout, kind: str,
                timeout_s: float = START_TIMEOUT_S) -> RunningAgent:
    """Start the agent under `kind` and wait until it reports listening."""
    _rotate_log(session, layout)
    warning = None
    if kind == SYSTEMD:
        home = session.home()
        unit_dir = f"{home}/.config/systemd/user"
        session.run(f"mkdir -p {shlex.quote(unit_dir)}", what="creating the unit directory")
        unit = unit_name(device)
        session.write_file(f"{unit_dir}/{unit}", unit_text(device, layout).encode(), 0o644)
        session.run(f"systemctl --user daemon-reload && systemctl --user enable {unit} && "
                    f"systemctl --user restart {unit}", what=f"starting {unit}")
        linger = session.run('loginctl show-user "$(id -un)" --property=Linger --value',
                             what="checking lingering", check=False).output.strip()
        if linger == "no":
            warning = ("the user has no lingering: systemd stops the agent at logout and does "
                       "not start it at boot; run `sudo loginctl enable-linger $USER` on the "
                       "device")
    else:
        prefix = shlex.quote(layout.prefix)
        # setsid: a session of its own, so the SSH session's end sends it no SIGHUP.
        session.run(
            f"cd {prefix} && if command -v setsid >/dev/null 2>&1; then "
            "setsid sh ./supervise.sh </dev/null >/dev/null 2>&1 & "
            "else nohup sh ./supervise.sh </dev/null >/dev/null 2>&1 & fi",
            what="starting the supervisor")
    try:
        pid = _wait_listening(session, device, layout, kind, timeout_s)
    except ProvisionError:
        # Do not leave a supervisor restarting a broken agent forever.
        session.run(f"sh {shlex.quote(layout.path('stop-agent.sh'))}",
                    what="stopping the failed agent", timeout_s=60, check=False)
        raise
    return RunningAgent(kind, pid, warning)


def agent_pid(session: SshSession, device: Device, layout: RemoteLayout, kind: str) -> int | None:
    """The pid of the agent process now, or None when none runs."""
    if kind == SYSTEMD:
        out = session.run(f"systemctl --user show --property=MainPID --value "
                          f"{unit_name(device)}", what="asking systemd", check=False).output
        text = out.strip()
    else:
        text = (session.read_bytes(layout.path("agent.pid")) or b"").decode().strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def _rotate_log(session: SshSession, layout: RemoteLayout) -> None:
    """Keep one previous log; a fresh one makes 'did THIS start work' readable."""
    if session.read_bytes(layout.log) is not None:
        session.sftp.posix_rename(layout.log, layout.log + ".1")


def log_tail(session: SshSession, layout: RemoteLayout) -> str:
    text = (session.read_bytes(layout.log) or b"").decode("utf-8", "replace")
    return text[-LOG_TAIL_CHARS:].rstrip() or "(empty)"


def _listening_pids(log: str) -> set[int]:
    pids = set()
    for line in log.splitlines():
        if line.startswith("{") and '"listening"' in line:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                pids.add(int(event.get("pid", 0)))
    return pids


def _wait_listening(session: SshSession, device: Device, layout: RemoteLayout, kind: str,
                    timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        pid = agent_pid(session, device, layout, kind)
        log = (session.read_bytes(layout.log) or b"").decode("utf-8", "replace")
        if pid is not None and pid in _listening_pids(log):
            return pid
        # The supervisor notes every exit: the first one means this start failed.
        if "supervisor: agent pid" in log or time.monotonic() > deadline:
            what = "exited" if "supervisor: agent pid" in log else (
                f"did not start listening within {timeout_s:.0f} s")
            raise ProvisionError(f"{device.name}: the agent {what}; {layout.log} ends with:\n"
                                 f"{log_tail(session, layout)}")
        time.sleep(POLL_S)
