"""Plain domain values shared by the policy engine, the decision function and the cache.

The enum numbers equal the protobuf enum numbers of ``gatekeeper.v1`` (a unit test holds them
together), so converting at the gRPC edge is free. Dates are civil dates in China time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date


class Status(enum.IntEnum):
    NORMAL = 1
    SUSPENDED = 2
    TERMINATED = 3


class Decision(enum.IntEnum):
    ALLOW = 1
    REJECT = 2
    REVIEW = 3


class Reason(enum.IntEnum):
    ELIGIBLE = 1
    SUSPENDED = 2
    TERMINATED = 3
    NOT_REGISTERED = 4
    UNKNOWN_PRACTITIONER = 5
    EMERGENCY_EXCEPTION = 6
    RESCUE_EXCEPTION = 7
    STALE_DATA = 8


class CareType(enum.IntEnum):
    UNSPECIFIED = 0
    ROUTINE = 1
    EMERGENCY = 2
    RESCUE = 3


@dataclass(frozen=True, slots=True)
class Period:
    """A status period [since, until); ``until`` None means open-ended."""

    status: Status
    since: date
    until: date | None
    cause: str = ""

    def covers(self, day: date) -> bool:
        return self.since <= day and (self.until is None or day < self.until)


@dataclass(frozen=True, slots=True)
class RegistrationSpan:
    """Where and when a person may bill: [since, until) at one institution."""

    institution_code: str
    since: date
    until: date | None

    def covers(self, day: date) -> bool:
        return self.since <= day and (self.until is None or day < self.until)


# --- The ledger: facts as the agency recorded them, never edited in place. -----------------


@dataclass(frozen=True, slots=True)
class Registration:
    practitioner_code: str
    institution_code: str
    category: int
    registered_on: date
    ended_on: date | None = None


@dataclass(frozen=True, slots=True)
class PointsDecision:
    decision_no: str
    practitioner_code: str
    institution_code: str
    points: int
    responsibility: int
    violation: str
    decided_on: date
    effective_on: date
    withdrawn_on: date | None = None
    withdrawal_reason: str = ""

    @property
    def withdrawn(self) -> bool:
        return self.withdrawn_on is not None


@dataclass(frozen=True, slots=True)
class Repair:
    """Exactly one of ``reduce_points`` and ``shorten_days`` is positive."""

    repair_no: str
    practitioner_code: str
    approved_on: date
    reduce_points: int = 0
    shorten_days: int = 0
    basis: str = ""


@dataclass(frozen=True, slots=True)
class ExternalSanction:
    """A status decided in another region; a period of its own (policy rule 9)."""

    source_decision_no: str
    practitioner_code: str
    status: Status
    start: date
    end: date | None
    origin_region: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: str  # RFC 3339 UTC timestamp, taken at the edge
    actor: str
    method: str
    document: str
    data_version: int


@dataclass(frozen=True, slots=True)
class Ledger:
    """Everything recorded about one person. Order of the tuples carries no meaning."""

    practitioner_code: str
    registrations: tuple[Registration, ...] = ()
    points: tuple[PointsDecision, ...] = ()
    repairs: tuple[Repair, ...] = ()
    sanctions: tuple[ExternalSanction, ...] = ()
    audit: tuple[AuditEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Derivation:
    """What the policy engine derives from a ledger.

    ``timeline`` holds only non-normal periods, sorted by ``since``, never overlapping; the
    gaps are normal. ``registrations`` are the effective spans (a termination ends every
    registration running at its start). ``reregistration_allowed_from`` is set while the
    latest termination is still open.
    """

    timeline: tuple[Period, ...]
    registrations: tuple[RegistrationSpan, ...]
    year_totals: dict[int, int] = field(default_factory=dict)
    reregistration_allowed_from: date | None = None
