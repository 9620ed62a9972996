"""A caller that cancels a check waiting for its min_data_version gives the slot back at once (issue:
hardening I). Redis is stopped so that nothing can end the waits but the callers leaving."""

from __future__ import annotations

import pathlib
import time

from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis
from service import app
from tests.conftest import connect_gatekeeper, make_settings, wait_serving
from tests.e2e.builders import claim, line, new_code


def _waiting(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("gatekeeper_waiting_checks") or 0.0


def _wait_for_waiting(registry: CollectorRegistry, expected: float) -> None:
    deadline = time.monotonic() + 20
    while _waiting(registry) != expected:
        assert time.monotonic() < deadline, f"waiting checks stayed at {_waiting(registry)}, not {expected}"
        time.sleep(0.05)


def test_cancelled_waiters_give_their_slots_back(tmp_path: pathlib.Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    registry = CollectorRegistry()
    settings = make_settings(redis.url, max_waiting_checks=2, min_version_wait_ms=60_000)
    handle = app.start(settings, registry=registry)
    gk = connect_gatekeeper(handle.check_port, handle.admin_port)
    try:
        wait_serving(handle.check_port)
        redis.stop()  # nobody can prove the version absent now: only leaving ends a wait
        request = claim(line("1", new_code(), "2025-03-01"), min_data_version=2**63)
        calls = [gk.check.CheckClaim.future(request, timeout=120) for _ in range(2)]
        _wait_for_waiting(registry, 2)
        for call in calls:
            call.cancel()
        _wait_for_waiting(registry, 0)
    finally:
        gk.close()
        handle.stop()
