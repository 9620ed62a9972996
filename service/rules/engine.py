"""The policy engine: a person's ledger and the regional points rules -> the status timeline.

Pure: no I/O, no clock, no mutable globals. The rules are those of policy-rules.md (shared); every
further choice the engine makes is listed in docs/policy.md and referred to here as "note N".

How it works: the facts are sorted canonically and replayed day by day (registrations, then points
decisions, then repairs on the same day) against a small mutable state, dispatched by a table on
the fact's type; the local periods that result are then overlaid with the external sanctions
(rule 9) into the effective timeline. The replay records, per fact, an ``FactOutcome``: what a repair
took and why a fact would be refused. The write path replays the ledger with the candidate fact
added and reads those outcomes, so it agrees with ``derive`` by construction.
"""

from __future__ import annotations

import calendar
import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from domain.values import (
    Derivation,
    ExternalSanction,
    Ledger,
    Period,
    PointsDecision,
    Registration,
    RegistrationSpan,
    Repair,
    Status,
)
from service.rules.profile import PointsRules

__all__ = ["add_months", "add_years", "derive", "registration_refusal", "repair_refusal", "status_on"]

_ONE_DAY = timedelta(days=1)
_NO_LEVEL = 0  # a year's granted level when no tier has been granted


# --- Calendar arithmetic --------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months, clamped to the last day of a shorter month."""
    years, month0 = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, month0 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def add_years(day: date, years: int) -> date:
    """``day`` plus ``years`` calendar years; 29 February becomes 28 February in a common year."""
    return add_months(day, 12 * years)


# --- Canonical order: the same facts in any arrival order replay identically ---------------------


def _opt_key(day: date | None) -> tuple[bool, date]:
    # None sorts last, like an open end.
    return (day is None, day or date.min)


def _decision_key(d: PointsDecision) -> tuple[object, ...]:
    return (d.effective_on, d.decision_no, d.points, d.decided_on, d.institution_code, d.responsibility, d.violation)


def _registration_key(r: Registration) -> tuple[object, ...]:
    return (r.registered_on, r.institution_code, _opt_key(r.ended_on), r.category, r.practitioner_code)


def _repair_key(r: Repair) -> tuple[object, ...]:
    return (r.approved_on, r.repair_no, r.reduce_points, r.shorten_days, r.basis)


def _sanction_key(s: ExternalSanction) -> tuple[object, ...]:
    return (s.start, s.source_decision_no, _opt_key(s.end), int(s.status), s.origin_region)


# --- Replay state -----------------------------------------------------------------------------------


@dataclass
class _Suspension:
    """One local suspension period. ``since > today`` means queued behind another one (rule 6)."""

    year: int  # the year whose total triggered it
    trigger: date  # the day it was triggered; it never starts earlier
    since: date
    until: date
    months: int  # months this period grants; a queued period always lasts since + months
    base: int  # months of the same year held by earlier periods (rules 4 and 7, note 5)
    total: int  # the year total that set its length
    shortened: int = 0  # days actually cut by shorten repairs (rules 4, 7 and the cap of rule 8)
    note: str = ""

    def nominal_end(self) -> date:
        """Rules 4 and 7: start + the months it grants, less the days shorten repairs already cut."""
        return add_months(self.since, self.months) - timedelta(days=self.shortened)

    def cause(self) -> str:
        more = " more" if self.base else ""
        unit = "month" if self.months == 1 else "months"
        text = f"points total {self.total} in {self.year} ({self.months}{more} {unit})"
        return f"{text}, {self.note}" if self.note else text


@dataclass
class _Termination:
    since: date
    year: int
    total: int
    ban_end: date  # first day a registration is accepted (always after ``since``)
    until: date | None = None

    def cause(self) -> str:
        return f"termination: {self.total} points in {self.year} (registration allowed from {self.ban_end})"


@dataclass
class _Year:
    points: int = 0
    reduced: int = 0  # points actually taken by reduce repairs (rule 1; the cap of rule 8 counts these)
    level: int = _NO_LEVEL  # highest tier granted (rule 3); the threshold once terminated
    has_single: bool = False  # a decision of at least single_decision_points is part of the total
    owed: bool = False  # a tier reached during a termination of an earlier year (rule 5)

    @property
    def total(self) -> int:
        return self.points - self.reduced  # never negative: a reduce takes at most the total (rule 1)


