"""Request validation: every bad field named by its path, all at once; nothing decided when anything is bad."""

from __future__ import annotations

import string
from collections import Counter
from datetime import date

import pytest
from google.type.date_pb2 import Date
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.values import CareType
from domain.violations import Violations
from gatekeeper.v1 import eligibility_pb2
from service.check.decision import Line
from service.check.validation import EARLIEST, LATEST, Codes, StatusQuery, check_claim, status_query
from service.rules.profile import load_profile

CODES = Codes.of(load_profile("national"))
MAX_LINES = 1000
HOSPITAL = "H12345678901"
PHARMACY = "P12345678901"


def pb_date(year: int, month: int, day: int) -> Date:
    return Date(year=year, month=month, day=day)


def claim_line(line_id: str = "L1", practitioner_code: str = "D0001", **fields) -> eligibility_pb2.ClaimLine:
    fields.setdefault("service_date", pb_date(2025, 4, 1))
    return eligibility_pb2.ClaimLine(line_id=line_id, practitioner_code=practitioner_code, **fields)


def request(*lines, claim_id: str = "C-1", institution_code: str = HOSPITAL) -> eligibility_pb2.CheckClaimRequest:
    return eligibility_pb2.CheckClaimRequest(claim_id=claim_id, institution_code=institution_code, lines=list(lines))


def paths(result: list[Line] | Violations) -> Counter[str]:
    assert isinstance(result, Violations), f"expected violations, got {result!r}"
    assert result  # truthy when there is anything
    for v in result.items:
        assert v.description, v
    return Counter(v.field for v in result.items)


# --- A valid request -------------------------------------------------------------------------------------------------


def test_valid_request_returns_lines_in_order() -> None:
    req = request(
        claim_line("L1", "D0001"),
        claim_line(
            "L2",
            "D0002",
            dispenser_code="R0003",
            service_date=pb_date(2024, 2, 29),
            care_type=CareType.EMERGENCY,
            med_type="13",
        ),
        claim_line("L3", "D" * 30, care_type=CareType.RESCUE, med_type="24", service_date=pb_date(1950, 1, 1)),
        claim_line("x" * 64, "0000", care_type=CareType.ROUTINE, service_date=pb_date(2199, 12, 31)),
    )
    result = check_claim(req, CODES, MAX_LINES)
    assert result == [
        Line("L1", "D0001", date(2025, 4, 1)),
        Line("L2", "D0002", date(2024, 2, 29), "R0003", CareType.EMERGENCY, "13"),
        Line("L3", "D" * 30, date(1950, 1, 1), "", CareType.RESCUE, "24"),
        Line("x" * 64, "0000", date(2199, 12, 31), "", CareType.ROUTINE, ""),
    ]
    assert all(isinstance(line.care_type, CareType) for line in result)


def test_pharmacy_claim_is_valid() -> None:
    result = check_claim(request(claim_line(), institution_code=PHARMACY), CODES, MAX_LINES)
    assert isinstance(result, list)
    assert len(result) == 1


def test_exactly_the_maximum_number_of_lines_is_valid() -> None:
    req = request(*(claim_line(f"L{i}") for i in range(5)))
    result = check_claim(req, CODES, max_lines=5)
    assert [line.line_id for line in result] == [f"L{i}" for i in range(5)]


# --- Every bad field, all at once ------------------------------------------------------------------------------------


