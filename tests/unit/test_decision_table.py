"""Table tests of ``service.decision.decide_line`` as a pure function.

Expected outcomes come from the small oracle tables below, written from the API contract ("Decision semantics")
and policy rule 10, never from the code under test. No Redis, no gRPC: people are ``PersonView``s built by hand.
"""

from __future__ import annotations

import itertools
import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.projection import PersonView, StatusWindow
from domain.values import CareType, Decision, Derivation, Period, Reason, RegistrationSpan, Status
from service.check.decision import Line, Outcome, decide_claim, decide_line
from service.rules.profile import Profile, UnknownRules, load_profile

ALLOW, REJECT, REVIEW = Decision.ALLOW, Decision.REJECT, Decision.REVIEW
EMERGENCY, RESCUE = Reason.EMERGENCY_EXCEPTION, Reason.RESCUE_EXCEPTION

HOSPITAL = "H12345678901"
OTHER_HOSPITAL = "H99999999999"
PHARMACY = "P12345678901"
PRESCRIBER = "D0001"
DISPENSER = "R0002"

DAY = date(2025, 4, 1)  # the service date of the table: inside both sanctions below
SUSPENSION = Period(Status.SUSPENDED, date(2025, 3, 10), date(2025, 5, 10), "points 9 (decision X-1)")
TERMINATION = Period(Status.TERMINATED, date(2025, 3, 10), None, "points 12 (decision X-2)")


# --- People -------------------------------------------------------------------------------------------------------


def registered(institution: str = HOSPITAL, since: date = date(2024, 1, 1), until: date | None = None):
    return RegistrationSpan(institution, since, until)


def person(code: str, periods: tuple[Period, ...] = (), registrations: tuple[RegistrationSpan, ...] = ()) -> PersonView:
    return PersonView.of(code, Derivation(timeline=periods, registrations=registrations))


def make_person(kind: str, code: str, institution: str = HOSPITAL) -> PersonView | None:
    """One person of each status kind of the table; ``None`` is a person with no record at all."""
    if kind == "normal":
        return person(code, (), (registered(institution),))
    if kind == "suspended":
        return person(code, (SUSPENSION,), (registered(institution),))
    if kind == "terminated":  # a termination ends every registration running at its start
        return person(code, (TERMINATION,), (registered(institution, until=TERMINATION.since),))
    if kind == "not_registered":  # known, normal, but registered somewhere else
        return person(code, (), (registered(OTHER_HOSPITAL),))
    if kind == "unknown":
        return None
    raise AssertionError(kind)


def people_of(**by_code: PersonView | None) -> dict[str, PersonView]:
    return {code: view for code, view in by_code.items() if view is not None}


# --- Profiles -----------------------------------------------------------------------------------------------------

NATIONAL = load_profile("national")
XIZANG = load_profile("xizang")
# Staff groups phased in: unknown people go to review, unregistered people are paid.
CUSTOM_REVIEW = NATIONAL.model_copy(
    update={
        "id": "custom-review",
        "unknown": UnknownRules(unknown_practitioner="review", not_registered="allow"),
    }
)
# Built from a dict: everybody unknown is paid; only emergency care (and med_type 24) is excepted, for
# terminations too.
CUSTOM_ALLOW = Profile.model_validate(
    {
        "id": "custom-allow",
        "version": "7",
        "points": {"suspension_months": {"9": 2, "10": 4, "11": 6}},
        "exceptions": {"care_types": ["emergency"], "emergency_med_types": ["24"], "covers_termination": True},
        "unknown": {"unknown_practitioner": "allow", "not_registered": "allow"},
    }
)
PROFILES = {"national": NATIONAL, "xizang": XIZANG, "custom-review": CUSTOM_REVIEW, "custom-allow": CUSTOM_ALLOW}

# --- The oracle ---------------------------------------------------------------------------------------------------

