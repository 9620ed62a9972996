"""Institution reports, computed from every person's ledger and derivation. Pure: no I/O.

- ``institution_shares``: per institution, the staff registered at any time in a natural year,
  how many of them were suspended or terminated at any time in that year, the share, and the
  flag the profile's ``[reports]`` thresholds give (at or above a threshold flags).
- ``institution_staff``: an institution's own staff list on a day: registration, whether they
  may bill there, status, points in the year, re-registration date.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from domain.projection import PersonView, StatusWindow
from domain.values import Derivation, Ledger, Registration
from service.rules.profile import ReportRules

People = Iterable[tuple[Ledger, Derivation]]


class Flag(enum.IntEnum):
    """Numbers equal gatekeeper.v1.InstitutionFlag."""

    NONE = 1
    WITHHELD_SETTLEMENT = 2
    SUSPENDED_AGREEMENT = 3


@dataclass(frozen=True, slots=True)
class InstitutionShare:
    institution_code: str
    registered: int
    sanctioned: int
    flag: Flag

    @property
    def share(self) -> float:
        return self.sanctioned / self.registered if self.registered else 0.0


@dataclass(frozen=True, slots=True)
class StaffRow:
    practitioner_code: str
    registration: Registration
    registered: bool  # may bill for the institution on the day
    status: StatusWindow
    points_this_year: int
    reregistration_allowed_from: date | None


def _overlaps(since: date, until: date | None, start: date, end: date) -> bool:
    """[since, until) meets [start, end)."""
    return since < end and (until is None or until > start)


def flag_of(share: float, rules: ReportRules) -> Flag:
    if share >= rules.suspended_agreement_share:
        return Flag.SUSPENDED_AGREEMENT
    if share >= rules.withheld_settlement_share:
        return Flag.WITHHELD_SETTLEMENT
    return Flag.NONE


def in_region(institution_code: str, region: str) -> bool:
    """``region`` is an administrative-division prefix of the digits after the H/P letter."""
    return institution_code[1:].startswith(region)


def institution_shares(people: People, year: int, rules: ReportRules, region: str = "") -> list[InstitutionShare]:
    """Highest share first, then by institution code."""
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    registered: dict[str, int] = {}
    sanctioned: dict[str, int] = {}
    for _ledger, derivation in people:
        places = {
            span.institution_code
            for span in derivation.registrations
            if _overlaps(span.since, span.until, start, end) and in_region(span.institution_code, region)
        }
        if not places:
            continue
        hit = any(_overlaps(p.since, p.until, start, end) for p in derivation.timeline)
        for code in places:
            registered[code] = registered.get(code, 0) + 1
            sanctioned[code] = sanctioned.get(code, 0) + hit
    shares = [
        InstitutionShare(code, n, sanctioned[code], flag_of(sanctioned[code] / n, rules))
        for code, n in registered.items()
    ]
    return sorted(shares, key=lambda s: (-s.share, s.institution_code))


def institution_staff(people: People, institution_code: str, day: date) -> list[StaffRow]:
    """Everyone with a registration at the institution from 1 January of ``day``'s year up to ``day``,
    by practitioner code, then registration date."""
    start, end = date(day.year, 1, 1), day + timedelta(days=1)
    rows = []
    for ledger, derivation in people:
        regs = [
            r
            for r in ledger.registrations
            if r.institution_code == institution_code and _overlaps(r.registered_on, r.ended_on, start, end)
        ]
        if not regs:
            continue
        view = PersonView.of(ledger.practitioner_code, derivation)
        registered = view.registered_at(institution_code, day)
        for reg in regs:
            rows.append(
                StaffRow(
                    ledger.practitioner_code,
                    reg,
                    registered,
                    view.status_on(day),
                    derivation.year_totals.get(day.year, 0),
                    derivation.reregistration_allowed_from,
                )
            )
    return sorted(rows, key=lambda r: (r.practitioner_code, r.registration.registered_on))
