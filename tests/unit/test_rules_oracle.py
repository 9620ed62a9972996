"""Issue 6: the whole points family checked against an independent oracle, under Hypothesis.

The oracle is a deliberately simple restatement of policy-rules.md rules 1 and 3-8 (2 by replaying only
the live decisions) as a day-by-day simulator: it walks every day from the first fact, keeps each year's
total and granted tier, one running suspension and a FIFO queue behind it, the open termination and its
ban end. It shares no period algebra with the engine (its own calendar helper, no engine internals); the
engine is imported only to be compared with.

Random write sequences (a registration in 2023-2024 first, then points, withdrawals, reduce and shorten
repairs, registrations and now and then an external sanction (rule 9), sent in any date order) go through
``ledger_ops`` one by one; every write's verdict (accepted or refused) must equal the oracle's, judged
against the writes accepted before it, and then on every day from the first fact to a horizon past every
end so must the status and its window [since, until) (with an external period: the status; how the overlay
cuts windows is docs/policy.md note 15). The minimal cases of issue 6's table (rows A-F and H of
tests/e2e/test_rules_edges.py) are plain tests at the end, with hand-worked expectations.

Where policy-rules.md leaves a case open, the oracle takes the reading docs/policy.md records for the
engine, and says so where it does.

    .venv/bin/python -m pytest tests/unit/test_rules_oracle.py                          # CI: 1,000 examples
    HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/unit/test_rules_oracle.py  # 10,000
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import Refused
from domain.values import ExternalSanction, Ledger, PointsDecision, Registration, Repair, Status
from service.registry import ledger_ops
from service.rules.engine import derive, status_on
from service.rules.profile import PointsRules, load_profile

CODE = "D540102000123"
INSTITUTIONS = ("H54010200001", "H54010200002", "P54010200003")
ONE_DAY = timedelta(days=1)

# One run per distinct [points] section among the bundled profiles: today national and Tibet share
# theirs, so the family runs once; a profile that changes its points rules gets a run of its own.
_PROFILES = {name: load_profile(name).points for name in ("national", "xizang")}
RULESETS: dict[str, PointsRules] = {}
for _name, _rules in _PROFILES.items():
    if _rules not in RULESETS.values():
        RULESETS[_name] = _rules
NATIONAL = _PROFILES["national"]


# --- The oracle --------------------------------------------------------------------------------------------------------


def months_after(day: date, months: int) -> date:
    """Terms: "m months after D", the same day of month clamped to the last day of a shorter month."""
    year, month0 = divmod(day.year * 12 + day.month - 1 + months, 12)
    month = month0 + 1
    first_of_next = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return date(year, month, min(day.day, (first_of_next - ONE_DAY).day))


@dataclass(eq=False)
class _Suspension:
    year: int  # the year whose total it serves
    months: int  # months it grants
    base: int  # months its year held in earlier periods (rule 4 "months held by the year's earlier periods")
    start: date | None = None  # None while queued behind the running one (rule 6)
    end: date | None = None
    cut: int = 0  # days actually cut by shorten repairs


@dataclass(eq=False)
class _Termination:
    start: date
    year: int
    ban_end: date  # first day a registration is accepted


@dataclass(eq=False)
class Window:
    """A stretch of days with one cause: what ``status_on`` must answer for each of them."""

    status: Status
    since: date
    until: date | None


@dataclass
class Simulation:
    taken: dict[str, int] = field(default_factory=dict)  # repair_no -> points or days it took
    short: set[str] = field(default_factory=set)  # repairs that would not take their full amount
    void: set[int] = field(default_factory=set)  # positions in ledger.registrations dated inside a ban
    start: date = date.min
    horizon: date = date.min  # last day walked
    days: list[Window | None] = field(default_factory=list)  # day start + i -> its window (None: normal)
    ban_end: date | None = None  # of a termination still open at the horizon
    totals: dict[int, int] = field(default_factory=dict)


class Oracle:
    """One walk over the days of a ledger; read the numbers off the profile, nothing else."""

    def __init__(self, rules: PointsRules, sanctions: tuple[ExternalSanction, ...] = ()) -> None:
        self.rules = rules
        self.sanctions = sanctions
        self.points: dict[int, int] = {}
        self.reduced: dict[int, int] = {}
        self.granted: dict[int, int] = {}  # highest tier granted (the threshold once terminated)
        self.singles: set[int] = set()  # years holding a decision of single_decision_points or more
        self.owed: set[int] = set()  # later years that reached a tier during a termination (rule 5)
        self.running: _Suspension | None = None
        self.queue: list[_Suspension] = []
        self.term: _Termination | None = None
        self.out = Simulation()

    # The profile's numbers.
    def tier(self, total: int) -> int:
        if total >= self.rules.termination_threshold:
            return self.rules.termination_threshold
        return max((t for t in self.rules.suspension_months if t <= total), default=0)

    def months(self, tier: int) -> int:
        return self.rules.suspension_months.get(tier, 0)

    def ban(self, day: date, *, long: bool) -> date:
        # docs/policy.md note 7: the long ban is never shorter than the accumulated one, and ends after its day.
        years = self.rules.ban_years_accumulated
        if long:
            years = max(years, self.rules.ban_years_single_decision)
        return max(months_after(day, 12 * years), day + ONE_DAY)

    def total(self, year: int) -> int:
        return self.points.get(year, 0) - self.reduced.get(year, 0)

    def of_year(self, year: int) -> _Suspension | None:
        """The suspension of ``year`` running or queued: rule 7 names both; rule 4's "still running" is read
        the same way (docs/policy.md note 4)."""
        for s in [self.running, *self.queue]:
            if s is not None and s.year == year:
                return s
        return None

    # Rule 6, day by day: the running one ends on its end; the next queued one starts that very day.
    def settle(self, day: date) -> None:
        while True:
            if self.running is not None and self.running.end is not None and self.running.end <= day:
                self.running = None
            if self.running is None and self.queue:
                nxt = self.queue.pop(0)
                nxt.start, nxt.end = day, months_after(day, nxt.months) - timedelta(days=nxt.cut)
                self.running = nxt
                continue
            return

    def registration(self, day: date, position: int) -> None:
        term = self.term
        if term is None:
            return
        if day < term.ban_end:
            self.out.void.add(position)  # rule 5: refused; it ends nothing
            return
        self.term = None  # normal from this registration, then the owed tiers, oldest year first
        for year in sorted(self.owed):
            self.queue.append(_Suspension(year, self.months(self.granted[year]), 0))
        self.owed.clear()

    def decision(self, day: date, points: int) -> None:
        year, rules = day.year, self.rules
        self.points[year] = self.points.get(year, 0) + points
        long = points >= rules.single_decision_points
        if long:
            self.singles.add(year)
        tier, granted = self.tier(self.total(year)), self.granted.get(year, 0)
        term = self.term
        if term is not None:  # rule 5: points during a termination count toward their year
            if long:
                term.ban_end = max(term.ban_end, self.ban(day, long=True))
            if tier <= granted or year == term.year:
                self.granted[year] = max(granted, tier)
                return
            self.granted[year] = tier
            if tier >= rules.termination_threshold:
                # The rules do not say whether a tier this year reached first is still owed; like the
                # engine (note 8), the ban extension takes its place.
                term.ban_end = max(term.ban_end, self.ban(day, long=year in self.singles))
                self.owed.discard(year)
            else:
                self.owed.add(year)
            return
        if tier <= granted:
            return  # rule 3: a tier the year has been granted is not granted again
        self.granted[year] = tier
        if tier >= rules.termination_threshold:  # rule 5
            if self.running is not None:
                self.running.end = day
            self.queue.clear()
            self.term = _Termination(day, year, self.ban(day, long=year in self.singles))
            return
        current = self.of_year(year)
        if current is not None:  # rule 4: it grows to hold the new tier's months, keeping the days cut
            current.months = self.months(tier) - current.base
            if current.start is not None and current.end is not None:
                grown = months_after(current.start, current.months) - timedelta(days=current.cut)
                current.end = max(current.end, grown)
            return
        more = self.months(tier) - self.months(granted)
        if more > 0:  # rules 3 and 4 (the difference), queued behind any running one (rule 6)
            self.queue.append(_Suspension(year, more, self.months(granted)))

    def repair(self, day: date, repair: Repair) -> None:
        no = repair.repair_no
        self.out.taken[no] = 0
        # Rules 7 and 8: not during a termination; an external one counts too (the engine's reading, note 10).
        if self.term is not None or self.external(day) is Status.TERMINATED:
            self.out.short.add(no)
            return
        if repair.reduce_points > 0:
            self.reduce(day, repair)
        if repair.shorten_days > 0:
            self.shorten(day, repair)

    def reduce(self, day: date, repair: Repair) -> None:
        year, wanted, cap = day.year, repair.reduce_points, self.rules.max_reduce_points_per_year
        room = wanted if cap is None else cap - self.reduced.get(year, 0)
        taken = max(0, min(wanted, self.total(year), room))  # rule 1: only points held on R; rule 8: the cap
        self.out.taken[repair.repair_no] += taken
        if taken < wanted:
            self.out.short.add(repair.repair_no)
        if taken == 0:
            return
        self.reduced[year] = self.reduced.get(year, 0) + taken
        current = self.of_year(year)
        if current is None:
            return  # rule 3: nothing of the year to act on, so its granted tier stays
        tier = self.tier(self.total(year))
        months = min(current.months, max(0, self.months(tier) - current.base))  # rule 7: never later
        if current.start is None:  # queued: it keeps its place, shorter or cancelled
            if months < current.months:
                self.granted[year] = min(self.granted[year], tier)
                if months == 0:
                    self.queue.remove(current)
            current.months = months
            return
        assert current.end is not None
        current.months = months
        recomputed = max(day, months_after(current.start, months) - timedelta(days=current.cut))
        if recomputed < current.end:
            current.end = recomputed
            # Rule 3: lowered by a reduce that shortens. To what, the rules do not say; like the engine (note 3)
            # to the new total's tier, so reaching a tier again grants it again, even one served in full before.
            self.granted[year] = min(self.granted[year], tier)

    def shorten(self, day: date, repair: Repair) -> None:
        running, wanted = self.running, repair.shorten_days
        if running is None or running.start is None or running.end is None:
            self.out.short.add(repair.repair_no)  # rule 8: nothing running to shorten
            return
        room = wanted
        if self.rules.max_shorten_fraction is not None:  # a share of start .. start + its months now, in days cut
            nominal = (months_after(running.start, running.months) - running.start).days
            cap = int(Fraction(str(self.rules.max_shorten_fraction)) * nominal)
            room = max(0, min(wanted, cap - running.cut))
        new_end = max(day, running.end - timedelta(days=room))  # never before R
        cut = (running.end - new_end).days
        self.out.taken[repair.repair_no] += cut
        if cut < wanted:
            self.out.short.add(repair.repair_no)
        running.cut += cut
        running.end = new_end

    def external(self, day: date) -> Status:
        """Rule 9: the worst external period covering ``day`` (docs/policy.md note 14: only real ones count)."""
        covering = [
            x.status
            for x in self.sanctions
            if x.status in (Status.SUSPENDED, Status.TERMINATED) and x.start <= day and (x.end is None or day < x.end)
        ]
        return max(covering, default=Status.NORMAL)

    def status(self, day: date) -> tuple[Status, object] | None:
        if self.term is not None:
            return Status.TERMINATED, self.term
        running = self.running
        if running is not None and running.start is not None and running.start <= day:
            return Status.SUSPENDED, running
        return None


def simulate(ledger: Ledger, rules: PointsRules, *, record: bool = False) -> Simulation:
    """Walk every day from the first fact to the last (``record``: on until nothing is left to run)."""
    registrations: dict[date, list[tuple[str, int]]] = {}
    decisions: dict[date, list[PointsDecision]] = {}
    repairs: dict[date, list[Repair]] = {}
    for i, r in enumerate(ledger.registrations):
        registrations.setdefault(r.registered_on, []).append((r.institution_code, i))
    for d in ledger.points:
        if d.withdrawn_on is None:  # rule 2: a withdrawn decision was never made
            decisions.setdefault(d.effective_on, []).append(d)
    for repair in ledger.repairs:
        repairs.setdefault(repair.approved_on, []).append(repair)
    bounds = [b for x in ledger.sanctions for b in (x.start, x.end) if b is not None]  # walk over them too
    every = [*registrations, *decisions, *repairs, *bounds]
    oracle = Oracle(rules, ledger.sanctions)
    out = oracle.out
    if not every:
        return out
    # Registrations before the first points or repair change nothing (no ban can run yet): start there.
    day, last = min([*decisions, *repairs, *bounds] or every), max(every)
    out.start = day
    windows: dict[object, Window] = {}  # by period object (identity; holding it keeps ids unique)
    busy = {*registrations, *decisions, *repairs}
    while True:
        oracle.settle(day)
        if day in busy:
            # Terms: on one day registrations, then points decisions, then repairs (by number, docs/policy.md note 1).
            for _, position in sorted(registrations.get(day, ())):
                oracle.registration(day, position)
                oracle.settle(day)
            for decision in sorted(decisions.get(day, ()), key=lambda d: d.decision_no):
                oracle.decision(day, decision.points)
                oracle.settle(day)
            for repair in sorted(repairs.get(day, ()), key=lambda r: r.repair_no):
                oracle.repair(day, repair)
                oracle.settle(day)
        if record:
            now = oracle.status(day)
            if now is None:
                out.days.append(None)
            else:
                window = windows.get(now[1])
                if window is None:
                    window = windows[now[1]] = Window(now[0], day, None)
                window.until = day + ONE_DAY
                out.days.append(window)
        quiet = oracle.running is None and not oracle.queue
        if day >= last and (not record or quiet):
            break
        day += ONE_DAY
    out.horizon = day
    if oracle.term is not None:
        out.ban_end = oracle.term.ban_end
        if record:
            windows[oracle.term].until = None  # open-ended: no registration after the horizon ends it
    years = {d.effective_on.year for d in ledger.points if d.withdrawn_on is None}
    out.totals = {y: oracle.total(y) for y in sorted(years | {r.approved_on.year for r in ledger.repairs})}
    return out


# --- Writes, sent one by one through the write path and through the oracle ------------------------------------------


@dataclass(frozen=True)
class Register:
    day: date
    institution: int = 0


@dataclass(frozen=True)
class Points:
    day: date
    points: int


@dataclass(frozen=True)
class Withdraw:
    target: int  # position in the sequence of the points write it withdraws (sent later: not on file yet)
    after: int  # days after the decision was decided (negative: refused)


@dataclass(frozen=True)
class Reduce:
    day: date
    points: int


@dataclass(frozen=True)
class Shorten:
    day: date
    days: int


@dataclass(frozen=True)
class Sanction:
    start: date
    days: int | None  # None: open-ended
    terminated: bool


Write = Register | Points | Withdraw | Reduce | Shorten | Sanction


# What a write sends; a withdrawal sends (decision_no, day).
Fact = Registration | PointsDecision | Repair | ExternalSanction | tuple[str, date]


def _fact(writes: list[Write], n: int) -> Fact:
    """The document the n-th write sends, numbered by its position (so numbers sort as sent)."""
    write = writes[n]
    if isinstance(write, Register):
        return Registration(CODE, INSTITUTIONS[write.institution], 1, write.day)
    if isinstance(write, Points):
        return PointsDecision(f"P-{n:03d}", CODE, INSTITUTIONS[0], write.points, 1, "v", write.day, write.day)
    if isinstance(write, Withdraw):
        target = writes[write.target]
        assert isinstance(target, Points)
        return f"P-{write.target:03d}", target.day + timedelta(days=write.after)
    if isinstance(write, Sanction):
        end = None if write.days is None else write.start + timedelta(days=write.days)
        status = Status.TERMINATED if write.terminated else Status.SUSPENDED
        return ExternalSanction(f"X-{n:03d}", CODE, status, write.start, end, "四川")
    if isinstance(write, Reduce):
        return Repair(f"R-{n:03d}", CODE, write.day, reduce_points=write.points)
    return Repair(f"R-{n:03d}", CODE, write.day, shorten_days=write.days)


def _write_path(ledger: Ledger, fact: Fact, rules: PointsRules) -> Ledger:
    """The write path's pure edit (raises Refused)."""
    if isinstance(fact, Registration):
        return ledger_ops.register(ledger, fact, rules)
    if isinstance(fact, PointsDecision):
        return ledger_ops.record_points(ledger, fact)
    if isinstance(fact, Repair):
        return ledger_ops.apply_repair(ledger, fact, rules)
    if isinstance(fact, ExternalSanction):
        return ledger_ops.add_sanction(ledger, fact)
    return ledger_ops.withdraw(ledger, fact[0], fact[1], "appeal upheld")


