"""Request validation: every bad field named by path, nothing decided when anything is bad.

Pure functions from protobuf requests to domain values or a list of violations.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from google.type.date_pb2 import Date

from domain.values import CareType
from domain.violations import Violations
from gatekeeper.v1 import eligibility_pb2
from service.check.decision import Line
from service.check.recall import Bounded, LineKey
from service.rules.profile import Profile

MAX_ID_LENGTH = 64
_ID = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces: echoed into logs and audits
_MED_TYPE = re.compile(r"[0-9A-Za-z]{1,8}")
_CARE_TYPES = frozenset(int(c) for c in CareType)


@dataclass(frozen=True, slots=True)
class Codes:
    """Compiled code shapes of the active profile."""

    practitioner: re.Pattern[str]
    institution: re.Pattern[str]

    @classmethod
    def of(cls, profile: Profile) -> Codes:
        return cls(re.compile(profile.codes.practitioner_pattern), re.compile(profile.codes.institution_pattern))


def check_required_id(value: str, path: str, out: Violations) -> None:
    if not value:
        out.add(path, "is required")
    elif not _ID.fullmatch(value):
        out.add(path, f"must be 1-{MAX_ID_LENGTH} printable ASCII characters without spaces")


def check_code(value: str, pattern: re.Pattern[str], path: str, out: Violations, *, required: bool = True) -> None:
    if not value:
        if required:
            out.add(path, "is required")
    elif not pattern.fullmatch(value):
        out.add(path, f"{value[:40]!r} does not have the shape {pattern.pattern}")


# The dates this system can mean: before 1950 no such scheme existed, and date arithmetic (bans of
# years, suspensions of months) must never leave the calendar.
EARLIEST = date(1950, 1, 1)
LATEST = date(2199, 12, 31)


def to_date(value: Date, path: str, out: Violations) -> date | None:
    """A complete civil date, or a violation (google.type.Date allows partial dates; we do not)."""
    try:
        day = date(value.year, value.month, value.day)
    except ValueError:
        out.add(path, f"{value.year:04d}-{value.month:02d}-{value.day:02d} is not a valid calendar date")
        return None
    if not EARLIEST <= day <= LATEST:
        out.add(path, f"{day} is outside {EARLIEST} to {LATEST}")
        return None
    return day


def required_date(message: object, name: str, path: str, out: Violations) -> date | None:
    if not message.HasField(name):  # type: ignore[attr-defined]
        out.add(path, "is required")
        return None
    return to_date(getattr(message, name), path, out)


CheckedLine = tuple[str, LineKey, Line]  # (line id, what decides the line, the line without its id)


def check_claim(request: eligibility_pb2.CheckClaimRequest, codes: Codes, max_lines: int) -> list[Line] | Violations:
    """The claim's lines, or every violation (``checked_lines`` without a memory of lines seen)."""
    found = checked_lines(request, codes, max_lines, Bounded(0))
    if isinstance(found, Violations):
        return found
    return [dataclasses.replace(line, line_id=line_id) for line_id, _key, line in found]


def checked_lines(
    request: eligibility_pb2.CheckClaimRequest, codes: Codes, max_lines: int, known: Bounded[LineKey, Line]
) -> list[CheckedLine] | Violations:
    """The claim's lines, or every violation. Valid claims take a fast path that builds no field
    paths and validates each distinct line once (``known``: lines validated before, see
    service/check/recall.py); anything else is walked again field by field to name every problem."""
    header_ok = _ID.fullmatch(request.claim_id) and codes.institution.fullmatch(request.institution_code)
    if header_ok and 0 < len(request.lines) <= max_lines:
        lines = _fast_lines(request.lines, codes, known)
        if lines is not None:
            return lines
    found = _claim_violations(request, codes, max_lines)
    if isinstance(found, Violations):
        return found
    return [(line.line_id, line_key(proto), dataclasses.replace(line, line_id="")) for line, proto in
            zip(found, request.lines, strict=True)]  # fmt: skip


def line_key(line: eligibility_pb2.ClaimLine) -> LineKey:
    d = line.service_date
    return (line.practitioner_code, line.dispenser_code, d.year, d.month, d.day, line.care_type, line.med_type)


_CARE_BY_NUMBER = {int(c): c for c in CareType}


