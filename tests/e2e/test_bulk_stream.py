"""CheckClaims, the bulk stream, over real gRPC against a real server and Redis.

The stream answers each request exactly as CheckClaim answers the same request (whole responses
compared, Hypothesis over a population with every kind of status), one response per request, in
order, each before the next request is read; a malformed request (or undecodable bytes) ends the
stream with INVALID_ARGUMENT naming ``requests[N]...`` after the earlier answers; the bidi_stream
metrics count every message; the decision log has each claim; bulk streams have threads of their
own and a limit.
"""

from __future__ import annotations

import json
import pathlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import grpc
import pytest
from google.type.date_pb2 import Date
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2
from service import app
from service.check.servicer import CheckLimits
from service.check.stream import Patience
from tests.conftest import Gatekeeper, connect_gatekeeper, make_settings, wait_serving
from tests.e2e.builders import (
    BAD_CLAIMS,
    HOSPITAL,
    OTHER_HOSPITAL,
    PHARMACY,
    bad_request,
    claim,
    line,
    new_code,
    points,
    poll,
    register,
    rpc_error,
)

SERVICE = "gatekeeper.v1.EligibilityService"
METHOD = "CheckClaims"
PATH = f"/{SERVICE}/{METHOD}"
MAX_STREAMS = CheckLimits().max_streams


@dataclass
class Served:
    gk: Gatekeeper
    registry: CollectorRegistry
    log_file: pathlib.Path
    people: dict[str, str]  # kind -> practitioner code
    version: int  # the data version once the population is written (tests ask for it: the whole population)

    @property
    def stub(self) -> eligibility_pb2_grpc.EligibilityServiceStub:
        return self.gk.check

    def sample(self, name: str, method: str = METHOD, **labels: str) -> float:
        grpc_type = "bidi_stream" if method == METHOD else "unary"
        base = (
            {"grpc_type": grpc_type, "grpc_service": SERVICE, "grpc_method": method} if name.startswith("grpc") else {}
        )
        return self.registry.get_sample_value(name, {**base, **labels}) or 0.0


