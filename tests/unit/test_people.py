"""cache.people: the replica's lazily decoded people answer exactly what eager decoding would."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache.codec import LazyRegistrations, decode_projection, decode_view, encode_projection, skim_view
from cache.people import People, ViewCache
from cache.replica import Replica
from cache.store import Snapshot
from domain.projection import PersonView
from domain.values import Derivation, Period, RegistrationSpan, Status

CODES = ("D510105000001", "D510105000002", "D510105000003", "D510105000004")
INSTITUTIONS = ("H51010500001", "H51010500002", "P51010500001")
BASE = date(2024, 1, 1)


def eager(code: str, raw: bytes) -> PersonView:
    return PersonView.of(code, decode_projection(raw))


def projection(*periods: Period, registered: tuple[RegistrationSpan, ...] = ()) -> bytes:
    spans = registered or (RegistrationSpan(INSTITUTIONS[0], BASE, None),)
    return encode_projection(Derivation(timeline=periods, registrations=spans)).encode()


NORMAL = projection()
SUSPENDED = projection(Period(Status.SUSPENDED, date(2025, 3, 1), date(2025, 6, 1), "points"))


def fresh_copy(raw: bytes) -> bytes:
    """Equal bytes in another object (``bytes(raw)`` and ``raw[:]`` return ``raw`` itself)."""
    copy = b"".join([raw[:1], raw[1:]])
    assert copy == raw
    assert copy is not raw
    return copy


def people_of(projections: dict[str, bytes], capacity: int = 8) -> People:
    return People.of_snapshot({code.encode(): raw for code, raw in projections.items()}, ViewCache(capacity))


# --- Examples -----------------------------------------------------------------------------------


def test_a_changed_person_is_never_answered_from_the_view_of_the_old_projection() -> None:
    before = people_of({CODES[0]: NORMAL})
    old = before.get(CODES[0])
    assert old is not None
    assert old.status_on(date(2025, 4, 1)).status is Status.NORMAL

    after = before.changed([(CODES[0], SUSPENDED)])

    assert after.get(CODES[0]) == eager(CODES[0], SUSPENDED)
    assert after[CODES[0]].status_on(date(2025, 4, 1)).status is Status.SUSPENDED
    assert before.get(CODES[0]) == old  # the older state still answers what it held


def test_a_view_counts_only_for_the_very_bytes_it_was_decoded_from() -> None:
    before = people_of({CODES[0]: NORMAL})
    old = before[CODES[0]]
    assert before[CODES[0]] is old  # a hit
    after = before.changed([(CODES[0], fresh_copy(NORMAL))])
    assert after[CODES[0]] is not old  # equal bytes, another object: decoded again
    assert after[CODES[0]] == old


def test_the_view_cache_stays_bounded() -> None:
    views = ViewCache(capacity=3)
    people = People.of_snapshot({f"D510105{i:06d}".encode(): NORMAL for i in range(20)}, views)
    for code in people:
        assert people.get(code) == eager(code, NORMAL)
        assert len(views) <= 3
    assert len(views) == 3


def test_walking_everyone_reuses_cached_views_but_adds_none() -> None:
    views = ViewCache(capacity=8)
    people = People.of_snapshot({code.encode(): NORMAL for code in CODES}, views)
    looked_up = people[CODES[0]]
    walked = dict(people.items())
    assert walked[CODES[0]] is looked_up
    assert len(views) == 1
    assert list(people.values()) == [walked[code] for code in people]


def test_a_walk_only_skims_the_never_sanctioned() -> None:
    people = people_of({CODES[0]: NORMAL, CODES[1]: SUSPENDED})
    walked = dict(people.items())
    assert isinstance(walked[CODES[0]].registrations, LazyRegistrations)
    assert not isinstance(walked[CODES[1]].registrations, LazyRegistrations)
    assert walked[CODES[0]].registered_at(INSTITUTIONS[0], date(2025, 4, 1))
    assert walked == {CODES[0]: eager(CODES[0], NORMAL), CODES[1]: eager(CODES[1], SUSPENDED)}


def test_len_in_iteration_and_items_agree_with_the_raw_map() -> None:
    people = people_of({CODES[0]: NORMAL, CODES[1]: SUSPENDED})
    grown = people.changed([(CODES[2], NORMAL), (CODES[0], SUSPENDED)])
    assert (len(people), len(grown)) == (2, 3)
    assert set(grown) == set(grown.keys()) == {CODES[0], CODES[1], CODES[2]}
    assert CODES[2] in grown
    assert CODES[2] not in people
    assert CODES[3] not in grown
    assert dict(grown.items()) == {code: eager(code, raw) for code, raw in (
        (CODES[0], SUSPENDED), (CODES[1], SUSPENDED), (CODES[2], NORMAL))}  # fmt: skip
    assert grown.get(CODES[3]) is None
    with pytest.raises(KeyError):
        grown[CODES[3]]


def test_a_bad_change_entry_is_refused_before_anything_is_published() -> None:
    replica = Replica()
    replica.load(Snapshot(version=1, people={CODES[0].encode(): NORMAL}, last_id=b"1-0", policy_id="p"))
    state = replica.state
    entry = (b"2-0", {b"v": b"2", b"kind": b"person", CODES[1].encode(): b"\xff{not json"})
    with pytest.raises(UnicodeDecodeError):
        replica.apply([entry])
    assert replica.state is state
    assert CODES[1] not in replica.state.people


# --- Properties ---------------------------------------------------------------------------------

days = st.integers(min_value=0, max_value=900).map(lambda n: BASE + timedelta(days=n))
periods = st.builds(
    lambda status, since, length, cause: Period(
        status, since, None if length is None else since + timedelta(days=length), cause
    ),
    st.sampled_from([Status.SUSPENDED, Status.TERMINATED]),
    days,
    st.none() | st.integers(1, 400),
    st.sampled_from(["", "points", "external: 决定 1"]),
)
spans = st.builds(
    lambda institution, since, length: RegistrationSpan(
        institution, since, None if length is None else since + timedelta(days=length)
    ),
    st.sampled_from(INSTITUTIONS),
    days,
    st.none() | st.integers(1, 400),
)
projections = st.builds(
    lambda timeline, registrations, totals, allowed: encode_projection(
        Derivation(tuple(sorted(timeline, key=lambda p: p.since)), tuple(registrations), totals, allowed)
    ).encode(),
    st.lists(periods, max_size=3),
    st.lists(spans, max_size=3),
    st.dictionaries(st.integers(2020, 2027), st.integers(0, 30), max_size=2),
    st.none() | days,
)
changes = st.lists(st.lists(st.tuples(st.sampled_from(CODES), projections), min_size=1, max_size=3), max_size=6)


@settings(max_examples=200, deadline=None)
@given(projections)
def test_the_one_pass_decoder_equals_the_eager_view(raw: bytes) -> None:
    assert decode_view(CODES[0], raw) == eager(CODES[0], raw)


@settings(max_examples=200, deadline=None)
@given(projections)
def test_a_skimmed_view_equals_the_eager_view(raw: bytes) -> None:
    skimmed = skim_view(CODES[0], raw)
    assert skimmed == eager(CODES[0], raw)
    assert dict(skimmed.registrations) == dict(eager(CODES[0], raw).registrations)


@settings(max_examples=150, deadline=None)
@given(
    start=st.dictionaries(st.sampled_from(CODES), projections, max_size=len(CODES)),
    steps=changes,
    capacity=st.integers(1, 3),
    looks=st.lists(st.sampled_from(CODES), max_size=12),
)
def test_lookups_through_the_lazy_map_equal_eager_decoding(
    start: dict[str, bytes], steps: list[list[tuple[str, bytes]]], capacity: int, looks: list[str]
) -> None:
    """Every state of a random change sequence, looked up in a random order through one small shared
    cache (so entries are evicted and go stale), answers what eager decoding of its bytes answers."""
    expected = [dict(start)]
    states = [people_of(start, capacity)]
    for step in steps:
        expected.append({**expected[-1], **dict(step)})
        states.append(states[-1].changed(step))
    for code in looks:
        for people, raw in zip(states, expected, strict=True):
            assert people.get(code) == (eager(code, raw[code]) if code in raw else None)
    for people, raw in zip(states, expected, strict=True):
        assert len(people) == len(raw)
        assert dict(people.items()) == {code: eager(code, value) for code, value in raw.items()}


@given(st.lists(projections, min_size=1, max_size=len(CODES)))
def test_the_sanctioned_are_everyone_with_a_status_period(raws: list[bytes]) -> None:
    people = people_of(dict(zip(CODES, raws, strict=False)))
    expected = [(code, view) for code, view in people.items() if view.periods]
    assert list(people.sanctioned()) == expected
