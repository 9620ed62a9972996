"""No caller can starve the others: checks waiting for an unreachable min_data_version, in flight at once.

The smoke test of loadtest/starvation.py (which measures the throughput figure). Waits are made to
last by stopping Redis: then nothing can prove the version will never come, and every waiter
holds its slot for the whole ``min_version_wait``. "In flight" is read from the server's own
metrics (started minus handled), so the assertions are about order, never about time.
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis
from gatekeeper.v1 import eligibility_pb2, enums_pb2
from service import app
from tests.conftest import Gatekeeper, connect_gatekeeper, make_settings, wait_serving
from tests.e2e.builders import claim, line, new_code, outcome_of, poll, register, status_request

UNREACHABLE = 2**63
CHECK = "gatekeeper.v1.EligibilityService"
STALE = (enums_pb2.DECISION_REVIEW, enums_pb2.REASON_STALE_DATA)


@dataclass
class Served:
    gk: Gatekeeper
    registry: CollectorRegistry
    redis: EmbeddedRedis
    code: str  # a registered practitioner: a normal check of theirs is ALLOW while data is fresh
    redis_stopped: bool = False

    def stop_redis(self) -> None:
        """From here on no wait can end early: nothing can prove the version absent."""
        self.redis.stop()
        self.redis_stopped = True

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def in_flight(self) -> float:
        """CheckClaim calls the server has started and not yet finished."""
        labels = {"grpc_type": "unary", "grpc_service": CHECK, "grpc_method": "CheckClaim"}
        started = self.metric("grpc_server_started_total", **labels)
        handled = sum(
            s.value
            for family in self.registry.collect()
            if family.name == "grpc_server_handled"
            for s in family.samples
            if s.name == "grpc_server_handled_total" and all(s.labels.get(k) == v for k, v in labels.items())
        )
        return started - handled


@pytest.fixture
def serve(tmp_path: pathlib.Path) -> Iterator[Callable[..., Served]]:
    """``serve(**settings)``: a server on a Redis of this test alone (the test may stop it)."""
    started: list[tuple[app.Running, Served]] = []

    def start(**overrides: object) -> Served:
        redis = EmbeddedRedis(tmp_path / f"redis-{len(started)}", appendonly=False).start()
        registry = CollectorRegistry()
        handle = app.start(make_settings(redis.url, **overrides), registry=registry)
        gk = connect_gatekeeper(handle.check_port, handle.admin_port)
        served = Served(gk, registry, redis, "")
        started.append((handle, served))
        wait_serving(handle.check_port)
        served.code = new_code()
        written = gk.admin.RegisterPractitioner(register(served.code), timeout=10)
        assert normal_check(served, written.data_version).decisions[0].decision == enums_pb2.DECISION_ALLOW
        return served

    yield start
    for handle, served in reversed(started):
        # A wait outlives a cancelled call (it ends at min_version_wait or on proof), and the
        # interpreter joins the server's threads at exit: bring Redis back, so that the follower
        # proves the version absent and every wait ends now.
        if served.redis_stopped:
            served.redis = EmbeddedRedis(served.redis.data_dir, port=served.redis.port, appendonly=False).start()
        poll(lambda served=served: served.in_flight() == 0, timeout=60)  # type: ignore[misc]
        served.gk.close()
        handle.stop()
        served.redis.stop()


def normal_check(served: Served, min_data_version: int = 0) -> eligibility_pb2.CheckClaimResponse:
    request = claim(line("L1", served.code, "2025-03-10"), min_data_version=min_data_version)
    return served.gk.check.CheckClaim(request, timeout=30)  # type: ignore[no-any-return]


def waiter(served: Served, n: int, timeout: float = 120) -> Future[Any]:
    request = claim(line("W1", served.code, "2025-03-10"), claim_id=f"wait-{n}", min_data_version=UNREACHABLE)
    return served.gk.check.CheckClaim.future(request, timeout=timeout)  # type: ignore[no-any-return]


def decisions(response: eligibility_pb2.CheckClaimResponse) -> list[tuple[int, int]]:
    return [(d.decision, d.reason) for d in response.decisions]


def test_normal_checks_are_answered_while_64_waiters_hold_every_slot(serve: Callable[..., Served]) -> None:
    served = serve(max_waiting_checks=64, min_version_wait_ms=60_000)
    served.stop_redis()
    waiters = [waiter(served, n) for n in range(64)]
    poll(lambda: served.in_flight() >= 64, timeout=60)

    for _ in range(20):
        assert decisions(normal_check(served)) == [(enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)]
    assert served.gk.check.GetPractitionerStatus(status_request(served.code, "2025-03-10"), timeout=30).known

    assert not any(w.done() for w in waiters)  # the normal checks were answered with all 64 still waiting
    for w in waiters:
        w.cancel()


def test_a_waiter_beyond_the_limit_is_answered_stale_at_once(serve: Callable[..., Served]) -> None:
    served = serve(max_waiting_checks=2, min_version_wait_ms=60_000)
    served.stop_redis()
    waiters = [waiter(served, n) for n in range(2)]
    poll(lambda: served.in_flight() >= 2, timeout=60)

    beyond = waiter(served, 99).result(timeout=60)

    assert decisions(beyond) == [STALE]
    assert not any(w.done() for w in waiters)  # answered while both slots were still taken
    assert served.metric("gatekeeper_stale_answers_total", cause="min_data_version") == 1
    for w in waiters:
        w.cancel()


def test_normal_checks_are_answered_among_64_closed_loop_waiters(serve: Callable[..., Served]) -> None:
    """Redis up: each wait ends once the follower proves the version absent; 64 clients ask again at once."""
    served = serve()
    stop = threading.Event()
    answers: list[object] = []

    def keep_waiting(n: int) -> None:
        def again(done: Future[Any]) -> None:
            answers.append(done.exception() or done.result())
            if not stop.is_set():
                waiter(served, n).add_done_callback(again)

        waiter(served, n).add_done_callback(again)

    for n in range(64):
        keep_waiting(n)
    try:
        poll(lambda: served.in_flight() >= 32, timeout=60)
        for _ in range(20):
            assert decisions(normal_check(served)) == [(enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)]
        poll(lambda: len(answers) >= 64, timeout=60)
    finally:
        stop.set()
    assert all(isinstance(a, eligibility_pb2.CheckClaimResponse) for a in answers[:64]), answers[:3]
    assert {tuple(decisions(a)[0]) for a in answers[:64]} == {STALE}  # type: ignore[arg-type]
    poll(lambda: served.in_flight() == 0, timeout=60)


def test_a_waiters_deadline_is_honoured(serve: Callable[..., Served]) -> None:
    served = serve(min_version_wait_ms=5_000)
    served.stop_redis()
    request = claim(line("D1", served.code, "2025-03-10"), min_data_version=UNREACHABLE)

    answer = outcome_of(served.gk.check.CheckClaim, request, timeout=0.2)

    if isinstance(answer, grpc.RpcError):
        assert answer.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    else:
        assert decisions(answer) == [STALE]
    poll(lambda: served.in_flight() == 0, timeout=60)
