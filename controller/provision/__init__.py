"""``joulefarm provision``: put the agent on a device over SSH and keep it running.

For each device: log in over SSH (host keys checked against known_hosts; unknown hosts only
with ``--trust-new-host``, changed keys never), probe its Python and architecture, build (or
take from the cache) the joulefarm wheel and check it fits, create the agent's own virtual
environment, install the wheel with ``--no-deps`` and the agent's light requirements
(`requirements.AGENT_REQUIREMENTS`), copy the token over SFTP, start the agent as a systemd
user unit or under a shell supervisor, and check health and facts over gRPC — directly or
through an SSH tunnel.

Modules: `ssh` (connections, auth, jump hosts), `hostkeys`, `tunnel` (local port forward),
`wheel` (build, cache, fit), `requirements`, `install` (probe, venv, packages, token),
`service` (supervisor, systemd unit, start/stop), `verify` (gRPC), `tokens`, `redact`,
`provisioner` (the order of it all: `provision_device`). Other parts of the controller reach a
``tunnel = true`` device's agent with `tunnel.agent_tunnel(device)`.
"""

# Only the errors here, so that importing them (the CLI's list of input errors) does not load
# paramiko and gRPC; the work is in `controller.provision.provisioner`.
from controller.provision.errors import (
    ChangedHostKeyError,
    HostKeyError,
    ProvisionError,
    ProvisionInputError,
    RemoteCommandError,
    SshAuthError,
    SshConnectError,
    UnknownHostKeyError,
    WheelError,
)

__all__ = [
    "ChangedHostKeyError",
    "HostKeyError",
    "ProvisionError",
    "ProvisionInputError",
    "RemoteCommandError",
    "SshAuthError",
    "SshConnectError",
    "UnknownHostKeyError",
    "WheelError",
]