def _oracle_refuses(ledger: Ledger, fact: Fact, rules: PointsRules, before: Simulation) -> bool:
    """The write path's refusals restated, judged against the writes accepted so far (``before``)."""
    if isinstance(fact, Registration):  # rule 5: inside a ban, after every fact on file
        candidate = replace(ledger, registrations=(*ledger.registrations, fact))
        return len(ledger.registrations) in simulate(candidate, rules).void
    if isinstance(fact, PointsDecision | ExternalSanction):
        return False  # only repairs and registrations are refused by the rules
    if isinstance(fact, Repair):
        after = simulate(replace(ledger, repairs=(*ledger.repairs, fact)), rules)
        # Rule 8: it takes its full amount, and no accepted repair takes less than it does now.
        return fact.repair_no in after.short or any(after.taken[r] < took for r, took in before.taken.items())
    decision = next((d for d in ledger.points if d.decision_no == fact[0]), None)
    return decision is None or decision.withdrawn_on is not None or fact[1] < decision.decided_on


def send(writes: list[Write], rules: PointsRules) -> tuple[Ledger, list[bool]]:
    """Send the writes in order through the write path and the oracle; they must agree on every verdict.
    Returns the final ledger and, per write, whether it was refused."""
    ledger, before, refusals = Ledger(CODE), Simulation(), []
    for n, write in enumerate(writes):
        fact = _fact(writes, n)
        try:
            written, reason = _write_path(ledger, fact, rules), None
        except Refused as exc:
            written, reason = ledger, str(exc)
        expected = _oracle_refuses(ledger, fact, rules, before)
        assert (reason is not None) == expected, (
            f"write {n} ({write}): the write path {'refused: ' + reason if reason else 'accepted it'}, "
            f"the oracle {'refuses' if expected else 'accepts'}"
        )
        refusals.append(expected)
        if written is not ledger:  # a refused write changes nothing; the next is judged against the accepted
            ledger = written
            before = simulate(ledger, rules)
    return ledger, refusals