CARES: dict[str, tuple[CareType, str]] = {
    "unspecified": (CareType.UNSPECIFIED, ""),
    "routine": (CareType.ROUTINE, ""),
    "emergency": (CareType.EMERGENCY, ""),
    "rescue": (CareType.RESCUE, ""),
    "unspecified-med13": (CareType.UNSPECIFIED, "13"),
    "unspecified-med24": (CareType.UNSPECIFIED, "24"),
    "routine-med13": (CareType.ROUTINE, "13"),  # an explicit care type wins over med_type: not excepted
}
_ALL_CARES = (
    "unspecified",
    "routine",
    "emergency",
    "rescue",
    "unspecified-med13",
    "unspecified-med24",
    "routine-med13",
)
_NATIONAL_EXCEPTIONS = (None, None, EMERGENCY, RESCUE, EMERGENCY, EMERGENCY, None)
# Rule 10, per profile and care: the exception reason if the care is excepted at all.
EXCEPTION_FOR_CARE: dict[str, dict[str, Reason | None]] = {
    "national": dict(zip(_ALL_CARES, _NATIONAL_EXCEPTIONS, strict=True)),
    "xizang": dict(zip(_ALL_CARES, _NATIONAL_EXCEPTIONS, strict=True)),
    "custom-review": dict(zip(_ALL_CARES, _NATIONAL_EXCEPTIONS, strict=True)),
    "custom-allow": dict(zip(_ALL_CARES, (None, None, EMERGENCY, None, None, EMERGENCY, None), strict=True)),
}
COVERS_TERMINATION = {"national": False, "xizang": True, "custom-review": False, "custom-allow": True}
UNKNOWN_DECISION = {"national": REJECT, "xizang": REJECT, "custom-review": REVIEW, "custom-allow": ALLOW}
NOT_REGISTERED_DECISION = {"national": REJECT, "xizang": REJECT, "custom-review": ALLOW, "custom-allow": ALLOW}
STATUSES = ("normal", "suspended", "terminated", "unknown", "not_registered")


def oracle(status: str, care: str, profile: str) -> tuple[Decision, Reason]:
    if status == "normal":
        return ALLOW, Reason.ELIGIBLE
    if status == "unknown":
        return UNKNOWN_DECISION[profile], Reason.UNKNOWN_PRACTITIONER
    if status == "not_registered":
        return NOT_REGISTERED_DECISION[profile], Reason.NOT_REGISTERED
    exception = EXCEPTION_FOR_CARE[profile][care]
    if status == "terminated" and not COVERS_TERMINATION[profile]:
        exception = None
    if exception is not None:
        return ALLOW, exception
    return REJECT, Reason.SUSPENDED if status == "suspended" else Reason.TERMINATED


EXPECTED_WINDOW: dict[str, StatusWindow | None] = {
    "normal": StatusWindow(Status.NORMAL, None, None),
    "not_registered": StatusWindow(Status.NORMAL, None, None),
    "suspended": StatusWindow(Status.SUSPENDED, SUSPENSION.since, SUSPENSION.until, SUSPENSION.cause),
    "terminated": StatusWindow(Status.TERMINATED, TERMINATION.since, None, TERMINATION.cause),
    "unknown": None,
}

# Worst first (contract: "the worst outcome among the persons decides").
DECISION_SEVERITY = {ALLOW: 0, REVIEW: 1, REJECT: 2}


def line(
    care: str = "routine", *, day: date = DAY, practitioner: str = PRESCRIBER, dispenser: str = "", line_id: str = "L1"
) -> Line:
    care_type, med_type = CARES[care]
    return Line(line_id, practitioner, day, dispenser_code=dispenser, care_type=care_type, med_type=med_type)


def assert_one_sentence(message: str) -> None:
    assert message, "message is empty"
    assert message == message.strip()
    assert "\n" not in message
    assert message.endswith("."), message
    # no sentence boundary inside: a full stop, '!' or '?' followed by white space
    assert not re.search(r"[.!?]\s", message[:-1]), message


def assert_person_message(outcome: Outcome) -> None:
    assert_one_sentence(outcome.message)
    assert outcome.practitioner_code in outcome.message


# --- The exhaustive table -----------------------------------------------------------------------------------------

TABLE = [
    pytest.param(status, care, profile, id=f"{profile}-{status}-{care}")
    for profile in PROFILES
    for status in STATUSES
    for care in CARES
]


@pytest.mark.parametrize(("status", "care", "profile"), TABLE)
def test_decision_table(status: str, care: str, profile: str) -> None:
    people = people_of(**{PRESCRIBER: make_person(status, PRESCRIBER)})

    outcome = decide_line(line(care), HOSPITAL, people, PROFILES[profile])

    assert (outcome.decision, outcome.reason) == oracle(status, care, profile)
    assert outcome.practitioner_code == PRESCRIBER
    assert outcome.window == EXPECTED_WINDOW[status]
    assert_person_message(outcome)


