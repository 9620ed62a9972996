"""RegistryService writes over real gRPC: validation, idempotency, refusals, and that a refusal changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from gatekeeper.v1 import enums_pb2, registry_pb2
from tests.conftest import Gatekeeper
from tests.e2e.builders import (
    HOSPITAL,
    OTHER_HOSPITAL,
    assert_one_sentence,
    bad_request,
    d,
    file_request,
    new_code,
    new_doc,
    points,
    precondition,
    register,
    repair,
    rpc_error,
    sanction,
    timeline,
    withdraw,
)


@pytest.fixture
def person(shared_gatekeeper: Gatekeeper) -> str:
    """A registered person with 5 points on file (no suspension)."""
    code = new_code()
    shared_gatekeeper.admin.RegisterPractitioner(register(code), timeout=10)
    shared_gatekeeper.admin.RecordPoints(points(code, 5, "2025-02-01"), timeout=10)
    return code


def file_of(gk: Gatekeeper, code: str) -> registry_pb2.GetPractitionerFileResponse:
    return gk.admin.GetPractitionerFile(file_request(code), timeout=10)


def assert_unchanged(gk: Gatekeeper, code: str, before: registry_pb2.GetPractitionerFileResponse) -> None:
    after = file_of(gk, code)
    assert after.data_version == before.data_version, "a refused write moved the data version"
    assert after == before, "a refused write changed the file"


# --- INVALID_ARGUMENT: every bad field by path, nothing written ------------------------------------------------

Case = tuple[str, str, Callable[[str], Any], set[str]]


def _strip_decided(code: str) -> registry_pb2.RecordPointsRequest:
    request = points(code, 3, "2025-03-01")
    request.ClearField("decided_on")
    return request


def _no_effect(code: str) -> registry_pb2.ApplyRepairRequest:
    return repair(code, "2025-03-01")


INVALID_WRITES: list[Case] = [
    ("points-0", "RecordPoints", lambda c: points(c, 0, "2025-03-01"), {"points"}),
    ("points-13", "RecordPoints", lambda c: points(c, 13, "2025-03-01"), {"points"}),
    ("points-negative", "RecordPoints", lambda c: points(c, -4, "2025-03-01"), {"points"}),
    (
        "points-responsibility-99",
        "RecordPoints",
        lambda c: points(c, 3, "2025-03-01", responsibility=99),
        {"responsibility"},
    ),
    ("points-bad-practitioner", "RecordPoints", lambda c: points(c.lower(), 3, "2025-03-01"), {"practitioner_code"}),
    (
        "points-bad-institution",
        "RecordPoints",
        lambda c: points(c, 3, "2025-03-01", institution_code="H-1"),
        {"institution_code"},
    ),
    ("points-decided-feb-30", "RecordPoints", lambda c: points(c, 3, "2025-02-30"), {"decided_on"}),
    (
        "points-decided-missing",
        "RecordPoints",
        _strip_decided,
        {"decided_on"},
    ),
    (
        "points-effective-before-decided",
        "RecordPoints",
        lambda c: points(c, 3, "2025-03-10", effective_on="2025-03-09"),
        {"effective_on"},
    ),
    (
        "points-effective-impossible",
        "RecordPoints",
        lambda c: points(c, 3, "2025-03-10", effective_on="2025-04-31"),
        {"effective_on"},
    ),
    (
        "points-decision_no-missing",
        "RecordPoints",
        lambda c: points(c, 3, "2025-03-01", decision_no=""),
        {"decision_no"},
    ),
    (
        "points-everything",
        "RecordPoints",
        lambda c: points(
            "x", 99, "2025-03-10", effective_on="2025-01-01", institution_code="", responsibility=7, decision_no="a b"
        ),
        {"decision_no", "practitioner_code", "institution_code", "points", "responsibility", "effective_on"},
    ),
    ("register-category-99", "RegisterPractitioner", lambda c: register(c, category=99), {"category"}),
    ("register-date-impossible", "RegisterPractitioner", lambda c: register(c, "2025-02-29"), {"registered_on"}),
    (
        "register-codes",
        "RegisterPractitioner",
        lambda c: register("D-1", "2025-01-01", institution_code="H5401020000"),
        {"practitioner_code", "institution_code"},
    ),
    (
        "end-date-impossible",
        "EndRegistration",
        lambda c: registry_pb2.EndRegistrationRequest(
            practitioner_code=c, institution_code=HOSPITAL, ended_on=d("2025-06-31")
        ),
        {"ended_on"},
    ),
    ("withdraw-date-impossible", "WithdrawPoints", lambda c: withdraw("XZ-NOPE", "2025-11-31"), {"withdrawn_on"}),
    (
        "withdraw-everything",
        "WithdrawPoints",
        lambda c: registry_pb2.WithdrawPointsRequest(decision_no="", reason=""),
        {"decision_no", "withdrawn_on", "reason"},
    ),
    ("repair-reduce-0", "ApplyRepair", lambda c: repair(c, "2025-03-01", reduce_points=0), {"reduce_points"}),
    ("repair-reduce-negative", "ApplyRepair", lambda c: repair(c, "2025-03-01", reduce_points=-2), {"reduce_points"}),
    ("repair-shorten-0", "ApplyRepair", lambda c: repair(c, "2025-03-01", shorten_days=0), {"shorten_suspension_days"}),
    (
        "repair-shorten-negative",
        "ApplyRepair",
        lambda c: repair(c, "2025-03-01", shorten_days=-10),
        {"shorten_suspension_days"},
    ),
    ("repair-no-effect", "ApplyRepair", _no_effect, {"effect"}),
    (
        "repair-everything",
        "ApplyRepair",
        lambda c: repair("bad code", "2025-02-30", reduce_points=-1, repair_no=""),
        {"repair_no", "practitioner_code", "approved_on", "reduce_points"},
    ),
    (
        "sanctions-empty",
        "ImportSanctions",
        lambda c: registry_pb2.ImportSanctionsRequest(),
        {"sanctions"},
    ),
    (
        "sanctions-fields",
        "ImportSanctions",
        lambda c: registry_pb2.ImportSanctionsRequest(
            sanctions=[
                sanction(c, "2025-03-01", "2025-04-01"),
                sanction(c, "2025-03-01", status=enums_pb2.PRACTITIONER_STATUS_NORMAL),
                sanction(c, "2025-03-01", "2025-03-01"),
                sanction("x", "2025-02-30", origin_region=""),
                sanction(c, "2025-03-01", status=42),
            ]
        ),
        {
            "sanctions[1].status",
            "sanctions[2].end",
            "sanctions[3].practitioner_code",
            "sanctions[3].start",
            "sanctions[3].origin_region",
            "sanctions[4].status",
        },
    ),
]


@pytest.mark.parametrize(
    ("method", "build", "expected"), [c[1:] for c in INVALID_WRITES], ids=[c[0] for c in INVALID_WRITES]
)
def test_invalid_write_names_every_bad_field_and_writes_nothing(
    shared_gatekeeper: Gatekeeper, person: str, method: str, build: Callable[[str], Any], expected: set[str]
) -> None:
    gk = shared_gatekeeper
    before = file_of(gk, person)
    error = rpc_error(getattr(gk.admin, method), build(person))
    assert set(bad_request(error)) == expected
    assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, person, before)


def test_get_file_with_a_malformed_code_is_invalid(shared_gatekeeper: Gatekeeper) -> None:
    error = rpc_error(shared_gatekeeper.admin.GetPractitionerFile, file_request("not a code"))
    assert set(bad_request(error)) == {"practitioner_code"}


# --- NOT_FOUND -------------------------------------------------------------------------------------------------


def test_file_of_an_unknown_person_is_not_found(shared_gatekeeper: Gatekeeper) -> None:
    code = new_code()
    error = rpc_error(shared_gatekeeper.admin.GetPractitionerFile, file_request(code))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert code in error.details()  # type: ignore[attr-defined]
    assert_one_sentence(error.details())  # type: ignore[attr-defined]


# --- Idempotency: same number + same content = first result; different content = ALREADY_EXISTS ---------------


def test_points_decision_replay_and_conflict(shared_gatekeeper: Gatekeeper, person: str) -> None:
    gk = shared_gatekeeper
    request = points(person, 4, "2025-06-15")
    first = gk.admin.RecordPoints(request, timeout=10)
    assert timeline(first.file) == [("SUSPENDED", "2025-06-15", "2025-08-15")]
    # Another write in between: the replay must still be the first result, not the current file.
    gk.admin.RegisterPractitioner(register(person, "2025-07-01", institution_code=OTHER_HOSPITAL), timeout=10)
    current = file_of(gk, person)

    again = gk.admin.RecordPoints(request, timeout=10)
    assert again == first
    assert again.data_version == first.data_version
    assert again.file == first.file

    changed = registry_pb2.RecordPointsRequest()
    changed.CopyFrom(request)
    changed.points = 5
    error = rpc_error(gk.admin.RecordPoints, changed)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS  # type: ignore[attr-defined]
    assert request.decision_no in error.details()  # type: ignore[attr-defined]
    assert_one_sentence(error.details())  # type: ignore[attr-defined]
    # Neither the replay nor the conflict wrote anything.
    assert_unchanged(gk, person, current)
    assert len(current.file.points_entries) == 2


def test_same_decision_number_for_another_person_is_a_conflict(shared_gatekeeper: Gatekeeper, person: str) -> None:
    gk = shared_gatekeeper
    other = new_code()
    request = points(person, 1, "2025-05-01")
    gk.admin.RecordPoints(request, timeout=10)
    stolen = points(other, 1, "2025-05-01", decision_no=request.decision_no)
    error = rpc_error(gk.admin.RecordPoints, stolen)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS  # type: ignore[attr-defined]
    assert rpc_error(gk.admin.GetPractitionerFile, file_request(other)).code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["register", "repair", "withdraw", "sanction", "end"])
def test_other_documents_replay_and_conflict(shared_gatekeeper: Gatekeeper, kind: str) -> None:
    gk = shared_gatekeeper
    code = new_code()
    gk.admin.RegisterPractitioner(register(code), timeout=10)
    decision = points(code, 9, "2025-03-10")
    gk.admin.RecordPoints(decision, timeout=10)
    call: Any
    if kind == "register":
        call, request = gk.admin.RegisterPractitioner, register(code, "2025-04-01", institution_code=OTHER_HOSPITAL)
        changed = register(
            code, "2025-04-01", institution_code=OTHER_HOSPITAL, category=enums_pb2.PRACTITIONER_CATEGORY_NURSE
        )
    elif kind == "repair":
        call, request = gk.admin.ApplyRepair, repair(code, "2025-04-01", shorten_days=5)
        changed = repair(code, "2025-04-01", shorten_days=6, repair_no=request.repair_no)
    elif kind == "withdraw":
        call, request = gk.admin.WithdrawPoints, withdraw(decision.decision_no, "2025-04-01", "court ruling")
        changed = withdraw(decision.decision_no, "2025-04-01", "another reason")
    elif kind == "end":
        call = gk.admin.EndRegistration
        request = registry_pb2.EndRegistrationRequest(
            practitioner_code=code, institution_code=HOSPITAL, ended_on=d("2025-09-01")
        )
        changed = None  # the key is the content: (person, institution, date)
    else:
        item = sanction(code, "2025-05-01", "2025-06-01")
        call, request = gk.admin.ImportSanctions, registry_pb2.ImportSanctionsRequest(sanctions=[item])
        moved = registry_pb2.ExternalSanction()
        moved.CopyFrom(item)
        moved.end.CopyFrom(d("2025-07-01"))
        changed = registry_pb2.ImportSanctionsRequest(sanctions=[moved])
    first = call(request, timeout=10)
    before = file_of(gk, code)
    again = call(request, timeout=10)
    assert again == first
    if changed is not None:
        error = rpc_error(call, changed)
        assert error.code() == grpc.StatusCode.ALREADY_EXISTS, error.details()  # type: ignore[attr-defined]
        assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, code, before)


# --- FAILED_PRECONDITION: refused by the rules, nothing written -------------------------------------------------


@pytest.fixture
def terminated(shared_gatekeeper: Gatekeeper) -> str:
    """Terminated from 2025-07-01 by one 12-point decision: ban until 2028-07-01."""
    code = new_code()
    shared_gatekeeper.admin.RegisterPractitioner(register(code), timeout=10)
    shared_gatekeeper.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)
    return code


@pytest.mark.parametrize(
    ("institution", "day"),
    [
        (HOSPITAL, "2025-07-02"),  # on 07-01 itself the registration comes first (Terms)
        (HOSPITAL, "2026-01-01"),
        (OTHER_HOSPITAL, "2028-06-30"),
        ("P54010200009", "2027-03-03"),
    ],
)
def test_registering_during_a_termination_ban_is_refused(
    shared_gatekeeper: Gatekeeper, terminated: str, institution: str, day: str
) -> None:
    gk = shared_gatekeeper
    before = file_of(gk, terminated)
    error = rpc_error(gk.admin.RegisterPractitioner, register(terminated, day, institution_code=institution))
    failure = precondition(error)
    assert failure.violations[0].subject == terminated
    assert failure.violations[0].type
    assert "2028-07-01" in error.details()  # type: ignore[attr-defined]
    assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, terminated, before)


@pytest.mark.parametrize("effect", [{"reduce_points": 2}, {"shorten_days": 10}])
def test_repairs_during_a_termination_are_refused(
    shared_gatekeeper: Gatekeeper, terminated: str, effect: dict[str, int]
) -> None:
    gk = shared_gatekeeper
    before = file_of(gk, terminated)
    request = repair(terminated, "2025-08-01", **effect)
    error = rpc_error(gk.admin.ApplyRepair, request)
    failure = precondition(error)
    assert failure.violations[0].subject == terminated
    assert request.repair_no in error.details()  # type: ignore[attr-defined]
    assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, terminated, before)


@pytest.mark.parametrize("day", ["2025-03-01", "2025-05-10", "2025-12-31"])
def test_shortening_when_no_suspension_runs_is_refused(shared_gatekeeper: Gatekeeper, day: str) -> None:
    """5 points (no suspension) before 2025-03-10; 9 from then: suspended [03-10, 05-10) only."""
    gk = shared_gatekeeper
    code = new_code()
    gk.admin.RegisterPractitioner(register(code), timeout=10)
    gk.admin.RecordPoints(points(code, 5, "2025-02-01"), timeout=10)
    gk.admin.RecordPoints(points(code, 4, "2025-03-10"), timeout=10)
    before = file_of(gk, code)
    assert timeline(before.file) == [("SUSPENDED", "2025-03-10", "2025-05-10")]
    error = rpc_error(gk.admin.ApplyRepair, repair(code, day, shorten_days=3))
    precondition(error)
    assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, code, before)


def test_withdrawing_an_unknown_decision_is_refused(shared_gatekeeper: Gatekeeper, person: str) -> None:
    gk = shared_gatekeeper
    before = file_of(gk, person)
    number = new_doc("XZ-UNKNOWN")
    error = rpc_error(gk.admin.WithdrawPoints, withdraw(number, "2025-04-01"))
    failure = precondition(error)
    assert failure.violations[0].subject == number
    assert number in error.details()  # type: ignore[attr-defined]
    assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, person, before)


def test_withdrawing_before_the_decision_was_made_is_refused(shared_gatekeeper: Gatekeeper, person: str) -> None:
    gk = shared_gatekeeper
    decision = points(person, 2, "2025-06-01")
    gk.admin.RecordPoints(decision, timeout=10)
    before = file_of(gk, person)
    error = rpc_error(gk.admin.WithdrawPoints, withdraw(decision.decision_no, "2025-05-31"))
    precondition(error)
    assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, person, before)


def test_ending_a_registration_that_does_not_run_is_refused(shared_gatekeeper: Gatekeeper, person: str) -> None:
    gk = shared_gatekeeper
    before = file_of(gk, person)
    request = registry_pb2.EndRegistrationRequest(
        practitioner_code=person, institution_code=OTHER_HOSPITAL, ended_on=d("2025-06-01")
    )
    error = rpc_error(gk.admin.EndRegistration, request)
    precondition(error)
    assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, person, before)


def test_repairs_beyond_the_profile_caps_are_refused(shared_gatekeeper: Gatekeeper) -> None:
    """Tibet caps: 6 points reduced per year; half of a suspension shortened."""
    gk = shared_gatekeeper
    code = new_code()
    gk.admin.RegisterPractitioner(register(code), timeout=10)
    gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)  # [03-10, 05-10): 61 days
    before = file_of(gk, code)
    for request in (repair(code, "2025-04-01", reduce_points=7), repair(code, "2025-03-20", shorten_days=31)):
        error = rpc_error(gk.admin.ApplyRepair, request)
        precondition(error)
        assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert_unchanged(gk, code, before)
    done = gk.admin.ApplyRepair(repair(code, "2025-03-20", shorten_days=30), timeout=10)
    assert timeline(done.file) == [("SUSPENDED", "2025-03-10", "2025-04-10")]


def test_a_refused_write_can_be_retried_once_allowed(shared_gatekeeper: Gatekeeper, terminated: str) -> None:
    """Refusals are not stored as documents: the same registration on the ban's end day succeeds."""
    gk = shared_gatekeeper
    precondition(rpc_error(gk.admin.RegisterPractitioner, register(terminated, "2028-06-30")))
    precondition(rpc_error(gk.admin.RegisterPractitioner, register(terminated, "2028-06-30")))
    done = gk.admin.RegisterPractitioner(register(terminated, "2028-07-01"), timeout=10)
    assert timeline(done.file) == [("TERMINATED", "2025-07-01", "2028-07-01")]


