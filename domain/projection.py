"""What the check path needs to know about one person, and how to read a status off it.

A ``PersonView`` is built once per change (off the request path) from the policy engine's
derivation; reading it is a bisect in a short tuple plus dictionary lookups.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from domain.values import Derivation, Period, RegistrationSpan, Status


@dataclass(frozen=True, slots=True)
class StatusWindow:
    """A person's status on a day and the period it belongs to: [since, until), None = unbounded."""

    status: Status
    since: date | None
    until: date | None
    cause: str = ""


ALWAYS_NORMAL = StatusWindow(Status.NORMAL, None, None)


@dataclass(frozen=True, slots=True)
class PersonView:
    code: str
    periods: tuple[Period, ...]  # non-normal periods, sorted, non-overlapping
    starts: tuple[date, ...]  # periods[i].since, for bisect
    registrations: Mapping[str, tuple[RegistrationSpan, ...]]  # by institution code
    reregistration_allowed_from: date | None = None

    @classmethod
    def of(cls, code: str, derivation: Derivation) -> PersonView:
        by_institution: dict[str, list[RegistrationSpan]] = {}
        for span in derivation.registrations:
            by_institution.setdefault(span.institution_code, []).append(span)
        return cls(
            code=code,
            periods=derivation.timeline,
            starts=tuple(p.since for p in derivation.timeline),
            registrations={k: tuple(v) for k, v in by_institution.items()},
            reregistration_allowed_from=derivation.reregistration_allowed_from,
        )

    def status_on(self, day: date) -> StatusWindow:
        """The status on ``day``; a normal window runs between the neighbouring periods."""
        if not self.periods:  # most people: never sanctioned
            return ALWAYS_NORMAL
        i = bisect_right(self.starts, day) - 1
        if i >= 0:
            period = self.periods[i]
            if period.until is None or day < period.until:
                return StatusWindow(period.status, period.since, period.until, period.cause)
        since = self.periods[i].until if i >= 0 else None
        until = self.starts[i + 1] if i + 1 < len(self.starts) else None
        return StatusWindow(Status.NORMAL, since, until)

    def registered_at(self, institution_code: str, day: date) -> bool:
        for span in self.registrations.get(institution_code, ()):
            if span.since <= day and (span.until is None or day < span.until):
                return True
        return False
