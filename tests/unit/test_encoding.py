"""``service.check.encoding`` gives exactly the bytes protobuf gives for the same response."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from domain.projection import StatusWindow
from domain.values import Decision, Reason, Status
from gatekeeper.v1 import eligibility_pb2
from service.check.decision import Outcome
from service.check.encoding import decision_entry, outcome_fields, response_bytes, varint
from service.convert import set_date

days = st.dates(date(1950, 1, 1), date(2199, 12, 31))
windows = st.none() | st.builds(StatusWindow, st.sampled_from(Status), st.none() | days, st.none() | days)
# Texts cross the one- and two-byte length boundaries (127/128 bytes, 16383/16384) and are not all ASCII.
texts = (
    st.text(max_size=40) | st.text(min_size=120, max_size=140) | st.text(alphabet="药x", min_size=5460, max_size=5470)
)
outcomes = st.builds(Outcome, st.sampled_from(Decision), st.sampled_from(Reason), st.text(max_size=20), windows, texts)
line_ids = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=64)


def as_message(claim_id: str, lines: list[tuple[str, Outcome]], version: int, policy_id: str) -> bytes:
    response = eligibility_pb2.CheckClaimResponse(claim_id=claim_id, data_version=version, policy_id=policy_id)
    for line_id, o in lines:
        d = response.decisions.add(
            line_id=line_id, decision=o.decision, reason=o.reason, practitioner_code=o.practitioner_code,
            message=o.message,
        )  # fmt: skip
        if o.window is not None:
            d.status = o.window.status
            if o.window.since:
                set_date(d.status_since, o.window.since)
            if o.window.until:
                set_date(d.status_until, o.window.until)
    return response.SerializeToString()


@given(
    st.text(max_size=64),
    st.lists(st.tuples(line_ids, outcomes), max_size=12),
    st.integers(0, 2**64 - 1),
    st.text(max_size=30),
)
def test_a_response_is_the_bytes_protobuf_gives(
    claim_id: str, lines: list[tuple[str, Outcome]], version: int, policy_id: str
) -> None:
    entries = [decision_entry(line_id, outcome_fields(o)) for line_id, o in lines]
    ours = response_bytes(claim_id, entries, version, policy_id)
    expected = as_message(claim_id, lines, version, policy_id)
    assert eligibility_pb2.CheckClaimResponse.FromString(ours) == eligibility_pb2.CheckClaimResponse.FromString(
        expected
    )
    assert ours == expected


@given(st.integers(0, 2**64 - 1))
def test_varints_round_trip_through_protobuf(value: int) -> None:
    encoded = b"\x18" + varint(value)  # data_version, field 3
    assert eligibility_pb2.CheckClaimResponse.FromString(encoded).data_version == value