def test_table_covers_every_combination() -> None:
    assert len(TABLE) == 4 * 5 * 7
    seen = {oracle(s, c, p) for s, c, p in itertools.product(STATUSES, CARES, PROFILES)}
    # every decision/reason pair the contract knows (except stale) is reached by the table
    assert seen == {
        (ALLOW, Reason.ELIGIBLE),
        (ALLOW, EMERGENCY),
        (ALLOW, RESCUE),
        (REJECT, Reason.SUSPENDED),
        (REJECT, Reason.TERMINATED),
        (REJECT, Reason.UNKNOWN_PRACTITIONER),
        (REVIEW, Reason.UNKNOWN_PRACTITIONER),
        (ALLOW, Reason.UNKNOWN_PRACTITIONER),
        (REJECT, Reason.NOT_REGISTERED),
        (ALLOW, Reason.NOT_REGISTERED),
    }


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        pytest.param("national", (REJECT, Reason.TERMINATED), id="national-suspension-only"),
        pytest.param("xizang", (ALLOW, EMERGENCY), id="xizang-covers-termination"),
    ],
)
def test_emergency_care_of_a_terminated_person_depends_on_the_profile(profile: str, expected: tuple) -> None:
    people = people_of(**{PRESCRIBER: make_person("terminated", PRESCRIBER)})
    outcome = decide_line(line("emergency"), HOSPITAL, people, PROFILES[profile])
    assert (outcome.decision, outcome.reason) == expected


def test_worked_example_suspended_emergency_line_is_allowed_under_xizang() -> None:
    people = people_of(**{PRESCRIBER: make_person("suspended", PRESCRIBER)})
    outcome = decide_line(line("emergency"), HOSPITAL, people, XIZANG)
    assert (outcome.decision, outcome.reason) == (ALLOW, EMERGENCY)


# --- Service-date boundaries --------------------------------------------------------------------------------------

SUSPENDED_ONLY = person(PRESCRIBER, (Period(Status.SUSPENDED, date(2025, 3, 10), date(2025, 5, 10)),), (registered(),))


@pytest.mark.parametrize(
    ("day", "decision", "reason", "window"),
    [
        pytest.param(
            date(2025, 3, 9),
            ALLOW,
            Reason.ELIGIBLE,
            StatusWindow(Status.NORMAL, None, date(2025, 3, 10)),
            id="03-09-day-before-allowed",
        ),
        pytest.param(
            date(2025, 3, 10),
            REJECT,
            Reason.SUSPENDED,
            StatusWindow(Status.SUSPENDED, date(2025, 3, 10), date(2025, 5, 10)),
            id="03-10-first-day-rejected",
        ),
        pytest.param(
            date(2025, 5, 9),
            REJECT,
            Reason.SUSPENDED,
            StatusWindow(Status.SUSPENDED, date(2025, 3, 10), date(2025, 5, 10)),
            id="05-09-last-day-rejected",
        ),
        pytest.param(
            date(2025, 5, 10),
            ALLOW,
            Reason.ELIGIBLE,
            StatusWindow(Status.NORMAL, date(2025, 5, 10), None),
            id="05-10-until-is-exclusive-allowed",
        ),
    ],
)
@pytest.mark.parametrize("profile", ["national", "xizang"])
def test_suspension_boundaries(profile: str, day: date, decision: Decision, reason: Reason, window) -> None:
    outcome = decide_line(line("routine", day=day), HOSPITAL, {PRESCRIBER: SUSPENDED_ONLY}, PROFILES[profile])
    assert (outcome.decision, outcome.reason, outcome.window) == (decision, reason, window)
    assert_person_message(outcome)


def test_suspension_message_names_the_inclusive_last_day() -> None:
    outcome = decide_line(line(day=date(2025, 4, 1)), HOSPITAL, {PRESCRIBER: SUSPENDED_ONLY}, NATIONAL)
    assert "2025-03-10" in outcome.message
    assert "2025-05-09" in outcome.message  # until 05-10 is exclusive


OPEN_TERMINATION = person(
    PRESCRIBER,
    (Period(Status.TERMINATED, date(2025, 7, 1), None, "12 points"),),
    (registered(until=date(2025, 7, 1)),),
)