def compare(ledger: Ledger, rules: PointsRules) -> list[tuple[Status, date, date | None]]:
    """Status and window on every day from the first fact to the horizon; returns the oracle's local windows.
    With external periods (rule 9) the status only: how the overlay cuts windows is the engine's choice (note 15)."""
    derivation = derive(ledger, rules)
    sim = simulate(ledger, rules, record=True)
    overlay = Oracle(rules, ledger.sanctions).external if ledger.sanctions else None
    day = sim.start
    for window in sim.days:
        period = status_on(derivation, day)
        if overlay is not None:
            got_status = Status.NORMAL if period is None else period.status
            want_status = max(Status.NORMAL if window is None else window.status, overlay(day))
            assert got_status == want_status, f"on {day}: engine {got_status!r}, oracle {want_status!r}"
        else:
            got = None if period is None else (period.status, period.since, period.until)
            want = None if window is None else (window.status, window.since, window.until)
            assert got == want, f"on {day}: engine {got}, oracle {want}\nengine timeline {derivation.timeline}"
        day += ONE_DAY
    # Nothing outside the days walked (the horizon is past every end but an open termination's).
    for p in derivation.timeline:
        assert sim.start <= p.since <= sim.horizon, p
        assert p.until is None or p.until <= sim.horizon + ONE_DAY, p
    assert derivation.reregistration_allowed_from == sim.ban_end, "ban end"
    assert derivation.year_totals == sim.totals, "year totals"
    windows: list[tuple[Status, date, date | None]] = []
    for w in sim.days:
        if w is not None and (not windows or windows[-1][1] != w.since):
            windows.append((w.status, w.since, w.until))
    return windows


