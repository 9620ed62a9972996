"""Small request builders and assertions shared by the end-to-end tests.

Nothing here talks to a server by itself: the helpers build requests, unpack rich errors from
real gRPC calls, and compare decisions, so each test reads like the scenario it checks.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Callable, Iterable
from datetime import date
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from grpc_status import rpc_status

from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2

T = TypeVar("T")

HOSPITAL = "H54010200001"
OTHER_HOSPITAL = "H54010200002"
PHARMACY = "P54010200001"
POLICY_ID = "xizang@2025.1"

_serial = itertools.count(1)


def new_code(prefix: str = "D") -> str:
    """A practitioner code no other test uses (shape [A-Z0-9]{4,30})."""
    return f"{prefix}54{next(_serial):011d}"


def new_doc(prefix: str = "XZ") -> str:
    """A document number no other test uses."""
    return f"{prefix}-{next(_serial):08d}"


# --- Dates -----------------------------------------------------------------------------------------


def d(text: str) -> Date:
    """'2025-03-10' -> google.type.Date (no validation: impossible dates are test input too)."""
    year, month, day = (int(part) for part in text.split("-"))
    return Date(year=year, month=month, day=day)


def iso(value: Date) -> str | None:
    """A google.type.Date as 'YYYY-MM-DD', or None when it is unset (all zero)."""
    if (value.year, value.month, value.day) == (0, 0, 0):
        return None
    return date(value.year, value.month, value.day).isoformat()


# --- Check requests --------------------------------------------------------------------------------


def line(
    line_id: str,
    practitioner_code: str,
    service_date: str | Date | None,
    **fields: Any,
) -> eligibility_pb2.ClaimLine:
    message = eligibility_pb2.ClaimLine(line_id=line_id, practitioner_code=practitioner_code, **fields)
    if service_date is not None:
        message.service_date.CopyFrom(d(service_date) if isinstance(service_date, str) else service_date)
    return message


def claim(
    *lines: eligibility_pb2.ClaimLine,
    claim_id: str = "claim-1",
    institution_code: str = HOSPITAL,
    min_data_version: int = 0,
) -> eligibility_pb2.CheckClaimRequest:
    return eligibility_pb2.CheckClaimRequest(
        claim_id=claim_id, institution_code=institution_code, lines=list(lines), min_data_version=min_data_version
    )


def dated_claim(
    code: str,
    days: Iterable[str],
    *,
    min_data_version: int = 0,
    institution_code: str = HOSPITAL,
    **fields: Any,
) -> eligibility_pb2.CheckClaimRequest:
    """One line per service date for one person, line ids = the dates."""
    return claim(
        *(line(day, code, day, **fields) for day in days),
        claim_id=f"claim-{code}",
        institution_code=institution_code,
        min_data_version=min_data_version,
    )


def status_request(code: str, day: str | Date | None = None, institution_code: str = "") -> Any:
    request = eligibility_pb2.GetPractitionerStatusRequest(practitioner_code=code, institution_code=institution_code)
    if day is not None:
        request.date.CopyFrom(d(day) if isinstance(day, str) else day)
    return request


# --- Registry requests -----------------------------------------------------------------------------


def register(
    code: str,
    registered_on: str = "2025-01-01",
    institution_code: str = HOSPITAL,
    category: int = enums_pb2.PRACTITIONER_CATEGORY_DOCTOR,
) -> registry_pb2.RegisterPractitionerRequest:
    return registry_pb2.RegisterPractitionerRequest(
        practitioner_code=code, institution_code=institution_code, category=category, registered_on=d(registered_on)
    )


def points(
    code: str,
    amount: int,
    decided_on: str,
    *,
    decision_no: str | None = None,
    effective_on: str | None = None,
    institution_code: str = HOSPITAL,
    responsibility: int = enums_pb2.RESPONSIBILITY_MAIN,
    violation: str = "虚构医药服务项目",
) -> registry_pb2.RecordPointsRequest:
    request = registry_pb2.RecordPointsRequest(
        decision_no=new_doc("XZ-PTS") if decision_no is None else decision_no,
        practitioner_code=code,
        institution_code=institution_code,
        points=amount,
        responsibility=responsibility,
        violation=violation,
        decided_on=d(decided_on),
    )
    if effective_on is not None:
        request.effective_on.CopyFrom(d(effective_on))
    return request


def withdraw(decision_no: str, withdrawn_on: str, reason: str = "appeal upheld") -> Any:
    return registry_pb2.WithdrawPointsRequest(decision_no=decision_no, withdrawn_on=d(withdrawn_on), reason=reason)


def repair(
    code: str,
    approved_on: str,
    *,
    reduce_points: int | None = None,
    shorten_days: int | None = None,
    repair_no: str | None = None,
    basis: str = "training completed",
) -> registry_pb2.ApplyRepairRequest:
    request = registry_pb2.ApplyRepairRequest(
        repair_no=new_doc("XZ-REP") if repair_no is None else repair_no,
        practitioner_code=code,
        approved_on=d(approved_on),
        basis=basis,
    )
    if reduce_points is not None:
        request.reduce_points = reduce_points
    if shorten_days is not None:
        request.shorten_suspension_days = shorten_days
    return request


def sanction(
    code: str,
    start: str,
    end: str | None = None,
    *,
    status: int = enums_pb2.PRACTITIONER_STATUS_SUSPENDED,
    source_decision_no: str | None = None,
    origin_region: str = "四川",
) -> registry_pb2.ExternalSanction:
    item = registry_pb2.ExternalSanction(
        source_decision_no=new_doc("SC") if source_decision_no is None else source_decision_no,
        practitioner_code=code,
        status=status,
        start=d(start),
        origin_region=origin_region,
    )
    if end is not None:
        item.end.CopyFrom(d(end))
    return item


def file_request(code: str) -> registry_pb2.GetPractitionerFileRequest:
    return registry_pb2.GetPractitionerFileRequest(practitioner_code=code)


# --- Errors ----------------------------------------------------------------------------------------


def rpc_error(call: Callable[..., Any], request: Any, **kwargs: Any) -> grpc.RpcError:
    """Call and return the RpcError it must raise."""
    kwargs.setdefault("timeout", 10)
    try:
        response = call(request, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"expected an error, got a response:\n{response}")


def outcome_of(call: Callable[..., Any], request: Any, **kwargs: Any) -> Any:
    """The response, or the RpcError the call raised (for tests where either may be right)."""
    kwargs.setdefault("timeout", 10)
    try:
        return call(request, **kwargs)
    except grpc.RpcError as error:
        return error


def _details(error: grpc.RpcError, kind: type[T]) -> list[T]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, f"no rich status on {error.code()}: {error.details()}"  # type: ignore[attr-defined]
    found = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):  # type: ignore[attr-defined]
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def bad_request(error: grpc.RpcError) -> dict[str, str]:
    """INVALID_ARGUMENT with exactly one google.rpc.BadRequest: {field path: description}."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())  # type: ignore[attr-defined]
    (bad,) = _details(error, error_details_pb2.BadRequest)
    fields: dict[str, str] = {}
    for violation in bad.field_violations:
        assert violation.description, f"{violation.field} has no description"
        fields.setdefault(violation.field, violation.description)
    return fields


