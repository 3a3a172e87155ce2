"""The per-device agent token on the controller's side: read it, or make it once.

The token authenticates the controller to the agent; whoever has it can run code-heavy RPCs
on the device, so it lives in a 0600 file and is never printed, logged or put on a command
line. It reaches the device as a file over SFTP (`install.write_token`).
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from controller.provision.errors import ProvisionError

TOKEN_BYTES = 32


def ensure_local_token(path: Path, on_event: Callable[[str], None] = lambda _: None) -> str:
    """The token in `path`; a fresh random one written there (mode 0600) if the file is new."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = None
    except OSError as exc:
        raise ProvisionError(f"cannot read token file {path}: {exc.strerror}") from None
    if token is not None:
        if not token:
            raise ProvisionError(f"token file {path} is empty; delete it to get a new token")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            on_event(f"warning: token file {path} is readable by others (mode {mode:o}); "
                     f"run `chmod 600 {path}`")
        return token
    token = secrets.token_urlsafe(TOKEN_BYTES)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: two provisioning runs racing must not end with different tokens in use.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return ensure_local_token(path, on_event)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    on_event(f"generated a new agent token in {path} (mode 600)")
    return token
