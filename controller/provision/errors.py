"""Errors of `joulefarm provision`; every message names the device or host it is about.

None of them ever carries a secret: messages are built from host names, paths and fingerprints
only, and the CLI scrubs known secrets from everything it prints as a second line of defence.
"""

from __future__ import annotations

from joulefarm.errors import JoulefarmError


class ProvisionError(JoulefarmError):
    """Provisioning a device failed (the device is named in the message)."""


class ProvisionInputError(ProvisionError):
    """The devices file or the command line cannot be provisioned from; nothing ran."""

    exit_code = 2


class SshConnectError(ProvisionError):
    """The SSH server could not be reached or the SSH handshake failed."""


class SshAuthError(ProvisionError):
    """The SSH server refused every key offered."""


class HostKeyError(ProvisionError):
    """A host key could not be verified against known_hosts."""


class UnknownHostKeyError(HostKeyError):
    """The host is not in known_hosts and --trust-new-host was not given."""


class ChangedHostKeyError(HostKeyError):
    """known_hosts holds a different key for the host: refused, whatever the options."""


class WheelError(ProvisionError):
    """The agent wheel could not be built, or does not fit the device."""


class RemoteCommandError(ProvisionError):
    """A command on the device exited with an error."""
