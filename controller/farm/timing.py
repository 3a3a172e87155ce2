"""Every timing constant of the controller, in one place, so tests can shrink them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    # A benchmark stream that carries no event for this long means the agent stopped
    # answering (the agent sends a heartbeat every second while it works).
    heartbeat_timeout_s: float = 30.0
    # Attempts after the first for a job that failed for a transient reason.
    retries: int = 2
    # Exponential backoff between attempts: base * 2**k, capped.
    backoff_base_s: float = 1.0
    backoff_max_s: float = 30.0
    # How long to wait for an unhealthy device to come back before skipping it.
    health_patience_s: float = 60.0
    health_poll_s: float = 0.5
    # The running controller renews its lease on a sweep this often; a lease not renewed for
    # LEASE_MISSED intervals means the controller is gone (see controller.farm.lease).
    lease_interval_s: float = 10.0

    def backoff_s(self, attempt: int) -> float:
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, attempt - 1))


DEFAULT_TIMING = Timing()
