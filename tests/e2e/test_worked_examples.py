"""Every worked example of policy-rules.md (Tibet profile), end to end.

Admin writes over gRPC (RegisterPractitioner first, so lines are decided on status alone), then
CheckClaim lines on the boundary dates with min_data_version = the write's data_version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from gatekeeper.v1 import eligibility_pb2, enums_pb2
from tests.conftest import Gatekeeper
from tests.e2e.builders import (
    HOSPITAL,
    POLICY_ID,
    assert_one_sentence,
    d,
    dated_claim,
    file_request,
    iso,
    new_code,
    outcomes,
    points,
    precondition,
    register,
    rpc_error,
    status_request,
    timeline,
    withdraw,
)

Outcome = tuple[str, str, str, str | None, str | None]


def allowed(since: str | None = None, until: str | None = None) -> Outcome:
    return ("ALLOW", "ELIGIBLE", "NORMAL", since, until)


def suspended(since: str, until: str) -> Outcome:
    return ("REJECT", "SUSPENDED", "SUSPENDED", since, until)


def terminated(since: str, until: str | None = None) -> Outcome:
    return ("REJECT", "TERMINATED", "TERMINATED", since, until)


def check(gk: Gatekeeper, code: str, days: Iterable[str], version: int, **fields: Any) -> dict[str, Outcome]:
    """Decide one line per day and check what every response must carry."""
    days = list(days)
    request = dated_claim(code, days, min_data_version=version, **fields)
    response = gk.check.CheckClaim(request, timeout=10)
    assert response.claim_id == request.claim_id
    assert response.data_version >= version
    assert response.policy_id == POLICY_ID
    assert [decision.line_id for decision in response.decisions] == days
    for decision in response.decisions:
        assert decision.practitioner_code == code
        assert_one_sentence(decision.message)
    return outcomes(response)


@pytest.fixture
def gk(shared_gatekeeper: Gatekeeper) -> Gatekeeper:
    return shared_gatekeeper


def registered(gk: Gatekeeper, on: str = "2025-01-01") -> str:
    code = new_code()
    gk.admin.RegisterPractitioner(register(code, on), timeout=10)
    return code


# --- 9 points effective 2025-03-10 -> suspended [2025-03-10, 2025-05-10) -----------------------------------------


@pytest.mark.parametrize("decided_on", ["2025-03-10", "2025-03-01"], ids=["decided-that-day", "decided-earlier"])
def test_nine_points_suspend_for_two_months(gk: Gatekeeper, decided_on: str) -> None:
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 9, decided_on, effective_on="2025-03-10"), timeout=10)
    assert timeline(written.file) == [("SUSPENDED", "2025-03-10", "2025-05-10")]
    assert dict(written.file.year_totals) == {2025: 9}

    got = check(gk, code, ["2025-03-09", "2025-03-10", "2025-05-09", "2025-05-10"], written.data_version)
    assert got == {
        "2025-03-09": allowed(until="2025-03-10"),
        "2025-03-10": suspended("2025-03-10", "2025-05-10"),
        "2025-05-09": suspended("2025-03-10", "2025-05-10"),
        "2025-05-10": allowed(since="2025-05-10"),
    }


def test_suspension_status_for_appointment_platforms(gk: Gatekeeper) -> None:
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    # Status reads the replica without min_data_version; a check with it makes sure the write is there.
    check(gk, code, ["2025-03-10"], written.data_version)
    status = gk.check.GetPractitionerStatus(status_request(code, "2025-05-09", HOSPITAL), timeout=10)
    assert status.practitioner_code == code
    assert status.known
    assert status.status == enums_pb2.PRACTITIONER_STATUS_SUSPENDED
    assert (iso(status.status_since), iso(status.status_until)) == ("2025-03-10", "2025-05-10")
    assert status.registered
    assert not status.HasField("reregistration_allowed_from")
    assert status.data_version >= written.data_version
    after = gk.check.GetPractitionerStatus(status_request(code, "2025-05-10", HOSPITAL), timeout=10)
    assert after.status == enums_pb2.PRACTITIONER_STATUS_NORMAL
    assert iso(after.status_since) == "2025-05-10"
    assert not after.HasField("status_until")


def test_withdrawal_makes_rejected_lines_payable_again(gk: Gatekeeper) -> None:
    code = registered(gk)
    decision = points(code, 9, "2025-03-10")
    written = gk.admin.RecordPoints(decision, timeout=10)
    days = ["2025-03-09", "2025-03-10", "2025-05-09", "2025-05-10"]
    before = check(gk, code, days, written.data_version)
    assert before["2025-03-10"][0] == "REJECT"
    assert before["2025-05-09"][0] == "REJECT"

    withdrawn = gk.admin.WithdrawPoints(withdraw(decision.decision_no, "2025-04-20", "appeal upheld"), timeout=10)
    assert withdrawn.data_version > written.data_version
    assert timeline(withdrawn.file) == []
    assert withdrawn.file.year_totals.get(2025, 0) == 0
    (entry,) = withdrawn.file.points_entries
    assert entry.decision_no == decision.decision_no
    assert entry.withdrawn
    assert iso(entry.withdrawn_on) == "2025-04-20"
    assert entry.withdrawal_reason == "appeal upheld"

    # Treated as never made: the past is rewritten too, every line is payable.
    assert check(gk, code, days, withdrawn.data_version) == dict.fromkeys(days, allowed())


# --- 5 points on 2025-02-01, then 4 on 2025-06-15 -> suspended [2025-06-15, 2025-08-15) ------------------------


def test_points_add_up_within_the_year(gk: Gatekeeper) -> None:
    code = registered(gk)
    first = gk.admin.RecordPoints(points(code, 5, "2025-02-01"), timeout=10)
    days = ["2025-06-14", "2025-06-15", "2025-08-14", "2025-08-15"]
    assert check(gk, code, days, first.data_version) == dict.fromkeys(days, allowed())

    second = gk.admin.RecordPoints(points(code, 4, "2025-06-15"), timeout=10)
    assert dict(second.file.year_totals) == {2025: 9}
    assert check(gk, code, days, second.data_version) == {
        "2025-06-14": allowed(until="2025-06-15"),
        "2025-06-15": suspended("2025-06-15", "2025-08-15"),
        "2025-08-14": suspended("2025-06-15", "2025-08-15"),
        "2025-08-15": allowed(since="2025-08-15"),
    }


# --- 9 on 2025-04-01, then 1 more on 2025-04-20 -> one suspension [2025-04-01, 2025-08-01) ------------------------


def test_rising_tier_extends_the_running_suspension(gk: Gatekeeper) -> None:
    code = registered(gk)
    first = gk.admin.RecordPoints(points(code, 9, "2025-04-01"), timeout=10)
    days = ["2025-03-31", "2025-04-01", "2025-05-31", "2025-06-01", "2025-07-31", "2025-08-01"]
    assert check(gk, code, days, first.data_version) == {
        "2025-03-31": allowed(until="2025-04-01"),
        "2025-04-01": suspended("2025-04-01", "2025-06-01"),
        "2025-05-31": suspended("2025-04-01", "2025-06-01"),
        "2025-06-01": allowed(since="2025-06-01"),
        "2025-07-31": allowed(since="2025-06-01"),
        "2025-08-01": allowed(since="2025-06-01"),
    }

    second = gk.admin.RecordPoints(points(code, 1, "2025-04-20"), timeout=10)
    assert timeline(second.file) == [("SUSPENDED", "2025-04-01", "2025-08-01")]  # one period, not two
    assert dict(second.file.year_totals) == {2025: 10}
    assert check(gk, code, days, second.data_version) == {
        "2025-03-31": allowed(until="2025-04-01"),
        "2025-04-01": suspended("2025-04-01", "2025-08-01"),
        "2025-05-31": suspended("2025-04-01", "2025-08-01"),
        "2025-06-01": suspended("2025-04-01", "2025-08-01"),
        "2025-07-31": suspended("2025-04-01", "2025-08-01"),
        "2025-08-01": allowed(since="2025-08-01"),
    }


# --- 12 points in one decision on 2025-07-01 -> terminated, re-registration from 2028-07-01 -------------------------


def test_twelve_points_terminate_with_a_three_year_ban(gk: Gatekeeper) -> None:
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)
    assert timeline(written.file) == [("TERMINATED", "2025-07-01", None)]
    assert iso(written.file.reregistration_allowed_from) == "2028-07-01"

    days = ["2025-06-30", "2025-07-01", "2026-07-01", "2028-06-30", "2028-07-01"]
    assert check(gk, code, days, written.data_version) == {
        "2025-06-30": allowed(until="2025-07-01"),
        "2025-07-01": terminated("2025-07-01"),
        "2026-07-01": terminated("2025-07-01"),
        "2028-06-30": terminated("2025-07-01"),
        "2028-07-01": terminated("2025-07-01"),  # open-ended until the person registers again
    }
    status = gk.check.GetPractitionerStatus(status_request(code, "2026-01-01", HOSPITAL), timeout=10)
    assert status.status == enums_pb2.PRACTITIONER_STATUS_TERMINATED
    assert iso(status.status_since) == "2025-07-01"
    assert not status.HasField("status_until")
    assert iso(status.reregistration_allowed_from) == "2028-07-01"
    assert not status.registered  # a termination ends every registration


def test_terminated_person_registers_again_when_the_ban_ends(gk: Gatekeeper) -> None:
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)
    file_before = gk.admin.GetPractitionerFile(file_request(code), timeout=10)

    error = rpc_error(gk.admin.RegisterPractitioner, register(code, "2028-06-30"))
    precondition(error)
    assert "2028-07-01" in error.details()  # type: ignore[attr-defined]
    assert gk.admin.GetPractitionerFile(file_request(code), timeout=10) == file_before

    again = gk.admin.RegisterPractitioner(register(code, "2028-07-01"), timeout=10)
    assert timeline(again.file) == [("TERMINATED", "2025-07-01", "2028-07-01")]
    assert not again.file.HasField("reregistration_allowed_from")
    days = ["2025-07-01", "2028-06-30", "2028-07-01", "2029-01-01"]
    assert check(gk, code, days, again.data_version) == {
        "2025-07-01": terminated("2025-07-01", "2028-07-01"),
        "2028-06-30": terminated("2025-07-01", "2028-07-01"),
        "2028-07-01": allowed(since="2028-07-01"),
        "2029-01-01": allowed(since="2028-07-01"),
    }
    status = gk.check.GetPractitionerStatus(status_request(code, "2028-07-01", HOSPITAL), timeout=10)
    assert status.status == enums_pb2.PRACTITIONER_STATUS_NORMAL
    assert status.registered


# --- 8 points in December 2025 and 1 in January 2026 -> no suspension ---------------------------------------------


def test_totals_restart_on_the_first_of_january(gk: Gatekeeper) -> None:
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 8, "2025-12-01"), timeout=10)
    written = gk.admin.RecordPoints(points(code, 1, "2026-01-15"), timeout=10)
    assert timeline(written.file) == []
    assert dict(written.file.year_totals) == {2025: 8, 2026: 1}
    days = ["2025-12-01", "2025-12-31", "2026-01-01", "2026-01-15", "2026-03-15"]
    assert check(gk, code, days, written.data_version) == dict.fromkeys(days, allowed())


# --- A suspended person's emergency line is allowed with REASON_EMERGENCY_EXCEPTION --------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"care_type": enums_pb2.CARE_TYPE_EMERGENCY}, "EMERGENCY_EXCEPTION"),
        ({"med_type": "13"}, "EMERGENCY_EXCEPTION"),
        ({"med_type": "24"}, "EMERGENCY_EXCEPTION"),
        ({"care_type": enums_pb2.CARE_TYPE_UNSPECIFIED, "med_type": "13"}, "EMERGENCY_EXCEPTION"),
        ({"care_type": enums_pb2.CARE_TYPE_RESCUE}, "RESCUE_EXCEPTION"),
    ],
    ids=["care-emergency", "med-type-13", "med-type-24", "unspecified-13", "care-rescue"],
)
def test_emergency_care_of_a_suspended_person_is_allowed(gk: Gatekeeper, fields: dict[str, Any], reason: str) -> None:
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    got = check(gk, code, ["2025-03-10", "2025-05-09"], written.data_version, **fields)
    window = ("SUSPENDED", "2025-03-10", "2025-05-10")
    assert got == {"2025-03-10": ("ALLOW", reason, *window), "2025-05-09": ("ALLOW", reason, *window)}


@pytest.mark.parametrize(
    "fields",
    [
        {"care_type": enums_pb2.CARE_TYPE_ROUTINE},
        {"care_type": enums_pb2.CARE_TYPE_ROUTINE, "med_type": "13"},  # med_type counts only when care is unspecified
        {"med_type": "11"},
    ],
    ids=["routine", "routine-with-13", "med-type-11"],
)
def test_routine_care_of_a_suspended_person_is_rejected(gk: Gatekeeper, fields: dict[str, Any]) -> None:
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    got = check(gk, code, ["2025-03-10"], written.data_version, **fields)
    assert got == {"2025-03-10": suspended("2025-03-10", "2025-05-10")}


def test_tibet_exception_also_covers_termination(gk: Gatekeeper) -> None:
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)
    got = check(gk, code, ["2025-07-01", "2026-02-02"], written.data_version, care_type=enums_pb2.CARE_TYPE_EMERGENCY)
    expected = ("ALLOW", "EMERGENCY_EXCEPTION", "TERMINATED", "2025-07-01", None)
    assert got == {"2025-07-01": expected, "2026-02-02": expected}


def test_mixed_claim_decides_each_line_on_its_own_date(gk: Gatekeeper) -> None:
    """One claim, lines around the boundaries, routine and emergency: same order as sent."""
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    request = eligibility_pb2.CheckClaimRequest(
        claim_id="mixed",
        institution_code=HOSPITAL,
        min_data_version=written.data_version,
        lines=[
            eligibility_pb2.ClaimLine(line_id="z", practitioner_code=code, service_date=d("2025-05-10")),
            eligibility_pb2.ClaimLine(line_id="a", practitioner_code=code, service_date=d("2025-03-10")),
            eligibility_pb2.ClaimLine(
                line_id="m",
                practitioner_code=code,
                service_date=d("2025-04-01"),
                care_type=enums_pb2.CARE_TYPE_EMERGENCY,
            ),
            eligibility_pb2.ClaimLine(line_id="b", practitioner_code=code, service_date=d("2025-03-09")),
        ],
    )
    response = gk.check.CheckClaim(request, timeout=10)
    assert [(x.line_id, x.decision) for x in response.decisions] == [
        ("z", enums_pb2.DECISION_ALLOW),
        ("a", enums_pb2.DECISION_REJECT),
        ("m", enums_pb2.DECISION_ALLOW),
        ("b", enums_pb2.DECISION_ALLOW),
    ]
    assert response.decisions[2].reason == enums_pb2.REASON_EMERGENCY_EXCEPTION
