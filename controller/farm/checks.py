"""``devices check``: is each device reachable, authenticated, healthy, and is its meter there?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.config.registry import Device
from controller.farm.client import AgentCallError
from controller.farm.runner import connect
from controller.farm.tls import tls_failure


@dataclass(frozen=True)
class DeviceCheck:
    device: str
    target: str
    reachable: bool
    authenticated: bool
    healthy: bool
    fingerprint: str
    meter: str
    meter_present: bool
    problem: str


def check_devices(devices: Sequence[Device]) -> list[DeviceCheck]:
    """Check every device in turn; local devices get their agent started for the check."""
    results = []
    with connect(devices) as (endpoints, skipped):
        for name, problem in skipped.items():
            results.append(DeviceCheck(name, "", False, False, False, "", "", False, problem))
        for e in endpoints:
            configured = e.device.meter.kind
            with e.client() as client:
                unhealthy = client.health_problem()
                if unhealthy is not None:
                    # A failed TLS handshake gets its reason; any other problem stays as is.
                    problem = tls_failure(e.tls, e.target, unhealthy) or unhealthy
                    results.append(DeviceCheck(e.device.name, e.target, False, False, False, "",
                                               configured, False, problem))
                    continue
                try:
                    facts = client.facts()
                except AgentCallError as err:
                    authenticated = err.code.name != "UNAUTHENTICATED"
                    results.append(DeviceCheck(e.device.name, e.target, True, authenticated,
                                               True, "", configured, False, str(err)))
                    continue
            kinds = [m.kind for m in facts.meters]
            present = configured in kinds
            meter = facts.meters[0]
            label = meter.kind + (f":{meter.profile} (simulated)" if meter.simulated else "")
            results.append(DeviceCheck(
                e.device.name, e.target, True, True, True, facts.fingerprint[:16], label, present,
                "" if present else f"meter {configured!r} not found (agent has: {kinds})"))
    order = {d.name: i for i, d in enumerate(devices)}
    return sorted(results, key=lambda c: order.get(c.device, len(order)))
