"""Hypothesis over every method: valid, near-valid and hostile requests against a real server and Redis.

For each method, one strategy mixes three kinds of request:

- valid: every field of the right shape (codes from the profile's patterns, civil dates in range);
- near-valid: a valid request with one to three fields spoiled in ways that are certainly invalid;
- hostile: raw bytes (random, a valid message cut short or with bytes flipped, invalid UTF-8 spliced
  into a string field), sent without a client-side serializer.

Properties: never INTERNAL or UNKNOWN (only the codes a method can legitimately answer); a valid
check is decided line by line, a near-valid one is INVALID_ARGUMENT naming every spoiled field and
decides nothing (a malformed line is never decided); bytes that do not parse are INVALID_ARGUMENT
naming the request; a write that is refused leaves the data version where it was, one that is
accepted answers with a version the store holds; the server keeps answering.

CI runs the profile's default number of examples per method (tests/conftest.py). The long run:

    HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/e2e/test_request_fuzz.py    # >= 10,000 per method
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.type.date_pb2 import Date
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache.embedded import EmbeddedRedis
from cache.store import Store, connect
from gatekeeper.v1 import eligibility_pb2, registry_pb2
from service import app
from tests.conftest import Gatekeeper, connect_gatekeeper, make_settings, wait_serving
from tests.e2e.builders import HOSPITAL, bad_request, new_code, points, register
from tests.e2e.hostile import (
    INVALID_UTF8,
    METHOD_IDS,
    METHODS,
    Method,
    bit_flips,
    call_raw,
    full_sample,
    with_invalid_utf8,
)

C = grpc.StatusCode
# What each method may answer at all. Anything else (INTERNAL, UNKNOWN, ...) is a server bug.
ALLOWED: dict[str, frozenset[grpc.StatusCode]] = {
    "CheckClaim": frozenset({C.OK, C.INVALID_ARGUMENT}),
    "CheckClaims": frozenset({C.OK, C.INVALID_ARGUMENT}),  # a stream of one request
    "GetPractitionerStatus": frozenset({C.OK, C.INVALID_ARGUMENT}),
    "GetPractitionerFile": frozenset({C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND}),
    "ListInstitutionReports": frozenset({C.OK, C.INVALID_ARGUMENT}),
    "ListInstitutionStaff": frozenset({C.OK, C.INVALID_ARGUMENT}),
    # A watch answers with its first message; too many at once is a resumable refusal.
    "WatchStatusChanges": frozenset({C.OK, C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED}),
}
READS = frozenset({"GetPractitionerStatus", "ListInstitutionReports", "ListInstitutionStaff", "WatchStatusChanges"})
WRITE_CODES = frozenset({C.OK, C.INVALID_ARGUMENT, C.FAILED_PRECONDITION, C.ALREADY_EXISTS, C.NOT_FOUND})


# --- Valid shapes (profile xizang) -----------------------------------------------------------------

# People who exist, so that valid requests also reach the paths that find someone.
KNOWN = [f"D5499{n:07d}" for n in range(4)]
ids = st.from_regex(r"[\x21-\x7e]{1,64}", fullmatch=True)
practitioners = st.one_of(st.sampled_from(KNOWN), st.from_regex(r"[A-Z0-9]{4,30}", fullmatch=True))
institutions = st.one_of(st.just(HOSPITAL), st.from_regex(r"[HP][A-Z0-9]{11}", fullmatch=True))
days = st.dates(min_value=date(1950, 1, 1), max_value=date(2199, 12, 31))
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
required_texts = texts.filter(lambda t: t.strip())
med_types = st.one_of(st.just(""), st.from_regex(r"[0-9A-Za-z]{1,8}", fullmatch=True))


def pd(day: date) -> Date:
    return Date(year=day.year, month=day.month, day=day.day)


@st.composite
def claim_lines(draw: st.DrawFn) -> list[eligibility_pb2.ClaimLine]:
    line_ids = draw(st.lists(ids, min_size=1, max_size=12, unique=True))
    return [
        eligibility_pb2.ClaimLine(
            line_id=line_id,
            practitioner_code=draw(practitioners),
            dispenser_code=draw(st.one_of(st.just(""), practitioners)),
            service_date=pd(draw(days)),
            care_type=draw(st.integers(0, 3)),
            med_type=draw(med_types),
        )
        for line_id in line_ids
    ]


check_claims = st.builds(
    eligibility_pb2.CheckClaimRequest,
    claim_id=ids,
    institution_code=institutions,
    lines=claim_lines(),
    min_data_version=st.sampled_from([0, 0, 0, 1]),
)


@st.composite
def status_queries(draw: st.DrawFn) -> eligibility_pb2.GetPractitionerStatusRequest:
    request = eligibility_pb2.GetPractitionerStatusRequest(
        practitioner_code=draw(practitioners), institution_code=draw(st.one_of(st.just(""), institutions))
    )
    if draw(st.booleans()):
        request.date.CopyFrom(pd(draw(days)))
    return request


registrations = st.builds(
    registry_pb2.RegisterPractitionerRequest,
    practitioner_code=practitioners,
    institution_code=institutions,
    category=st.integers(1, 6),
    registered_on=days.map(pd),
)
endings = st.builds(
    registry_pb2.EndRegistrationRequest,
    practitioner_code=practitioners,
    institution_code=institutions,
    ended_on=days.map(pd),
)


@st.composite
def points_decisions(draw: st.DrawFn) -> registry_pb2.RecordPointsRequest:
    decided = draw(days)
    request = registry_pb2.RecordPointsRequest(
        decision_no=draw(ids),
        practitioner_code=draw(practitioners),
        institution_code=draw(institutions),
        points=draw(st.integers(1, 12)),
        responsibility=draw(st.integers(1, 3)),
        violation=draw(texts),
        decided_on=pd(decided),
    )
    if draw(st.booleans()):
        request.effective_on.CopyFrom(pd(draw(st.dates(min_value=decided, max_value=date(2199, 12, 31)))))
    return request


withdrawals = st.builds(
    registry_pb2.WithdrawPointsRequest, decision_no=ids, withdrawn_on=days.map(pd), reason=required_texts
)


@st.composite
def repairs(draw: st.DrawFn) -> registry_pb2.ApplyRepairRequest:
    request = registry_pb2.ApplyRepairRequest(
        repair_no=draw(ids), practitioner_code=draw(practitioners), approved_on=pd(draw(days)), basis=draw(texts)
    )
    if draw(st.booleans()):
        request.reduce_points = draw(st.integers(1, 12))
    else:
        request.shorten_suspension_days = draw(st.integers(1, 3660))
    return request


@st.composite
def sanction_imports(draw: st.DrawFn) -> registry_pb2.ImportSanctionsRequest:
    numbers = draw(st.lists(ids, min_size=1, max_size=5, unique=True))
    request = registry_pb2.ImportSanctionsRequest()
    for number in numbers:
        start = draw(st.dates(min_value=date(1950, 1, 1), max_value=date(2199, 12, 30)))
        item = request.sanctions.add(
            source_decision_no=number,
            practitioner_code=draw(practitioners),
            status=draw(st.sampled_from([2, 3])),
            start=pd(start),
            origin_region=draw(required_texts),
        )
        if draw(st.booleans()):
            end = draw(st.dates(min_value=date.fromordinal(start.toordinal() + 1), max_value=date(2199, 12, 31)))
            item.end.CopyFrom(pd(end))
    return request


file_requests = st.builds(registry_pb2.GetPractitionerFileRequest, practitioner_code=practitioners)
report_requests = st.builds(
    registry_pb2.ListInstitutionReportsRequest,
    year=st.one_of(st.just(0), st.integers(1950, 2199)),
    region=st.one_of(st.just(""), st.from_regex(r"[0-9]{1,6}", fullmatch=True)),
)


@st.composite
def staff_requests(draw: st.DrawFn) -> registry_pb2.ListInstitutionStaffRequest:
    request = registry_pb2.ListInstitutionStaffRequest(institution_code=draw(institutions))
    if draw(st.booleans()):
        request.date.CopyFrom(pd(draw(days)))
    return request


watch_requests = st.builds(
    eligibility_pb2.WatchStatusChangesRequest,
    institution_code=st.one_of(st.just(""), institutions),
    practitioner_codes=st.lists(practitioners, max_size=4),
    after_data_version=st.one_of(st.just(0), st.integers(0, 2**64 - 1)),
)

VALID: dict[str, st.SearchStrategy[Any]] = {
    "CheckClaim": check_claims,
    "CheckClaims": check_claims,
    "GetPractitionerStatus": status_queries(),
    "RegisterPractitioner": registrations,
    "EndRegistration": endings,
    "RecordPoints": points_decisions(),
    "WithdrawPoints": withdrawals,
    "ApplyRepair": repairs(),
    "ImportSanctions": sanction_imports(),
    "GetPractitionerFile": file_requests,
    "ListInstitutionReports": report_requests,
    "ListInstitutionStaff": staff_requests(),
    "WatchStatusChanges": watch_requests,
}

# --- Near-valid: one to three fields spoiled, each certainly invalid -------------------------------

CLEAR = object()  # remove the field (a required date)
BAD: dict[str, list[Any]] = {
    "id": ["", "a b", "x" * 65, "单据1", "\t1", "L\x7f"],
    "code": ["", "d5401", "D5", "D" * 31, "医师5401", "D540-102", "D54010200000\n"],
    "optional-code": ["d5401", "D5", "D" * 31, "医师5401", "D540-102"],
    "date": [
        CLEAR,
        Date(),
        Date(year=2025),
        Date(year=2025, month=2, day=30),
        Date(year=2025, month=13, day=1),
        Date(year=1949, month=12, day=31),
        Date(year=2200, month=1, day=1),
        Date(year=-3, month=1, day=1),
    ],
    "optional-date": [Date(year=2025, month=2, day=29), Date(year=2025, month=4, day=31), Date(year=10000)],
    "care": [4, 99, -1, 2**31 - 1],
    "enum": [0, 99, -7],
    "sanction-status": [0, 1, 99],
    "points": [0, 13, -1, -(2**31)],
    "reduce": [0, -1, 13],
    "shorten": [0, -5, 3661],
    "text": ["x" * 501, "中" * 501],
    "required-text": ["", "   ", "x" * 501],
    "med": ["1 3", "123456789", "中"],
    "year": [1949, 2200, -1, 2**31 - 1],
    "region": ["5a", "1234567", "\uff15\uff11", " 51"],
}
# Field paths that may be spoiled, per method; "[*]" is an index into the repeated field. A client-streaming
# method's requests go out as a stream of one, so its paths are those of the stream (STREAM_PREFIX).
STREAM_PREFIX = "requests[0]."
SPOILABLE: dict[str, list[tuple[str, str]]] = {
    "CheckClaim": [
        ("claim_id", "id"),
        ("institution_code", "code"),
        ("lines[*].line_id", "id"),
        ("lines[*].practitioner_code", "code"),
        ("lines[*].dispenser_code", "optional-code"),
        ("lines[*].service_date", "date"),
        ("lines[*].care_type", "care"),
        ("lines[*].med_type", "med"),
    ],
    "GetPractitionerStatus": [
        ("practitioner_code", "code"),
        ("institution_code", "optional-code"),
        ("date", "optional-date"),
    ],
    "RegisterPractitioner": [
        ("practitioner_code", "code"),
        ("institution_code", "code"),
        ("category", "enum"),
        ("registered_on", "date"),
    ],
    "EndRegistration": [("practitioner_code", "code"), ("institution_code", "code"), ("ended_on", "date")],
    "RecordPoints": [
        ("decision_no", "id"),
        ("practitioner_code", "code"),
        ("institution_code", "code"),
        ("points", "points"),
        ("responsibility", "enum"),
        ("violation", "text"),
        ("decided_on", "date"),
    ],
    "WithdrawPoints": [("decision_no", "id"), ("withdrawn_on", "date"), ("reason", "required-text")],
    "ApplyRepair": [
        ("repair_no", "id"),
        ("practitioner_code", "code"),
        ("approved_on", "date"),
        ("reduce_points", "reduce"),
        ("shorten_suspension_days", "shorten"),
        ("basis", "text"),
    ],
    "ImportSanctions": [
        ("sanctions[*].source_decision_no", "id"),
        ("sanctions[*].practitioner_code", "code"),
        ("sanctions[*].status", "sanction-status"),
        ("sanctions[*].start", "date"),
        ("sanctions[*].origin_region", "required-text"),
    ],
    "GetPractitionerFile": [("practitioner_code", "code")],
    "ListInstitutionReports": [("year", "year"), ("region", "region")],
    "ListInstitutionStaff": [("institution_code", "code"), ("date", "optional-date")],
    "WatchStatusChanges": [("institution_code", "optional-code"), ("practitioner_codes[*]", "code")],
}
SPOILABLE["CheckClaims"] = [(STREAM_PREFIX + path, kind) for path, kind in SPOILABLE["CheckClaim"]]
ONEOF_SIBLINGS = {"reduce_points": {"shorten_suspension_days"}, "shorten_suspension_days": {"reduce_points"}}
_STEP = re.compile(r"(\w+)(?:\[(\d+)\])?")


def spoil(message: Message, path: str, value: Any) -> None:
    """Set the field at ``path`` (e.g. ``lines[2].service_date``) to ``value`` (CLEAR: remove it)."""
    *parents, leaf = path.split(".")
    target: Any = message
    for step in parents:
        match = _STEP.fullmatch(step)
        assert match
        target = getattr(target, match.group(1))
        if match.group(2) is not None:
            target = target[int(match.group(2))]
    step = _STEP.fullmatch(leaf)
    assert step
    if step.group(2) is not None:  # an element of a repeated scalar (practitioner_codes[1])
        getattr(target, step.group(1))[int(step.group(2))] = value
    elif value is CLEAR:
        target.ClearField(leaf)
    elif isinstance(value, Message):
        getattr(target, leaf).CopyFrom(value)
    else:
        setattr(target, leaf, value)


@st.composite
def near_valid(draw: st.DrawFn, method: str) -> tuple[Message, set[str]]:
    """A valid request with 1-3 fields spoiled, and the paths its BadRequest must name."""
    message = draw(VALID[method])
    spoiled: set[str] = set()
    for _ in range(draw(st.integers(1, 3))):
        pattern, kind = draw(st.sampled_from(SPOILABLE[method]))
        prefix = STREAM_PREFIX if pattern.startswith(STREAM_PREFIX) else ""
        path = pattern = pattern.removeprefix(prefix)  # the path in the message; the BadRequest adds prefix
        if "[*]" in pattern:
            repeated = getattr(message, pattern.split("[")[0])
            if not repeated:  # optional lists (a watch's codes) get an element to spoil
                repeated.append(KNOWN[0])
            path = pattern.replace("*", str(draw(st.integers(0, len(repeated) - 1))))
        spoil(message, path, draw(st.sampled_from(BAD[kind])))
        # setting one member of a oneof clears the others
        spoiled -= {prefix + sibling for sibling in ONEOF_SIBLINGS.get(path, set())}
        spoiled.add(prefix + path)
    return message, spoiled


# --- Hostile bytes ---------------------------------------------------------------------------------


@st.composite
def hostile(draw: st.DrawFn, method: Method) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "utf8"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=400))
    if kind == "utf8":
        sample, markers = full_sample(method)
        return with_invalid_utf8(sample, draw(st.sampled_from(markers)), draw(st.sampled_from(INVALID_UTF8)))
    data = draw(VALID[method.name]).SerializeToString() or b"\x00"
    if kind == "truncated":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))] or b"\x0a"
    return bit_flips(random.Random(draw(st.integers(0, 2**32))), data, 1)[0]


@dataclass(frozen=True)
class Request:
    kind: str  # valid / near-valid / hostile
    message: Message | None  # None for bytes
    data: bytes
    spoiled: frozenset[str] = frozenset()


def requests(method: Method) -> st.SearchStrategy[Request]:
    return st.one_of(
        VALID[method.name].map(lambda m: Request("valid", m, m.SerializeToString())),
        near_valid(method.name).map(lambda p: Request("near-valid", p[0], p[0].SerializeToString(), frozenset(p[1]))),
        hostile(method).map(lambda b: Request("hostile", None, b)),
    )


# --- The server --------------------------------------------------------------------------------------


@dataclass
class Served:
    gk: Gatekeeper
    store: Store

    def channel(self, method: Method) -> grpc.Channel:
        return self.gk.admin_channel if method.admin else self.gk.channel


@pytest.fixture(scope="module")
def served(module_redis: EmbeddedRedis) -> Iterator[Served]:
    handle = app.start(make_settings(module_redis.url))
    gk = connect_gatekeeper(handle.check_port, handle.admin_port)
    store = Store(connect(module_redis.url))
    try:
        wait_serving(handle.check_port)
        for n, code in enumerate(KNOWN):
            gk.admin.RegisterPractitioner(register(code, "2024-01-01"), timeout=10)
            if n % 2:
                gk.admin.RecordPoints(points(code, 3 * n, "2025-03-10"), timeout=10)
        gk.admin.RegisterPractitioner(register(new_code()), timeout=10)
        yield Served(gk, store)
    finally:
        store.client.close()
        gk.close()
        handle.stop()


def code_of(answer: object) -> grpc.StatusCode:
    return answer.code() if isinstance(answer, grpc.RpcError) else C.OK  # type: ignore[attr-defined]


def check_answer(served: Served, method: Method, request: Request, answer: object, version_before: int) -> None:
    code = code_of(answer)
    what = f"{method.name} {request.kind} {request.message or request.data[:60]!r}"
    allowed = ALLOWED.get(method.name, WRITE_CODES)
    details = answer.details() if isinstance(answer, grpc.RpcError) else ""  # type: ignore[attr-defined]
    assert code in allowed, f"{what}: {code} {details}"

    decoded = request.message
    if decoded is None:
        if not method.decodes(request.data):
            assert code == C.INVALID_ARGUMENT, what
            assert set(bad_request(answer)) == {method.request_field}, what  # type: ignore[arg-type]
            return
        decoded = method.request.FromString(request.data)
    if code == C.INVALID_ARGUMENT:
        fields = set(bad_request(answer))  # type: ignore[arg-type]
        assert request.spoiled <= fields, f"{what}: spoiled {set(request.spoiled)}, named {fields}"
    elif request.kind == "near-valid":
        raise AssertionError(f"{what}: spoiled {set(request.spoiled)}, answered {code}")

    if method.name in ("CheckClaim", "CheckClaims"):
        if request.kind == "valid":
            assert code == C.OK, f"{what}: {code} {details}"
        if code == C.OK:
            # Decided line by line, every line, in order: nothing but the lines that were sent.
            assert isinstance(decoded, eligibility_pb2.CheckClaimRequest)
            assert isinstance(answer, eligibility_pb2.CheckClaimResponse)
            assert [d.line_id for d in answer.decisions] == [line.line_id for line in decoded.lines], what
            assert all(d.decision and d.reason for d in answer.decisions), what
    elif method.name in READS and request.kind == "valid":
        assert code == C.OK, f"{what}: {code} {details}"

    if method.write:
        version = served.store.version()
        if code == C.OK:  # a new write moves the version; a replay (same document number) answers as before
            assert version >= version_before, what
            assert 0 < answer.data_version <= version, what  # type: ignore[attr-defined]
        else:
            assert version == version_before, f"{what}: refused ({code}) but the data version moved"


@pytest.mark.parametrize("method", METHODS, ids=METHOD_IDS)
def test_every_request_is_answered_within_the_contract(served: Served, method: Method) -> None:
    channel = served.channel(method)

    @settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(request=requests(method))
    def property_(request: Request) -> None:
        before = served.store.version() if method.write else 0
        timeout = 3 if method.name == "WatchStatusChanges" else 10  # a resumed watch may rightly stay silent
        answer = call_raw(method, channel, request.data, timeout)
        check_answer(served, method, request, answer, before)

    property_()
    with grpc.insecure_channel(f"127.0.0.1:{served.gk.check_port}") as health_channel:
        status = health_pb2_grpc.HealthStub(health_channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
