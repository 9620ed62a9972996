"""What a draft profile would change: every person's timeline derived under the draft and under the
active profile, compared on a day and over that day's year; logged claim lines decided under both.

Pure: the caller streams ledgers in and gets a report out; nothing is written anywhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from domain.projection import PersonView
from domain.values import Ledger, Period, Status
from service.check.decision import Outcome, decide_line
from service.offline.decision_records import LoggedLine
from service.rules.engine import derive
from service.rules.profile import Profile


@dataclass(frozen=True, slots=True)
class PersonChange:
    code: str
    before: Status  # on the day, under the active profile
    after: Status  # under the draft
    suspended_days_before: int  # in the day's year
    suspended_days_after: int


@dataclass(frozen=True, slots=True)
class LineChange:
    logged: LoggedLine
    active: Outcome
    draft: Outcome


@dataclass(slots=True)
class Report:
    day: date
    people: int = 0
    transitions: Counter[tuple[Status, Status]] = field(default_factory=Counter)
    changed: list[PersonChange] = field(default_factory=list)  # status on the day or days in the year differ
    days_gained: int = 0  # suspension days the draft adds in the year, summed over people
    days_lost: int = 0
    lines: int = 0
    line_changes: list[LineChange] = field(default_factory=list)


def suspended_days(timeline: Iterable[Period], year: int) -> int:
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    total = 0
    for p in timeline:
        if p.status is Status.SUSPENDED:
            since, until = max(p.since, start), min(p.until or end, end)
            total += max(0, (until - since).days)
    return total


def _status(view: PersonView, day: date) -> Status:
    return view.status_on(day).status


def compare(ledger: Ledger, active: Profile, draft: Profile, day: date, report: Report) -> None:
    """Add one person's comparison to ``report``."""
    before = PersonView.of(ledger.practitioner_code, derive(ledger, active.points))
    after = PersonView.of(ledger.practitioner_code, derive(ledger, draft.points))
    s_before, s_after = _status(before, day), _status(after, day)
    d_before, d_after = suspended_days(before.periods, day.year), suspended_days(after.periods, day.year)
    report.people += 1
    report.transitions[(s_before, s_after)] += 1
    report.days_gained += max(0, d_after - d_before)
    report.days_lost += max(0, d_before - d_after)
    if s_before is not s_after or d_before != d_after:
        report.changed.append(PersonChange(ledger.practitioner_code, s_before, s_after, d_before, d_after))


def compare_lines(
    logged: Iterable[LoggedLine],
    people: tuple[Mapping[str, PersonView], Mapping[str, PersonView]],
    profiles: tuple[Profile, Profile],
    report: Report,
) -> None:
    """Decide each logged line under the active and the draft profile (its people derived under each)."""
    (active_people, draft_people), (active, draft) = people, profiles
    for item in logged:
        report.lines += 1
        a = decide_line(item.line, item.institution_code, active_people, active)
        d = decide_line(item.line, item.institution_code, draft_people, draft)
        if (a.decision, a.reason) != (d.decision, d.reason):
            report.line_changes.append(LineChange(item, a, d))
