"""Is the agent up, and is it the device we think? Health and facts over gRPC, with the
device's token, directly or through an SSH tunnel, over TLS with the certificate devices.toml
pins for it (``controller.farm.tls``)."""

from __future__ import annotations

import time

from controller.config.registry import Device
from controller.farm.client import AgentCallError
from controller.farm.tls import PinnedCertError, agent_client, agent_transport, tls_failure
from controller.provision.errors import ProvisionError
from controller.provision.ssh import SshSession
from controller.provision.tunnel import open_forward
from joulefarm.results import DeviceFacts

HEALTHY_TIMEOUT_S = 30.0


def check_agent(device: Device, target: str, token: str,
                timeout_s: float = HEALTHY_TIMEOUT_S) -> DeviceFacts | None:
    """The agent's facts once it reports SERVING at `target`; None if it never does.
    A failed TLS handshake is a ProvisionError at once: waiting does not change certificates."""
    try:
        pin = agent_transport(device)
    except PinnedCertError as exc:
        raise ProvisionError(str(exc)) from None
    with agent_client(device, target, token, pin) as client:
        deadline = time.monotonic() + timeout_s
        while (problem := client.health_problem(timeout_s=2.0)) is not None:
            refused = tls_failure(pin, target, problem)
            if refused is not None:
                raise ProvisionError(refused)
            if time.monotonic() > deadline:
                return None
            time.sleep(0.25)
        try:
            facts = client.facts()
        except AgentCallError as exc:
            # UNAUTHENTICATED here means another agent (another token) holds the port.
            raise ProvisionError(f"{device.name}: the agent at {target} is healthy but "
                                 f"refused its facts: {exc}") from None
    if facts.device_name != device.name:
        raise ProvisionError(f"{device.name}: the agent at {target} says it is "
                             f"{facts.device_name!r}; another agent holds the port?")
    return facts


def check_agent_via_tunnel(session: SshSession, device: Device, token: str,
                           timeout_s: float = HEALTHY_TIMEOUT_S) -> DeviceFacts | None:
    """`check_agent` through a port forward to the agent's port on the device's loopback."""
    with open_forward(session.transport, "127.0.0.1", device.port) as forward:
        return check_agent(device, forward.target, token, timeout_s)


def verify(session: SshSession, device: Device, token: str,
           timeout_s: float = HEALTHY_TIMEOUT_S) -> tuple[DeviceFacts, str]:
    """(facts, how it was reached): through the tunnel when ``ssh.tunnel``, else directly —
    and if directly fails but the tunnel works, say that the port is blocked on the way."""
    assert device.ssh is not None
    if device.ssh.tunnel:
        facts = check_agent_via_tunnel(session, device, token, timeout_s)
        if facts is None:
            raise ProvisionError(f"{device.name}: the agent is not healthy through the SSH "
                                 f"tunnel to port {device.port}")
        return facts, "through an SSH tunnel"
    facts = check_agent(device, device.grpc_target(), token, timeout_s)
    if facts is not None:
        return facts, f"directly at {device.grpc_target()}"
    if check_agent_via_tunnel(session, device, token, timeout_s=5.0) is not None:
        raise ProvisionError(
            f"{device.name}: the agent runs (healthy through an SSH tunnel) but "
            f"{device.grpc_target()} cannot be reached from here: open the port on the "
            "device's firewall, or set `tunnel = true` in its [device.ssh] table")
    raise ProvisionError(f"{device.name}: the agent never became healthy at "
                         f"{device.grpc_target()}")
