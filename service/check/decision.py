"""The decision function: one claim line, the people on it, a profile -> an explained outcome.

Pure: no I/O, no clock. The caller passes whether the data is too stale to use.
Semantics are those of docs/api-contract (shared) "Decision semantics"; see docs/policy.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from domain.projection import PersonView, StatusWindow
from domain.values import CareType, Decision, Reason, Status
from service.rules.profile import Profile


@dataclass(frozen=True, slots=True)
class Line:
    """A validated claim line."""

    line_id: str
    practitioner_code: str
    service_date: date
    dispenser_code: str = ""
    care_type: CareType = CareType.UNSPECIFIED
    med_type: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: Decision
    reason: Reason
    practitioner_code: str
    window: StatusWindow | None  # None when nothing is known of the person (or data is stale)
    message: str


# Worst first: the outcome with the highest rank among the people on a line decides it.
_DECISION_RANK = {Decision.ALLOW: 0, Decision.REVIEW: 1, Decision.REJECT: 2}
_REASON_RANK = {
    Reason.ELIGIBLE: 0,
    Reason.EMERGENCY_EXCEPTION: 1,
    Reason.RESCUE_EXCEPTION: 1,
    Reason.UNKNOWN_PRACTITIONER: 2,
    Reason.NOT_REGISTERED: 3,
    Reason.SUSPENDED: 4,
    Reason.TERMINATED: 5,
    Reason.STALE_DATA: 6,
}


def is_pharmacy(institution_code: str) -> bool:
    return institution_code.startswith("P")


def decide_line(
    line: Line, institution_code: str, people: Mapping[str, PersonView], profile: Profile, *, stale: bool = False
) -> Outcome:
    """Decide one line from each responsible person's status on the service date."""
    if stale:
        return Outcome(
            Decision.REVIEW,
            Reason.STALE_DATA,
            line.practitioner_code,
            None,
            "The eligibility data is not fresh enough to decide this line; it needs review.",
        )
    # The prescriber on a pharmacy claim is registered elsewhere: check only their status.
    prescriber_needs_registration = not is_pharmacy(institution_code)
    worst = _person_outcome(
        line, line.practitioner_code, institution_code, people, profile, prescriber_needs_registration
    )
    if line.dispenser_code:
        other = _person_outcome(line, line.dispenser_code, institution_code, people, profile, True)
        if _rank(other) > _rank(worst):
            worst = other
    return worst


def _rank(outcome: Outcome) -> tuple[int, int]:
    return _DECISION_RANK[outcome.decision], _REASON_RANK[outcome.reason]


def _person_outcome(
    line: Line,
    code: str,
    institution_code: str,
    people: Mapping[str, PersonView],
    profile: Profile,
    check_registration: bool,
) -> Outcome:
    person = people.get(code)
    day = line.service_date
    if person is None:
        return Outcome(
            profile.unknown.unknown_decision,
            Reason.UNKNOWN_PRACTITIONER,
            code,
            None,
            f"{code} has no record in the eligibility data.",
        )
    window = person.status_on(day)
    registered = not check_registration or person.registered_at(institution_code, _registration_day(day, window))
    if window.status is not Status.NORMAL:
        sanctioned = _sanctioned(line, code, window, profile)
        # An exception pays care despite the status, never care at a place the person may not bill.
        if sanctioned.decision is not Decision.ALLOW or registered:
            return sanctioned
    if not registered:
        return Outcome(
            profile.unknown.not_registered_decision,
            Reason.NOT_REGISTERED,
            code,
            window,
            f"{code} is not registered at {institution_code} on {day.isoformat()}.",
        )
    return Outcome(Decision.ALLOW, Reason.ELIGIBLE, code, window, f"{code} is eligible on {day.isoformat()}.")


def _registration_day(day: date, window: StatusWindow) -> date:
    """The day registration is judged on. A termination ends every registration, so for a
    terminated person (whose care may still be excepted) it is the eve of the termination."""
    if window.status is Status.TERMINATED and window.since is not None:
        return window.since - timedelta(days=1)
    return day


def _sanctioned(line: Line, code: str, window: StatusWindow, profile: Profile) -> Outcome:
    terminated = window.status is Status.TERMINATED
    reason = Reason.TERMINATED if terminated else Reason.SUSPENDED
    span = _describe_window(window)
    exception = excepted_care(line, window.status, profile)
    if exception is not None:
        kind = "emergency" if exception is Reason.EMERGENCY_EXCEPTION else "rescue"
        return Outcome(
            Decision.ALLOW,
            exception,
            code,
            window,
            f"{code} is {span}, but {kind} care is paid under profile {profile.policy_id}.",
        )
    return Outcome(Decision.REJECT, reason, code, window, f"{code} is {span}; this service is not paid.")


def excepted_care(line: Line, status: Status, profile: Profile) -> Reason | None:
    """The exception reason when the profile still pays this care for this status (rule 10)."""
    rules = profile.exceptions
    if status is Status.TERMINATED and not rules.covers_termination:
        return None
    care = line.care_type
    if care is CareType.UNSPECIFIED and line.med_type in rules.emergency_med_types:
        care = CareType.EMERGENCY
    if care not in rules.care_types:
        return None
    return Reason.EMERGENCY_EXCEPTION if care is CareType.EMERGENCY else Reason.RESCUE_EXCEPTION


def _describe_window(window: StatusWindow) -> str:
    word = "terminated" if window.status is Status.TERMINATED else "suspended"
    since = window.since.isoformat() if window.since else "the start"
    if window.until is None:
        return f"{word} since {since}"
    last = (window.until - timedelta(days=1)).isoformat()
    return f"{word} from {since} through {last}"


def decide_claim(
    lines: Sequence[Line],
    institution_code: str,
    people: Mapping[str, PersonView],
    profile: Profile,
    *,
    stale: bool = False,
) -> list[Outcome]:
    """Every line's outcome, in order. A claim repeats its few people and dates, so equal lines
    are decided once (an outcome never depends on the line id)."""
    memo: dict[tuple[str, str, date, CareType, str], Outcome] = {}
    outcomes = []
    for line in lines:
        key = (line.practitioner_code, line.dispenser_code, line.service_date, line.care_type, line.med_type)
        outcome = memo.get(key)
        if outcome is None:
            outcome = memo[key] = decide_line(line, institution_code, people, profile, stale=stale)
        outcomes.append(outcome)
    return outcomes