@pytest.mark.parametrize(
    ("day", "decision", "reason", "window"),
    [
        pytest.param(
            date(2025, 6, 30),
            ALLOW,
            Reason.ELIGIBLE,
            StatusWindow(Status.NORMAL, None, date(2025, 7, 1)),
            id="day-before",
        ),
        pytest.param(
            date(2025, 7, 1),
            REJECT,
            Reason.TERMINATED,
            StatusWindow(Status.TERMINATED, date(2025, 7, 1), None, "12 points"),
            id="first-day",
        ),
        pytest.param(
            date(2031, 12, 31),
            REJECT,
            Reason.TERMINATED,
            StatusWindow(Status.TERMINATED, date(2025, 7, 1), None, "12 points"),
            id="years-later",
        ),
    ],
)
def test_open_ended_termination(day: date, decision: Decision, reason: Reason, window: StatusWindow) -> None:
    outcome = decide_line(line("routine", day=day), HOSPITAL, {PRESCRIBER: OPEN_TERMINATION}, NATIONAL)
    assert (outcome.decision, outcome.reason, outcome.window) == (decision, reason, window)
    assert outcome.window is not None
    if outcome.reason is Reason.TERMINATED:
        assert outcome.window.until is None
        assert "2025-07-01" in outcome.message


@pytest.mark.parametrize(
    ("day", "registered_then"),
    [
        pytest.param(date(2024, 12, 31), False, id="before-registration"),
        pytest.param(date(2025, 1, 1), True, id="registration-day"),
        pytest.param(date(2025, 5, 31), True, id="last-day"),
        pytest.param(date(2025, 6, 1), False, id="ended-on-is-exclusive"),
    ],
)
def test_registration_span_boundaries(day: date, registered_then: bool) -> None:
    view = person(PRESCRIBER, (), (registered(since=date(2025, 1, 1), until=date(2025, 6, 1)),))
    outcome = decide_line(line(day=day), HOSPITAL, {PRESCRIBER: view}, NATIONAL)
    expected = (ALLOW, Reason.ELIGIBLE) if registered_then else (REJECT, Reason.NOT_REGISTERED)
    assert (outcome.decision, outcome.reason) == expected
    assert_person_message(outcome)
    if not registered_then:
        assert HOSPITAL in outcome.message
        assert day.isoformat() in outcome.message


# --- Exceptions keep the status and window -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "care", "profile", "reason", "window"),
    [
        pytest.param(
            "suspended",
            "emergency",
            "national",
            EMERGENCY,
            StatusWindow(Status.SUSPENDED, SUSPENSION.since, SUSPENSION.until, SUSPENSION.cause),
            id="national-suspended-emergency",
        ),
        pytest.param(
            "suspended",
            "unspecified-med24",
            "national",
            EMERGENCY,
            StatusWindow(Status.SUSPENDED, SUSPENSION.since, SUSPENSION.until, SUSPENSION.cause),
            id="national-suspended-med24",
        ),
        pytest.param(
            "suspended",
            "rescue",
            "xizang",
            RESCUE,
            StatusWindow(Status.SUSPENDED, SUSPENSION.since, SUSPENSION.until, SUSPENSION.cause),
            id="xizang-suspended-rescue",
        ),
        pytest.param(
            "terminated",
            "rescue",
            "xizang",
            RESCUE,
            StatusWindow(Status.TERMINATED, TERMINATION.since, None, TERMINATION.cause),
            id="xizang-terminated-rescue",
        ),
        pytest.param(
            "terminated",
            "unspecified-med13",
            "xizang",
            EMERGENCY,
            StatusWindow(Status.TERMINATED, TERMINATION.since, None, TERMINATION.cause),
            id="xizang-terminated-med13",
        ),
    ],
)
def test_exception_keeps_status_and_window(
    status: str, care: str, profile: str, reason: Reason, window: StatusWindow
) -> None:
    people = people_of(**{PRESCRIBER: make_person(status, PRESCRIBER)})
    outcome = decide_line(line(care), HOSPITAL, people, PROFILES[profile])
    assert outcome.decision is ALLOW
    assert outcome.reason is reason
    assert outcome.window == window
    assert_person_message(outcome)


# --- Stale data ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("dispenser_status", [None, *STATUSES])
@pytest.mark.parametrize("status", STATUSES)
def test_stale_data_is_always_review(status: str, dispenser_status: str | None, profile: str) -> None:
    people = people_of(**{PRESCRIBER: make_person(status, PRESCRIBER)})
    if dispenser_status is not None:
        people.update(people_of(**{DISPENSER: make_person(dispenser_status, DISPENSER)}))
    dispenser = DISPENSER if dispenser_status is not None else ""
    for care in ("routine", "emergency"):
        outcome = decide_line(line(care, dispenser=dispenser), HOSPITAL, people, PROFILES[profile], stale=True)
        assert (outcome.decision, outcome.reason) == (REVIEW, Reason.STALE_DATA)
        assert outcome.window is None
        assert outcome.practitioner_code == PRESCRIBER
        assert_one_sentence(outcome.message)