@dataclass
class FactOutcome:
    """What one fact did in the replay: the write path reads these instead of probing the replay."""

    taken: int = 0  # points a reduce took, days a shorten cut
    refusal: str | None = None  # why the write path refuses it (the first reason found)
    termination: _Termination | None = None  # for a void registration: the ban it fell inside

    def refuse(self, reason: str) -> None:
        if self.refusal is None:
            self.refusal = reason

    def reason(self) -> str | None:
        term = self.termination
        if term is not None:
            # Rendered at the end, so it names the ban end after every extension in the ledger (note 18).
            return f"the person is terminated since {term.since} and may register again from {term.ban_end}"
        return self.refusal


@dataclass
class _Replay:
    rules: PointsRules
    external_terminations: tuple[ExternalSanction, ...]
    years: dict[int, _Year] = field(default_factory=dict)
    suspensions: list[_Suspension] = field(default_factory=list)
    terminations: list[_Termination] = field(default_factory=list)
    outcomes: dict[int, FactOutcome] = field(default_factory=dict)  # by id() of the fact, for this replay only

    def year(self, y: int) -> _Year:
        return self.years.setdefault(y, _Year())

    def outcome(self, fact: object) -> FactOutcome:
        return self.outcomes.setdefault(id(fact), FactOutcome())

    def open_termination(self) -> _Termination | None:
        last = self.terminations[-1] if self.terminations else None
        return last if last is not None and last.until is None else None

    def terminated_on(self, day: date) -> bool:
        """Local termination running, or an external termination covering ``day`` (note 10)."""
        if self.open_termination() is not None:
            return True
        return any(s.start <= day and (s.end is None or day < s.end) for s in self.external_terminations)

    def level_of(self, total: int) -> int:
        if total >= self.rules.termination_threshold:
            return self.rules.termination_threshold
        reached = [t for t in self.rules.suspension_months if t <= total]
        return max(reached, default=_NO_LEVEL)

    def months_of(self, level: int) -> int:
        return self.rules.suspension_months.get(level, 0)

    def year_suspension(self, year: int, day: date) -> _Suspension | None:
        """The suspension of ``year`` still running or queued on ``day`` (at most one exists)."""
        for s in self.suspensions:
            if s.year == year and s.until > day:
                return s
        return None

    def running_suspension(self, day: date) -> _Suspension | None:
        for s in self.suspensions:
            if s.since <= day < s.until:
                return s
        return None

    def queue_end(self, day: date) -> date:
        """Where a new suspension triggered on ``day`` starts: when the last one running or queued ends."""
        return max([day, *(s.until for s in self.suspensions if s.until > day)])


def _relay(st: _Replay, day: date) -> None:
    """After a period's end moved on ``day``: queued periods start when the previous one ends (rule 6)."""
    previous_until = day
    kept: list[_Suspension] = []
    for s in st.suspensions:
        if s.since > day:
            s.since = max(s.trigger, previous_until, day)
            s.until = s.nominal_end()
        if s.until > s.since:  # an emptied period is no period at all
            kept.append(s)
            previous_until = s.until
    st.suspensions = kept


# --- Events ----------------------------------------------------------------------------------------


def _on_points(st: _Replay, decision: PointsDecision) -> None:
    if decision.points <= 0:  # validation rejects these; never let them lower a total
        return
    day, rules = decision.effective_on, st.rules
    yr = st.year(day.year)
    yr.points += decision.points
    single = decision.points >= rules.single_decision_points
    yr.has_single = yr.has_single or single
    level = st.level_of(yr.total)
    term = st.open_termination()
    if term is not None:
        _during_termination(st, term, day, yr, level, single=single)
        return
    if level <= yr.level:  # rule 3: a tier already granted is not granted again
        return
    if level >= rules.termination_threshold:
        _terminate(st, day, yr)
    else:
        _raise_tier(st, day, yr, level)


def _during_termination(st: _Replay, term: _Termination, day: date, yr: _Year, level: int, *, single: bool) -> None:
    """Rule 5: points count toward their year; a later year's threshold extends the ban, its tier is owed."""
    if single:
        term.ban_end = max(term.ban_end, _ban_end(day, st.rules, single=True))
    if level <= yr.level or day.year == term.year:
        yr.level = max(yr.level, level)  # the termination's own year is at the threshold already
        return
    yr.level = level
    if level >= st.rules.termination_threshold:
        term.ban_end = max(term.ban_end, _ban_end(day, st.rules, single=yr.has_single))
        yr.owed = False  # the ban extension takes the place of that year's suspension (note 8)
    else:
        yr.owed = True


