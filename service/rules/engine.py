"""The policy engine: a person's ledger and the regional points rules -> the status timeline.

Pure: no I/O, no clock, no mutable globals. The rules are those of policy-rules.md (shared); every
further decision is listed in docs/policy.md and referred to here as "decision N".

How it works: the facts are sorted canonically and replayed day by day (decisions, then
registrations, then repairs on the same day) against a small mutable state; the local periods
that result are then overlaid with the external sanctions (rule 9) into the effective timeline.
The write path asks the same replay, with the candidate fact added, whether it would be refused.
"""

from __future__ import annotations

import calendar
import math
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction

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
    base: int  # months of the same year granted before this period (decision 5)
    total: int  # the year total that set its length
    shortened: int = 0  # days taken off by shorten repairs (cap accounting, decision 12)
    note: str = ""

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
    reduced: int = 0  # effective reduce-points repairs (after caps)
    level: int = _NO_LEVEL  # highest tier granted so far (termination threshold once terminated)
    has_single: bool = False  # a decision of at least single_decision_points is part of the total

    @property
    def total(self) -> int:
        # Rule 1: points minus reductions, never below zero.
        return max(0, self.points - self.reduced)


@dataclass
class _Replay:
    rules: PointsRules
    external_terminations: tuple[ExternalSanction, ...]
    years: dict[int, _Year] = field(default_factory=dict)
    suspensions: list[_Suspension] = field(default_factory=list)
    terminations: list[_Termination] = field(default_factory=list)
    void: set[int] = field(default_factory=set)  # id() of registrations refused by a running ban
    probe: object | None = None  # the candidate fact the write path asks about
    probe_refusal: str | None = None
    probe_termination: _Termination | None = None

    def year(self, y: int) -> _Year:
        return self.years.setdefault(y, _Year())

    def open_termination(self) -> _Termination | None:
        last = self.terminations[-1] if self.terminations else None
        return last if last is not None and last.until is None else None

    def terminated_on(self, day: date) -> bool:
        """Local termination running, or an external termination covering ``day`` (decision 10)."""
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

    def refuse(self, fact: object, reason: str) -> None:
        if fact is self.probe and self.probe_refusal is None:
            self.probe_refusal = reason


def _relay(st: _Replay, day: date) -> None:
    """After a period's end moved on ``day``: queued periods start when the previous one ends (rule 6)."""
    previous_until = day
    kept: list[_Suspension] = []
    for s in st.suspensions:
        if s.since > day:
            s.since = max(s.trigger, previous_until, day)
            s.until = add_months(s.since, s.months)
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
        # Decision 8: swallowed by the termination; only a long-ban decision extends the ban (rule 5).
        if single:
            term.ban_end = max(term.ban_end, _ban_end(day, rules, single=True))
        yr.level = max(yr.level, level)
        return
    if level <= yr.level:
        return
    if level >= rules.termination_threshold:
        _terminate(st, day, yr)
    else:
        _raise_tier(st, day, yr, level)


def _ban_end(start: date, rules: PointsRules, *, single: bool) -> date:
    # Decision 7: the long ban never gives less than the accumulated one; the ban ends after ``start``.
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
        # Rule 4 (decision 4): a running (or queued) suspension now lasts start + new months, even if shortened.
        current.months = new_months - current.base
        current.until = max(current.until, add_months(current.since, current.months))
        current.total, current.note = yr.total, ""
        _relay(st, day)
        return
    months = new_months - old_months
    if months <= 0:  # tiers of equal length: nothing more to serve
        return
    # Rule 6: never overlap a suspension still running (from an earlier year); start when it ends.
    since = max([day, *(s.until for s in st.suspensions if s.until > day)])
    st.suspensions.append(
        _Suspension(
            year=day.year,
            trigger=day,
            since=since,
            until=add_months(since, months),
            months=months,
            base=old_months,
            total=yr.total,
        )
    )


def _on_registration(st: _Replay, registration: Registration) -> None:
    if registration.ended_on is not None and registration.ended_on <= registration.registered_on:
        return  # decision 13: an empty registration is a cancelled one
    term = st.open_termination()
    if term is None:
        return
    if registration.registered_on >= term.ban_end:
        term.until = registration.registered_on  # rule 5: normal from this registration on
        return
    # Rule 5: registering before the ban ends is refused; data that holds one anyway gets no span.
    st.void.add(id(registration))
    if registration is st.probe:
        st.probe_termination = term


def _on_repair(st: _Replay, repair: Repair) -> None:
    day = repair.approved_on
    if st.terminated_on(day):
        st.refuse(repair, f"repairs are not allowed during a termination, and the person is terminated on {day}")
        return
    if repair.reduce_points > 0:
        _reduce_points(st, repair)
    if repair.shorten_days > 0:
        _shorten(st, repair)