def check(
    writes: list[Write], rules: PointsRules = NATIONAL
) -> tuple[list[bool], list[tuple[Status, date, date | None]]]:
    ledger, refusals = send(writes, rules)
    return refusals, compare(ledger, rules)


# --- Strategies --------------------------------------------------------------------------------------------------------
# Dates cluster: most are a step away from a date already sent (so tiers, repairs, new years and late-recorded
# facts meet), registrations often land on a ban end (1 or 3 years after a points date, give or take a day),
# the rest near a few fixed dates around year ends.

FIXED = tuple(
    date.fromisoformat(d)
    for d in (
        *("2025-01-10", "2025-03-01", "2025-06-20", "2025-10-01", "2025-11-20", "2025-12-15"),
        *("2026-01-01", "2026-11-25", "2026-12-06", "2027-06-01"),
    )
)
STEPS = (0, 0, 1, 2, 7, 10, 20, 22, 30, 31, 45, 59, 61, 62, 92, 120, 184, 365, 366)
REPAIR_STEPS = (0, 1, 2, 5, 10, 15, 20, 30, 31, 40, 45, 59, 60, 61, 90, 120)  # into a suspension from its points
POINTS = (1, 1, 1, 2, 2, 3, 4, 5, 8, 9, 9, 9, 10, 10, 11, 11, 12)  # totals of 9-11 often, so repairs act
REDUCE = (1, 1, 1, 2, 2, 3, 4, 5, 6, 7)
SHORTEN = (1, 3, 5, 10, 15, 20, 22, 25, 30, 31, 45, 61, 62)  # caps: 30, 61 or 91 days
KINDS = ("points",) * 5 + ("reduce",) * 2 + ("shorten",) * 3 + ("withdraw", "register")
MAX_WRITES = 12