def _ban_end(start: date, rules: PointsRules, *, single: bool) -> date:
    # Note 7: the long ban never gives less than the accumulated one; the ban ends after ``start``.
    years = max(rules.ban_years_accumulated, rules.ban_years_single_decision) if single else rules.ban_years_accumulated
    return max(add_years(start, years), start + _ONE_DAY)


def _terminate(st: _Replay, day: date, yr: _Year) -> None:
    """Rule 5: terminated from ``day``; every running suspension ends, queued ones never start."""
    st.suspensions = [s for s in st.suspensions if s.since < day]
    for s in st.suspensions:
        s.until = min(s.until, day)
    st.terminations.append(
        _Termination(day, day.year, yr.total, _ban_end(day, st.rules, single=yr.has_single)),
    )
    yr.level = st.rules.termination_threshold


def _raise_tier(st: _Replay, day: date, yr: _Year, level: int) -> None:
    """Rules 3, 4 and 6: the year's suspension time grows to the new tier's months."""
    new_months, old_months = st.months_of(level), st.months_of(yr.level)
    yr.level = level
    current = st.year_suspension(day.year, day)
    if current is not None:
        # Rule 4: a running (or queued) suspension holds the new months, less the days repairs cut.
        current.months = new_months - current.base
        current.until = max(current.until, current.nominal_end())
        current.total = yr.total
        _relay(st, day)
        return
    months = new_months - old_months
    if months > 0:  # tiers of equal length add nothing to serve
        _queue(st, year=day.year, trigger=day, months=months, base=old_months, total=yr.total)


def _queue(st: _Replay, *, year: int, trigger: date, months: int, base: int, total: int) -> None:
    """Rule 6: a new suspension never overlaps one still running or queued; it starts when that ends."""
    since = st.queue_end(trigger)
    st.suspensions.append(_Suspension(year, trigger, since, add_months(since, months), months, base, total))


def _on_registration(st: _Replay, registration: Registration) -> None:
    if registration.ended_on is not None and registration.ended_on <= registration.registered_on:
        return  # note 13: an empty registration is a cancelled one
    term = st.open_termination()
    if term is None:
        return
    day = registration.registered_on
    if day < term.ban_end:
        # Rule 5: registering before the ban ends is refused; data that holds one anyway gets no span.
        st.outcome(registration).termination = term
        return
    term.until = day  # rule 5: normal from this registration on ...
    for y in sorted(st.years):  # ... then the tiers reached in later years during the termination are served
        yr = st.years[y]
        if yr.owed and yr.level < st.rules.termination_threshold:
            yr.owed = False
            _queue(st, year=y, trigger=day, months=st.months_of(yr.level), base=0, total=yr.total)


def _on_repair(st: _Replay, repair: Repair) -> None:
    day, outcome = repair.approved_on, st.outcome(repair)
    if st.terminated_on(day):
        outcome.refuse(f"repairs are not allowed during a termination, and the person is terminated on {day}")
        return
    if repair.reduce_points > 0:
        _reduce_points(st, repair, outcome)
    if repair.shorten_days > 0:
        _shorten(st, repair, outcome)


def _reduce_points(st: _Replay, repair: Repair, outcome: FactOutcome) -> None:
    """Rules 1 and 7: take what the person holds (within the cap); recompute the year's suspension."""
    day, wanted, cap = repair.approved_on, repair.reduce_points, st.rules.max_reduce_points_per_year
    yr = st.year(day.year)
    room = wanted if cap is None else max(0, cap - yr.reduced)
    taken = min(wanted, yr.total, room)
    if yr.total < min(wanted, room):
        outcome.refuse(f"it reduces {wanted} points but the {day.year} total on {day} is {yr.total}")
    elif taken < wanted:
        outcome.refuse(
            f"reducing {wanted} points would exceed the cap of {cap} points per year "
            f"({yr.reduced} already reduced in {day.year})",
        )
    outcome.taken = taken
    if taken == 0:
        return
    yr.reduced += taken
    current = st.year_suspension(day.year, day)
    if current is None:
        return  # rule 3: with no suspension of the year to act on, the granted tier stays
    level = st.level_of(yr.total)
    months = max(0, st.months_of(level) - current.base)
    current.months = min(current.months, months)
    new_until = min(current.until, max(day, current.nominal_end()))
    if new_until < current.until:
        yr.level = min(yr.level, level)  # rule 3: lowered only by a reduce that shortens or cancels
        current.until = new_until
        current.note = f"cut by repair {repair.repair_no} (total {yr.total})"
        _relay(st, day)