# --- ImportSanctions batches ------------------------------------------------------------------------------------


def test_sanction_batch_conflict_refuses_the_whole_batch(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    code, newcomer = new_code(), new_code()
    seen = sanction(code, "2025-05-01", "2025-06-01")
    gk.admin.ImportSanctions(registry_pb2.ImportSanctionsRequest(sanctions=[seen]), timeout=10)
    before = file_of(gk, code)
    changed = registry_pb2.ExternalSanction()
    changed.CopyFrom(seen)
    changed.origin_region = "青海"
    batch = registry_pb2.ImportSanctionsRequest(sanctions=[sanction(newcomer, "2025-05-01"), changed])
    error = rpc_error(gk.admin.ImportSanctions, batch)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS  # type: ignore[attr-defined]
    assert seen.source_decision_no in error.details()  # type: ignore[attr-defined]
    assert_unchanged(gk, code, before)
    assert rpc_error(gk.admin.GetPractitionerFile, file_request(newcomer)).code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_sanction_batch_with_a_repeated_number_is_invalid(shared_gatekeeper: Gatekeeper) -> None:
    code = new_code()
    first = sanction(code, "2025-05-01", "2025-06-01")
    again = sanction(code, "2025-07-01", source_decision_no=first.source_decision_no)
    error = rpc_error(
        shared_gatekeeper.admin.ImportSanctions, registry_pb2.ImportSanctionsRequest(sanctions=[first, again])
    )
    assert set(bad_request(error)) == {"sanctions[1].source_decision_no"}


def test_single_sanction_replay_returns_the_first_result(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    code = new_code()
    batch = registry_pb2.ImportSanctionsRequest(sanctions=[sanction(code, "2025-05-01", "2025-06-01")])
    first = gk.admin.ImportSanctions(batch, timeout=10)
    gk.admin.RegisterPractitioner(register(code), timeout=10)
    assert gk.admin.ImportSanctions(batch, timeout=10) == first


def test_sanction_batch_replay_returns_the_first_result(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    first_code, second_code = new_code(), new_code()
    batch = registry_pb2.ImportSanctionsRequest(
        sanctions=[sanction(first_code, "2025-05-01", "2025-06-01"), sanction(second_code, "2025-05-01")]
    )
    first = gk.admin.ImportSanctions(batch, timeout=10)
    gk.admin.RegisterPractitioner(register(first_code), timeout=10)  # any later write to a person of the batch
    again = gk.admin.ImportSanctions(batch, timeout=10)
    assert again.data_version == first.data_version
    assert again == first
