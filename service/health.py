"""gRPC health that tells the truth: SERVING only while the replica holds data this process may serve.

A reporter thread re-evaluates the reasons not to serve a few times a second and changes the
status (and logs one line) only when the answer changes. The reasons: no snapshot loaded yet, the
store's data in doubt (lost, replaced or emptied under the replica), data older than the profile's
staleness bound (Redis unreachable), or stored timelines derived under other points rules than this
process's profile. Shutdown says NOT_SERVING before the servers drain (``app._begin_shutdown``).
"""

from __future__ import annotations

import logging
import threading

from grpc_health.v1 import health, health_pb2

from cache.replica import Replica
from service.rules.profile import Profile, rules_match

log = logging.getLogger("gatekeeper")
SERVING = health_pb2.HealthCheckResponse.SERVING
# For liveness probes: SERVING while the process runs, whatever its data. The other names say whether
# it may answer (readiness): restarting a process because Redis is down would only lose its last good data.
LIVENESS = "liveness"
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    def __init__(self, servicer: health.HealthServicer, services: tuple[str, ...], replica: Replica,
                 profile: Profile) -> None:  # fmt: skip
        self.servicer = servicer
        self.services = services
        self.replica = replica
        self.profile = profile
        self._last: str | None = "starting"
        servicer.set(LIVENESS, SERVING)

    def why_not_serving(self) -> str | None:
        replica, profile = self.replica, self.profile
        doubt = replica.doubt
        if doubt is not None:
            return f"the stored data is in doubt, answering STALE_DATA past the bound and refusing writes: {doubt}"
        if not replica.ready.is_set():
            return "the first snapshot is not loaded yet"
        age = replica.age_seconds()
        if age > profile.staleness_seconds:
            return (
                f"the data was last confirmed current {age:.0f} s ago, beyond the profile's bound of "
                f"{profile.staleness_seconds} s (is Redis reachable?)"
            )
        state = replica.state
        if not rules_match(state, profile):
            return (
                f"the stored timelines were derived under points rules {state.rules} ({state.policy_id}), but this "
                f"process's profile {profile.policy_id} derives them under {profile.rules_fingerprint}: answering "
                "STALE_DATA and refusing writes until the profile matches the data"
            )
        return None

    def report(self) -> None:
        why = self.why_not_serving()
        if why == self._last:
            return
        self._last = why
        for name in self.services:
            self.servicer.set(name, NOT_SERVING if why else SERVING)
        if why is None:
            log.info("serving", extra={"data_version": self.replica.state.version})
        elif self.replica.ready.is_set():
            log.warning("not serving: %s", why)

    def start(self, stopping: threading.Event, interval: float = 0.25) -> None:
        def run() -> None:
            while not stopping.is_set():
                self.report()
                stopping.wait(interval)

        threading.Thread(target=run, name="health", daemon=True).start()