def _shorten(st: _Replay, repair: Repair, outcome: FactOutcome) -> None:
    """Rule 8: the running suspension ends k days earlier, never before R; capped per suspension."""
    day, wanted = repair.approved_on, repair.shorten_days
    current = st.running_suspension(day)
    if current is None:
        outcome.refuse(f"no suspension runs on {day}, so there is nothing to shorten")
        return
    room = _shorten_room(st, current, wanted, outcome)
    new_until = max(day, current.until - timedelta(days=room))
    cut = (current.until - new_until).days
    if cut < room:
        outcome.refuse(
            f"it shortens {wanted} days but the suspension from {current.since} ends on {current.until}, "
            f"{_days(current.until - day)} after {day}",
        )
    outcome.taken = cut
    if cut == 0:
        return
    current.shortened += cut
    current.until = new_until
    current.note = f"shortened by repair {repair.repair_no}"
    _relay(st, day)


def _days(span: timedelta) -> str:
    return "1 day" if span.days == 1 else f"{span.days} days"


def _shorten_room(st: _Replay, current: _Suspension, wanted: int, outcome: FactOutcome) -> int:
    """Rule 8's cap: a share of the nominal length (start to start + months), counted in days actually cut."""
    fraction = st.rules.max_shorten_fraction
    if fraction is None:
        return wanted
    nominal = (add_months(current.since, current.months) - current.since).days
    cap = math.floor(Fraction(str(fraction)) * nominal)  # exact: 0.29 * 100 must give 29, not 28.999...
    room = max(0, min(wanted, cap - current.shortened))
    if room < wanted:
        outcome.refuse(
            f"shortening by {wanted} days would exceed the cap of {cap} days for the suspension from "
            f"{current.since} ({current.shortened} days already taken off)",
        )
    return room


# --- Replay ----------------------------------------------------------------------------------------

# On one day: registrations first (a person registered again on a day is normal that day, so points
# effective that day count against the new registration), then points decisions, then repairs.
_HANDLERS: dict[type, tuple[int, Callable[[_Replay, Any], None]]] = {
    Registration: (0, _on_registration),
    PointsDecision: (1, _on_points),
    Repair: (2, _on_repair),
}


def _day_of(fact: Registration | PointsDecision | Repair) -> date:
    if isinstance(fact, Registration):
        return fact.registered_on
    if isinstance(fact, PointsDecision):
        return fact.effective_on
    return fact.approved_on


def _replay(ledger: Ledger, rules: PointsRules) -> _Replay:
    sanctions = sorted(ledger.sanctions, key=_sanction_key)
    st = _Replay(rules, tuple(s for s in sanctions if s.status is Status.TERMINATED))
    facts: list[Registration | PointsDecision | Repair] = [
        *sorted(ledger.registrations, key=_registration_key),
        *sorted((d for d in ledger.points if d.withdrawn_on is None), key=_decision_key),  # rule 2
        *sorted(ledger.repairs, key=_repair_key),
    ]
    order = {id(f): i for i, f in enumerate(facts)}  # canonical order within a kind (note 1)
    facts.sort(key=lambda f: (_day_of(f), _HANDLERS[type(f)][0], order[id(f)]))
    for fact in facts:
        _HANDLERS[type(fact)][1](st, fact)
    for y in {d.effective_on.year for d in ledger.points if d.withdrawn_on is None} | {
        r.approved_on.year for r in ledger.repairs
    }:
        st.year(y)  # every year with a decision or a repair has a total (note 16)
    return st


# --- Output ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    """A period that competes for a day in the effective timeline."""

    status: Status
    since: date
    until: date | None
    cause: str
    rank: int  # local periods before external ones, then canonical order

    def covers(self, day: date) -> bool:
        return self.since <= day and (self.until is None or day < self.until)

    def preference(self) -> tuple[int, date, tuple[bool, int], int]:
        # Worst status first; then the period running longest, then the one lasting longest: this
        # keeps one period per stretch when several sources cover the same days (note 15).
        until_key = (self.until is not None, -(self.until.toordinal() if self.until else 0))
        return (-int(self.status), self.since, until_key, self.rank)


