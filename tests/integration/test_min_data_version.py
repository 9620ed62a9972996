"""CheckClaim's min_data_version: read your own admin write, never answer from older data."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Callable
from datetime import date

from google.type.date_pb2 import Date

from cache.store import StreamEntry
from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2
from tests.integration.helpers import (
    DATASET_A,
    EXPECTED_A,
    HOSPITAL,
    LINES,
    STALE,
    Server,
    check,
    load,
    outcomes,
    poll,
    write_dataset,
)

NEW = "D540102000042"
DAY = date(2025, 4, 1)
ELIGIBLE = (enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)
SUSPENDED = (enums_pb2.DECISION_REJECT, enums_pb2.REASON_SUSPENDED)


def loaded_server(serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path, wait_ms: int) -> Server:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    server = serve(redis_url, min_version_wait_ms=wait_ms)
    assert server.replica.wait_for(1, 10)
    return server


def test_a_version_that_never_comes_is_review_stale_data(
    serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path
) -> None:
    server = loaded_server(serve, redis_url, tmp_path, wait_ms=100)

    response = check(server.gk, min_data_version=1_000_000)

    assert outcomes(response) == [STALE] * len(LINES)
    assert response.data_version == 1  # what the replica held, not what was asked for
    for decision in response.decisions:
        assert decision.status == enums_pb2.PRACTITIONER_STATUS_UNSPECIFIED
        assert not decision.HasField("status_since")
        assert not decision.HasField("status_until")
    assert server.metric("gatekeeper_stale_answers_total", {"cause": "min_data_version"}) == 1
    assert server.metric("gatekeeper_decisions_total", {"decision": "REVIEW", "reason": "STALE_DATA"}) == len(LINES)

    # Versions already held are decided at once; the stale answer poisoned nothing.
    assert outcomes(check(server.gk, min_data_version=1)) == EXPECTED_A
    assert outcomes(check(server.gk)) == EXPECTED_A


def test_a_check_reads_its_own_admin_writes(
    serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path
) -> None:
    server = loaded_server(serve, redis_url, tmp_path, wait_ms=5000)
    admin, line = server.gk.admin, [(NEW, DAY)]

    registered = admin.RegisterPractitioner(
        registry_pb2.RegisterPractitionerRequest(
            practitioner_code=NEW,
            institution_code=HOSPITAL,
            category=enums_pb2.PRACTITIONER_CATEGORY_NURSE,
            registered_on=Date(year=2024, month=6, day=1),
        ),
        timeout=10,
    )
    response = check(server.gk, line, min_data_version=registered.data_version)
    assert response.data_version >= registered.data_version == 2
    assert outcomes(response) == [ELIGIBLE]

    recorded = admin.RecordPoints(
        registry_pb2.RecordPointsRequest(
            decision_no="XZ-RYW-1",
            practitioner_code=NEW,
            institution_code=HOSPITAL,
            points=10,
            responsibility=enums_pb2.RESPONSIBILITY_MAIN,
            decided_on=Date(year=2025, month=3, day=20),
        ),
        timeout=10,
    )
    response = check(server.gk, line, min_data_version=recorded.data_version)
    assert response.data_version >= recorded.data_version == 3
    assert outcomes(response) == [SUSPENDED]
    (decision,) = response.decisions
    assert (decision.status_until.year, decision.status_until.month, decision.status_until.day) == (2025, 7, 20)

    withdrawn = admin.WithdrawPoints(
        registry_pb2.WithdrawPointsRequest(
            decision_no="XZ-RYW-1", withdrawn_on=Date(year=2025, month=3, day=25), reason="appeal"
        ),
        timeout=10,
    )
    response = check(server.gk, line, min_data_version=withdrawn.data_version)
    assert response.data_version >= withdrawn.data_version == 4
    assert outcomes(response) == [ELIGIBLE]
    assert server.metric("gatekeeper_stale_answers_total", {"cause": "min_data_version"}) == 0


def test_a_check_waiting_for_a_version_is_answered_when_it_arrives(
    serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path
) -> None:
    server = loaded_server(serve, redis_url, tmp_path, wait_ms=10_000)
    # The replica receives the write but holds it back until the check is waiting for it: the store
    # has the version (so the wait must not end early), the replica does not have it yet.
    gate = threading.Event()
    apply = server.replica.apply

    def held_back(entries: list[StreamEntry]) -> bool:
        gate.wait(15)
        return apply(entries)

    server.replica.apply = held_back  # type: ignore[method-assign]
    written = server.gk.admin.RegisterPractitioner(
        registry_pb2.RegisterPractitionerRequest(
            practitioner_code=NEW,
            institution_code=HOSPITAL,
            category=enums_pb2.PRACTITIONER_CATEGORY_DOCTOR,
            registered_on=Date(year=2024, month=6, day=1),
        ),
        timeout=10,
    )
    assert written.data_version == 2
    answers: list[eligibility_pb2.CheckClaimResponse] = []
    waiting = threading.Thread(target=lambda: answers.append(check(server.gk, [(NEW, DAY)], min_data_version=2)))
    waiting.start()
    in_flight = {"grpc_type": "unary", "grpc_service": "gatekeeper.v1.EligibilityService", "grpc_method": "CheckClaim"}
    poll(lambda: server.metric("grpc_server_started_total", in_flight) == 1, what="the check to be in flight")
    assert server.replica.state.version == 1
    gate.set()
    waiting.join(15)

    (response,) = answers
    assert response.data_version == 2
    assert outcomes(response) == [ELIGIBLE]