def test_stale_data_with_no_people_at_all() -> None:
    outcome = decide_line(line(), PHARMACY, {}, NATIONAL, stale=True)
    assert (outcome.decision, outcome.reason) == (REVIEW, Reason.STALE_DATA)


# --- Two people on a line: the worst decides ------------------------------------------------------------------------

WHO = {"prescriber": PRESCRIBER, "dispenser": DISPENSER}


@pytest.mark.parametrize(
    ("prescriber", "dispenser", "care", "profile", "decision", "reason", "who"),
    [
        pytest.param("normal", "normal", "routine", "national", ALLOW, Reason.ELIGIBLE, None, id="both-eligible"),
        pytest.param(
            "normal",
            "suspended",
            "routine",
            "national",
            REJECT,
            Reason.SUSPENDED,
            "dispenser",
            id="dispenser-suspended",
        ),
        pytest.param(
            "suspended", "normal", "routine", "national", REJECT, Reason.SUSPENDED, "prescriber", id="prescriber-susp"
        ),
        pytest.param(
            "suspended",
            "terminated",
            "routine",
            "national",
            REJECT,
            Reason.TERMINATED,
            "dispenser",
            id="terminated-beats-suspended",
        ),
        pytest.param(
            "terminated",
            "suspended",
            "routine",
            "national",
            REJECT,
            Reason.TERMINATED,
            "prescriber",
            id="terminated-prescriber-beats-suspended-dispenser",
        ),
        pytest.param(
            "normal",
            "unknown",
            "routine",
            "national",
            REJECT,
            Reason.UNKNOWN_PRACTITIONER,
            "dispenser",
            id="unknown-dispenser-rejected",
        ),
        pytest.param(
            "normal",
            "unknown",
            "routine",
            "custom-review",
            REVIEW,
            Reason.UNKNOWN_PRACTITIONER,
            "dispenser",
            id="unknown-dispenser-review",
        ),
        pytest.param(
            "unknown",
            "suspended",
            "routine",
            "custom-review",
            REJECT,
            Reason.SUSPENDED,
            "dispenser",
            id="reject-beats-review",
        ),
        pytest.param(
            "normal",
            "not_registered",
            "routine",
            "national",
            REJECT,
            Reason.NOT_REGISTERED,
            "dispenser",
            id="dispenser-not-registered",
        ),
        pytest.param(
            "not_registered",
            "normal",
            "routine",
            "custom-allow",
            ALLOW,
            Reason.NOT_REGISTERED,
            "prescriber",
            id="allowed-not-registered-still-named",
        ),
        pytest.param(
            "normal",
            "suspended",
            "emergency",
            "national",
            ALLOW,
            EMERGENCY,
            "dispenser",
            id="exception-named-over-eligible",
        ),
        pytest.param(
            "suspended", "normal", "rescue", "national", ALLOW, RESCUE, "prescriber", id="prescriber-rescue-exception"
        ),
        pytest.param(
            "terminated",
            "suspended",
            "emergency",
            "national",
            REJECT,
            Reason.TERMINATED,
            "prescriber",
            id="national-termination-not-excepted-dispenser-suspension-is",
        ),
        pytest.param(
            "suspended",
            "terminated",
            "emergency",
            "national",
            REJECT,
            Reason.TERMINATED,
            "dispenser",
            id="national-terminated-dispenser-not-excepted",
        ),
        pytest.param(
            "normal",
            "terminated",
            "rescue",
            "xizang",
            ALLOW,
            RESCUE,
            "dispenser",
            id="xizang-terminated-dispenser-rescue",
        ),
    ],
)
def test_worst_person_decides(
    prescriber: str, dispenser: str, care: str, profile: str, decision: Decision, reason: Reason, who: str | None
) -> None:
    people = people_of(
        **{PRESCRIBER: make_person(prescriber, PRESCRIBER), DISPENSER: make_person(dispenser, DISPENSER)}
    )
    outcome = decide_line(line(care, dispenser=DISPENSER), HOSPITAL, people, PROFILES[profile])
    assert (outcome.decision, outcome.reason) == (decision, reason)
    if who is not None:
        assert outcome.practitioner_code == WHO[who]
    assert_person_message(outcome)


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("care", ["routine", "emergency", "rescue"])
@pytest.mark.parametrize(("prescriber", "dispenser"), list(itertools.product(STATUSES, STATUSES)))
def test_two_people_outcome_is_the_worst_single_outcome(prescriber: str, dispenser: str, care: str, profile: str):
    """Exhaustively: the line's decision is the most severe of the two, and the outcome is the named person's own."""
    people = people_of(
        **{PRESCRIBER: make_person(prescriber, PRESCRIBER), DISPENSER: make_person(dispenser, DISPENSER)}
    )
    outcome = decide_line(line(care, dispenser=DISPENSER), HOSPITAL, people, PROFILES[profile])

    singles = {code: oracle(kind, care, profile) for code, kind in ((PRESCRIBER, prescriber), (DISPENSER, dispenser))}
    worst_decision = max((d for d, _ in singles.values()), key=DECISION_SEVERITY.__getitem__)
    assert outcome.decision is worst_decision
    assert outcome.practitioner_code in singles
    assert (outcome.decision, outcome.reason) == singles[outcome.practitioner_code]
    named_kind = prescriber if outcome.practitioner_code == PRESCRIBER else dispenser
    assert outcome.window == EXPECTED_WINDOW[named_kind]
    # a sanction that is rejected always beats an unknown or unregistered rejection of the other person
    sanctioned = {code for code, (d, r) in singles.items() if r in (Reason.SUSPENDED, Reason.TERMINATED)}
    if sanctioned and outcome.decision is REJECT:
        assert outcome.reason in (Reason.SUSPENDED, Reason.TERMINATED)
    assert_person_message(outcome)