def _day(draw: st.DrawFn, near: list[date], steps: tuple[int, ...] = STEPS, back: bool = True) -> date:
    """Mostly a step from one of ``near`` (so tiers, new years and late-recorded facts meet), else near a fixed date."""
    aimed = draw(st.integers(0, 3)) > 0
    if near and aimed:
        step = draw(st.sampled_from(steps))
        if back and not draw(st.integers(0, 3)):
            step = -step  # one in four goes back in time: recorded late
        return draw(st.sampled_from(near)) + timedelta(days=step)
    return draw(st.sampled_from(FIXED)) + timedelta(days=draw(st.integers(-3, 40)))


def _suspended_day(draw: st.DrawFn, sim: Simulation) -> date | None:
    """A day inside one of the suspensions the oracle sees so far (so repairs have something to act on)."""
    windows = list({id(w): w for w in sim.days if w is not None and w.status is Status.SUSPENDED}.values())
    if not windows:
        return None
    window = draw(st.sampled_from(windows))
    assert window.until is not None
    return window.since + timedelta(days=draw(st.integers(0, (window.until - window.since).days - 1)))


def _skeleton(draw: st.DrawFn) -> list[Points | Register | Reduce | Shorten]:
    """Random dates rarely line up into the intricate cases, so most sequences hold one of these."""
    kinds = ("none", "new-year queue", "owed", "accumulated", "rise after end", "repair then rise", "long")
    kind = draw(st.sampled_from(kinds))
    base = draw(st.sampled_from(FIXED)) + timedelta(days=draw(st.integers(-3, 40)))

    def tier() -> int:
        return draw(st.sampled_from((9, 10, 11)))

    def later(lo: int, hi: int) -> date:
        return base + timedelta(days=draw(st.integers(lo, hi)))

    if kind == "new-year queue":  # rule 6: the new year's suspension waits for last year's
        december = date(draw(st.sampled_from((2025, 2026))), 12, draw(st.integers(1, 31)))
        january = date(december.year + 1, 1, draw(st.integers(1, 25)))
        return [Points(december, tier()), Points(january, tier())]
    if kind == "owed":  # rule 5: a long ban, tiers reached in later years, a registration at its end
        years = [
            Points(months_after(base, 12 * y) + timedelta(days=draw(st.integers(-60, 60))), tier()) for y in (1, 2)
        ]
        return [Points(base, 12), *years[: draw(st.integers(1, 2))], Register(months_after(base, 36))]
    if kind == "accumulated":  # rule 5: a short ban, a tier next year, a registration at the ban end
        second = later(0, 3)
        ban_end = months_after(second, 12)
        tier_day = draw(st.sampled_from((second + timedelta(days=200), ban_end)))  # on it: the Terms' order
        return [Points(base, 6), Points(second, 6), Points(tier_day, 9), Register(ban_end)]
    if kind == "rise after end":  # rules 3 and 4: the difference after the first period ended (or a reduce)
        more = draw(st.sampled_from((1, 2)))
        reduce = draw(st.sampled_from(("none", "cutting it", "after its end")))
        if reduce == "cutting it":  # the granted tier drops: reaching it again grants it again
            return [Points(base, 9), Reduce(later(1, 58), 1), Points(later(20, 120), more)]
        if reduce == "after its end":  # nothing to act on: the granted tier stays
            return [Points(base, 9), Reduce(later(60, 90), 1), Points(later(91, 150), more)]
        return [Points(base, 9), Points(later(58, 80), more)]
    if kind == "repair then rise":  # rules 4, 7 and 8: the days cut stay cut
        repair: Reduce | Shorten = Shorten(later(1, 40), draw(st.sampled_from(SHORTEN)))
        if not draw(st.integers(0, 2)):
            repair = Reduce(later(1, 40), draw(st.sampled_from((1, 2))))
        after: Points | Reduce | Shorten = Points(later(20, 70), draw(st.sampled_from((1, 2))))
        then = draw(st.integers(0, 3))
        if then == 0:
            after = Reduce(later(20, 70), draw(st.sampled_from((1, 2))))
        elif then == 1:  # a second shorten meets the cap, counted in days actually cut
            after = Shorten(later(20, 70), draw(st.sampled_from(SHORTEN)))
        return [Points(base, draw(st.sampled_from((9, 10)))), repair, after]
    if kind == "long":  # a long suspension for repairs to act on
        return [Points(base, tier())]
    return []