def bad_fields(error: grpc.RpcError) -> set[str]:
    return set(bad_request(error))


def precondition(error: grpc.RpcError) -> error_details_pb2.PreconditionFailure:
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, (error.code(), error.details())  # type: ignore[attr-defined]
    (failure,) = _details(error, error_details_pb2.PreconditionFailure)
    assert failure.violations, "PreconditionFailure without violations"
    return failure


_SENTENCE_END = re.compile(r"[.!?。](?:\s|$)")


def assert_one_sentence(message: str) -> None:
    """A status message a person can read: non-empty, one line, at most one sentence end."""
    assert message.strip(), "empty status message"
    assert "\n" not in message, f"multi-line status message: {message!r}"
    ends = _SENTENCE_END.findall(message.strip())
    assert len(ends) <= 1, f"more than one sentence: {message!r}"


# --- Decisions -------------------------------------------------------------------------------------


def outcome(decision: eligibility_pb2.LineDecision) -> tuple[str, str, str, str | None, str | None]:
    """(decision, reason, status, since, until) with short enum names, for readable asserts."""
    return (
        enums_pb2.Decision.Name(decision.decision).removeprefix("DECISION_"),
        enums_pb2.Reason.Name(decision.reason).removeprefix("REASON_"),
        enums_pb2.PractitionerStatus.Name(decision.status).removeprefix("PRACTITIONER_STATUS_"),
        iso(decision.status_since) if decision.HasField("status_since") else None,
        iso(decision.status_until) if decision.HasField("status_until") else None,
    )


