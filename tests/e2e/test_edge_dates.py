"""Dates at the ends of the calendar. Requests accept civil dates from 1950-01-01 to 2199-12-31
(service.validation.EARLIEST/LATEST), so date arithmetic (bans in years, suspensions in months) never
leaves the calendar: anything outside is INVALID_ARGUMENT naming the field, never UNKNOWN.
"""

from __future__ import annotations

import grpc
import pytest

from gatekeeper.v1 import enums_pb2
from tests.conftest import Gatekeeper
from tests.e2e.builders import (
    HOSPITAL,
    bad_fields,
    claim,
    line,
    new_code,
    outcome_of,
    points,
    register,
    status_request,
)


def test_dates_at_the_edges_of_the_range_are_answered(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    code = new_code()
    written = gk.admin.RegisterPractitioner(register(code, "2025-01-01"), timeout=10)
    gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    request = claim(
        line("first", code, "1950-01-01"),
        line("last", code, "2199-12-31"),
        min_data_version=written.data_version + 1,
    )
    decisions = gk.check.CheckClaim(request, timeout=10).decisions
    assert [d.line_id for d in decisions] == ["first", "last"]
    status = gk.check.GetPractitionerStatus(status_request(code, "2199-12-31", HOSPITAL), timeout=10)
    assert status.known


def test_dates_outside_the_range_are_invalid(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    code = new_code()
    answer = outcome_of(gk.check.CheckClaim, claim(line("a", code, "0001-01-01"), line("b", code, "9999-12-31")))
    assert isinstance(answer, grpc.RpcError)
    assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert bad_fields(answer) == {"lines[0].service_date", "lines[1].service_date"}


@pytest.mark.parametrize(("amount", "day"), [(9, "2199-12-01"), (12, "2199-06-01")])
def test_points_near_the_end_of_the_range_are_recorded(shared_gatekeeper: Gatekeeper, amount: int, day: str) -> None:
    gk = shared_gatekeeper
    code = new_code()
    gk.admin.RegisterPractitioner(register(code), timeout=10)
    written = gk.admin.RecordPoints(points(code, amount, day), timeout=10)
    assert written.file.timeline


@pytest.mark.parametrize("day", ["0001-01-01", "9998-06-01"])
def test_writes_outside_the_range_are_invalid(shared_gatekeeper: Gatekeeper, day: str) -> None:
    gk = shared_gatekeeper
    code = new_code()
    answer = outcome_of(gk.admin.RecordPoints, points(code, 12, day))
    assert isinstance(answer, grpc.RpcError)
    assert answer.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "decided_on" in bad_fields(answer)


def test_a_termination_from_the_first_day_of_the_range_does_not_break_checks(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    code, bystander = new_code(), new_code()
    gk.admin.RegisterPractitioner(register(bystander), timeout=10)
    gk.admin.RegisterPractitioner(register(code, "1950-01-01"), timeout=10)
    version = gk.admin.RecordPoints(points(code, 12, "1950-01-01"), timeout=10).data_version
    request = claim(
        line("bystander", bystander, "2025-05-05"),
        line("person", code, "2025-05-05", care_type=enums_pb2.CARE_TYPE_EMERGENCY),
        min_data_version=version,
    )
    decisions = gk.check.CheckClaim(request, timeout=10).decisions
    assert [d.line_id for d in decisions] == ["bystander", "person"]