@st.composite
def write_sequences(draw: st.DrawFn) -> list[Write]:
    first = Registration(CODE, INSTITUTIONS[0], 1, date(2023, 1, 1) + timedelta(days=draw(st.integers(0, 729))))
    skeleton = _skeleton(draw)
    # The points and registrations drawn so far, as if all accepted: the oracle's view of it aims the
    # repairs into suspensions and registrations at ban ends (only aiming: the test judges every write).
    sketch = Ledger(CODE, registrations=(first,))
    points: list[Points] = []
    registration_dates: list[date] = []  # points on these days meet a registration (Terms' order)

    def sketched(write: Points | Register) -> None:
        nonlocal sketch
        if isinstance(write, Points):
            points.append(write)
            no = f"P-{len(points) - 1:03d}"
            decision = PointsDecision(no, CODE, INSTITUTIONS[0], write.points, 1, "v", write.day, write.day)
            sketch = replace(sketch, points=(*sketch.points, decision))
        else:
            registration_dates.append(write.day)
            registration = Registration(CODE, INSTITUTIONS[write.institution], 1, write.day)
            sketch = replace(sketch, registrations=(*sketch.registrations, registration))

    seen: list[tuple[Ledger, Simulation]] = []

    def view() -> Simulation:  # the oracle's view of the sketch, walked again only when it changed
        if not seen or seen[-1][0] is not sketch:
            seen.append((sketch, simulate(sketch, NATIONAL, record=True)))
        return seen[-1][1]

    for write in skeleton:
        if isinstance(write, Points | Register):
            sketched(write)
    body: list[Points | Register | Reduce | Shorten | Sanction | tuple[Points, int]] = []  # a tuple: a withdrawal
    # A third of the sequences stay short, so a skeleton's case is not always buried under other writes.
    size = draw(st.integers(1, 3)) if not draw(st.integers(0, 2)) else draw(st.integers(1, MAX_WRITES - len(skeleton)))
    for _ in range(size):
        kind = draw(st.sampled_from(KINDS))
        points_dates = [p.day for p in points]
        if kind in ("reduce", "shorten") and not points and draw(st.integers(0, 3)):
            kind = "points"  # a repair sent before any points is refused; keep a few, not a third of them
        if kind == "withdraw" and points:
            target = draw(st.sampled_from(points))
            after = draw(st.sampled_from((0, 0, 3, 30, 200, -1)))
            body.append((target, after))
            if after >= 0:
                no = f"P-{next(i for i, p in enumerate(points) if p is target):03d}"
                sketch = replace(sketch, points=tuple(d for d in sketch.points if d.decision_no != no))
        elif kind == "register":
            day = _day(draw, [])
            ban_end = view().ban_end
            if ban_end is not None and draw(st.integers(0, 2)):  # on the ban end, give or take a day
                day = ban_end + timedelta(days=draw(st.sampled_from((-1, 0, 0, 1))))
            elif points_dates and draw(st.integers(0, 2)) > 0:  # where a ban could end
                day = months_after(draw(st.sampled_from(points_dates)), 12 * draw(st.sampled_from((1, 1, 3))))
            registration = Register(day, draw(st.integers(0, len(INSTITUTIONS) - 1)))
            sketched(registration)
            body.append(registration)
        elif kind in ("reduce", "shorten"):
            day = _day(draw, points_dates, REPAIR_STEPS, back=False)
            if draw(st.integers(0, 3)):
                day = _suspended_day(draw, view()) or day
            if kind == "reduce":
                body.append(Reduce(day, draw(st.sampled_from(REDUCE))))
            else:
                body.append(Shorten(day, draw(st.sampled_from(SHORTEN))))
        else:
            write = Points(_day(draw, points_dates + registration_dates), draw(st.sampled_from(POINTS)))
            sketched(write)
            body.append(write)
    if not draw(st.integers(0, 4)):  # one in five: an external period from another region (rule 9)
        days = draw(st.sampled_from((None, 1, 30, 90, 400)))
        sanction = Sanction(_day(draw, [p.day for p in points]), days, draw(st.booleans()))
        body.insert(draw(st.integers(0, len(body))), sanction)
    # Any order of sending: the skeleton's writes mostly go first, some anywhere among the others.
    for write in reversed(skeleton):
        body.insert(draw(st.sampled_from((0, 0, 0, draw(st.integers(0, len(body)))))), write)
    position = {id(item): 1 + i for i, item in enumerate(body)}  # after the first registration
    sent: list[Write] = [Register(first.registered_on)]
    for item in body:  # a withdrawal names its points write by position (it may be sent only later)
        sent.append(Withdraw(position[id(item[0])], item[1]) if isinstance(item, tuple) else item)
    return sent


