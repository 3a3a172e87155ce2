"""A local port forward over an SSH connection (``ssh -L``), for agents behind NAT or a
firewall: gRPC connects to 127.0.0.1:<local_port> here and reaches <host>:<port> as seen
from the device.

One thread accepts; each accepted connection gets a thread that shuttles bytes between the
socket and a ``direct-tcpip`` channel. gRPC keeps one HTTP/2 connection, so that is cheap.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import paramiko

from controller.config.registry import Device
from controller.provision.errors import SshConnectError

POLL_S = 0.2  # how often idle threads look at the stop flag
CHUNK = 65536


class LocalForward:
    """Forward 127.0.0.1:`local_port` (picked free) to `remote_host`:`remote_port` via
    `transport`. A context manager; `close` stops every thread and closes every socket."""

    def __init__(self, transport: paramiko.Transport, remote_host: str,
                 remote_port: int) -> None:
        self._transport = transport
        self.remote = (remote_host, remote_port)
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(POLL_S)
        self.local_port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._accepter = threading.Thread(target=self._accept_loop, name="jf-tunnel-accept",
                                          daemon=True)
        self._accepter.start()

    @property
    def target(self) -> str:
        """What a gRPC channel should dial."""
        return f"127.0.0.1:{self.local_port}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed
            thread = threading.Thread(target=self._pump, args=(conn, peer),
                                      name="jf-tunnel-pump", daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _pump(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            channel = self._transport.open_channel("direct-tcpip", self.remote, peer,
                                                   timeout=10.0)
        except (paramiko.SSHException, OSError):
            # The gRPC client sees a closed connection and reports UNAVAILABLE.
            conn.close()
            return
        ends: list[socket.socket | paramiko.Channel] = [conn, channel]
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(ends, [], [], POLL_S)
                if conn in readable:
                    data = conn.recv(CHUNK)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in readable:
                    data = channel.recv(CHUNK)
                    if not data:
                        break
                    conn.sendall(data)
        except OSError:
            pass  # either side went away: close both
        finally:
            channel.close()
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._accepter.join()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def __enter__(self) -> LocalForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_forward(transport: paramiko.Transport, remote_host: str,
                 remote_port: int) -> LocalForward:
    """A started `LocalForward`; errors as `SshConnectError`."""
    try:
        return LocalForward(transport, remote_host, remote_port)
    except OSError as exc:
        raise SshConnectError(f"cannot open a local port for the tunnel: {exc}") from None


@contextmanager
def agent_tunnel(device: Device, **connect_options: Any) -> Iterator[str]:
    """For the rest of the controller: a gRPC target (``127.0.0.1:port``) that reaches a
    ``tunnel = true`` device's agent for as long as the block runs. `connect_options` go to
    `ssh.connect` (host keys must already be known unless ``trust_new_host=True``)."""
    from controller.provision.ssh import connect

    if device.port == 0:
        raise SshConnectError(f"device {device.name!r} has no agent port to forward")
    with connect(device, **connect_options) as session, \
            open_forward(session.transport, "127.0.0.1", device.port) as forward:
        yield forward.target
