"""Further rules of policy-rules.md end to end: later tiers, accumulated termination, new year, repairs,
external sanctions, registration and pharmacy semantics, and stale data.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import grpc
import pytest

from gatekeeper.v1 import enums_pb2, registry_pb2
from service.convert import today_in_china
from tests.conftest import Gatekeeper
from tests.e2e.builders import (
    HOSPITAL,
    OTHER_HOSPITAL,
    PHARMACY,
    claim,
    d,
    dated_claim,
    iso,
    line,
    new_code,
    outcome,
    outcomes,
    points,
    precondition,
    register,
    repair,
    rpc_error,
    sanction,
    status_request,
    timeline,
    withdraw,
)


@pytest.fixture
def gk(shared_gatekeeper: Gatekeeper) -> Gatekeeper:
    return shared_gatekeeper


def registered(gk: Gatekeeper, on: str = "2025-01-01", institution_code: str = HOSPITAL) -> str:
    code = new_code()
    gk.admin.RegisterPractitioner(register(code, on, institution_code=institution_code), timeout=10)
    return code


def decisions(gk: Gatekeeper, code: str, days: list[str], version: int, **fields: Any) -> dict[str, tuple[str, str]]:
    """{day: (decision, reason)} for one line per day."""
    response = gk.check.CheckClaim(dated_claim(code, days, min_data_version=version, **fields), timeout=10)
    return {day: got[:2] for day, got in outcomes(response).items()}


ALLOW = ("ALLOW", "ELIGIBLE")
SUSPENDED = ("REJECT", "SUSPENDED")
TERMINATED = ("REJECT", "TERMINATED")


def test_higher_tier_after_the_suspension_ended_adds_the_difference(gk: Gatekeeper) -> None:
    """Rule 4: 9 on 03-01 ([03-01, 05-01)), 1 more on 06-01 -> a new period of 4-2 months from 06-01."""
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 9, "2025-03-01"), timeout=10)
    written = gk.admin.RecordPoints(points(code, 1, "2025-06-01"), timeout=10)
    assert timeline(written.file) == [
        ("SUSPENDED", "2025-03-01", "2025-05-01"),
        ("SUSPENDED", "2025-06-01", "2025-08-01"),
    ]
    days = ["2025-04-30", "2025-05-01", "2025-05-31", "2025-06-01", "2025-07-31", "2025-08-01"]
    assert decisions(gk, code, days, written.data_version) == {
        "2025-04-30": SUSPENDED,
        "2025-05-01": ALLOW,
        "2025-05-31": ALLOW,
        "2025-06-01": SUSPENDED,
        "2025-07-31": SUSPENDED,
        "2025-08-01": ALLOW,
    }


def test_accumulated_twelve_terminates_with_a_one_year_ban(gk: Gatekeeper) -> None:
    """Rule 5: 9 then 3 -> terminated on the second date, the running suspension ends there, ban 1 year."""
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 9, "2025-03-01"), timeout=10)
    written = gk.admin.RecordPoints(points(code, 3, "2025-04-01"), timeout=10)
    assert timeline(written.file) == [
        ("SUSPENDED", "2025-03-01", "2025-04-01"),
        ("TERMINATED", "2025-04-01", None),
    ]
    assert iso(written.file.reregistration_allowed_from) == "2026-04-01"
    response = gk.check.CheckClaim(
        dated_claim(code, ["2025-03-31", "2025-04-01"], min_data_version=written.data_version), timeout=10
    )
    got = outcomes(response)
    assert got["2025-03-31"] == ("REJECT", "SUSPENDED", "SUSPENDED", "2025-03-01", "2025-04-01")
    assert got["2025-04-01"] == ("REJECT", "TERMINATED", "TERMINATED", "2025-04-01", None)
    precondition(rpc_error(gk.admin.RegisterPractitioner, register(code, "2026-03-31")))
    again = gk.admin.RegisterPractitioner(register(code, "2026-04-01"), timeout=10)
    assert decisions(gk, code, ["2026-03-31", "2026-04-01"], again.data_version) == {
        "2026-03-31": TERMINATED,
        "2026-04-01": ALLOW,
    }


def test_a_second_twelve_point_decision_extends_the_ban(gk: Gatekeeper) -> None:
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)
    written = gk.admin.RecordPoints(points(code, 12, "2026-01-10"), timeout=10)
    assert iso(written.file.reregistration_allowed_from) == "2029-01-10"
    precondition(rpc_error(gk.admin.RegisterPractitioner, register(code, "2028-07-01")))
    gk.admin.RegisterPractitioner(register(code, "2029-01-10"), timeout=10)


def test_new_year_suspension_waits_for_the_running_one(gk: Gatekeeper) -> None:
    """Rule 6: 9 on 2025-12-01 -> [12-01, 02-01); 9 on 2026-01-10 starts when that one ends."""
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 9, "2025-12-01"), timeout=10)
    written = gk.admin.RecordPoints(points(code, 9, "2026-01-10"), timeout=10)
    assert dict(written.file.year_totals) == {2025: 9, 2026: 9}
    days = ["2025-11-30", "2025-12-01", "2026-01-31", "2026-02-01", "2026-03-31", "2026-04-01"]
    assert decisions(gk, code, days, written.data_version) == {
        "2025-11-30": ALLOW,
        "2025-12-01": SUSPENDED,
        "2026-01-31": SUSPENDED,
        "2026-02-01": SUSPENDED,
        "2026-03-31": SUSPENDED,
        "2026-04-01": ALLOW,
    }


def test_month_arithmetic_clamps_to_the_end_of_february(gk: Gatekeeper) -> None:
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 9, "2025-12-31"), timeout=10)
    assert timeline(written.file) == [("SUSPENDED", "2025-12-31", "2026-02-28")]
    assert decisions(gk, code, ["2026-02-27", "2026-02-28"], written.data_version) == {
        "2026-02-27": SUSPENDED,
        "2026-02-28": ALLOW,
    }


def test_reducing_points_recomputes_the_running_suspension(gk: Gatekeeper) -> None:
    """Rule 7: 10 on 03-01 ([03-01, 07-01)); -1 on 04-15 -> total 9, ends 03-01 + 2 months = 05-01."""
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 10, "2025-03-01"), timeout=10)
    written = gk.admin.ApplyRepair(repair(code, "2025-04-15", reduce_points=1), timeout=10)
    assert timeline(written.file) == [("SUSPENDED", "2025-03-01", "2025-05-01")]
    assert dict(written.file.year_totals) == {2025: 9}
    (entry,) = written.file.repairs
    assert entry.reduce_points == 1
    assert decisions(gk, code, ["2025-04-30", "2025-05-01"], written.data_version) == {
        "2025-04-30": SUSPENDED,
        "2025-05-01": ALLOW,
    }


def test_reducing_below_every_tier_ends_the_suspension_on_the_repair_day(gk: Gatekeeper) -> None:
    """Rule 7: past days are never rewritten."""
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    written = gk.admin.ApplyRepair(repair(code, "2025-04-01", reduce_points=2), timeout=10)
    assert timeline(written.file) == [("SUSPENDED", "2025-03-10", "2025-04-01")]
    assert decisions(gk, code, ["2025-03-10", "2025-03-31", "2025-04-01"], written.data_version) == {
        "2025-03-10": SUSPENDED,
        "2025-03-31": SUSPENDED,
        "2025-04-01": ALLOW,
    }


def test_shortening_moves_the_end_never_before_the_repair_day(gk: Gatekeeper) -> None:
    """Rule 8: [03-10, 05-10) shortened by 30 days on 04-20 would end 04-10: refused, as it would not
    take its full amount; 20 days end it on 04-20 exactly."""
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    error = rpc_error(gk.admin.ApplyRepair, repair(code, "2025-04-20", shorten_days=30))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ends on 2025-05-10, 20 days after 2025-04-20" in error.details()  # type: ignore[attr-defined]
    written = gk.admin.ApplyRepair(repair(code, "2025-04-20", shorten_days=20), timeout=10)
    assert timeline(written.file) == [("SUSPENDED", "2025-03-10", "2025-04-20")]
    assert decisions(gk, code, ["2025-04-19", "2025-04-20"], written.data_version) == {
        "2025-04-19": SUSPENDED,
        "2025-04-20": ALLOW,
    }


def test_withdrawing_the_terminating_decision_restores_everything(gk: Gatekeeper) -> None:
    """Rule 2: the termination disappears, and with it the end it put to the registration."""
    code = registered(gk)
    decision = points(code, 12, "2025-07-01")
    gk.admin.RecordPoints(decision, timeout=10)
    written = gk.admin.WithdrawPoints(withdraw(decision.decision_no, "2025-09-01"), timeout=10)
    assert timeline(written.file) == []
    assert not written.file.HasField("reregistration_allowed_from")
    assert decisions(gk, code, ["2025-07-01", "2026-01-01"], written.data_version) == {
        "2025-07-01": ALLOW,
        "2026-01-01": ALLOW,
    }


def test_withdrawing_the_first_decision_recomputes_a_later_tier(gk: Gatekeeper) -> None:
    """9 on 04-01 + 1 on 04-20; withdrawing the 9 leaves a total of 1: no suspension at all."""
    code = registered(gk)
    first = points(code, 9, "2025-04-01")
    gk.admin.RecordPoints(first, timeout=10)
    gk.admin.RecordPoints(points(code, 1, "2025-04-20"), timeout=10)
    written = gk.admin.WithdrawPoints(withdraw(first.decision_no, "2025-05-05"), timeout=10)
    assert timeline(written.file) == []
    assert dict(written.file.year_totals) == {2025: 1}
    days = ["2025-04-01", "2025-06-01", "2025-07-31"]
    assert decisions(gk, code, days, written.data_version) == dict.fromkeys(days, ALLOW)


@pytest.mark.parametrize(
    ("status", "end", "expected"),
    [
        (
            enums_pb2.PRACTITIONER_STATUS_SUSPENDED,
            "2025-06-01",
            ("REJECT", "SUSPENDED", "SUSPENDED", "2025-05-01", "2025-06-01"),
        ),
        (enums_pb2.PRACTITIONER_STATUS_TERMINATED, None, ("REJECT", "TERMINATED", "TERMINATED", "2025-05-01", None)),
    ],
    ids=["suspended", "terminated"],
)
def test_external_sanctions_count_as_local_ones(
    gk: Gatekeeper, status: int, end: str | None, expected: tuple[Any, ...]
) -> None:
    """Rule 9: the worst of the local timeline and every external period."""
    code = registered(gk)
    written = gk.admin.ImportSanctions(
        registry_pb2.ImportSanctionsRequest(sanctions=[sanction(code, "2025-05-01", end, status=status)]), timeout=10
    )
    (file,) = written.files
    assert file.practitioner_code == code
    assert len(file.sanctions) == 1
    response = gk.check.CheckClaim(
        dated_claim(code, ["2025-04-30", "2025-05-01"], min_data_version=written.data_version), timeout=10
    )
    got = outcomes(response)
    assert got["2025-04-30"][:2] == ("ALLOW", "ELIGIBLE")
    assert got["2025-05-01"] == expected


def test_worst_of_local_and_external(gk: Gatekeeper) -> None:
    """A local suspension [03-10, 05-10) under an external termination from 04-01: terminated wins."""
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    written = gk.admin.ImportSanctions(
        registry_pb2.ImportSanctionsRequest(
            sanctions=[sanction(code, "2025-04-01", "2025-04-15", status=enums_pb2.PRACTITIONER_STATUS_TERMINATED)]
        ),
        timeout=10,
    )
    assert decisions(
        gk, code, ["2025-03-31", "2025-04-01", "2025-04-14", "2025-04-15", "2025-05-10"], written.data_version
    ) == {
        "2025-03-31": SUSPENDED,
        "2025-04-01": TERMINATED,
        "2025-04-14": TERMINATED,
        "2025-04-15": SUSPENDED,
        "2025-05-10": ALLOW,
    }


def test_registration_is_judged_on_the_service_date(gk: Gatekeeper) -> None:
    code = registered(gk, "2025-03-01")
    ended = gk.admin.EndRegistration(
        registry_pb2.EndRegistrationRequest(
            practitioner_code=code, institution_code=HOSPITAL, ended_on=d("2025-09-01")
        ),
        timeout=10,
    )
    assert iso(ended.file.registrations[0].ended_on) == "2025-09-01"
    days = ["2025-02-28", "2025-03-01", "2025-08-31", "2025-09-01"]
    got = decisions(gk, code, days, ended.data_version)
    assert got == {
        "2025-02-28": ("REJECT", "NOT_REGISTERED"),
        "2025-03-01": ALLOW,
        "2025-08-31": ALLOW,
        "2025-09-01": ("REJECT", "NOT_REGISTERED"),
    }
    # Registered elsewhere only: not registered at this institution.
    assert decisions(gk, code, ["2025-05-05"], ended.data_version, institution_code=OTHER_HOSPITAL) == {
        "2025-05-05": ("REJECT", "NOT_REGISTERED")
    }


def test_unknown_practitioner_is_rejected_under_tibet(gk: Gatekeeper) -> None:
    code = new_code()
    response = gk.check.CheckClaim(dated_claim(code, ["2025-05-05"]), timeout=10)
    (decision,) = response.decisions
    assert outcome(decision)[:2] == ("REJECT", "UNKNOWN_PRACTITIONER")
    assert decision.practitioner_code == code
    assert code in decision.message


def test_pharmacy_claim_checks_the_prescribers_status_and_the_dispensers_registration(gk: Gatekeeper) -> None:
    prescriber = registered(gk)  # registered at a hospital, not at the pharmacy
    pharmacist = registered(gk, institution_code=PHARMACY)
    suspended_pharmacist = registered(gk, institution_code=PHARMACY)
    gk.admin.RecordPoints(points(suspended_pharmacist, 9, "2025-03-10", institution_code=PHARMACY), timeout=10)
    written = gk.admin.RecordPoints(points(prescriber, 9, "2025-06-01"), timeout=10)
    request = claim(
        line("ok", prescriber, "2025-05-05", dispenser_code=pharmacist),
        line("dispenser-suspended", prescriber, "2025-03-10", dispenser_code=suspended_pharmacist),
        line("dispenser-unregistered", prescriber, "2025-05-05", dispenser_code=prescriber),
        line("prescriber-suspended", prescriber, "2025-06-01", dispenser_code=pharmacist),
        institution_code=PHARMACY,
        min_data_version=written.data_version,
    )
    got = {
        x.line_id: (*outcome(x)[:2], x.practitioner_code) for x in gk.check.CheckClaim(request, timeout=10).decisions
    }
    assert got == {
        "ok": ("ALLOW", "ELIGIBLE", prescriber),
        "dispenser-suspended": ("REJECT", "SUSPENDED", suspended_pharmacist),
        "dispenser-unregistered": ("REJECT", "NOT_REGISTERED", prescriber),
        "prescriber-suspended": ("REJECT", "SUSPENDED", prescriber),
    }


def test_hospital_claim_names_the_worse_person(gk: Gatekeeper) -> None:
    doctor = registered(gk)
    nurse = registered(gk)
    written = gk.admin.RecordPoints(points(nurse, 12, "2025-04-01"), timeout=10)
    request = claim(
        line("1", doctor, "2025-04-02", dispenser_code=nurse),
        line("2", doctor, "2025-03-31", dispenser_code=nurse),
        min_data_version=written.data_version,
    )
    first, second = gk.check.CheckClaim(request, timeout=10).decisions
    assert (*outcome(first), first.practitioner_code) == (
        "REJECT",
        "TERMINATED",
        "TERMINATED",
        "2025-04-01",
        None,
        nurse,
    )
    assert outcome(second)[:2] == ("ALLOW", "ELIGIBLE")


def test_min_data_version_from_the_future_is_review_stale_data(gk: Gatekeeper) -> None:
    code = registered(gk)
    written = gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    request = dated_claim(code, ["2025-03-09", "2025-03-10"], min_data_version=written.data_version + 1000)
    response = gk.check.CheckClaim(request, timeout=30)
    assert {outcome(x)[:2] for x in response.decisions} == {("REVIEW", "STALE_DATA")}
    assert response.data_version < written.data_version + 1000


def test_on_a_tie_the_prescriber_is_named(gk: Gatekeeper) -> None:
    doctor, pharmacist = registered(gk), registered(gk)
    gk.admin.RecordPoints(points(doctor, 9, "2025-03-10"), timeout=10)
    written = gk.admin.RecordPoints(points(pharmacist, 9, "2025-03-01"), timeout=10)
    request = claim(line("1", doctor, "2025-03-15", dispenser_code=pharmacist), min_data_version=written.data_version)
    (decision,) = gk.check.CheckClaim(request, timeout=10).decisions
    assert (*outcome(decision)[:2], decision.practitioner_code) == ("REJECT", "SUSPENDED", doctor)
    # The window is the named person's.
    assert (iso(decision.status_since), iso(decision.status_until)) == ("2025-03-10", "2025-05-10")


def test_an_exception_does_not_cover_a_missing_registration(gk: Gatekeeper) -> None:
    code = registered(gk, institution_code=OTHER_HOSPITAL)
    written = gk.admin.RecordPoints(points(code, 9, "2025-03-10", institution_code=OTHER_HOSPITAL), timeout=10)
    response = gk.check.CheckClaim(
        dated_claim(
            code, ["2025-03-10"], min_data_version=written.data_version, care_type=enums_pb2.CARE_TYPE_EMERGENCY
        ),
        timeout=10,
    )
    assert outcomes(response)["2025-03-10"] == ("REJECT", "NOT_REGISTERED", "SUSPENDED", "2025-03-10", "2025-05-10")
    # Where the person is registered, the same care is excepted.
    response = gk.check.CheckClaim(
        dated_claim(
            code,
            ["2025-03-10"],
            min_data_version=written.data_version,
            institution_code=OTHER_HOSPITAL,
            care_type=enums_pb2.CARE_TYPE_EMERGENCY,
        ),
        timeout=10,
    )
    assert outcomes(response)["2025-03-10"][:2] == ("ALLOW", "EMERGENCY_EXCEPTION")


def test_re_registration_elsewhere_ends_the_termination_but_not_the_old_registration(gk: Gatekeeper) -> None:
    code = registered(gk)
    gk.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)
    again = gk.admin.RegisterPractitioner(register(code, "2028-07-01", institution_code=OTHER_HOSPITAL), timeout=10)
    assert decisions(gk, code, ["2028-07-01"], again.data_version) == {"2028-07-01": ("REJECT", "NOT_REGISTERED")}
    assert decisions(gk, code, ["2028-07-01"], again.data_version, institution_code=OTHER_HOSPITAL) == {
        "2028-07-01": ALLOW
    }


def test_status_without_a_date_is_todays_in_china(gk: Gatekeeper) -> None:
    """Suspended from 10 days ago for two months: today (China time) falls well inside."""
    today = today_in_china()
    start = date.fromordinal(today.toordinal() - 10).isoformat()
    code = registered(gk, "2000-01-01")
    written = gk.admin.RecordPoints(points(code, 9, start), timeout=10)
    decisions(gk, code, [start], written.data_version)  # the replica has the write
    response = gk.check.GetPractitionerStatus(status_request(code), timeout=10)
    assert response.status == enums_pb2.PRACTITIONER_STATUS_SUSPENDED
    assert iso(response.status_since) == start
