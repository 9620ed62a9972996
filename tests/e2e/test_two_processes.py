"""Two real `gatekeeper serve` processes on one Redis: a write through one is read through the other."""

from __future__ import annotations

from collections.abc import Callable

from gatekeeper.v1 import enums_pb2
from tests.conftest import Gatekeeper
from tests.e2e.builders import (
    dated_claim,
    file_request,
    new_code,
    outcomes,
    points,
    poll,
    register,
    withdraw,
)


def test_write_on_one_process_is_visible_on_the_other(spawn_gatekeeper: Callable[..., Gatekeeper]) -> None:
    a = spawn_gatekeeper()
    b = spawn_gatekeeper()
    code = new_code()
    days = ["2025-03-09", "2025-03-10", "2025-05-09", "2025-05-10"]

    # Read your own write across processes: min_data_version makes B wait for A's write.
    a.admin.RegisterPractitioner(register(code), timeout=10)
    decision = points(code, 9, "2025-03-10")
    written = a.admin.RecordPoints(decision, timeout=10)
    response = b.check.CheckClaim(dated_claim(code, days, min_data_version=written.data_version), timeout=10)
    assert response.data_version >= written.data_version
    assert [x[:2] for x in outcomes(response).values()] == [
        ("ALLOW", "ELIGIBLE"),
        ("REJECT", "SUSPENDED"),
        ("REJECT", "SUSPENDED"),
        ("ALLOW", "ELIGIBLE"),
    ]

    # Without min_data_version: B catches up from the change feed on its own.
    withdrawn = b.admin.WithdrawPoints(withdraw(decision.decision_no, "2025-04-01"), timeout=10)
    assert withdrawn.data_version > written.data_version

    def a_sees_the_withdrawal() -> bool:
        answer = a.check.CheckClaim(dated_claim(code, ["2025-03-10"]), timeout=10)
        return (
            answer.decisions[0].decision == enums_pb2.DECISION_ALLOW and answer.data_version >= withdrawn.data_version
        )

    poll(a_sees_the_withdrawal, timeout=30)

    again = a.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)

    def b_sees_the_termination() -> bool:
        answer = b.check.CheckClaim(dated_claim(code, ["2025-07-01"]), timeout=10)
        return answer.decisions[0].reason == enums_pb2.REASON_TERMINATED

    poll(b_sees_the_termination, timeout=30)

    # Both admin ports read the same file at the same version.
    file_a = a.admin.GetPractitionerFile(file_request(code), timeout=10)
    file_b = b.admin.GetPractitionerFile(file_request(code), timeout=10)
    assert file_a == file_b
    assert file_a.data_version == again.data_version
    assert [entry.method for entry in file_a.file.audit] == [
        "RegisterPractitioner",
        "RecordPoints",
        "WithdrawPoints",
        "RecordPoints",
    ]

    # The same document resent through the other process is written once and answers the first result.
    other = new_code()
    request = points(other, 10, "2025-03-01")
    first = a.admin.RecordPoints(request, timeout=10)
    assert b.admin.RecordPoints(request, timeout=10) == first
    file = b.admin.GetPractitionerFile(file_request(other), timeout=10).file
    assert len(file.points_entries) == 1
    assert len(file.audit) == 1
