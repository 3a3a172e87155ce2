"""Start and stop agents on this machine, each a separate process serving gRPC on loopback.

This is the embedded default: the demo farm of devices.toml runs here with simulated meters.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from controller.config.registry import Device
from controller.farm.agent_command import AgentPlace, agent_command
from controller.farm.client import AgentClient
from controller.farm.processes import pid_alive
from joulefarm.errors import JoulefarmError

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
# The local agents' folder (token, logs, model cache) in the temp dir, and the file in it that
# names the controller process owning it.
WORKDIR_PREFIX = "joulefarm-agents-"
OWNER_FILE = "pid"


class LocalAgentError(JoulefarmError):
    """A local agent did not start."""


@dataclass
class LocalAgent:
    device: Device
    process: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def write_token(directory: Path) -> tuple[str, Path]:
    """A fresh random token in a file only this user can read."""
    token = secrets.token_urlsafe(32)
    path = directory / "agent.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode is not applied to an existing file
        f.write(token)
    return token, path


def remove_stale_workdirs(root: Path | None = None) -> list[Path]:
    """Remove the local-agent folders in ``root`` (the temp dir) left by controllers that died
    without cleaning up (kill -9): only this user's, and only those whose recorded owner pid
    is gone. A folder with no readable owner file (being created, or from an older version)
    is kept. Returns the folders removed."""
    root = Path(tempfile.gettempdir()) if root is None else root
    uid = os.getuid()
    removed: list[Path] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for path in entries:
        if not path.name.startswith(WORKDIR_PREFIX):
            continue
        try:
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
                continue
            pid = int((path / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid <= 0 or pid_alive(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


@contextlib.contextmanager
def local_workdir(root: Path | None = None) -> Iterator[Path]:
    """A fresh folder for the local agents, only this user can enter (0700), owned by this
    process (its pid recorded for :func:`remove_stale_workdirs`), removed on exit. Folders
    left by dead controllers are removed first."""
    remove_stale_workdirs(root)
    with tempfile.TemporaryDirectory(prefix=WORKDIR_PREFIX, dir=root) as tmp:
        path = Path(tmp)
        os.chmod(path, 0o700)  # mkdtemp already makes it 0700; say so
        # Written whole then renamed: a cleanup running meanwhile never reads half a pid.
        partial = path / f".{OWNER_FILE}.tmp"
        partial.write_text(f"{os.getpid()}\n")
        os.replace(partial, path / OWNER_FILE)
        yield path


def _first_line(stream: object, timeout_s: float) -> str | None:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()  # type: ignore[attr-defined]
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        return None


class LocalFarm:
    """The local agents of one controller run; a context manager that always stops them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.token, self.token_path = write_token(workdir)
        self.agents: dict[str, LocalAgent] = {}
        self._lock = threading.Lock()

    def start(self, device: Device, port: int | None = None) -> LocalAgent:
        """Start the device's agent (on ``port`` when given, to come back where it was)."""
        log_path = self.workdir / f"{device.name}.log"
        place = AgentPlace(python=sys.executable, host="127.0.0.1",
                           port=device.port if port is None else port,
                           token_file=str(self.token_path),
                           cache_dir=str(self.workdir / "cache" / device.name))
        cmd = agent_command(device, place, exit_with_parent=os.getpid())
        # The child inherits the log's descriptor; the parent's copy closes right away.
        with open(log_path, "a") as log:
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                       start_new_session=True)
        line = _first_line(process.stdout, START_TIMEOUT_S)
        try:
            port = int(json.loads(line)["port"]) if line else None
        except (ValueError, KeyError, TypeError):
            port = None
        if port is None:
            self._terminate(process)
            tail = log_path.read_text()[-2000:]
            raise LocalAgentError(f"{device.name}: local agent did not start "
                                  f"(log {log_path}):\n{tail}")
        agent = LocalAgent(device, process, port, log_path)
        self.agents[device.name] = agent
        with AgentClient(device.name, agent.target, self.token) as client:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not client.healthy():
                if time.monotonic() > deadline or process.poll() is not None:
                    self.stop(device.name)
                    raise LocalAgentError(f"{device.name}: local agent never became healthy "
                                          f"(log {log_path})")
                time.sleep(0.1)
        return agent

    def ensure_running(self, name: str) -> None:
        """Restart a local agent that died, on the port it had (its endpoint stays valid)."""
        with self._lock:
            agent = self.agents.get(name)
            if agent is None or agent.process.poll() is None:
                return
            if agent.process.stdout:
                agent.process.stdout.close()
            del self.agents[name]
            # A failed restart shows up as unhealthy to the caller, which keeps trying.
            with contextlib.suppress(LocalAgentError):
                self.start(agent.device, port=agent.port)

    @staticmethod
    def _terminate(process: subprocess.Popen[str]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()

    def stop(self, name: str) -> None:
        agent = self.agents.pop(name, None)
        if agent:
            self._terminate(agent.process)

    def stop_all(self) -> None:
        for name in list(self.agents):
            self.stop(name)

    def __enter__(self) -> LocalFarm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
