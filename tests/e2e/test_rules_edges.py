"""The edges policy-rules.md now settles (issue: rules and house), one test per row, over gRPC, with the
agency's writes sent in the order the row gives them. National profile; every person is registered in
2024 first. Expected dates are worked out by hand from the rules.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis
from gatekeeper.v1 import registry_pb2
from service import app
from tests.conftest import Gatekeeper, connect_gatekeeper, make_settings, wait_serving
from tests.e2e.builders import (
    HOSPITAL,
    OTHER_HOSPITAL,
    file_request,
    iso,
    new_code,
    points,
    precondition,
    register,
    repair,
    rpc_error,
    timeline,
    withdraw,
)

S, T = "SUSPENDED", "TERMINATED"


@pytest.fixture(scope="module")
def gk(module_redis: EmbeddedRedis) -> Iterator[Gatekeeper]:
    handle = app.start(make_settings(module_redis.url, profile="national"), registry=CollectorRegistry())
    client = connect_gatekeeper(handle.check_port, handle.admin_port)
    try:
        wait_serving(handle.check_port)
        yield client
    finally:
        client.close()
        handle.stop()


def person(gk: Gatekeeper) -> str:
    code = new_code()
    gk.admin.RegisterPractitioner(register(code, "2024-01-01"), timeout=10)
    return code


def file_of(gk: Gatekeeper, code: str) -> registry_pb2.PractitionerFile:
    return gk.admin.GetPractitionerFile(file_request(code), timeout=10).file


def refused(gk: Gatekeeper, code: str, call: object, request: object) -> str:
    """Send a write that must be refused: FAILED_PRECONDITION, nothing changed; returns the description."""
    before = file_of(gk, code)
    error = rpc_error(call, request)  # type: ignore[arg-type]
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert file_of(gk, code) == before
    return str(precondition(error).violations[0].description)


def test_a_reduce_larger_than_the_total_on_its_day_is_refused(gk: Gatekeeper) -> None:
    """A: points 9 on 2025-11-15; then reduce 4 approved 2025-05-05 (rule 1)."""
    code = person(gk)
    gk.admin.RecordPoints(points(code, 9, "2025-11-15"), timeout=10)
    reason = refused(gk, code, gk.admin.ApplyRepair, repair(code, "2025-05-05", reduce_points=4))
    assert "reduces 4 points but the 2025 total on 2025-05-05 is 0" in reason
    assert timeline(file_of(gk, code)) == [(S, "2025-11-15", "2026-01-15")]


def test_a_withdrawal_empties_what_a_reduction_took_from(gk: Gatekeeper) -> None:
    """A: points 11 on 2026-09-23, 12 on 2026-10-26; reduce 5 on 2026-09-30; withdraw the 11 (rule 1)."""
    code = person(gk)
    eleven = points(code, 11, "2026-09-23")
    gk.admin.RecordPoints(eleven, timeout=10)
    gk.admin.RecordPoints(points(code, 12, "2026-10-26"), timeout=10)
    gk.admin.ApplyRepair(repair(code, "2026-09-30", reduce_points=5), timeout=10)
    written = gk.admin.WithdrawPoints(withdraw(eleven.decision_no, "2026-11-20"), timeout=10)
    assert timeline(written.file) == [(T, "2026-10-26", None)]
    assert iso(written.file.reregistration_allowed_from) == "2029-10-26"


def test_shortened_days_stay_cut_when_the_tier_rises(gk: Gatekeeper) -> None:
    """B: points 10 on 2027-03-23; shorten 22 days on 2027-04-02; points 1 on 2027-05-14 (rules 4, 7)."""
    code = person(gk)
    gk.admin.RecordPoints(points(code, 10, "2027-03-23"), timeout=10)
    gk.admin.ApplyRepair(repair(code, "2027-04-02", shorten_days=22), timeout=10)
    written = gk.admin.RecordPoints(points(code, 1, "2027-05-14"), timeout=10)
    assert timeline(written.file) == [(S, "2027-03-23", "2027-09-01")]  # 2027-09-23 less 22 days


def test_shortened_days_stay_cut_when_a_reduce_recomputes_the_end(gk: Gatekeeper) -> None:
    """B, the same when a reduce recomputes: 11 on 2027-03-23 (to 09-23), shorten 22, reduce 1 -> tier 10."""
    code = person(gk)
    gk.admin.RecordPoints(points(code, 11, "2027-03-23"), timeout=10)
    gk.admin.ApplyRepair(repair(code, "2027-04-02", shorten_days=22), timeout=10)
    written = gk.admin.ApplyRepair(repair(code, "2027-05-14", reduce_points=1), timeout=10)
    assert timeline(written.file) == [(S, "2027-03-23", "2027-07-01")]  # 2027-07-23 less 22 days


def test_a_reduce_with_nothing_to_act_on_keeps_the_granted_tier(gk: Gatekeeper) -> None:
    """C: points 9 on 2025-01-10; reduce 1 on 2025-04-01; points 1 on 2025-06-01 (rule 3)."""
    code = person(gk)
    gk.admin.RecordPoints(points(code, 9, "2025-01-10"), timeout=10)
    gk.admin.ApplyRepair(repair(code, "2025-04-01", reduce_points=1), timeout=10)
    written = gk.admin.RecordPoints(points(code, 1, "2025-06-01"), timeout=10)
    assert timeline(written.file) == [(S, "2025-01-10", "2025-03-10")]


def test_a_repair_that_would_shrink_an_accepted_reduce_is_refused(gk: Gatekeeper) -> None:
    """D: points 8 on 2025-03-01; reduce 5 on 05-01; then reduce 2 dated 04-01 (rule 8, cap 6 a year)."""
    code = person(gk)
    gk.admin.RecordPoints(points(code, 8, "2025-03-01"), timeout=10)
    accepted = repair(code, "2025-05-01", reduce_points=5)
    gk.admin.ApplyRepair(accepted, timeout=10)
    reason = refused(gk, code, gk.admin.ApplyRepair, repair(code, "2025-04-01", reduce_points=2))
    assert f"would leave repair {accepted.repair_no} taking 4 of its 5 points" in reason


def test_a_repair_that_would_shrink_an_accepted_shorten_is_refused(gk: Gatekeeper) -> None:
    """D, the shorten cap: 10 on 2025-03-01 ([03-01, 07-01), 122 days, cap 61); 50 days cut on 05-01;
    then 20 days dated 04-01 would leave the accepted one 41 of its 50 days."""
    code = person(gk)
    gk.admin.RecordPoints(points(code, 10, "2025-03-01"), timeout=10)
    accepted = repair(code, "2025-05-01", shorten_days=50)
    gk.admin.ApplyRepair(accepted, timeout=10)
    reason = refused(gk, code, gk.admin.ApplyRepair, repair(code, "2025-04-01", shorten_days=20))
    assert f"would leave repair {accepted.repair_no} taking 41 of its 50 days" in reason


def _terminated_in_march_2025(gk: Gatekeeper) -> str:
    code = person(gk)
    gk.admin.RecordPoints(points(code, 6, "2025-03-01"), timeout=10)
    gk.admin.RecordPoints(points(code, 6, "2025-03-02"), timeout=10)  # 12 by accumulation: ban to 2026-03-02
    return code


def test_a_later_years_total_reaching_12_during_a_termination_extends_the_ban(gk: Gatekeeper) -> None:
    """E: terminated 2025-03-02; 6 on 2026-01-10 and 6 on 2026-02-10; register 2026-03-02 (rule 5)."""
    code = _terminated_in_march_2025(gk)
    gk.admin.RecordPoints(points(code, 6, "2026-01-10"), timeout=10)
    written = gk.admin.RecordPoints(points(code, 6, "2026-02-10"), timeout=10)
    assert iso(written.file.reregistration_allowed_from) == "2027-02-10"
    request = register(code, "2026-03-02", institution_code=OTHER_HOSPITAL)
    reason = refused(gk, code, gk.admin.RegisterPractitioner, request)
    assert "may register again from 2027-02-10" in reason


def test_a_tier_reached_during_a_termination_is_served_from_the_registration(gk: Gatekeeper) -> None:
    """E: terminated 2025-03-02; 9 points on 2026-01-10; register 2026-03-02 (rule 5)."""
    code = _terminated_in_march_2025(gk)
    gk.admin.RecordPoints(points(code, 9, "2026-01-10"), timeout=10)
    written = gk.admin.RegisterPractitioner(register(code, "2026-03-02", institution_code=OTHER_HOSPITAL), timeout=10)
    assert timeline(written.file) == [(T, "2025-03-02", "2026-03-02"), (S, "2026-03-02", "2026-05-02")]


def test_a_reduce_cancels_the_queued_new_year_suspension(gk: Gatekeeper) -> None:
    """F: points 9 on 2026-12-06; points 9 on 2027-01-01 (queued behind); reduce 1 on 2027-01-02 (rule 7)."""
    code = person(gk)
    gk.admin.RecordPoints(points(code, 9, "2026-12-06"), timeout=10)
    queued = gk.admin.RecordPoints(points(code, 9, "2027-01-01"), timeout=10)
    assert timeline(queued.file) == [(S, "2026-12-06", "2027-02-06"), (S, "2027-02-06", "2027-04-06")]
    written = gk.admin.ApplyRepair(repair(code, "2027-01-02", reduce_points=1), timeout=10)
    assert timeline(written.file) == [(S, "2026-12-06", "2027-02-06")]


def test_on_one_day_registrations_come_before_points(gk: Gatekeeper) -> None:
    """H: 6 + 6 on 2025-03-01 (ban to 2026-03-01); register 2026-03-01; points 9 on 2026-03-01 (Terms)."""
    code = person(gk)
    gk.admin.RecordPoints(points(code, 6, "2025-03-01"), timeout=10)
    gk.admin.RecordPoints(points(code, 6, "2025-03-01"), timeout=10)
    gk.admin.RegisterPractitioner(register(code, "2026-03-01", institution_code=HOSPITAL), timeout=10)
    written = gk.admin.RecordPoints(points(code, 9, "2026-03-01"), timeout=10)
    assert timeline(written.file) == [(T, "2025-03-01", "2026-03-01"), (S, "2026-03-01", "2026-05-01")]