def test_dispenser_same_as_prescriber() -> None:
    people = {PRESCRIBER: make_person("suspended", PRESCRIBER)}
    outcome = decide_line(line(dispenser=PRESCRIBER), HOSPITAL, people, NATIONAL)
    assert (outcome.decision, outcome.reason, outcome.practitioner_code) == (REJECT, Reason.SUSPENDED, PRESCRIBER)


# --- Pharmacy claims: the prescriber's registration is not checked, the dispenser's is -----------------------------


@pytest.mark.parametrize(
    ("prescriber", "dispenser", "decision", "reason", "who"),
    [
        # prescriber registered at a hospital only: fine on a pharmacy claim
        pytest.param("elsewhere", "at_pharmacy", ALLOW, Reason.ELIGIBLE, None, id="prescriber-registered-elsewhere"),
        pytest.param("nowhere", None, ALLOW, Reason.ELIGIBLE, "prescriber", id="prescriber-without-any-registration"),
        pytest.param(
            "suspended", "at_pharmacy", REJECT, Reason.SUSPENDED, "prescriber", id="prescriber-status-checked"
        ),
        pytest.param("terminated", None, REJECT, Reason.TERMINATED, "prescriber", id="prescriber-terminated"),
        pytest.param("unknown", None, REJECT, Reason.UNKNOWN_PRACTITIONER, "prescriber", id="prescriber-unknown"),
        pytest.param(
            "elsewhere", "at_hospital", REJECT, Reason.NOT_REGISTERED, "dispenser", id="dispenser-registration-checked"
        ),
        pytest.param(
            "elsewhere", "ended", REJECT, Reason.NOT_REGISTERED, "dispenser", id="dispenser-registration-ended"
        ),
        pytest.param("elsewhere", "suspended", REJECT, Reason.SUSPENDED, "dispenser", id="dispenser-status-checked"),
        pytest.param("elsewhere", "unknown", REJECT, Reason.UNKNOWN_PRACTITIONER, "dispenser", id="dispenser-unknown"),
    ],
)
def test_pharmacy_claim(prescriber: str, dispenser: str | None, decision: Decision, reason: Reason, who) -> None:
    prescribers = {
        "elsewhere": person(PRESCRIBER, (), (registered(HOSPITAL),)),
        "nowhere": person(PRESCRIBER),
        "suspended": person(PRESCRIBER, (SUSPENSION,), (registered(HOSPITAL),)),
        "terminated": person(PRESCRIBER, (TERMINATION,), ()),
        "unknown": None,
    }
    dispensers = {
        "at_pharmacy": person(DISPENSER, (), (registered(PHARMACY),)),
        "at_hospital": person(DISPENSER, (), (registered(HOSPITAL),)),
        "ended": person(DISPENSER, (), (registered(PHARMACY, until=date(2025, 3, 1)),)),
        "suspended": person(DISPENSER, (SUSPENSION,), (registered(PHARMACY),)),
        "unknown": None,
    }
    people = people_of(**{PRESCRIBER: prescribers[prescriber]})
    if dispenser is not None:
        people.update(people_of(**{DISPENSER: dispensers[dispenser]}))
    the_line = line("routine", dispenser=DISPENSER if dispenser is not None else "")

    outcome = decide_line(the_line, PHARMACY, people, NATIONAL)

    assert (outcome.decision, outcome.reason) == (decision, reason)
    if who is not None:
        assert outcome.practitioner_code == WHO[who]
    assert_person_message(outcome)
    if reason is Reason.NOT_REGISTERED:
        assert PHARMACY in outcome.message


