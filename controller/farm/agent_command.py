"""The agent's command line, built in one place for every way the controller starts an agent:
a local agent on this machine (``localfarm``) and a provisioned one on a device
(``provision.service`` writes it into ``run-agent.sh``). A device's ``[device.meter]`` settings
and its ``delegates`` reach the agent the same way on both paths, options included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from controller.config.registry import Device
from joulefarm.enums import RuntimeBackend


@dataclass(frozen=True)
class AgentPlace:
    """Where and how one agent runs: its interpreter, address, token file and cache, and its
    TLS certificate and key (files on the agent's machine; None: plaintext, local agents)."""

    python: str
    host: str
    port: int
    token_file: str
    cache_dir: str
    tls_cert: str | None = None
    tls_key: str | None = None


def agent_command(device: Device, place: AgentPlace, *, litert_lib: str | None = None,
                  litert_version: str | None = None,
                  exit_with_parent: int | None = None) -> list[str]:
    """``python -m agent serve ...`` for ``device``. The token travels as a file name, never
    on the command line. ``litert_lib`` runs the agent on a standalone libLiteRt.so
    (``--runtime litert-c``); ``exit_with_parent`` stops it with the process that started it."""
    meter = device.meter
    args = [
        place.python, "-m", "agent", "serve",
        "--name", device.name, "--platform", device.platform,
        "--host", place.host, "--port", str(place.port),
        "--token-file", place.token_file,
        "--meter", meter.kind,
        "--cache-dir", place.cache_dir,
    ]
    if meter.profile:
        args += ["--profile", meter.profile]
    if meter.sample_rate_hz:
        args += ["--sample-rate-hz", repr(meter.sample_rate_hz)]
    if meter.options:
        args += ["--meter-options", json.dumps(dict(meter.options), sort_keys=True)]
    for delegate in device.delegates:
        args += ["--allow-delegate", delegate]
    if place.tls_cert is not None and place.tls_key is not None:
        args += ["--tls-cert", place.tls_cert, "--tls-key", place.tls_key]
    if litert_lib is not None:
        args += ["--runtime", RuntimeBackend.LITERT_C.value, "--litert-lib", litert_lib]
        if litert_version:
            args += ["--litert-version", litert_version]
    if exit_with_parent is not None:
        args += ["--exit-with-parent", str(exit_with_parent)]
    return args