def _reduce_points(st: _Replay, repair: Repair) -> None:
    """Rule 7: the total drops from R on; the year's running suspension is recomputed, never lengthened."""
    day, wanted, cap = repair.approved_on, repair.reduce_points, st.rules.max_reduce_points_per_year
    yr = st.year(day.year)
    granted = wanted if cap is None else max(0, min(wanted, cap - yr.reduced))
    if granted < wanted:
        st.refuse(
            repair,
            f"reducing {wanted} points would exceed the cap of {cap} points per year "
            f"({yr.reduced} already reduced in {day.year})",
        )
    if granted == 0:
        return
    yr.reduced += granted
    level = st.level_of(yr.total)
    yr.level = min(yr.level, level)  # decision 3: the granted tier drops to the new total's tier
    current = st.year_suspension(day.year, day)
    if current is None:
        return
    months = max(0, st.months_of(level) - current.base)
    new_until = min(current.until, max(day, add_months(current.since, months)))
    current.months = min(current.months, months)
    if new_until < current.until:
        current.until = new_until
        current.note = f"cut by repair {repair.repair_no} (total {yr.total})"
        _relay(st, day)


def _shorten(st: _Replay, repair: Repair) -> None:
    """Rule 8: the running suspension ends k days earlier, never before R; capped per suspension."""
    day, wanted, fraction = repair.approved_on, repair.shorten_days, st.rules.max_shorten_fraction
    current = st.running_suspension(day)
    if current is None:
        st.refuse(repair, f"no suspension runs on {day}, so there is nothing to shorten")
        return
    granted = wanted
    if fraction is not None:
        # Exact decimal arithmetic: 0.29 * 100 must give 29, not 28.999...
        nominal = (add_months(current.since, current.months) - current.since).days
        cap = math.floor(Fraction(str(fraction)) * nominal)
        granted = max(0, min(wanted, cap - current.shortened))
        if granted < wanted:
            st.refuse(
                repair,
                f"shortening by {wanted} days would exceed the cap of {cap} days for the suspension from "
                f"{current.since} ({current.shortened} days already taken off)",
            )
    if granted == 0:
        return
    new_until = max(day, current.until - timedelta(days=granted))
    current.shortened += (current.until - new_until).days
    current.until = new_until
    current.note = f"shortened by repair {repair.repair_no}"
    _relay(st, day)


# --- Replay ----------------------------------------------------------------------------------------


def _replay(ledger: Ledger, rules: PointsRules, probe: object | None = None) -> _Replay:
    sanctions = sorted(ledger.sanctions, key=_sanction_key)
    st = _Replay(rules, tuple(s for s in sanctions if s.status is Status.TERMINATED), probe=probe)
    decisions = sorted((d for d in ledger.points if d.withdrawn_on is None), key=_decision_key)  # rule 2
    registrations = sorted(ledger.registrations, key=_registration_key)
    repairs = sorted(ledger.repairs, key=_repair_key)
    # Same day: decisions first (a ban they extend already applies), then registrations (a day
    # on which a termination ends is normal for repairs), then repairs (decision 2).
    events: list[tuple[date, int, int, PointsDecision | Registration | Repair]] = [
        *((d.effective_on, 0, i, d) for i, d in enumerate(decisions)),
        *((r.registered_on, 1, i, r) for i, r in enumerate(registrations)),
        *((r.approved_on, 2, i, r) for i, r in enumerate(repairs)),
    ]
    events.sort(key=lambda e: e[:3])
    for _, _, _, fact in events:
        if isinstance(fact, PointsDecision):
            _on_points(st, fact)
        elif isinstance(fact, Registration):
            _on_registration(st, fact)
        else:
            _on_repair(st, fact)
    for d in decisions:  # every year with a decision or a repair has a total (decision 16)
        st.year(d.effective_on.year)
    for r in repairs:
        st.year(r.approved_on.year)
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
        # keeps one period per stretch when several sources cover the same days (decision 15).
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
        if id(r) in st.void:
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
    st = _replay(replace(ledger, registrations=(*ledger.registrations, registration)), rules, probe=registration)
    term = st.probe_termination
    if term is None:
        return None
    return (
        f"Registration on {registration.registered_on} is refused: the person is terminated since {term.since} "
        f"and may register again from {term.ban_end}."
    )


def repair_refusal(ledger: Ledger, repair: Repair, rules: PointsRules) -> str | None:
    """Why ``repair`` must be refused (termination, nothing to shorten, caps), or None."""
    st = _replay(replace(ledger, repairs=(*ledger.repairs, repair)), rules, probe=repair)
    if st.probe_refusal is None:
        return None
    return f"Repair {repair.repair_no} is refused: {st.probe_refusal}."