def test_same_prescriber_is_not_registered_on_a_hospital_claim() -> None:
    """Contrast with the pharmacy case: at a hospital the prescriber's registration counts."""
    people = {PRESCRIBER: person(PRESCRIBER, (), (registered(OTHER_HOSPITAL),))}
    assert decide_line(line(), PHARMACY, people, NATIONAL).reason is Reason.ELIGIBLE
    hospital = decide_line(line(), HOSPITAL, people, NATIONAL)
    assert (hospital.decision, hospital.reason, hospital.practitioner_code) == (
        REJECT,
        Reason.NOT_REGISTERED,
        PRESCRIBER,
    )


def test_pharmacy_dispenser_with_exception_and_prescriber_unregistered() -> None:
    people = {
        PRESCRIBER: person(PRESCRIBER),
        DISPENSER: person(DISPENSER, (SUSPENSION,), (registered(PHARMACY),)),
    }
    outcome = decide_line(line("rescue", dispenser=DISPENSER), PHARMACY, people, NATIONAL)
    assert (outcome.decision, outcome.reason, outcome.practitioner_code) == (ALLOW, RESCUE, DISPENSER)


# --- PersonView.status_on ------------------------------------------------------------------------------------------

S1 = Period(Status.SUSPENDED, date(2025, 3, 10), date(2025, 5, 10), "first")
T1 = Period(Status.TERMINATED, date(2025, 5, 10), None, "then terminated")
S2 = Period(Status.SUSPENDED, date(2025, 1, 1), date(2025, 3, 1), "tier 9")
S3 = Period(Status.SUSPENDED, date(2025, 6, 1), date(2025, 8, 1), "tier 10")


@pytest.mark.parametrize(
    ("periods", "day", "window"),
    [
        pytest.param((), date(2025, 4, 1), StatusWindow(Status.NORMAL, None, None), id="never-sanctioned"),
        # suspension then, without a gap, termination
        pytest.param((S1, T1), date(2025, 3, 9), StatusWindow(Status.NORMAL, None, S1.since), id="adj-before"),
        pytest.param(
            (S1, T1), date(2025, 3, 10), StatusWindow(Status.SUSPENDED, S1.since, S1.until, "first"), id="adj-s"
        ),
        pytest.param(
            (S1, T1), date(2025, 5, 9), StatusWindow(Status.SUSPENDED, S1.since, S1.until, "first"), id="adj-s-end"
        ),
        pytest.param(
            (S1, T1), date(2025, 5, 10), StatusWindow(Status.TERMINATED, T1.since, None, T1.cause), id="adj-t-start"
        ),
        pytest.param((S1, T1), date(2040, 1, 1), StatusWindow(Status.TERMINATED, T1.since, None, T1.cause), id="adj-t"),
        # two suspensions with a normal gap
        pytest.param((S2, S3), date(2024, 12, 31), StatusWindow(Status.NORMAL, None, S2.since), id="gap-before-all"),
        pytest.param((S2, S3), date(2025, 1, 1), StatusWindow(Status.SUSPENDED, S2.since, S2.until, S2.cause), id="s2"),
        pytest.param(
            (S2, S3), date(2025, 2, 28), StatusWindow(Status.SUSPENDED, S2.since, S2.until, S2.cause), id="s2-end"
        ),
        pytest.param((S2, S3), date(2025, 3, 1), StatusWindow(Status.NORMAL, S2.until, S3.since), id="gap-first-day"),
        pytest.param((S2, S3), date(2025, 4, 15), StatusWindow(Status.NORMAL, S2.until, S3.since), id="gap-middle"),
        pytest.param((S2, S3), date(2025, 5, 31), StatusWindow(Status.NORMAL, S2.until, S3.since), id="gap-last-day"),
        pytest.param((S2, S3), date(2025, 6, 1), StatusWindow(Status.SUSPENDED, S3.since, S3.until, S3.cause), id="s3"),
        pytest.param((S2, S3), date(2025, 8, 1), StatusWindow(Status.NORMAL, S3.until, None), id="after-all"),
        # three periods: suspension, gap, suspension, termination directly after
        pytest.param(
            (S2, S3, Period(Status.TERMINATED, date(2025, 8, 1), None)),
            date(2025, 7, 31),
            StatusWindow(Status.SUSPENDED, S3.since, S3.until, S3.cause),
            id="three-s3-end",
        ),
        pytest.param(
            (S2, S3, Period(Status.TERMINATED, date(2025, 8, 1), None)),
            date(2025, 8, 1),
            StatusWindow(Status.TERMINATED, date(2025, 8, 1), None),
            id="three-t",
        ),
        pytest.param(
            (S2, S3, Period(Status.TERMINATED, date(2025, 8, 1), None)),
            date(2025, 5, 1),
            StatusWindow(Status.NORMAL, S2.until, S3.since),
            id="three-gap",
        ),
    ],
)
def test_status_on(periods: tuple[Period, ...], day: date, window: StatusWindow) -> None:
    assert person(PRESCRIBER, periods).status_on(day) == window


