"""The check path's memory (service/check/recall.py) never changes an answer.

``EligibilityServicer.decide`` validates each distinct line once, recalls decisions made under the
same replica state, and assembles the response from pre-encoded pieces. Whatever it remembers, its
bytes must equal deciding every line afresh (``check_claim`` + ``decide_claim``, the pure functions)
under the state it answers from, also right after any person changes. In-process: a ``Replica`` fed
by hand and a stand-in for the gRPC context (the servicer only asks it about waiting).
"""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from cache.codec import encode_projection
from cache.replica import Replica
from cache.store import Snapshot
from domain.values import Decision, Derivation, Period, Reason, RegistrationSpan, Status
from domain.violations import Violations
from gatekeeper.v1 import eligibility_pb2
from service.check.decision import decide_claim
from service.check.decision_log import DecisionLog
from service.check.recall import KINDS, Bounded, Recall, kind_of, pair_of
from service.check.servicer import EligibilityServicer
from service.check.validation import Codes, check_claim
from service.metrics import Metrics
from service.rules.profile import load_profile
from tests.unit.test_encoding import as_message

PROFILE = load_profile("national")
HOSPITAL, PHARMACY = "H12345678901", "P12345678901"
CODES = [f"D{n:04d}" for n in range(6)]  # D0005 never has a record
DAYS = [date(2025, 3, 1), date(2025, 4, 1), date(2025, 6, 1)]


class Context:
    def time_remaining(self) -> None:
        return None

    def add_callback(self, _callback: object) -> None:
        pass

    def is_active(self) -> bool:
        return True


def derivation(kind: int, registered_at: str) -> Derivation:
    spans = (RegistrationSpan(registered_at, date(2024, 1, 1), None),)
    if kind == 0:
        return Derivation((), spans)
    status = Status.SUSPENDED if kind == 1 else Status.TERMINATED
    until = date(2025, 5, 1) if kind == 1 else None
    return Derivation((Period(status, date(2025, 3, 15), until, "points"),), spans)


people = st.tuples(st.integers(0, 2), st.sampled_from([HOSPITAL, PHARMACY]))
line = st.tuples(
    st.sampled_from(CODES),
    st.sampled_from(["", *CODES[:3]]),
    st.sampled_from(DAYS),
    st.sampled_from([0, 1, 2, 3]),
    st.sampled_from(["", "11", "x!"]),  # "x!" is not a valid med type: the claim is refused
)
claim = st.tuples(st.sampled_from([HOSPITAL, PHARMACY]), st.lists(line, min_size=1, max_size=8))


def request_of(institution: str, lines: list[tuple[str, str, date, int, str]]) -> eligibility_pb2.CheckClaimRequest:
    request = eligibility_pb2.CheckClaimRequest(claim_id="C-1", institution_code=institution)
    for i, (code, dispenser, day, care, med) in enumerate(lines):
        x = request.lines.add(line_id=f"L{i}", practitioner_code=code, dispenser_code=dispenser, care_type=care,
                              med_type=med)  # fmt: skip
        x.service_date.year, x.service_date.month, x.service_date.day = day.year, day.month, day.day
    return request


def afresh(request: eligibility_pb2.CheckClaimRequest, replica: Replica) -> bytes | Violations:
    lines = check_claim(request, Codes.of(PROFILE), 1000)
    if isinstance(lines, Violations):
        return lines
    state = replica.state
    outcomes = decide_claim(lines, request.institution_code, state.people, PROFILE)
    pairs = [(x.line_id, o) for x, o in zip(lines, outcomes, strict=True)]
    return as_message(request.claim_id, pairs, state.version, PROFILE.policy_id)