def test_every_bad_field_is_reported_at_once_by_path() -> None:
    req = request(
        # lines[0]: missing line_id and practitioner_code, impossible date
        claim_line("", "", service_date=pb_date(2025, 2, 30)),
        # lines[1]: practitioner code one character too long, month 13
        claim_line("L1", "D" * 31, service_date=pb_date(2025, 13, 1)),
        # lines[2]: lowercase practitioner, punctuation in dispenser, year 0
        claim_line("L2", "d0001", dispenser_code="R-0002", service_date=pb_date(0, 1, 1)),
        # lines[3]: no service date, unknown care type, med_type with a space
        eligibility_pb2.ClaimLine(line_id="L3", practitioner_code="D0003", care_type=99, med_type="1 3"),
        # lines[4]: duplicate line_id (of lines[1]), med_type too long
        claim_line("L1", "D0004", med_type="123456789"),
        # lines[5]: fine on its own, still not decided
        claim_line("L5", "D0005"),
        claim_id="",
        institution_code="",
    )
    result = check_claim(req, CODES, MAX_LINES)
    assert paths(result) == Counter(
        [
            "claim_id",
            "institution_code",
            "lines[0].line_id",
            "lines[0].practitioner_code",
            "lines[0].service_date",
            "lines[1].practitioner_code",
            "lines[1].service_date",
            "lines[2].practitioner_code",
            "lines[2].dispenser_code",
            "lines[2].service_date",
            "lines[3].service_date",
            "lines[3].care_type",
            "lines[3].med_type",
            "lines[4].line_id",
            "lines[4].med_type",
        ]
    )
    by_path = {v.field: v.description for v in result.items}
    assert "required" in by_path["claim_id"]
    assert "required" in by_path["lines[3].service_date"]
    assert "2025-02-30" in by_path["lines[0].service_date"]
    assert "lines[1]" in by_path["lines[4].line_id"]  # names the first occurrence
    assert "99" in by_path["lines[3].care_type"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("claim_id", "", id="claim_id-empty"),
        pytest.param("claim_id", "has space", id="claim_id-space"),
        pytest.param("claim_id", "x" * 65, id="claim_id-too-long"),
        pytest.param("claim_id", "理赔1", id="claim_id-non-ascii"),
        pytest.param("institution_code", "", id="institution-empty"),
        pytest.param("institution_code", "X12345678901", id="institution-wrong-letter"),
        pytest.param("institution_code", "h12345678901", id="institution-lowercase"),
        pytest.param("institution_code", "H1234567890", id="institution-too-short"),
        pytest.param("institution_code", "H123456789012", id="institution-too-long"),
        pytest.param("institution_code", "H1234567890-", id="institution-punctuation"),
        pytest.param("institution_code", "H1234567890\n", id="institution-trailing-newline"),
    ],
)
def test_bad_claim_field(field: str, value: str) -> None:
    req = request(claim_line())
    setattr(req, field, value)
    assert paths(check_claim(req, CODES, MAX_LINES)) == Counter([field])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("line_id", "", id="line_id-empty"),
        pytest.param("line_id", "L 1", id="line_id-space"),
        pytest.param("practitioner_code", "", id="practitioner-empty"),
        pytest.param("practitioner_code", "D" * 31, id="practitioner-31-chars"),
        pytest.param("practitioner_code", "D01", id="practitioner-too-short"),
        pytest.param("practitioner_code", "d0001", id="practitioner-lowercase"),
        pytest.param("practitioner_code", "D-0001", id="practitioner-punctuation"),
        pytest.param("practitioner_code", "D0001 ", id="practitioner-trailing-space"),
        pytest.param("practitioner_code", "D0001\n", id="practitioner-trailing-newline"),
        pytest.param("practitioner_code", "\uff240001", id="practitioner-fullwidth"),
        pytest.param("practitioner_code", "D\u0660\u0660\u0660\u0661", id="practitioner-arabic-digits"),
        pytest.param("dispenser_code", "R" * 31, id="dispenser-31-chars"),
        pytest.param("dispenser_code", "r0002", id="dispenser-lowercase"),
        pytest.param("dispenser_code", "R.0002", id="dispenser-punctuation"),
        pytest.param("care_type", 99, id="care-type-99"),
        pytest.param("care_type", -1, id="care-type-negative"),
        pytest.param("care_type", 4, id="care-type-just-past-rescue"),
        pytest.param("med_type", "1 3", id="med-type-space"),
        pytest.param("med_type", "123456789", id="med-type-9-chars"),
        pytest.param("med_type", "13.", id="med-type-punctuation"),
        pytest.param("med_type", "急诊", id="med-type-non-ascii"),
    ],
)
def test_bad_line_field(field: str, value: str | int) -> None:
    bad = claim_line("L9")
    setattr(bad, field, value)
    req = request(claim_line("L0"), bad)
    assert paths(check_claim(req, CODES, MAX_LINES)) == Counter([f"lines[1].{field}"])


@pytest.mark.parametrize(
    "service_date",
    [
        pytest.param(pb_date(2025, 2, 30), id="feb-30"),
        pytest.param(pb_date(2025, 2, 29), id="feb-29-non-leap"),
        pytest.param(pb_date(2025, 13, 1), id="month-13"),
        pytest.param(pb_date(2025, 0, 1), id="month-0"),
        pytest.param(pb_date(2025, 4, 31), id="apr-31"),
        pytest.param(pb_date(2025, 4, 0), id="day-0"),
        pytest.param(pb_date(0, 1, 1), id="year-0"),
        pytest.param(pb_date(10000, 1, 1), id="year-10000"),
        pytest.param(pb_date(-1, 1, 1), id="year-negative"),
        pytest.param(pb_date(2025, 0, 0), id="partial-year-only"),
        pytest.param(pb_date(0, 0, 0), id="all-zero-but-set"),
    ],
)
def test_impossible_service_date(service_date: Date) -> None:
    req = request(claim_line("L0"), claim_line("L1", service_date=service_date))
    assert paths(check_claim(req, CODES, MAX_LINES)) == Counter(["lines[1].service_date"])