def test_person_view_of_groups_registrations_by_institution() -> None:
    spans = (
        registered(HOSPITAL, date(2020, 1, 1), date(2021, 1, 1)),
        registered(PHARMACY, date(2020, 6, 1)),
        registered(HOSPITAL, date(2022, 1, 1)),
    )
    view = PersonView.of(
        PRESCRIBER, Derivation(timeline=(S2,), registrations=spans, reregistration_allowed_from=date(2028, 1, 1))
    )
    assert view.code == PRESCRIBER
    assert view.starts == (S2.since,)
    assert view.reregistration_allowed_from == date(2028, 1, 1)
    assert view.registered_at(HOSPITAL, date(2020, 12, 31))
    assert not view.registered_at(HOSPITAL, date(2021, 6, 1))  # between the two hospital registrations
    assert view.registered_at(HOSPITAL, date(2022, 1, 1))
    assert view.registered_at(PHARMACY, date(2030, 1, 1))
    assert not view.registered_at(OTHER_HOSPITAL, date(2022, 1, 1))


# --- Registration still counts under an exception --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["national", "xizang"])
def test_suspension_never_improves_an_unregistered_line(profile: str) -> None:
    elsewhere = (registered(OTHER_HOSPITAL),)
    normal = decide_line(
        line("emergency"), HOSPITAL, {PRESCRIBER: person(PRESCRIBER, (), elsewhere)}, PROFILES[profile]
    )
    assert (normal.decision, normal.reason) == (REJECT, Reason.NOT_REGISTERED)
    suspended_view = person(PRESCRIBER, (SUSPENSION,), elsewhere)
    suspended = decide_line(line("emergency"), HOSPITAL, {PRESCRIBER: suspended_view}, PROFILES[profile])
    assert DECISION_SEVERITY[suspended.decision] >= DECISION_SEVERITY[normal.decision], suspended


@given(
    st.lists(
        st.tuples(
            st.sampled_from([PRESCRIBER, "D5401020009", DISPENSER]),
            st.sampled_from(["", DISPENSER]),
            st.dates(min_value=date(2025, 3, 1), max_value=date(2025, 6, 1)),
            st.sampled_from(list(CareType)),
            st.sampled_from(["", "13"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_decide_claim_equals_deciding_each_line(rows: list[tuple[str, str, date, CareType, str]]) -> None:
    people = {PRESCRIBER: person(PRESCRIBER, (SUSPENSION,), (registered(HOSPITAL),))}
    lines = [Line(str(i), p, day, d, care, med) for i, (p, d, day, care, med) in enumerate(rows)]
    profile = PROFILES["xizang"]
    assert decide_claim(lines, HOSPITAL, people, profile) == [decide_line(x, HOSPITAL, people, profile) for x in lines]