def _fast_lines(
    lines: Sequence[eligibility_pb2.ClaimLine], codes: Codes, known: Bounded[LineKey, Line]
) -> list[CheckedLine] | None:
    valid_id, seen = _ID.fullmatch, known.entries.get
    out: list[CheckedLine] = []
    for line in lines:
        d = line.service_date  # an unset date reads 0-0-0, which is never valid, so never known
        key = (line.practitioner_code, line.dispenser_code, d.year, d.month, d.day, line.care_type, line.med_type)
        template = seen(key)
        if template is None:
            template = _valid_line(line, codes)
            if template is None:
                return None
            known.put(key, template)
        line_id = line.line_id
        if not valid_id(line_id):
            return None
        out.append((line_id, key, template))
    if len(out) > 1 and len({line[0] for line in out}) != len(out):
        return None
    return out


def _valid_line(line: eligibility_pb2.ClaimLine, codes: Codes) -> Line | None:
    """The line without its id when every other field is valid, else None."""
    practitioner = codes.practitioner.fullmatch
    code, dispenser, med = line.practitioner_code, line.dispenser_code, line.med_type
    care = _CARE_BY_NUMBER.get(line.care_type)
    if not practitioner(code) or care is None or not line.HasField("service_date"):
        return None
    if (dispenser and not practitioner(dispenser)) or (med and not _MED_TYPE.fullmatch(med)):
        return None
    d = line.service_date
    try:
        day = date(d.year, d.month, d.day)
    except ValueError:
        return None
    if not EARLIEST <= day <= LATEST:
        return None
    return Line("", code, day, dispenser, care, med)


def _claim_violations(
    request: eligibility_pb2.CheckClaimRequest, codes: Codes, max_lines: int
) -> list[Line] | Violations:
    out = Violations()
    check_required_id(request.claim_id, "claim_id", out)
    check_code(request.institution_code, codes.institution, "institution_code", out)
    count = len(request.lines)
    if count == 0:
        out.add("lines", "at least one line is required")
    elif count > max_lines:
        out.add("lines", f"{count} lines exceed the maximum of {max_lines} per request")
        return out  # don't walk an oversized request line by line
    lines = [_line(i, line, codes, out) for i, line in enumerate(request.lines)]
    _check_unique((line.line_id for line in request.lines), out)
    if out:
        return out
    return [line for line in lines if line is not None]


def _line(i: int, line: eligibility_pb2.ClaimLine, codes: Codes, out: Violations) -> Line | None:
    path = f"lines[{i}]"
    before = len(out.items)
    check_required_id(line.line_id, f"{path}.line_id", out)
    check_code(line.practitioner_code, codes.practitioner, f"{path}.practitioner_code", out)
    check_code(line.dispenser_code, codes.practitioner, f"{path}.dispenser_code", out, required=False)
    day = required_date(line, "service_date", f"{path}.service_date", out)
    if line.care_type not in _CARE_TYPES:
        out.add(f"{path}.care_type", f"unknown CareType value {line.care_type}")
    if line.med_type and not _MED_TYPE.fullmatch(line.med_type):
        out.add(f"{path}.med_type", "must be 1-8 letters or digits")
    if len(out.items) != before or day is None:
        return None
    return Line(
        line_id=line.line_id,
        practitioner_code=line.practitioner_code,
        service_date=day,
        dispenser_code=line.dispenser_code,
        care_type=CareType(line.care_type),
        med_type=line.med_type,
    )


def _check_unique(line_ids: Iterable[str], out: Violations) -> None:
    first_seen: dict[str, int] = {}
    for i, line_id in enumerate(line_ids):
        if not line_id:
            continue
        if line_id in first_seen:
            out.add(f"lines[{i}].line_id", f"duplicates lines[{first_seen[line_id]}].line_id {line_id!r}")
        else:
            first_seen[line_id] = i


@dataclass(frozen=True, slots=True)
class StatusQuery:
    practitioner_code: str
    day: date | None  # None: today in China time, resolved at the edge
    institution_code: str


def status_query(request: eligibility_pb2.GetPractitionerStatusRequest, codes: Codes) -> StatusQuery | Violations:
    out = Violations()
    check_code(request.practitioner_code, codes.practitioner, "practitioner_code", out)
    check_code(request.institution_code, codes.institution, "institution_code", out, required=False)
    day = to_date(request.date, "date", out) if request.HasField("date") else None
    if out:
        return out
    return StatusQuery(request.practitioner_code, day, request.institution_code)