@pytest.fixture(scope="module")
def served(module_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server with a population of every kind: normal, suspended, terminated, registered elsewhere,
    a pharmacist, nobody (unknown); the decision log in a file."""
    registry = CollectorRegistry()
    log_file = tmp_path_factory.mktemp("decisions") / "decisions.jsonl"
    settings_ = make_settings(module_redis.url, decision_log="all", decision_log_file=str(log_file))
    handle = app.start(settings_, registry=registry)
    gk = connect_gatekeeper(handle.check_port, handle.admin_port)
    try:
        wait_serving(handle.check_port)
        people = {kind: new_code() for kind in ("normal", "suspended", "terminated", "elsewhere", "pharmacist")}
        people["unknown"] = new_code()
        admin = gk.admin
        for kind in ("normal", "suspended", "terminated"):
            admin.RegisterPractitioner(register(people[kind], "2024-01-01"), timeout=10)
        admin.RegisterPractitioner(register(people["elsewhere"], "2024-01-01", OTHER_HOSPITAL), timeout=10)
        admin.RegisterPractitioner(register(people["pharmacist"], "2024-01-01", PHARMACY), timeout=10)
        admin.RecordPoints(points(people["suspended"], 9, "2025-03-10"), timeout=10)
        written = admin.RecordPoints(points(people["terminated"], 12, "2025-06-01"), timeout=10)
        yield Served(gk, registry, log_file, people, written.data_version)
    finally:
        gk.close()
        handle.stop()


def stream(served: Served, requests: list[eligibility_pb2.CheckClaimRequest], timeout: float = 30) -> list[Any]:
    """Send the requests over one CheckClaims stream: the responses, then the RpcError if it ended in one."""
    got: list[Any] = []
    try:
        got.extend(served.stub.CheckClaims(iter(requests), timeout=timeout))
    except grpc.RpcError as error:
        got.append(error)
    return got


# --- The same answers as CheckClaim ----------------------------------------------------------------

KINDS = ("normal", "suspended", "terminated", "elsewhere", "pharmacist", "unknown")
days = st.dates(min_value=date(2024, 12, 1), max_value=date(2028, 12, 31))


@st.composite
def claims(draw: st.DrawFn, served: Served) -> eligibility_pb2.CheckClaimRequest:
    count = draw(st.integers(1, 12))
    request = eligibility_pb2.CheckClaimRequest(
        claim_id=f"C-{draw(st.integers(0, 10**6))}",
        institution_code=draw(st.sampled_from([HOSPITAL, OTHER_HOSPITAL, PHARMACY])),
        min_data_version=draw(st.sampled_from([0, served.version])),
    )
    for i in range(count):
        day = draw(days)
        item = request.lines.add(
            line_id=f"L{i}",
            practitioner_code=served.people[draw(st.sampled_from(KINDS))],
            service_date=Date(year=day.year, month=day.month, day=day.day),
            care_type=draw(st.integers(0, 3)),
            med_type=draw(st.sampled_from(["", "13", "24", "11"])),
        )
        if draw(st.booleans()):
            item.dispenser_code = served.people[draw(st.sampled_from(KINDS))]
    return request


def test_the_stream_answers_each_claim_as_check_claim_does(served: Served) -> None:
    @settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests=st.lists(claims(served), min_size=1, max_size=8))
    def property_(requests: list[eligibility_pb2.CheckClaimRequest]) -> None:
        unary = [served.stub.CheckClaim(r, timeout=10) for r in requests]
        assert stream(served, requests) == unary

    property_()


def test_table_of_outcomes_over_one_stream(served: Served) -> None:
    """Every reason once, in a claim per line, and a stale answer in the middle: same as unary."""
    p = served.people
    table = [
        (HOSPITAL, line("1", p["normal"], "2025-04-02"), "ALLOW", "ELIGIBLE"),
        (HOSPITAL, line("1", p["suspended"], "2025-04-02"), "REJECT", "SUSPENDED"),
        (HOSPITAL, line("1", p["suspended"], "2025-04-02", care_type=enums_pb2.CARE_TYPE_EMERGENCY), "ALLOW",
         "EMERGENCY_EXCEPTION"),
        (HOSPITAL, line("1", p["terminated"], "2025-07-01"), "REJECT", "TERMINATED"),
        (HOSPITAL, line("1", p["elsewhere"], "2025-04-02"), "REJECT", "NOT_REGISTERED"),
        (HOSPITAL, line("1", p["unknown"], "2025-04-02"), "REJECT", "UNKNOWN_PRACTITIONER"),
        (PHARMACY, line("1", p["elsewhere"], "2025-04-02", dispenser_code=p["pharmacist"]), "ALLOW", "ELIGIBLE"),
    ]  # fmt: skip
    requests = [
        claim(item, claim_id=f"T{i}", institution_code=institution, min_data_version=served.version)
        for i, (institution, item, _, _) in enumerate(table)
    ]
    stale = claim(line("1", p["normal"], "2025-04-02"), claim_id="STALE", min_data_version=10**12)
    requests.insert(3, stale)
    expected = [(d, r) for _, _, d, r in table]
    expected.insert(3, ("REVIEW", "STALE_DATA"))

    answers = stream(served, requests)
    got = [
        (enums_pb2.Decision.Name(a.decisions[0].decision)[9:], enums_pb2.Reason.Name(a.decisions[0].reason)[7:])
        for a in answers
    ]
    assert got == expected
    assert [a.claim_id for a in answers] == [r.claim_id for r in requests]
    assert answers == [served.stub.CheckClaim(r, timeout=10) for r in requests]


def test_order_is_kept_over_many_claims_of_every_size(served: Served) -> None:
    p = served.people
    requests = [
        claim(*(line(f"{n}-{i}", p["normal"], "2025-04-02") for i in range(1 + n % 37)), claim_id=f"ORDER-{n}")
        for n in range(300)
    ]
    answers = stream(served, requests)
    assert [a.claim_id for a in answers] == [r.claim_id for r in requests]
    for request, answer in zip(requests, answers, strict=True):
        assert [d.line_id for d in answer.decisions] == [ln.line_id for ln in request.lines]


def test_each_answer_comes_before_the_next_request_is_sent(served: Served) -> None:
    """Streamed, not batched: the client sends request k+1 only once it holds answer k."""
    outbox: queue.Queue[eligibility_pb2.CheckClaimRequest | None] = queue.Queue()

    def requests() -> Iterator[eligibility_pb2.CheckClaimRequest]:
        while (item := outbox.get(timeout=20)) is not None:
            yield item

    call = served.stub.CheckClaims(requests(), timeout=30)
    for n in range(20):
        outbox.put(claim(line("1", served.people["suspended"], "2025-04-02"), claim_id=f"STEP-{n}"))
        answer = next(call)
        assert answer.claim_id == f"STEP-{n}"
        assert answer.decisions[0].reason == enums_pb2.REASON_SUSPENDED
    outbox.put(None)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


def test_a_stream_reads_its_own_write(served: Served) -> None:
    code = new_code()
    first = claim(line("1", code, "2025-04-02"), claim_id="BEFORE")
    outbox: queue.Queue[eligibility_pb2.CheckClaimRequest | None] = queue.Queue()
    outbox.put(first)
    call = served.stub.CheckClaims(iter(outbox.get, None), timeout=30)
    assert next(call).decisions[0].reason == enums_pb2.REASON_UNKNOWN_PRACTITIONER
    written = served.gk.admin.RegisterPractitioner(register(code, "2025-01-01"), timeout=10)
    outbox.put(claim(line("1", code, "2025-04-02"), claim_id="AFTER", min_data_version=written.data_version))
    after = next(call)
    assert after.data_version >= written.data_version
    assert after.decisions[0].reason == enums_pb2.REASON_ELIGIBLE
    outbox.put(None)
    assert list(call) == []


def test_a_stream_empty_of_requests_ends_ok(served: Served) -> None:
    call = served.stub.CheckClaims(iter(()), timeout=10)
    assert list(call) == []
    assert call.code() == grpc.StatusCode.OK


# --- Malformed requests end the stream, named by position ---------------------------------------------


def good(served: Served, n: int) -> eligibility_pb2.CheckClaimRequest:
    return claim(line("1", served.people["normal"], "2025-04-02"), line("2", served.people["unknown"], "2025-04-02"),
                 claim_id=f"GOOD-{n}")  # fmt: skip


def test_a_malformed_request_ends_the_stream_after_the_earlier_answers(served: Served) -> None:
    bad = claim(line("1", served.people["normal"], "2025-04-02"), line("2", "d-1", "2025-02-30"), claim_id="")
    requests = [good(served, 0), good(served, 1), good(served, 2), bad, good(served, 4)]
    decided = served.sample("gatekeeper_decisions_total", decision="REJECT", reason="UNKNOWN_PRACTITIONER")

    *answers, error = stream(served, requests)
    assert answers == [served.stub.CheckClaim(r, timeout=10) for r in requests[:3]]
    assert isinstance(error, grpc.RpcError)
    assert bad_request(error).keys() == {
        "requests[3].claim_id",
        "requests[3].lines[1].practitioner_code",
        "requests[3].lines[1].service_date",
    }
    assert "requests[3].lines[1].service_date" in error.details()  # type: ignore[attr-defined]
    # Three from the stream, three from the unary calls: the bad request and the one after it decided nothing.
    after = served.sample("gatekeeper_decisions_total", decision="REJECT", reason="UNKNOWN_PRACTITIONER")
    assert after - decided == 6


@pytest.mark.parametrize(("case", "bad", "fields"), BAD_CLAIMS, ids=[c[0] for c in BAD_CLAIMS])
def test_every_malformed_claim_is_named_at_its_position(
    served: Served, case: str, bad: eligibility_pb2.CheckClaimRequest, fields: set[str]
) -> None:
    *answers, error = stream(served, [good(served, 0), good(served, 1), bad])
    assert [a.claim_id for a in answers] == ["GOOD-0", "GOOD-1"]
    unary = bad_request(rpc_error(served.stub.CheckClaim, bad))
    named = bad_request(error)
    assert named == {f"requests[2].{field}": text for field, text in unary.items()}
    assert set(unary) == fields


def test_a_thousand_bad_lines_at_a_position_fit_the_trailer_budget(served: Served) -> None:
    bad = claim(*(line(f"L{i}", f"bad-code-{i}", "2025-03-10") for i in range(1000)), claim_id="BAD-1000")
    limit = [("grpc.max_metadata_size", 8 * 1024), ("grpc.absolute_max_metadata_size", 8 * 1024)]
    with grpc.insecure_channel(f"127.0.0.1:{served.gk.check_port}", options=limit) as channel:
        call = eligibility_pb2_grpc.EligibilityServiceStub(channel).CheckClaims(
            iter([good(served, 0), bad]), timeout=30
        )
        answers = []
        with pytest.raises(grpc.RpcError) as raised:
            answers.extend(call)
    assert [a.claim_id for a in answers] == ["GOOD-0"]
    fields = list(bad_request(raised.value))
    assert fields[0] == "requests[1].lines[0].practitioner_code"
    assert fields[-1] == "request"  # "N more invalid field(s) not listed"
    assert all(f.startswith("requests[1].lines[") for f in fields[:-1])


def raw_stream(served: Served, payloads: list[bytes]) -> list[Any]:
    call = served.gk.channel.stream_stream(
        PATH, request_serializer=None, response_deserializer=eligibility_pb2.CheckClaimResponse.FromString
    )
    got: list[Any] = []
    try:
        got.extend(call(iter(payloads), timeout=30))
    except grpc.RpcError as error:
        got.append(error)
    return got


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x06abc\xed\xa0\x80"],
    ids=["random", "cut-short", "invalid-utf8"],
)
def test_undecodable_bytes_mid_stream_are_named_by_position(served: Served, garbage: bytes) -> None:
    payloads = [good(served, n).SerializeToString() for n in range(4)]
    payloads.insert(2, garbage)
    counted = served.sample("gatekeeper_undecodable_requests_total", grpc_service=SERVICE, grpc_method=METHOD)

    *answers, error = raw_stream(served, payloads)
    assert [a.claim_id for a in answers] == ["GOOD-0", "GOOD-1"]
    fields = bad_request(error)
    assert set(fields) == {"requests[2]"}
    assert "gatekeeper.v1.CheckClaimRequest" in fields["requests[2]"]
    after = served.sample("gatekeeper_undecodable_requests_total", grpc_service=SERVICE, grpc_method=METHOD)
    assert after - counted == 1


# --- Metrics, decision log ------------------------------------------------------------------------------


def test_bidi_stream_metrics_count_every_message(served: Served) -> None:
    names = ("grpc_server_started_total", "grpc_server_msg_received_total", "grpc_server_msg_sent_total")
    before = {n: served.sample(n) for n in names}
    ok, invalid = (served.sample("grpc_server_handled_total", grpc_code=c) for c in ("OK", "InvalidArgument"))
    timed = served.sample("grpc_server_handling_seconds_count")
    lines = served.sample("gatekeeper_claim_lines_count")

    assert len(stream(served, [good(served, n) for n in range(5)])) == 5
    bad = claim(claim_id="EMPTY")  # no lines
    assert isinstance(stream(served, [good(served, 0), good(served, 1), bad, good(served, 3)])[-1], grpc.RpcError)

    delta = {n: served.sample(n) - before[n] for n in names}
    assert delta == {
        "grpc_server_started_total": 2,
        "grpc_server_msg_received_total": 5 + 3,  # the bad request was received; the one after it never read
        "grpc_server_msg_sent_total": 5 + 2,
    }
    assert served.sample("grpc_server_handled_total", grpc_code="OK") - ok == 1
    assert served.sample("grpc_server_handled_total", grpc_code="InvalidArgument") - invalid == 1
    assert served.sample("grpc_server_handling_seconds_count") - timed == 2
    assert served.sample("gatekeeper_claim_lines_count") - lines == 7  # per decided claim, as for CheckClaim


def test_a_cancelled_stream_is_counted_canceled(served: Served) -> None:
    cancelled = served.sample("grpc_server_handled_total", grpc_code="Canceled")
    outbox: queue.Queue[eligibility_pb2.CheckClaimRequest | None] = queue.Queue()
    outbox.put(good(served, 0))
    call = served.stub.CheckClaims(iter(outbox.get, None), timeout=30)
    assert next(call).claim_id == "GOOD-0"
    call.cancel()
    outbox.put(None)
    poll(lambda: served.sample("grpc_server_handled_total", grpc_code="Canceled") - cancelled == 1)
    assert served.sample("grpc_server_handled_total", grpc_code="Unknown") == 0
    poll(lambda: served.registry.get_sample_value("gatekeeper_bulk_streams") == 0)


def test_the_decision_log_has_every_claim_of_the_stream(served: Served) -> None:
    requests = [claim(line("1", served.people["terminated"], "2025-07-01"), claim_id=f"LOGGED-{n}") for n in range(4)]
    assert len(stream(served, requests)) == 4

    def logged() -> list[dict[str, Any]]:
        entries = [json.loads(text) for text in served.log_file.read_text().splitlines()]
        return [e for e in entries if e["claim_id"].startswith("LOGGED-")]

    entries = poll(lambda: len(logged()) == 4 and logged())
    assert [e["claim_id"] for e in entries] == [r.claim_id for r in requests]
    for entry in entries:
        assert entry["institution_code"] == HOSPITAL
        assert entry["data_version"] >= served.version
        assert [(d["decision"], d["reason"]) for d in entry["decisions"]] == [("REJECT", "TERMINATED")]


# --- Threads of their own, and a limit --------------------------------------------------------------------


def test_bulk_streams_have_a_limit_and_never_take_the_checks_threads(served: Served) -> None:
    outboxes: list[queue.Queue[eligibility_pb2.CheckClaimRequest | None]] = []
    calls = []
    try:
        for n in range(MAX_STREAMS):
            outbox: queue.Queue[eligibility_pb2.CheckClaimRequest | None] = queue.Queue()
            outbox.put(good(served, n))
            call = served.stub.CheckClaims(iter(outbox.get, None), timeout=30)
            assert next(call).claim_id == f"GOOD-{n}"  # open, and holding its thread
            outboxes.append(outbox)
            calls.append(call)
        assert served.registry.get_sample_value("gatekeeper_bulk_streams") == MAX_STREAMS
        one_more = stream(served, [good(served, 9)])
        assert len(one_more) == 1
        assert isinstance(one_more[0], grpc.RpcError)
        assert one_more[0].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Meanwhile unary checks are answered, many at once.
        results: list[Any] = []
        threads = [
            threading.Thread(target=lambda: results.append(served.stub.CheckClaim(good(served, 0), timeout=10)))
            for _ in range(32)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert len(results) == 32
    finally:
        for outbox in outboxes:
            outbox.put(None)
        for call in calls:
            list(call)
    poll(lambda: served.registry.get_sample_value("gatekeeper_bulk_streams") == 0)
    assert [a.claim_id for a in stream(served, [good(served, 7)])] == ["GOOD-7"]


# --- Patience, the stream's memory of versions waited for in vain (pure) -------------------------------------


def test_patience_waits_once_per_version_the_replica_lacks() -> None:
    patience = Patience()
    assert patience.worth_waiting(10, held=5)
    patience.gave_up(10)
    assert not patience.worth_waiting(10, held=5)
    assert not patience.worth_waiting(11, held=9)  # later versions are further still
    assert patience.worth_waiting(8, held=5)  # an earlier one may have arrived meanwhile
    patience.gave_up(8)
    assert not patience.worth_waiting(9, held=7)
    assert patience.worth_waiting(12, held=8)  # the replica reached what was waited for: wait again
    assert patience.gave_up_at == 0


def test_a_stream_of_unreachable_versions_is_stale_throughout(served: Served) -> None:
    """Each request is REVIEW / STALE_DATA, as CheckClaim answers it (after one bounded wait, see Patience)."""
    requests = [claim(line("1", served.people["normal"], "2025-04-02"), claim_id=f"FAR-{n}",
                      min_data_version=10**12) for n in range(20)]  # fmt: skip
    stale = served.sample("gatekeeper_stale_answers_total", cause="min_data_version")
    answers = stream(served, requests)
    assert [(a.decisions[0].decision, a.decisions[0].reason) for a in answers] == [
        (enums_pb2.DECISION_REVIEW, enums_pb2.REASON_STALE_DATA)
    ] * 20
    assert served.sample("gatekeeper_stale_answers_total", cause="min_data_version") - stale == 20
    assert answers[0] == served.stub.CheckClaim(requests[0], timeout=10)
