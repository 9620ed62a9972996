"""Validation of the agency's write requests: domain facts out, or every bad field by path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TypeVar

from domain.values import ExternalSanction, PointsDecision, Registration, Repair, Status
from domain.violations import Violations
from gatekeeper.v1 import enums_pb2, registry_pb2
from service.check.validation import EARLIEST, LATEST, Codes, check_code, check_required_id, required_date, to_date

MAX_TEXT = 500
MAX_SANCTIONS = 1000
_CATEGORIES = frozenset(v for v in enums_pb2.PractitionerCategory.values() if v)
_RESPONSIBILITIES = frozenset(v for v in enums_pb2.Responsibility.values() if v)
_SANCTION_STATUSES = {int(Status.SUSPENDED), int(Status.TERMINATED)}

T = TypeVar("T")


def _text(value: str, path: str, out: Violations, *, required: bool = False) -> None:
    if required and not value.strip():
        out.add(path, "is required")
    elif len(value) > MAX_TEXT:
        out.add(path, f"must be at most {MAX_TEXT} characters")


def _enum(value: int, allowed: frozenset[int], name: str, path: str, out: Violations) -> None:
    if value not in allowed:
        out.add(path, f"{name} value {value} is unknown or unspecified")


def _finish(out: Violations, build: Callable[[], T]) -> T | Violations:
    return out if out else build()


def registration(request: registry_pb2.RegisterPractitionerRequest, codes: Codes) -> Registration | Violations:
    out = Violations()
    check_code(request.practitioner_code, codes.practitioner, "practitioner_code", out)
    check_code(request.institution_code, codes.institution, "institution_code", out)
    _enum(request.category, _CATEGORIES, "PractitionerCategory", "category", out)
    day = required_date(request, "registered_on", "registered_on", out)
    return _finish(
        out,
        lambda: Registration(request.practitioner_code, request.institution_code, request.category, _d(day)),
    )


def end_registration(request: registry_pb2.EndRegistrationRequest, codes: Codes) -> tuple[str, str, date] | Violations:
    out = Violations()
    check_code(request.practitioner_code, codes.practitioner, "practitioner_code", out)
    check_code(request.institution_code, codes.institution, "institution_code", out)
    day = required_date(request, "ended_on", "ended_on", out)
    return _finish(out, lambda: (request.practitioner_code, request.institution_code, _d(day)))


def points(request: registry_pb2.RecordPointsRequest, codes: Codes) -> PointsDecision | Violations:
    out = Violations()
    check_required_id(request.decision_no, "decision_no", out)
    check_code(request.practitioner_code, codes.practitioner, "practitioner_code", out)
    check_code(request.institution_code, codes.institution, "institution_code", out)
    if not 1 <= request.points <= 12:
        out.add("points", f"{request.points} is outside 1-12")
    _enum(request.responsibility, _RESPONSIBILITIES, "Responsibility", "responsibility", out)
    _text(request.violation, "violation", out)
    decided = required_date(request, "decided_on", "decided_on", out)
    effective = to_date(request.effective_on, "effective_on", out) if request.HasField("effective_on") else decided
    if decided and effective and effective < decided:
        out.add("effective_on", f"{effective} is before decided_on {decided}")
    return _finish(
        out,
        lambda: PointsDecision(
            request.decision_no,
            request.practitioner_code,
            request.institution_code,
            request.points,
            request.responsibility,
            request.violation,
            _d(decided),
            _d(effective),
        ),
    )


def withdrawal(request: registry_pb2.WithdrawPointsRequest) -> tuple[str, date, str] | Violations:
    out = Violations()
    check_required_id(request.decision_no, "decision_no", out)
    day = required_date(request, "withdrawn_on", "withdrawn_on", out)
    _text(request.reason, "reason", out, required=True)
    return _finish(out, lambda: (request.decision_no, _d(day), request.reason))


def repair(request: registry_pb2.ApplyRepairRequest, codes: Codes) -> Repair | Violations:
    out = Violations()
    check_required_id(request.repair_no, "repair_no", out)
    check_code(request.practitioner_code, codes.practitioner, "practitioner_code", out)
    day = required_date(request, "approved_on", "approved_on", out)
    effect = request.WhichOneof("effect")
    amount = getattr(request, effect) if effect else 0
    if effect is None:
        out.add("effect", "one of reduce_points or shorten_suspension_days is required")
    elif amount <= 0:
        out.add(effect, f"must be positive, got {amount}")
    elif effect == "reduce_points" and amount > 12:
        out.add(effect, f"{amount} is more than 12 points")
    elif effect == "shorten_suspension_days" and amount > 3660:
        out.add(effect, f"{amount} days is more than 10 years")
    _text(request.basis, "basis", out)
    return _finish(
        out,
        lambda: Repair(
            request.repair_no,
            request.practitioner_code,
            _d(day),
            reduce_points=amount if effect == "reduce_points" else 0,
            shorten_days=amount if effect == "shorten_suspension_days" else 0,
            basis=request.basis,
        ),
    )


def sanctions(request: registry_pb2.ImportSanctionsRequest, codes: Codes) -> list[ExternalSanction] | Violations:
    out = Violations()
    count = len(request.sanctions)
    if count == 0:
        out.add("sanctions", "at least one sanction is required")
    elif count > MAX_SANCTIONS:
        out.add("sanctions", f"{count} sanctions exceed the maximum of {MAX_SANCTIONS} per request")
        return out
    built: list[ExternalSanction] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(request.sanctions):
        sanction = _sanction(item, f"sanctions[{i}]", codes, out)
        if item.source_decision_no in seen:
            out.add(f"sanctions[{i}].source_decision_no", f"duplicates sanctions[{seen[item.source_decision_no]}]")
        seen.setdefault(item.source_decision_no, i)
        if sanction is not None:
            built.append(sanction)
    return _finish(out, lambda: built)


def _sanction(item: registry_pb2.ExternalSanction, path: str, codes: Codes, out: Violations) -> ExternalSanction | None:
    before = len(out.items)
    check_required_id(item.source_decision_no, f"{path}.source_decision_no", out)
    check_code(item.practitioner_code, codes.practitioner, f"{path}.practitioner_code", out)
    if item.status not in _SANCTION_STATUSES:
        out.add(f"{path}.status", "must be PRACTITIONER_STATUS_SUSPENDED or PRACTITIONER_STATUS_TERMINATED")
    start = required_date(item, "start", f"{path}.start", out)
    end = to_date(item.end, f"{path}.end", out) if item.HasField("end") else None
    if start and end and end <= start:
        out.add(f"{path}.end", f"{end} is not after start {start}")
    _text(item.origin_region, f"{path}.origin_region", out, required=True)
    if len(out.items) != before or start is None:
        return None
    return ExternalSanction(
        item.source_decision_no, item.practitioner_code, Status(item.status), start, end, item.origin_region
    )


def practitioner(code: str, codes: Codes) -> str | Violations:
    out = Violations()
    check_code(code, codes.practitioner, "practitioner_code", out)
    return _finish(out, lambda: code)


def _d(day: date | None) -> date:
    """Only called once validation passed, so the date is there."""
    assert day is not None
    return day


def report_request(request: registry_pb2.ListInstitutionReportsRequest, today: date) -> tuple[int, str] | Violations:
    """The year (0: today's) and the region prefix of an institution report."""
    out = Violations()
    year = request.year or today.year
    if not EARLIEST.year <= year <= LATEST.year:
        out.add("year", f"{year} is outside {EARLIEST.year} to {LATEST.year}")
    if request.region and not (request.region.isdigit() and request.region.isascii() and len(request.region) <= 6):
        out.add("region", f"{request.region[:40]!r} is not an administrative-division prefix of 1-6 digits")
    return _finish(out, lambda: (year, request.region))


def staff_request(
    request: registry_pb2.ListInstitutionStaffRequest, codes: Codes, today: date
) -> tuple[str, date] | Violations:
    out = Violations()
    check_code(request.institution_code, codes.institution, "institution_code", out)
    day = to_date(request.date, "date", out) if request.HasField("date") else today
    return _finish(out, lambda: (request.institution_code, _d(day)))