def outcomes(response: eligibility_pb2.CheckClaimResponse) -> dict[str, tuple[str, str, str, str | None, str | None]]:
    return {decision.line_id: outcome(decision) for decision in response.decisions}


def timeline(file: registry_pb2.PractitionerFile) -> list[tuple[str, str | None, str | None]]:
    return [
        (
            enums_pb2.PractitionerStatus.Name(p.status).removeprefix("PRACTITIONER_STATUS_"),
            iso(p.since) if p.HasField("since") else None,
            iso(p.until) if p.HasField("until") else None,
        )
        for p in file.timeline
    ]


def poll(probe: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Call ``probe`` until it returns something truthy; generous deadline, no timing asserts."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


# --- Malformed requests: (id, request, the field paths its BadRequest must name, exactly) -----------
# Shared by the in-process validation tests and the ones against a spawned `gatekeeper serve`.

_OK_CODE = "D54010200000"


def _ok(line_id: str = "L1", **fields: Any) -> eligibility_pb2.ClaimLine:
    fields.setdefault("practitioner_code", _OK_CODE)
    service_date = fields.pop("service_date", "2025-03-10")
    return line(line_id, fields.pop("practitioner_code"), service_date, **fields)


def _claim(*lines: eligibility_pb2.ClaimLine, **fields: Any) -> eligibility_pb2.CheckClaimRequest:
    fields.setdefault("claim_id", "C-BAD")
    fields.setdefault("institution_code", HOSPITAL)
    return eligibility_pb2.CheckClaimRequest(lines=list(lines), **fields)


def many_lines(count: int) -> list[eligibility_pb2.ClaimLine]:
    return [_ok(f"L{i}") for i in range(count)]


BAD_CLAIMS: list[tuple[str, eligibility_pb2.CheckClaimRequest, set[str]]] = [
    ("claim_id-missing", _claim(_ok(), claim_id=""), {"claim_id"}),
    ("claim_id-space", _claim(_ok(), claim_id="C 1"), {"claim_id"}),
    ("claim_id-too-long", _claim(_ok(), claim_id="C" * 65), {"claim_id"}),
    ("claim_id-non-ascii", _claim(_ok(), claim_id="单据1"), {"claim_id"}),
    ("institution-missing", _claim(_ok(), institution_code=""), {"institution_code"}),
    ("institution-too-short", _claim(_ok(), institution_code="H5401020000"), {"institution_code"}),
    ("institution-too-long", _claim(_ok(), institution_code="H540102000011"), {"institution_code"}),
    ("institution-wrong-kind", _claim(_ok(), institution_code="X54010200001"), {"institution_code"}),
    ("institution-lowercase", _claim(_ok(), institution_code="h54010200001"), {"institution_code"}),
    ("institution-bad-char", _claim(_ok(), institution_code="H5401020-001"), {"institution_code"}),
    ("line_id-missing", _claim(_ok(""), _ok("L2")), {"lines[0].line_id"}),
    ("line_id-space", _claim(_ok("L1"), _ok("L 2")), {"lines[1].line_id"}),
    ("line_id-too-long", _claim(_ok("L" * 65)), {"lines[0].line_id"}),
    ("practitioner-missing", _claim(_ok("L1"), _ok("L2", practitioner_code="")), {"lines[1].practitioner_code"}),
    ("practitioner-too-short", _claim(_ok(practitioner_code="D54")), {"lines[0].practitioner_code"}),
    ("practitioner-too-long", _claim(_ok(practitioner_code="D" * 31)), {"lines[0].practitioner_code"}),
    ("practitioner-lowercase", _claim(_ok(practitioner_code="d5401020000")), {"lines[0].practitioner_code"}),
    ("practitioner-hyphen", _claim(_ok(practitioner_code="D540-1020000")), {"lines[0].practitioner_code"}),
    ("practitioner-chinese", _claim(_ok(practitioner_code="医师540102")), {"lines[0].practitioner_code"}),
    ("practitioner-newline", _claim(_ok(practitioner_code="D54010200000\n")), {"lines[0].practitioner_code"}),
    ("dispenser-bad-shape", _claim(_ok(dispenser_code="r-1")), {"lines[0].dispenser_code"}),
    ("service_date-missing", _claim(_ok("L1"), _ok("L2", service_date=None)), {"lines[1].service_date"}),
    ("service_date-feb-30", _claim(_ok(service_date="2025-02-30")), {"lines[0].service_date"}),
    ("service_date-feb-29-common-year", _claim(_ok(service_date="2025-02-29")), {"lines[0].service_date"}),
    ("service_date-apr-31", _claim(_ok(service_date="2025-04-31")), {"lines[0].service_date"}),
    ("service_date-month-13", _claim(_ok(service_date="2025-13-01")), {"lines[0].service_date"}),
    ("service_date-day-0", _claim(_ok(service_date="2025-03-00")), {"lines[0].service_date"}),
    ("service_date-all-zero", _claim(_ok(service_date=Date())), {"lines[0].service_date"}),
    ("service_date-year-only", _claim(_ok(service_date=Date(year=2025))), {"lines[0].service_date"}),
    ("care_type-99", _claim(_ok(care_type=99)), {"lines[0].care_type"}),
    ("care_type-negative", _claim(_ok(care_type=-1)), {"lines[0].care_type"}),
    ("med_type-bad-chars", _claim(_ok(med_type="1 3")), {"lines[0].med_type"}),
    ("med_type-too-long", _claim(_ok(med_type="123456789")), {"lines[0].med_type"}),
    ("duplicate-line_id", _claim(_ok("A"), _ok("B"), _ok("A")), {"lines[2].line_id"}),
    ("duplicate-line_id-twice", _claim(_ok("A"), _ok("A"), _ok("A")), {"lines[1].line_id", "lines[2].line_id"}),
    ("zero-lines", _claim(), {"lines"}),
    ("1001-lines", _claim(*many_lines(1001)), {"lines"}),
    (
        "many-faults",
        _claim(
            _ok("L0"),
            _ok("", practitioner_code=""),
            _ok("L2", service_date="2025-02-30", care_type=99),
            _ok("L3", service_date=None, dispenser_code="x"),
            _ok("L0", practitioner_code="D54"),
            claim_id="",
            institution_code="Q1",
        ),
        {
            "claim_id",
            "institution_code",
            "lines[1].line_id",
            "lines[1].practitioner_code",
            "lines[2].service_date",
            "lines[2].care_type",
            "lines[3].service_date",
            "lines[3].dispenser_code",
            "lines[4].practitioner_code",
            "lines[4].line_id",
        },
    ),
]

BAD_STATUS_QUERIES: list[tuple[str, Any, set[str]]] = [
    ("code-missing", status_request("", "2025-03-10"), {"practitioner_code"}),
    ("code-bad-shape", status_request("d-1", "2025-03-10"), {"practitioner_code"}),
    ("code-too-long", status_request("D" * 31, "2025-03-10"), {"practitioner_code"}),
    ("date-feb-30", status_request(_OK_CODE, "2025-02-30"), {"date"}),
    ("date-all-zero", status_request(_OK_CODE, Date()), {"date"}),
    ("institution-bad-shape", status_request(_OK_CODE, "2025-03-10", "H1"), {"institution_code"}),
    ("everything", status_request("", "2025-13-01", "hospital"), {"practitioner_code", "date", "institution_code"}),
]