@given(
    st.lists(people, min_size=5, max_size=5),
    st.lists(st.tuples(claim, st.none() | st.tuples(st.integers(0, 4), people)), min_size=1, max_size=12),
)
def test_recalled_answers_equal_answers_decided_afresh(start: list[tuple[int, str]], steps: list) -> None:  # type: ignore[type-arg]
    replica = Replica()
    projections = {CODES[i].encode(): encode_projection(derivation(*p)).encode() for i, p in enumerate(start)}
    replica.load(Snapshot(1, projections, b"1-0", PROFILE.policy_id, PROFILE.rules_fingerprint))
    servicer = EligibilityServicer(replica, PROFILE, Metrics(CollectorRegistry()), today=lambda: date(2025, 4, 1))
    for (institution, lines), change in steps:
        request = request_of(institution, lines)
        for _twice in range(2):  # the second time from memory
            ours = servicer.decide(request, Context())  # type: ignore[arg-type]
            expected = afresh(request, replica)
            if isinstance(expected, Violations):
                assert isinstance(ours, Violations)
                assert ours.items == expected.items
            else:
                assert ours == expected
        if change is not None:  # one person changes: the next claims must see it
            who, person = change
            version = replica.state.version + 1
            fields = {b"v": str(version).encode(), b"kind": b"person",
                      CODES[who].encode(): encode_projection(derivation(*person)).encode()}  # fmt: skip
            assert replica.apply([(f"{version}-0".encode(), fields)])


def test_a_bounded_map_starts_over_when_full() -> None:
    bounded: Bounded[int, int] = Bounded(3)
    for n in range(3):
        bounded.put(n, n)
    bounded.put(3, 3)
    assert bounded.entries == {3: 3}


def test_decisions_are_kept_per_state_and_an_older_state_never_fills_the_newer_map() -> None:
    recall = Recall()
    old, new = object(), object()
    recall.decided(old).put(("H", ("D", "", 2025, 1, 1, 0, "")), "answer")  # type: ignore[arg-type]
    newer = recall.decided(new)
    assert newer.entries == {}
    recall.decided(old).put(("H", ("D", "", 2025, 1, 2, 0, "")), "late")  # type: ignore[arg-type]
    assert newer.entries == {}
    assert recall.decided(new).entries == {}


def test_every_decision_and_reason_has_its_own_kind() -> None:
    pairs = [(d, r) for d in Decision for r in Reason]
    kinds = {kind_of(d, r) for d, r in pairs}
    assert len(kinds) == len(pairs)
    assert all(0 <= k < KINDS for k in kinds)
    assert all(pair_of(kind_of(d, r)) == (d, r) for d, r in pairs)


class Logged(DecisionLog):
    """A decision log that keeps what the check path hands it (no writer thread)."""

    def __init__(self, mode: str) -> None:
        super().__init__("off")
        self.mode = mode
        self.claims: list[list[str]] = []

    def enqueue(self, claim_id: str, institution_code: str, lines, outcomes, data_version, policy_id) -> None:  # type: ignore[no-untyped-def,override]
        self.claims.append([o.reason.name for o in outcomes])


def test_the_decision_log_gets_the_claims_its_mode_wants_from_the_check_path() -> None:
    replica = Replica()
    projections = {CODES[0].encode(): encode_projection(derivation(0, HOSPITAL)).encode(),
                   CODES[1].encode(): encode_projection(derivation(1, HOSPITAL)).encode()}  # fmt: skip
    replica.load(Snapshot(1, projections, b"1-0", PROFILE.policy_id, PROFILE.rules_fingerprint))
    eligible = request_of(HOSPITAL, [(CODES[0], "", DAYS[1], 1, "")])
    mixed = request_of(HOSPITAL, [(CODES[0], "", DAYS[1], 1, ""), (CODES[1], "", DAYS[1], 1, "")])
    for mode, expected in (("rejects", [["ELIGIBLE", "SUSPENDED"]]),
                           ("all", [["ELIGIBLE"], ["ELIGIBLE", "SUSPENDED"]]), ("off", [])):  # fmt: skip
        log = Logged(mode)
        servicer = EligibilityServicer(replica, PROFILE, Metrics(CollectorRegistry()), decision_log=log,
                                       today=lambda: date(2025, 4, 1))  # fmt: skip
        for request in (eligible, mixed):
            assert not isinstance(servicer.decide(request, Context()), Violations)  # type: ignore[arg-type]
        assert log.claims == expected