def test_missing_service_date() -> None:
    line = eligibility_pb2.ClaimLine(line_id="L1", practitioner_code="D0001")
    result = check_claim(request(line), CODES, MAX_LINES)
    assert paths(result) == Counter(["lines[0].service_date"])
    assert "required" in result.items[0].description


def test_duplicate_line_ids_name_every_later_occurrence() -> None:
    req = request(claim_line("A"), claim_line("B"), claim_line("A"), claim_line("C"), claim_line("A"), claim_line("B"))
    result = check_claim(req, CODES, MAX_LINES)
    assert paths(result) == Counter(["lines[2].line_id", "lines[4].line_id", "lines[5].line_id"])
    by_path = {v.field: v.description for v in result.items}
    assert "lines[0]" in by_path["lines[4].line_id"]
    assert "lines[1]" in by_path["lines[5].line_id"]


def test_zero_lines() -> None:
    assert paths(check_claim(request(), CODES, MAX_LINES)) == Counter(["lines"])


def test_zero_lines_reported_with_the_other_claim_fields() -> None:
    result = check_claim(request(claim_id="", institution_code="bad"), CODES, MAX_LINES)
    assert paths(result) == Counter(["claim_id", "institution_code", "lines"])


def test_more_lines_than_the_maximum() -> None:
    req = request(*(claim_line(f"L{i}") for i in range(6)))
    result = check_claim(req, CODES, max_lines=5)
    assert paths(result) == Counter(["lines"])
    assert "6" in result.items[0].description
    assert "5" in result.items[0].description


def test_more_lines_than_the_maximum_still_reports_the_claim_fields() -> None:
    req = request(*(claim_line(f"L{i}") for i in range(6)), claim_id="", institution_code="")
    assert paths(check_claim(req, CODES, max_lines=5)) == Counter(["claim_id", "institution_code", "lines"])


def test_one_bad_line_means_no_line_is_decided() -> None:
    req = request(claim_line("L0"), claim_line("L1", "bad code"), claim_line("L2"))
    assert isinstance(check_claim(req, CODES, MAX_LINES), Violations)


def test_valid_enum_values_are_accepted() -> None:
    req = request(*(claim_line(f"L{c.value}", care_type=c.value) for c in CareType))
    result = check_claim(req, CODES, MAX_LINES)
    assert [line.care_type for line in result] == list(CareType)


# --- GetPractitionerStatus ------------------------------------------------------------------------------------------


def test_status_query_valid_without_date_and_institution() -> None:
    result = status_query(eligibility_pb2.GetPractitionerStatusRequest(practitioner_code="D0001"), CODES)
    assert result == StatusQuery("D0001", None, "")


def test_status_query_valid_with_date_and_institution() -> None:
    req = eligibility_pb2.GetPractitionerStatusRequest(
        practitioner_code="D0001", date=pb_date(2025, 5, 10), institution_code=PHARMACY
    )
    assert status_query(req, CODES) == StatusQuery("D0001", date(2025, 5, 10), PHARMACY)


def test_status_query_reports_every_bad_field() -> None:
    req = eligibility_pb2.GetPractitionerStatusRequest(
        practitioner_code="d-1", date=pb_date(2025, 2, 30), institution_code="Q12345678901"
    )
    assert paths(status_query(req, CODES)) == Counter(["practitioner_code", "institution_code", "date"])


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        pytest.param({}, "practitioner_code", id="missing-practitioner"),
        pytest.param({"practitioner_code": "D" * 31}, "practitioner_code", id="practitioner-too-long"),
        pytest.param({"practitioner_code": "D0001", "date": pb_date(2025, 13, 1)}, "date", id="month-13"),
        pytest.param({"practitioner_code": "D0001", "date": pb_date(0, 1, 1)}, "date", id="year-0"),
        pytest.param({"practitioner_code": "D0001", "date": pb_date(0, 0, 0)}, "date", id="date-set-but-empty"),
        pytest.param({"practitioner_code": "D0001", "institution_code": "H1"}, "institution_code", id="institution"),
    ],
)
def test_status_query_bad_field(fields: dict, bad: str) -> None:
    req = eligibility_pb2.GetPractitionerStatusRequest(**fields)
    assert paths(status_query(req, CODES)) == Counter([bad])


# --- Properties -----------------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

practitioner_codes = st.text(alphabet=string.ascii_uppercase + string.digits, min_size=4, max_size=30)
institution_codes = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from("HP"),
    st.text(alphabet=string.ascii_uppercase + string.digits, min_size=11, max_size=11),
)
med_types = st.one_of(st.just(""), st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8))


