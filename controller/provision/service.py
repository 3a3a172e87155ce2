"""Keeping the agent running on the device: a systemd user unit where a user systemd answers,
a runit service where Termux's termux-services runs ``runsvdir``, otherwise a small shell
supervisor that restarts the agent when it dies, with pid files.

All run the same ``run-agent.sh``, so what the agent is started with does not depend on how
it is kept alive. Provisioning stops whatever ran before (any kind) so that running it again
replaces the agent instead of racing a second one for the port. Scripts name the device's own
shell in their ``#!`` line: Android has no ``/bin/sh``.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass

from controller.config.registry import Device
from controller.farm.agent_command import AgentPlace, agent_command
from controller.provision.errors import ProvisionError
from controller.provision.install import RemoteLayout
from controller.provision.ssh import SshSession
from joulefarm.tflite.schema import SCHEMA_ENV

START_TIMEOUT_S = 60.0
POLL_S = 0.25
LOG_TAIL_CHARS = 1500
SUPERVISED = "supervised"
SYSTEMD = "systemd"
RUNIT = "runit"
# runsvdir looks for new service directories every 5 s.
RUNIT_PICKUP_S = 12.0
# Lines the supervisor (or runit's finish script) appends to agent.log when the agent exits.
EXIT_MARKERS = ("supervisor: agent pid", "runit: agent exited")

_SUPERVISOR = """\
# joulefarm agent supervisor (written by `joulefarm provision`; edits are overwritten).
# Starts the agent and restarts it whenever it exits (crash, OOM kill), waiting longer after
# quick successive failures so a broken install does not spin the CPU. SIGTERM stops the
# agent, then this loop.
cd "$(dirname "$0")" || exit 1
echo $$ > supervisor.pid
child=""
sleeper=""
stop() {
    trap - TERM INT
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null  # no sleep outlives its supervisor
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
    sleeper=$!
    wait "$sleeper"
    sleeper=""
    [ "$delay" -lt 32 ] && delay=$((delay * 2))
done
"""

_STOP = """\
# Stops this directory's joulefarm agent, however it was started; safe to run when none runs.
cd "$(dirname "$0")" || exit 1
unit={unit}
if [ -f "$HOME/.config/systemd/user/$unit" ] && command -v systemctl >/dev/null 2>&1; then
    systemctl --user disable --now "$unit" >/dev/null 2>&1
fi
service={service}
if [ -n "$service" ] && [ -d "$service" ]; then
    touch "$service/down"  # runit leaves a service with a down file stopped, also at boot
    command -v sv >/dev/null 2>&1 && sv -w 15 down "$service" >/dev/null 2>&1
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


_RUNIT_RUN = """\
# joulefarm agent {name} under runit (written by `joulefarm provision`; edits are overwritten).
exec {run} >>{log} 2>&1
"""

# runsv runs ./finish with the exit status after ./run ends, then starts ./run again.
_RUNIT_FINISH = """\
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) runit: agent exited with status $1; runit restarts it" \\
    >>{log}
sleep 1
"""


def unit_name(device: Device) -> str:
    return f"joulefarm-agent-{device.name}.service"


def runit_service_dir(device: Device, svdir: str) -> str:
    return f"{svdir}/joulefarm-agent-{device.name}"


def _script(shell: str, body: str) -> bytes:
    return f"#!{shell}\n{body}".encode()


def bind_host(device: Device) -> str:
    """Behind a tunnel the agent listens on loopback only; otherwise on every interface."""
    assert device.ssh is not None
    if device.ssh.tunnel:
        return "127.0.0.1"
    return "::" if ":" in device.address else "0.0.0.0"


@dataclass(frozen=True)
class LiteRtLibrary:
    """A standalone LiteRT runtime the agent runs models with (``--runtime litert-c``), and
    the TFLite schema module that otherwise comes with the ai-edge-litert wheel."""

    path: str
    version: str
    schema: str | None = None


def run_script(device: Device, layout: RemoteLayout, shell: str = "/bin/sh",
               litert: LiteRtLibrary | None = None) -> str:
    """``run-agent.sh``: the agent's command line (``agent_command``, as for local agents);
    with TLS (``write_tls``'s files) when the device has a ``[device.tls]`` pin."""
    tls = device.tls is not None
    place = AgentPlace(python=layout.python, host=bind_host(device), port=device.port,
                       token_file=layout.token, cache_dir=layout.path("cache"),
                       tls_cert=layout.tls_cert if tls else None,
                       tls_key=layout.tls_key if tls else None)
    args = agent_command(device, place,
                         litert_lib=None if litert is None else litert.path,
                         litert_version=None if litert is None else litert.version)
    schema = ""
    if litert is not None and litert.schema:
        schema = f"export {SCHEMA_ENV}={shlex.quote(litert.schema)}\n"
    return (
        f"#!{shell}\n"
        "# Starts the joulefarm agent (written by `joulefarm provision`; edits are overwritten).\n"
        "# The working directory matters: `python -m` puts it first on sys.path.\n"
        f"cd {shlex.quote(layout.prefix)} || exit 1\n"
        f"{schema}"
        f"exec {' '.join(shlex.quote(a) for a in args)}\n"
    )


def unit_text(device: Device, layout: RemoteLayout) -> str:
    return _UNIT.format(name=device.name, run=_systemd_quote(layout.path("run-agent.sh")),
                        log=_systemd_quote(layout.log))


def _systemd_quote(word: str) -> str:
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def choose_service(requested: str, systemd_available: bool, device: str,
                   runit_available: bool = False) -> str:
    if requested == SYSTEMD and not systemd_available:
        raise ProvisionError(f"{device}: ssh.service = 'systemd' but no user systemd instance "
                             "answers on the device (systemctl --user); use 'supervised' or "
                             "'auto'")
    if requested == RUNIT and not runit_available:
        raise ProvisionError(f"{device}: ssh.service = 'runit' but the device is not Termux "
                             "with termux-services (`pkg install termux-services`, then restart "
                             "Termux); use 'supervised' or 'auto'")
    if requested == "auto":
        if systemd_available:
            return SYSTEMD
        return RUNIT if runit_available else SUPERVISED
    return requested


@dataclass(frozen=True)
class Host:
    """What the scripts depend on about the device: its shell and runit's service directory."""

    shell: str = "/bin/sh"
    svdir: str | None = None  # Termux: $PREFIX/var/service


def _stop_text(device: Device, host: Host) -> bytes:
    service = runit_service_dir(device, host.svdir) if host.svdir else ""
    return _script(host.shell, _STOP.format(unit=shlex.quote(unit_name(device)),
                                            service=shlex.quote(service)))


def write_scripts(session: SshSession, device: Device, layout: RemoteLayout,
                  host: Host = Host(), litert: LiteRtLibrary | None = None) -> None:
    session.write_file(layout.path("run-agent.sh"),
                       run_script(device, layout, host.shell, litert).encode(), 0o700)
    session.write_file(layout.path("supervise.sh"), _script(host.shell, _SUPERVISOR), 0o700)
    session.write_file(layout.path("stop-agent.sh"), _stop_text(device, host), 0o700)


def stop_agent(session: SshSession, device: Device, layout: RemoteLayout,
               host: Host = Host()) -> None:
    """Stop the agent of an earlier provisioning, if any (the stop script is rewritten first,
    so this also works across joulefarm versions)."""
    session.write_file(layout.path("stop-agent.sh"), _stop_text(device, host), 0o700)
    session.run(f"sh {shlex.quote(layout.path('stop-agent.sh'))}", what="stopping the old agent",
                timeout_s=60)


@dataclass(frozen=True)
class RunningAgent:
    kind: str  # SUPERVISED, SYSTEMD or RUNIT (what it runs under, after any fallback)
    pid: int
    warning: str | None = None


def start_agent(session: SshSession, device: Device, layout: RemoteLayout, kind: str,
                timeout_s: float = START_TIMEOUT_S, host: Host = Host()) -> RunningAgent:
    """Start the agent under `kind` and wait until it reports listening."""
    _rotate_log(session, layout)
    warning = None
    if kind == RUNIT:
        assert host.svdir is not None
        if not _start_runit(session, device, layout, host):
            kind = SUPERVISED
            warning = (f"runsvdir does not watch {host.svdir} (termux-services is installed "
                       "but its daemon is not running: open a new Termux session or run "
                       "`service-daemon start`); the agent runs under the shell supervisor "
                       "for now and will not come back after a reboot")
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
    elif kind == SUPERVISED:
        prefix = shlex.quote(layout.prefix)
        # setsid: a session of its own, so the SSH session's end sends it no SIGHUP.
        session.run(
            f"cd {prefix} && if command -v setsid >/dev/null 2>&1; then "
            "setsid sh ./supervise.sh </dev/null >/dev/null 2>&1 & "
            "else nohup sh ./supervise.sh </dev/null >/dev/null 2>&1 & fi",
            what="starting the supervisor")
    try:
        pid = _wait_listening(session, device, layout, kind, timeout_s, host)
    except ProvisionError:
        # Do not leave a supervisor restarting a broken agent forever.
        session.run(f"sh {shlex.quote(layout.path('stop-agent.sh'))}",
                    what="stopping the failed agent", timeout_s=60, check=False)
        raise
    return RunningAgent(kind, pid, warning)


def _start_runit(session: SshSession, device: Device, layout: RemoteLayout,
                 host: Host) -> bool:
    """Install the runit service and bring it up; False (and nothing left behind) when no
    runsvdir picks it up."""
    assert host.svdir is not None
    service = runit_service_dir(device, host.svdir)
    q = shlex.quote
    # Created with a `down` file, so runsvdir cannot start it before `run` is complete.
    session.run(f"mkdir -p {q(service)} && touch {q(service + '/down')}",
                what="creating the runit service")
    log = q(layout.log)
    session.write_file(f"{service}/run", _script(host.shell, _RUNIT_RUN.format(
        name=device.name, run=q(layout.path("run-agent.sh")), log=log)), 0o700)
    session.write_file(f"{service}/finish", _script(host.shell, _RUNIT_FINISH.format(log=log)),
                       0o700)
    deadline = time.monotonic() + RUNIT_PICKUP_S
    while session.run(f"test -p {q(service + '/supervise/ok')}", what="waiting for runsv",
                      check=False).exit_status != 0:
        if time.monotonic() > deadline:
            session.run(f"rm -rf {q(service)}", what="removing the runit service", check=False)
            return False
        time.sleep(POLL_S * 2)
    session.run(f"rm -f {q(service + '/down')} && sv up {q(service)}",
                what="starting the runit service")
    return True


def agent_pid(session: SshSession, device: Device, layout: RemoteLayout, kind: str,
              host: Host = Host()) -> int | None:
    """The pid of the agent process now, or None when none runs."""
    if kind == RUNIT:
        assert host.svdir is not None
        pid_file = f"{runit_service_dir(device, host.svdir)}/supervise/pid"
        text = (session.read_bytes(pid_file) or b"").decode().strip()
    elif kind == SYSTEMD:
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
                    timeout_s: float, host: Host) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        pid = agent_pid(session, device, layout, kind, host)
        log = (session.read_bytes(layout.log) or b"").decode("utf-8", "replace")
        if pid is not None and pid in _listening_pids(log):
            return pid
        # The supervisor notes every exit: the first one means this start failed.
        exited = any(marker in log for marker in EXIT_MARKERS)
        if exited or time.monotonic() > deadline:
            what = "exited" if exited else (
                f"did not start listening within {timeout_s:.0f} s")
            raise ProvisionError(f"{device.name}: the agent {what}; {layout.log} ends with:\n"
                                 f"{log_tail(session, layout)}")
        time.sleep(POLL_S)