def _sources(st: _Replay, sanctions: tuple[ExternalSanction, ...]) -> list[_Source]:
    local: list[tuple[Status, date, date | None, str]] = [
        *((Status.SUSPENDED, s.since, s.until, s.cause()) for s in st.suspensions if s.until > s.since),
        *((Status.TERMINATED, t.since, t.until, t.cause()) for t in st.terminations),
    ]
    external: list[tuple[Status, date, date | None, str]] = [
        (
            s.status,
            s.start,
            s.end,
            f"external {s.source_decision_no}" + (f" ({s.origin_region})" if s.origin_region else ""),
        )
        for s in sorted(sanctions, key=_sanction_key)
        if s.status in (Status.SUSPENDED, Status.TERMINATED) and (s.end is None or s.end > s.start)
    ]
    return [
        _Source(status, since, until, cause, rank)
        for rank, (status, since, until, cause) in enumerate(local + external)
    ]


def _overlay(sources: list[_Source]) -> tuple[Period, ...]:
    """Rule 9: on every day the worst of all periods; consecutive days from one source form one period."""
    bounds = sorted({s.since for s in sources} | {s.until for s in sources if s.until is not None})
    pieces: list[tuple[_Source, date, date | None]] = []
    for i, start in enumerate(bounds):
        covering = [s for s in sources if s.covers(start)]
        if not covering:
            continue
        best = min(covering, key=_Source.preference)
        end = bounds[i + 1] if i + 1 < len(bounds) else None  # only open-ended sources cover the last bound
        if pieces and pieces[-1][0] is best and pieces[-1][2] == start:
            pieces[-1] = (best, pieces[-1][1], end)
        else:
            pieces.append((best, start, end))
    return tuple(Period(src.status, since, until, src.cause) for src, since, until in pieces)


def _spans(st: _Replay, registrations: tuple[Registration, ...]) -> tuple[RegistrationSpan, ...]:
    """Registrations as billable spans; a local termination ends every registration running at its start."""
    spans: list[RegistrationSpan] = []
    for r in registrations:
        if st.outcome(r).termination is not None:  # void: inside a ban (note 9)
            continue
        until = r.ended_on
        for t in st.terminations:
            if r.registered_on <= t.since and (until is None or t.since < until):
                until = t.since
                break
        if until is None or until > r.registered_on:
            spans.append(RegistrationSpan(r.institution_code, r.registered_on, until))
    spans.sort(key=lambda s: (s.institution_code, s.since, _opt_key(s.until)))
    return tuple(spans)


def derive(ledger: Ledger, rules: PointsRules) -> Derivation:
    """The effective status timeline, registration spans and year totals of one person's ledger."""
    st = _replay(ledger, rules)
    open_term = st.open_termination()
    return Derivation(
        timeline=_overlay(_sources(st, ledger.sanctions)),
        registrations=_spans(st, ledger.registrations),
        year_totals={y: st.years[y].total for y in sorted(st.years)},
        reregistration_allowed_from=open_term.ban_end if open_term is not None else None,
    )


def status_on(derivation: Derivation, day: date) -> Period | None:
    """The non-normal period covering ``day``, or None when the person is normal that day."""
    timeline = derivation.timeline
    i = bisect_right(timeline, day, key=lambda p: p.since) - 1
    if i >= 0 and timeline[i].covers(day):
        return timeline[i]
    return None


# --- Write-path checks: the same replay, with the candidate fact added -------------------------------


def registration_refusal(ledger: Ledger, registration: Registration, rules: PointsRules) -> str | None:
    """Why ``registration`` must be refused (its date falls inside a running ban), or None."""
    st = _replay(replace(ledger, registrations=(*ledger.registrations, registration)), rules)
    reason = st.outcome(registration).reason()
    return None if reason is None else f"Registration on {registration.registered_on} is refused: {reason}."


def repair_refusal(ledger: Ledger, repair: Repair, rules: PointsRules) -> str | None:
    """Why ``repair`` must be refused, or None (rule 8: it takes its full amount and shrinks no other)."""
    before = _replay(ledger, rules)
    after = _replay(replace(ledger, repairs=(*ledger.repairs, repair)), rules)
    reason = after.outcome(repair).reason() or _shrunk(ledger.repairs, before, after)
    return None if reason is None else f"Repair {repair.repair_no} is refused: {reason}."


def _shrunk(accepted: tuple[Repair, ...], before: _Replay, after: _Replay) -> str | None:
    """Rule 8: an accepted repair never takes less because of another repair."""
    for r in sorted(accepted, key=_repair_key):
        now, then = after.outcome(r).taken, before.outcome(r).taken
        if now < then:
            amount, unit = (r.reduce_points, "points") if r.reduce_points > 0 else (r.shorten_days, "days")
            return f"it would leave repair {r.repair_no} taking {now} of its {amount} {unit}"
    return None