@st.composite
def valid_lines(draw: st.DrawFn, line_id: str) -> eligibility_pb2.ClaimLine:
    day = draw(st.dates(min_value=EARLIEST, max_value=LATEST))
    return eligibility_pb2.ClaimLine(
        line_id=line_id,
        practitioner_code=draw(practitioner_codes),
        dispenser_code=draw(st.one_of(st.just(""), practitioner_codes)),
        service_date=pb_date(day.year, day.month, day.day),
        care_type=draw(st.sampled_from([int(c) for c in CareType])),
        med_type=draw(med_types),
    )


@st.composite
def valid_requests(draw: st.DrawFn) -> eligibility_pb2.CheckClaimRequest:
    ids = draw(
        st.lists(
            st.text(alphabet=[chr(c) for c in range(0x21, 0x7F)], min_size=1, max_size=64),
            min_size=1,
            max_size=20,
            unique=True,
        )
    )
    return eligibility_pb2.CheckClaimRequest(
        claim_id=draw(st.text(alphabet=string.ascii_letters + string.digits + "-_:", min_size=1, max_size=64)),
        institution_code=draw(institution_codes),
        lines=[draw(valid_lines(line_id)) for line_id in ids],
    )


@PROPERTY_SETTINGS
@given(valid_requests())
def test_property_valid_requests_return_one_line_per_line(req: eligibility_pb2.CheckClaimRequest) -> None:
    result = check_claim(req, CODES, MAX_LINES)
    assert isinstance(result, list), [(v.field, v.description) for v in result.items]
    assert len(result) == len(req.lines)
    assert [line.line_id for line in result] == [line.line_id for line in req.lines]
    for got, sent in zip(result, req.lines, strict=True):
        assert got.practitioner_code == sent.practitioner_code
        assert got.dispenser_code == sent.dispenser_code
        assert (got.service_date.year, got.service_date.month, got.service_date.day) == (
            sent.service_date.year,
            sent.service_date.month,
            sent.service_date.day,
        )
        assert got.care_type == sent.care_type
        assert got.med_type == sent.med_type


# "bytes-ish" strings: arbitrary bytes read as Latin-1 (control characters, NUL, high bytes) and arbitrary text.
junk = st.one_of(
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
    st.text(max_size=80),
    practitioner_codes,
)
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@st.composite
def junk_requests(draw: st.DrawFn) -> eligibility_pb2.CheckClaimRequest:
    lines = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        line = eligibility_pb2.ClaimLine(
            line_id=draw(junk),
            practitioner_code=draw(junk),
            dispenser_code=draw(junk),
            care_type=draw(st.one_of(st.integers(min_value=-2, max_value=5), int32)),
            med_type=draw(junk),
        )
        if draw(st.booleans()):
            line.service_date.CopyFrom(Date(year=draw(int32), month=draw(int32), day=draw(int32)))
        lines.append(line)
    return eligibility_pb2.CheckClaimRequest(
        claim_id=draw(junk), institution_code=draw(junk), lines=lines, min_data_version=draw(st.integers(0, 2**64 - 1))
    )


@PROPERTY_SETTINGS
@given(junk_requests(), st.integers(min_value=1, max_value=5))
def test_property_junk_never_raises(req: eligibility_pb2.CheckClaimRequest, max_lines: int) -> None:
    result = check_claim(req, CODES, max_lines)
    if isinstance(result, Violations):
        assert result.items
        for v in result.items:
            assert v.field
            assert v.description
    else:
        assert len(result) == len(req.lines)


@PROPERTY_SETTINGS
@given(junk, junk, st.one_of(st.none(), st.tuples(int32, int32, int32)))
def test_property_status_query_never_raises(code: str, institution: str, day: tuple[int, int, int] | None) -> None:
    req = eligibility_pb2.GetPractitionerStatusRequest(practitioner_code=code, institution_code=institution)
    if day is not None:
        req.date.CopyFrom(Date(year=day[0], month=day[1], day=day[2]))
    result = status_query(req, CODES)
    assert isinstance(result, StatusQuery | Violations)


@pytest.mark.parametrize("day", [(1, 1, 1), (1949, 12, 31), (2200, 1, 1), (9999, 12, 31)])
def test_dates_outside_the_supported_range_are_violations(day: tuple[int, int, int]) -> None:
    req = eligibility_pb2.CheckClaimRequest(
        claim_id="C1", institution_code="H12345678901", lines=[claim_line("L1", "D0001", service_date=pb_date(*day))]
    )
    result = check_claim(req, CODES, MAX_LINES)
    assert isinstance(result, Violations)
    assert [v.field for v in result.items] == ["lines[0].service_date"]
