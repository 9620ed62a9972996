"""Idempotency under concurrency: a client that retries (or two agency tools sending the same document)
must still get the document written once.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tests.conftest import Gatekeeper
from tests.e2e.builders import file_request, new_code, points, register, repair, withdraw

ROUNDS = 30  # a round shows the race about 1 time in 3 or more on 2 cores; 30 rounds make a miss < 1e-4
SENDERS = 8


def send_together(gk: Gatekeeper, method: str, request: Any) -> list[Any]:
    """The same request from SENDERS clients at once, each on its own channel (its own peer).

    Returns each sender's response, or the status code name of its error.
    """
    channels = [grpc.insecure_channel(f"127.0.0.1:{gk.admin_port}") for _ in range(SENDERS)]

    def send(call: Callable[..., Any]) -> Any:
        try:
            return call(request, timeout=30)
        except grpc.RpcError as error:
            return error.code().name  # type: ignore[attr-defined]

    try:
        calls: list[Callable[..., Any]] = [getattr(gk.admin.__class__(ch), method) for ch in channels]
        with ThreadPoolExecutor(max_workers=SENDERS) as pool:
            return list(pool.map(send, calls))
    finally:
        for channel in channels:
            channel.close()


def test_sequential_resends_are_written_once(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    code = new_code()
    request = points(code, 10, "2025-03-01")
    answers = [gk.admin.RecordPoints(request, timeout=10) for _ in range(SENDERS)]
    assert all(answer == answers[0] for answer in answers)
    file = gk.admin.GetPractitionerFile(file_request(code), timeout=10).file
    assert len(file.points_entries) == 1
    assert dict(file.year_totals) == {2025: 10}


def test_concurrent_different_documents_are_all_written(shared_gatekeeper: Gatekeeper) -> None:
    """Optimistic concurrency retries: 8 one-point decisions for one person at once all count."""
    gk = shared_gatekeeper
    code = new_code()
    requests = [points(code, 1, f"2025-03-{day:02d}") for day in range(1, SENDERS + 1)]
    with ThreadPoolExecutor(max_workers=SENDERS) as pool:
        answers = list(pool.map(lambda r: gk.admin.RecordPoints(r, timeout=30), requests))
    assert len({answer.data_version for answer in answers}) == SENDERS
    file = gk.admin.GetPractitionerFile(file_request(code), timeout=10).file
    assert len(file.points_entries) == SENDERS
    assert dict(file.year_totals) == {2025: SENDERS}
    assert sorted(a.data_version for a in file.audit) == sorted(answer.data_version for answer in answers)


@pytest.mark.parametrize("kind", ["points", "repair", "withdraw"])
def test_concurrent_resends_are_written_once(shared_gatekeeper: Gatekeeper, kind: str) -> None:
    gk = shared_gatekeeper
    for _ in range(ROUNDS):
        code = new_code()
        gk.admin.RegisterPractitioner(register(code), timeout=10)
        decision = points(code, 10, "2025-03-01")
        if kind == "points":
            answers = send_together(gk, "RecordPoints", decision)
        elif kind == "repair":
            gk.admin.RecordPoints(decision, timeout=10)
            answers = send_together(gk, "ApplyRepair", repair(code, "2025-04-15", reduce_points=1))
        else:
            gk.admin.RecordPoints(decision, timeout=10)
            answers = send_together(gk, "WithdrawPoints", withdraw(decision.decision_no, "2025-04-01"))
        assert not [a for a in answers if isinstance(a, str)], f"{code}: senders got errors {answers}"
        file = gk.admin.GetPractitionerFile(file_request(code), timeout=10).file
        assert len(file.points_entries) == 1, f"{code}: the decision was recorded {len(file.points_entries)} times"
        assert len(file.repairs) == (1 if kind == "repair" else 0), f"{code}: {len(file.repairs)} repairs"
        assert dict(file.year_totals) == {"points": {2025: 10}, "repair": {2025: 9}, "withdraw": {}}[kind]
        assert all(answer == answers[0] for answer in answers), f"{code}: senders got different first results"
