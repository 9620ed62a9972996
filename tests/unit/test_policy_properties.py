"""Hypothesis properties of the policy engine over random ledgers (Tibet profile unless stated).

The ledgers mix every kind of fact over a few years (so new years, bans and re-registrations all
happen), with small lists so each example replays in well under a millisecond.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import date, timedelta
from typing import TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.values import Derivation, ExternalSanction, Ledger, PointsDecision, Registration, Repair, Status
from service.rules.engine import add_months, add_years, derive, registration_refusal, repair_refusal, status_on
from service.rules.profile import load_profile

RULES = load_profile("xizang").points
CODE = "D540102000123"
INSTITUTIONS = ("H54010200001", "H54010200002", "P54010200003")
BASE = date(2025, 1, 1)
FAST = settings(max_examples=200, deadline=None)
T = TypeVar("T")

# --- Strategies -------------------------------------------------------------------------------------------------------
# Built from plain tuples and numbered afterwards: composite draws would dominate the runtime.

# Half the dates fall in one busy winter, so new-year chains, rises, repairs and bans meet often.
days = st.one_of(
    st.integers(min_value=-45, max_value=4 * 366).map(lambda n: BASE + timedelta(days=n)),
    st.integers(min_value=0, max_value=180).map(lambda n: date(2025, 10, 1) + timedelta(days=n)),
)
points_values = st.sampled_from([1, 1, 1, 2, 2, 3, 4, 5, 8, 9, 9, 10, 11, 12])
maybe_offset = st.none() | st.integers(0, 300)
withdrawals = st.sampled_from([None, None, None, 0, 20, 200])  # mostly live decisions


def _decisions(raw: list[tuple[date, int, int | None]]) -> tuple[PointsDecision, ...]:
    return tuple(
        PointsDecision(
            f"P-{i:03d}", CODE, INSTITUTIONS[0], n, 1, "v", day, day, None if w is None else day + timedelta(days=w)
        )
        for i, (day, n, w) in enumerate(raw)
    )


def _registration(raw: tuple[date, int, int | None]) -> Registration:
    day, institution, ended = raw
    return Registration(
        CODE, INSTITUTIONS[institution], 1, day, None if ended is None else day + timedelta(days=ended + 1)
    )


def _repairs(raw: list[tuple[date, bool, int]]) -> tuple[Repair, ...]:
    return tuple(
        Repair(f"R-{i:03d}", CODE, day, reduce_points=1 + n % 7)
        if reduce
        else Repair(f"R-{i:03d}", CODE, day, shorten_days=n)
        for i, (day, reduce, n) in enumerate(raw)
    )


def _sanctions(raw: list[tuple[date, int | None, bool]]) -> tuple[ExternalSanction, ...]:
    return tuple(
        ExternalSanction(
            f"X-{i:03d}",
            CODE,
            Status.TERMINATED if terminated else Status.SUSPENDED,
            day,
            None if length is None else day + timedelta(days=length + 1),
            "四川",
        )
        for i, (day, length, terminated) in enumerate(raw)
    )


registrations = st.tuples(days, st.integers(0, len(INSTITUTIONS) - 1), maybe_offset).map(_registration)
repair_lists = st.lists(st.tuples(days, st.booleans(), st.integers(1, 80)), max_size=4).map(_repairs)


# Random dates rarely line up into the intricate cases, so most ledgers start from one of these.
SKELETONS: list[list[tuple[date, int, int | None]]] = [
    [],
    [(date(2025, 11, 15), 11, None), (date(2026, 2, 1), 9, None)],  # a new-year suspension queued (rule 6)
    [(date(2025, 1, 10), 9, None), (date(2025, 4, 1), 1, None)],  # a rise after the end (rule 4)
    [(date(2025, 10, 5), 11, None)],  # a long suspension in the busy winter, for repairs (rules 7, 8)
    [(date(2025, 3, 1), 9, None), (date(2025, 4, 1), 3, None)],  # accumulated termination (rule 5)
    [(date(2025, 10, 20), 10, None), (date(2025, 12, 1), 2, 40)],  # a withdrawn termination (rule 2)
]


Raw = list[tuple[date, int, int | None]]


def _with_skeleton(raw: tuple[Raw, Raw]) -> tuple[PointsDecision, ...]:
    return _decisions(raw[0] + raw[1])


def ledgers(*, with_sanctions: bool = True, with_repairs: bool = True) -> st.SearchStrategy[Ledger]:
    skeleton = st.sampled_from(SKELETONS)
    return st.builds(
        Ledger,
        st.just(CODE),
        registrations=st.lists(registrations, max_size=4).map(tuple),
        points=st.tuples(skeleton, st.lists(st.tuples(days, points_values, withdrawals), min_size=1, max_size=7)).map(
            _with_skeleton
        ),
        repairs=repair_lists if with_repairs else st.just(()),
        sanctions=(
            st.lists(st.tuples(days, maybe_offset, st.sampled_from([False, False, True])), max_size=2).map(_sanctions)
            if with_sanctions
            else st.just(())
        ),
    )


# --- Helpers ----------------------------------------------------------------------------------------------------------


def _local_sanction_free(ledger: Ledger) -> Ledger:
    """The ledger without external periods, keeping what they did locally: a repair approved
    during an external termination is ignored (docs/policy.md decision 8), so drop it too."""

    def externally_terminated(day: date) -> bool:
        return any(
            s.status is Status.TERMINATED and s.start <= day and (s.end is None or day < s.end)
            for s in ledger.sanctions
        )

    repairs = tuple(r for r in ledger.repairs if not externally_terminated(r.approved_on))
    return dataclasses.replace(ledger, sanctions=(), repairs=repairs)


def _check_timeline_shape(d: Derivation) -> None:
    for p in d.timeline:
        assert p.status in (Status.SUSPENDED, Status.TERMINATED)
        assert p.until is None or p.until > p.since, p
        assert p.cause
    for a, b in zip(d.timeline, d.timeline[1:], strict=False):
        assert a.until is not None, "an open-ended period must be the last one"
        assert a.until <= b.since, (a, b)
    for s in d.registrations:
        assert s.until is None or s.until > s.since, s


# --- Properties -------------------------------------------------------------------------------------------------------


@FAST
@given(ledgers())
def test_periods_are_sorted_non_overlapping_and_never_empty(ledger: Ledger) -> None:
    _check_timeline_shape(derive(ledger, RULES))


@FAST
@given(ledgers())
def test_derive_is_deterministic(ledger: Ledger) -> None:
    assert derive(ledger, RULES) == derive(ledger, RULES)


@FAST
@given(ledgers(), st.randoms(use_true_random=False))
def test_order_of_facts_does_not_matter(ledger: Ledger, rnd: random.Random) -> None:
    def shuffled(items: tuple[T, ...]) -> tuple[T, ...]:
        out = list(items)
        rnd.shuffle(out)
        return tuple(out)

    mixed = Ledger(
        CODE,
        registrations=shuffled(ledger.registrations),
        points=shuffled(ledger.points),
        repairs=shuffled(ledger.repairs),
        sanctions=shuffled(ledger.sanctions),
    )
    assert derive(mixed, RULES) == derive(ledger, RULES)


@FAST
@given(ledgers(), st.data())
def test_withdrawing_equals_never_recording(ledger: Ledger, data: st.DataObject) -> None:
    live = [i for i, p in enumerate(ledger.points) if p.withdrawn_on is None]
    if not live:
        return
    i = data.draw(st.sampled_from(live))
    withdrawn = dataclasses.replace(ledger.points[i], withdrawn_on=ledger.points[i].effective_on + timedelta(days=30))
    with_withdrawal = dataclasses.replace(ledger, points=(*ledger.points[:i], withdrawn, *ledger.points[i + 1 :]))
    without = dataclasses.replace(ledger, points=ledger.points[:i] + ledger.points[i + 1 :])
    assert derive(with_withdrawal, RULES) == derive(without, RULES)


@FAST
@given(ledgers(with_repairs=False))
def test_year_totals_restart_each_year(ledger: Ledger) -> None:
    d = derive(ledger, RULES)
    expected: dict[int, int] = {}
    for p in ledger.points:
        if p.withdrawn_on is None:
            expected[p.effective_on.year] = expected.get(p.effective_on.year, 0) + p.points
    assert d.year_totals == expected


@FAST
@given(ledgers())
def test_year_totals_with_repairs_stay_within_caps(ledger: Ledger) -> None:
    d = derive(ledger, RULES)
    cap = RULES.max_reduce_points_per_year or 0
    for year, total in d.year_totals.items():
        raw = sum(p.points for p in ledger.points if p.withdrawn_on is None and p.effective_on.year == year)
        assert max(0, raw - cap) <= total <= raw


@FAST
@given(ledgers(with_repairs=False, with_sanctions=False))
def test_first_sanction_starts_when_a_year_total_first_reaches_a_tier(ledger: Ledger) -> None:
    # Independent oracle: running sums per year, day by day, without any period logic.
    lowest = min(RULES.suspension_months)
    running: dict[int, int] = {}
    first: date | None = None
    for p in sorted((p for p in ledger.points if p.withdrawn_on is None), key=lambda p: p.effective_on):
        running[p.effective_on.year] = running.get(p.effective_on.year, 0) + p.points
        if running[p.effective_on.year] >= lowest:
            first = p.effective_on
            break
    d = derive(ledger, RULES)
    assert (d.timeline[0].since if d.timeline else None) == first


@FAST
@given(ledgers(with_sanctions=False))
def test_terminated_until_a_registration_on_or_after_the_ban(ledger: Ledger) -> None:
    d = derive(ledger, RULES)
    registered = sorted(
        r.registered_on for r in ledger.registrations if r.ended_on is None or r.ended_on > r.registered_on
    )
    terminations = [p for p in d.timeline if p.status is Status.TERMINATED]
    for p in terminations:
        if p.until is None:
            assert p is d.timeline[-1]
            allowed = d.reregistration_allowed_from
            assert allowed is not None
            assert allowed >= add_years(p.since, RULES.ban_years_accumulated)
            assert not [r for r in registered if r >= allowed], "a registration after the ban must end it"
        else:
            assert p.until in registered
            assert p.until >= add_years(p.since, RULES.ban_years_accumulated)
    if not terminations or terminations[-1].until is not None:
        assert d.reregistration_allowed_from is None


@FAST
@given(days, st.lists(days, max_size=4), st.lists(st.tuples(points_values, days), max_size=4))
def test_single_decision_termination_ends_exactly_at_first_registration_after_ban(
    start: date, registration_days: list[date], later: list[tuple[int, date]]
) -> None:
    # One 12-point decision on ``start``; other decisions only after it and never another 12 (no extension).
    points = [PointsDecision("P-000", CODE, INSTITUTIONS[0], 12, 1, "v", start, start)]
    points += [
        PointsDecision(f"P-{i + 1:03d}", CODE, INSTITUTIONS[0], min(n, 11), 1, "v", day, day)
        for i, (n, day) in enumerate(later)
        if day > start
    ]
    regs = tuple(Registration(CODE, INSTITUTIONS[0], 1, day, None) for day in registration_days)
    d = derive(Ledger(CODE, registrations=regs, points=tuple(points)), RULES)
    ban = add_years(start, RULES.ban_years_single_decision)
    first_termination = next(p for p in d.timeline if p.status is Status.TERMINATED)
    assert first_termination.since == start
    assert first_termination.until == min((r for r in registration_days if r >= ban), default=None)
    day = start
    while day < (first_termination.until or ban):  # every day until then is terminated
        assert status_on(d, day) == first_termination
        day += timedelta(days=37)


@FAST
@given(ledgers(with_sanctions=False))
def test_registration_spans_never_overlap_a_local_termination(ledger: Ledger) -> None:
    d = derive(ledger, RULES)
    for p in d.timeline:
        if p.status is not Status.TERMINATED:
            continue
        for s in d.registrations:
            overlap = s.since < (p.until or date.max) and p.since < (s.until or date.max)
            assert not overlap, (p, s)


@FAST
@given(ledgers(), st.lists(days, min_size=1, max_size=6))
def test_status_on_matches_a_linear_scan(ledger: Ledger, probes: list[date]) -> None:
    d = derive(ledger, RULES)
    for day in probes:
        covering = [p for p in d.timeline if p.covers(day)]
        assert len(covering) <= 1
        assert status_on(d, day) == (covering[0] if covering else None)


@FAST
@given(ledgers(), days)
def test_effective_status_is_the_worst_of_local_and_external(ledger: Ledger, day: date) -> None:
    # Rule 9 oracle: the local-only derivation and the raw external periods, combined per day.
    local = status_on(derive(_local_sanction_free(ledger), RULES), day)
    worst = local.status if local else Status.NORMAL
    for s in ledger.sanctions:
        if s.start <= day and (s.end is None or day < s.end):
            worst = max(worst, s.status)
    effective = status_on(derive(ledger, RULES), day)
    assert (effective.status if effective else Status.NORMAL) == worst


@FAST
@given(ledgers(), registrations)
def test_refused_registration_changes_nothing(ledger: Ledger, registration: Registration) -> None:
    extended = dataclasses.replace(ledger, registrations=(*ledger.registrations, registration))
    reason = registration_refusal(ledger, registration, RULES)
    if reason is not None:
        assert derive(extended, RULES) == derive(ledger, RULES)
        assert str(derive(ledger, RULES).reregistration_allowed_from or "") in reason or "register again" in reason


@FAST
@given(ledgers(), repair_lists.filter(bool).map(lambda r: r[0]))
def test_repair_refused_for_termination_or_nothing_to_shorten_changes_no_period(ledger: Ledger, repair: Repair) -> None:
    reason = repair_refusal(ledger, repair, RULES)
    extended = dataclasses.replace(ledger, repairs=(*ledger.repairs, repair))
    if reason is not None and ("termination" in reason or "nothing to shorten" in reason):
        # Ignored outright: a refusal for these leaves the timeline as it was.
        assert derive(extended, RULES).timeline == derive(ledger, RULES).timeline
    if reason is None:
        # An accepted repair never makes any day worse than it was.
        before, after = derive(ledger, RULES), derive(extended, RULES)
        day = repair.approved_on
        for _ in range(12):
            b, a = status_on(before, day), status_on(after, day)
            assert (a.status if a else Status.NORMAL) <= (b.status if b else Status.NORMAL)
            day = add_months(day, 1)