# CI: 1,000 fixed examples (conftest's "ci" profile derandomizes), about 10 s. A HYPOTHESIS_PROFILE (e.g. "long",
# 10,000 examples, a few minutes) sets the count instead, and then pytest's per-test timeout is lifted.
_PROFILED = bool(os.environ.get("HYPOTHESIS_PROFILE"))
ORACLE = settings(
    settings.default if _PROFILED else settings(settings.default, max_examples=1000),
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.timeout(0 if _PROFILED else 120)
@pytest.mark.parametrize("rules", list(RULESETS.values()), ids=list(RULESETS))
@ORACLE
@given(writes=write_sequences())
def test_the_engine_agrees_with_the_oracle(rules: PointsRules, writes: list[Write]) -> None:
    check(writes, rules)


# --- Issue 6's table: the minimal cases (tests/e2e/test_rules_edges.py), oracle and engine alike ------------------

S, T = Status.SUSPENDED, Status.TERMINATED
D = date.fromisoformat
REGISTERED = Register(D("2024-01-01"))


def test_row_a_a_reduce_larger_than_the_total_on_its_day_is_refused() -> None:
    refusals, windows = check([REGISTERED, Points(D("2025-11-15"), 9), Reduce(D("2025-05-05"), 4)])
    assert refusals == [False, False, True]
    assert windows == [(S, D("2025-11-15"), D("2026-01-15"))]


def test_row_a_a_withdrawal_empties_what_a_reduction_took_from() -> None:
    writes: list[Write] = [
        REGISTERED,
        Points(D("2026-09-23"), 11),
        Points(D("2026-10-26"), 12),
        Reduce(D("2026-09-30"), 5),
    ]
    refusals, windows = check([*writes, Withdraw(1, 58)])  # withdrawn 2026-11-20
    assert refusals == [False] * 5
    assert windows == [(T, D("2026-10-26"), None)]


def test_row_b_shortened_days_stay_cut_when_the_tier_rises() -> None:
    writes: list[Write] = [
        REGISTERED,
        Points(D("2027-03-23"), 10),
        Shorten(D("2027-04-02"), 22),
        Points(D("2027-05-14"), 1),
    ]
    assert check(writes) == ([False] * 4, [(S, D("2027-03-23"), D("2027-09-01"))])


def test_row_b_shortened_days_stay_cut_when_a_reduce_recomputes_the_end() -> None:
    writes: list[Write] = [
        REGISTERED,
        Points(D("2027-03-23"), 11),
        Shorten(D("2027-04-02"), 22),
        Reduce(D("2027-05-14"), 1),
    ]
    assert check(writes) == ([False] * 4, [(S, D("2027-03-23"), D("2027-07-01"))])


def test_row_c_a_reduce_with_nothing_to_act_on_keeps_the_granted_tier() -> None:
    writes: list[Write] = [
        REGISTERED,
        Points(D("2025-01-10"), 9),
        Reduce(D("2025-04-01"), 1),
        Points(D("2025-06-01"), 1),
    ]
    assert check(writes) == ([False] * 4, [(S, D("2025-01-10"), D("2025-03-10"))])


def test_row_d_a_repair_that_would_shrink_an_accepted_reduce_is_refused() -> None:
    writes: list[Write] = [
        REGISTERED,
        Points(D("2025-03-01"), 8),
        Reduce(D("2025-05-01"), 5),
        Reduce(D("2025-04-01"), 2),
    ]
    assert check(writes) == ([False, False, False, True], [])


def test_row_d_a_repair_that_would_shrink_an_accepted_shorten_is_refused() -> None:
    writes: list[Write] = [
        REGISTERED,
        Points(D("2025-03-01"), 10),
        Shorten(D("2025-05-01"), 50),
        Shorten(D("2025-04-01"), 20),
    ]
    assert check(writes) == ([False, False, False, True], [(S, D("2025-03-01"), D("2025-05-12"))])


TERMINATED_MARCH_2025: list[Write] = [REGISTERED, Points(D("2025-03-01"), 6), Points(D("2025-03-02"), 6)]


def test_row_e_a_later_years_total_reaching_12_during_a_termination_extends_the_ban() -> None:
    writes: list[Write] = [*TERMINATED_MARCH_2025, Points(D("2026-01-10"), 6), Points(D("2026-02-10"), 6)]
    refusals, windows = check([*writes, Register(D("2026-03-02"), 1)])
    assert refusals == [False] * 5 + [True]
    assert windows == [(T, D("2025-03-02"), None)]
    ledger, _ = send(writes, NATIONAL)
    assert simulate(ledger, NATIONAL).ban_end == D("2027-02-10")


def test_row_e_a_tier_reached_during_a_termination_is_served_from_the_registration() -> None:
    writes: list[Write] = [*TERMINATED_MARCH_2025, Points(D("2026-01-10"), 9), Register(D("2026-03-02"), 1)]
    refusals, windows = check(writes)
    assert refusals == [False] * 5
    assert windows == [(T, D("2025-03-02"), D("2026-03-02")), (S, D("2026-03-02"), D("2026-05-02"))]


def test_row_f_a_reduce_cancels_the_queued_new_year_suspension() -> None:
    writes: list[Write] = [REGISTERED, Points(D("2026-12-06"), 9), Points(D("2027-01-01"), 9)]
    assert check(writes)[1] == [(S, D("2026-12-06"), D("2027-02-06")), (S, D("2027-02-06"), D("2027-04-06"))]
    assert check([*writes, Reduce(D("2027-01-02"), 1)]) == ([False] * 4, [(S, D("2026-12-06"), D("2027-02-06"))])


def test_row_h_on_one_day_registrations_come_before_points() -> None:
    writes: list[Write] = [
        REGISTERED,
        Points(D("2025-03-01"), 6),
        Points(D("2025-03-01"), 6),
        Register(D("2026-03-01")),
    ]
    refusals, windows = check([*writes, Points(D("2026-03-01"), 9)])
    assert refusals == [False] * 5
    assert windows == [(T, D("2025-03-01"), D("2026-03-01")), (S, D("2026-03-01"), D("2026-05-01"))]


def test_reading_a_reduce_that_cuts_lowers_the_granted_tier_to_the_new_totals() -> None:
    """The rules leave open what a reduce lowers the granted tier to; oracle and engine: the new total's tier."""
    writes: list[Write] = [REGISTERED, Points(D("2025-01-10"), 9), Points(D("2025-04-01"), 1)]  # 2, then 2 more
    writes += [Reduce(D("2025-05-01"), 2), Points(D("2025-06-10"), 1)]  # total 8 cuts the second; 9 again
    refusals, windows = check(writes)
    assert refusals == [False] * 5
    assert windows == [
        (S, D("2025-01-10"), D("2025-03-10")),
        (S, D("2025-04-01"), D("2025-05-01")),
        (S, D("2025-06-10"), D("2025-08-10")),
    ]
