"""Hypothesis over random sequences of agency writes, against a real server and Redis.

Properties: every write is idempotent (sending each request twice leaves the same file as once,
and the repeat answers with the first response), and a refused write changes nothing.
"""

from __future__ import annotations

from datetime import date, timedelta

import grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.v1 import registry_pb2
from tests.conftest import Gatekeeper
from tests.e2e.builders import file_request, new_code, new_doc, points, register, repair, sanction, withdraw

START = date(2025, 1, 1)
days = st.integers(min_value=0, max_value=800).map(lambda n: (START + timedelta(days=n)).isoformat())


@st.composite
def write_plans(draw: st.DrawFn) -> list[tuple[str, dict[str, object]]]:
    """Abstract writes for one person; document numbers are filled in per run."""
    plan: list[tuple[str, dict[str, object]]] = [("register", {"on": "2024-06-01"})]
    for _ in range(draw(st.integers(min_value=1, max_value=7))):
        kind = draw(st.sampled_from(["points", "points", "withdraw", "reduce", "shorten", "sanction"]))
        plan.append((kind, {"on": draw(days), "n": draw(st.integers(min_value=1, max_value=12))}))
    return plan


def build(plan: list[tuple[str, dict[str, object]]], code: str) -> list[tuple[str, object]]:
    """Concrete requests; a withdrawal names the latest points decision planned before it."""
    requests: list[tuple[str, object]] = []
    last_points: str | None = None
    for kind, args in plan:
        on, n = str(args["on"]), int(str(args.get("n", 1)))
        if kind == "register":
            requests.append(("RegisterPractitioner", register(code, on)))
        elif kind == "points":
            last_points = new_doc("P")
            requests.append(("RecordPoints", points(code, n, on, decision_no=last_points)))
        elif kind == "withdraw" and last_points is not None:
            requests.append(("WithdrawPoints", withdraw(last_points, "2027-06-01")))
        elif kind == "reduce":
            requests.append(("ApplyRepair", repair(code, on, reduce_points=min(n, 3))))
        elif kind == "shorten":
            requests.append(("ApplyRepair", repair(code, on, shorten_days=n)))
        elif kind == "sanction":
            one = registry_pb2.ImportSanctionsRequest(sanctions=[sanction(code, on, None if n > 6 else "2027-01-01")])
            requests.append(("ImportSanctions", one))
    return requests


def send(gk: Gatekeeper, method: str, request: object) -> object:
    try:
        return getattr(gk.admin, method)(request, timeout=10)
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined]


def comparable(file: registry_pb2.PractitionerFile) -> tuple[object, ...]:
    """The file without what legitimately differs between two runs: codes, numbers, audit."""
    return (
        [(p.status, p.since, p.until) for p in file.timeline],
        dict(file.year_totals),
        [(p.points, p.withdrawn) for p in file.points_entries],
        [(r.reduce_points, r.shorten_suspension_days) for r in file.repairs],
        len(file.sanctions),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=write_plans())
def test_writes_are_idempotent_and_refusals_change_nothing(gatekeeper: Gatekeeper, plan: list) -> None:  # type: ignore[type-arg]
    once, twice = new_code(), new_code()
    for method, request in build(plan, once):
        send(gatekeeper, method, request)
    for method, request in build(plan, twice):
        before = (
            gatekeeper.admin.GetPractitionerFile(file_request(twice), timeout=10).file
            if method != "RegisterPractitioner"
            else None
        )
        first = send(gatekeeper, method, request)
        if isinstance(first, grpc.StatusCode):  # refused: nothing changed
            after = gatekeeper.admin.GetPractitionerFile(file_request(twice), timeout=10).file
            assert before is not None
            assert after == before
        assert send(gatekeeper, method, request) == first  # the repeat answers with the first result
    file_once = gatekeeper.admin.GetPractitionerFile(file_request(once), timeout=10).file
    file_twice = gatekeeper.admin.GetPractitionerFile(file_request(twice), timeout=10).file
    assert comparable(file_twice) == comparable(file_once)
