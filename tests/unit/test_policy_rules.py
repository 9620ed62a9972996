"""Example tests of the policy engine (``service.rules.engine``), one group per rule of policy-rules.md.

Every expected date below is worked out by hand from the rules (and docs/policy.md for the cases the
rules leave open), never read back from the code. Profile: Tibet unless a test says otherwise.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from domain.projection import PersonView
from domain.values import (
    CareType,
    Decision,
    Derivation,
    ExternalSanction,
    Ledger,
    Period,
    PointsDecision,
    Reason,
    Registration,
    RegistrationSpan,
    Repair,
    Status,
)
from service.check.decision import Line, Outcome, decide_line
from service.rules.engine import add_months, add_years, derive, registration_refusal, repair_refusal, status_on
from service.rules.profile import PointsRules, Profile, load_profile

XIZANG = load_profile("xizang")
NATIONAL = load_profile("national")
RULES = XIZANG.points
UNCAPPED = RULES.model_copy(update={"max_reduce_points_per_year": None, "max_shorten_fraction": None})

CODE = "D540102000123"
HOSPITAL = "H54010200001"
CLINIC = "H54010200002"
S, T = Status.SUSPENDED, Status.TERMINATED
D = date


# --- Builders -------------------------------------------------------------------------------------------------------


def pts(
    no: str, points: int, effective: date, *, decided: date | None = None, withdrawn: date | None = None
) -> PointsDecision:
    return PointsDecision(no, CODE, HOSPITAL, points, 3, "v", decided or effective, effective, withdrawn)


def reg(registered: date, institution: str = HOSPITAL, ended: date | None = None) -> Registration:
    return Registration(CODE, institution, 1, registered, ended)


def reduce(no: str, approved: date, points: int) -> Repair:
    return Repair(no, CODE, approved, reduce_points=points)


def shorten(no: str, approved: date, days: int) -> Repair:
    return Repair(no, CODE, approved, shorten_days=days)


def ext(no: str, status: Status, start: date, end: date | None, region: str = "西藏") -> ExternalSanction:
    return ExternalSanction(no, CODE, status, start, end, region)


def ledger(*facts: object) -> Ledger:
    return Ledger(
        CODE,
        registrations=tuple(f for f in facts if isinstance(f, Registration)),
        points=tuple(f for f in facts if isinstance(f, PointsDecision)),
        repairs=tuple(f for f in facts if isinstance(f, Repair)),
        sanctions=tuple(f for f in facts if isinstance(f, ExternalSanction)),
    )


def run(*facts: object, rules: PointsRules = RULES) -> Derivation:
    return derive(ledger(*facts), rules)


def spans(d: Derivation) -> list[tuple[Status, date, date | None]]:
    """The timeline without causes, for compact comparisons."""
    return [(p.status, p.since, p.until) for p in d.timeline]


# --- Calendar arithmetic --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (D(2025, 1, 31), 1, D(2025, 2, 28)),  # policy-rules.md "Terms"
        (D(2024, 1, 31), 1, D(2024, 2, 29)),  # leap year
        (D(2025, 3, 31), 1, D(2025, 4, 30)),
        (D(2025, 3, 31), -1, D(2025, 2, 28)),
        (D(2025, 11, 30), 3, D(2026, 2, 28)),
        (D(2025, 12, 15), 1, D(2026, 1, 15)),
        (D(2025, 1, 15), -1, D(2024, 12, 15)),
        (D(2025, 8, 31), 6, D(2026, 2, 28)),
        (D(2025, 3, 10), 0, D(2025, 3, 10)),
        (D(2025, 3, 10), 2, D(2025, 5, 10)),
        (D(2025, 1, 31), 24, D(2027, 1, 31)),
    ],
)
def test_add_months_clamps_to_month_end(day: date, months: int, expected: date) -> None:
    assert add_months(day, months) == expected


@pytest.mark.parametrize(
    ("day", "years", "expected"),
    [
        (D(2024, 2, 29), 1, D(2025, 2, 28)),  # policy-rules.md "Terms"
        (D(2024, 2, 29), 4, D(2028, 2, 29)),
        (D(2024, 2, 29), 3, D(2027, 2, 28)),
        (D(2025, 7, 1), 3, D(2028, 7, 1)),
        (D(2025, 12, 31), 1, D(2026, 12, 31)),
        (D(2025, 3, 1), 0, D(2025, 3, 1)),
    ],
)
def test_add_years_clamps_29_february(day: date, years: int, expected: date) -> None:
    assert add_years(day, years) == expected


def test_suspension_end_is_clamped_to_month_end() -> None:
    assert spans(run(pts("a", 9, D(2025, 12, 31)))) == [(S, D(2025, 12, 31), D(2026, 2, 28))]
    assert spans(run(pts("a", 9, D(2023, 12, 31)))) == [(S, D(2023, 12, 31), D(2024, 2, 29))]
    assert spans(run(pts("a", 11, D(2025, 8, 31)))) == [(S, D(2025, 8, 31), D(2026, 2, 28))]


def test_ban_end_of_a_termination_on_29_february() -> None:
    d = run(pts("a", 12, D(2024, 2, 29)))
    assert d.reregistration_allowed_from == D(2027, 2, 28)
    d = run(pts("a", 9, D(2024, 2, 1)), pts("b", 3, D(2024, 2, 29)))
    assert d.reregistration_allowed_from == D(2025, 2, 28)


# --- Worked examples (policy-rules.md, Tibet profile) ---------------------------------------------------------------


def _decide(
    d: Derivation, day: date, care: CareType = CareType.ROUTINE, profile: Profile = XIZANG, med_type: str = ""
) -> Outcome:
    person = PersonView.of(CODE, d)
    line = Line("1", CODE, day, care_type=care, med_type=med_type)
    return decide_line(line, HOSPITAL, {CODE: person}, profile)


def test_example_9_points_suspends_two_months() -> None:
    d = run(reg(D(2024, 1, 1)), pts("XZ-1", 9, D(2025, 3, 10)))
    assert spans(d) == [(S, D(2025, 3, 10), D(2025, 5, 10))]
    assert d.timeline[0].cause == "points total 9 in 2025 (2 months)"
    assert status_on(d, D(2025, 3, 9)) is None
    assert status_on(d, D(2025, 3, 10)) == d.timeline[0]
    assert status_on(d, D(2025, 5, 9)) == d.timeline[0]
    assert status_on(d, D(2025, 5, 10)) is None
    # The same example as the check path sees it: routine lines served on those days.
    assert _decide(d, D(2025, 3, 9)).decision is Decision.ALLOW
    assert _decide(d, D(2025, 3, 10)).decision is Decision.REJECT
    assert _decide(d, D(2025, 5, 9)).decision is Decision.REJECT
    assert _decide(d, D(2025, 5, 10)).decision is Decision.ALLOW


def test_example_5_then_4_points() -> None:
    d = run(pts("a", 5, D(2025, 2, 1)), pts("b", 4, D(2025, 6, 15)))
    assert spans(d) == [(S, D(2025, 6, 15), D(2025, 8, 15))]
    assert d.year_totals == {2025: 9}


def test_example_9_then_1_is_one_suspension_of_four_months() -> None:
    d = run(pts("a", 9, D(2025, 4, 1)), pts("b", 1, D(2025, 4, 20)))
    assert spans(d) == [(S, D(2025, 4, 1), D(2025, 8, 1))]
    assert d.timeline[0].cause == "points total 10 in 2025 (4 months)"


def test_example_single_12_points_terminates_with_three_year_ban() -> None:
    d = run(reg(D(2024, 1, 1)), pts("a", 12, D(2025, 7, 1)))
    assert spans(d) == [(T, D(2025, 7, 1), None)]
    assert d.timeline[0].cause.startswith("termination: 12 points in 2025")
    assert d.reregistration_allowed_from == D(2028, 7, 1)
    assert d.registrations == (RegistrationSpan(HOSPITAL, D(2024, 1, 1), D(2025, 7, 1)),)


def test_example_points_across_new_year_do_not_add_up() -> None:
    d = run(pts("a", 8, D(2025, 12, 5)), pts("b", 1, D(2026, 1, 5)))
    assert d.timeline == ()
    assert d.year_totals == {2025: 8, 2026: 1}


def test_example_emergency_line_of_suspended_person_is_allowed() -> None:
    d = run(reg(D(2024, 1, 1)), pts("a", 9, D(2025, 3, 10)))
    outcome = _decide(d, D(2025, 4, 1), CareType.EMERGENCY)
    assert (outcome.decision, outcome.reason) == (Decision.ALLOW, Reason.EMERGENCY_EXCEPTION)


# --- Rule 1: year total ----------------------------------------------------------------------------------------------


def test_rule1_total_uses_effective_date_not_decision_date() -> None:
    d = run(pts("a", 5, D(2025, 1, 5), decided=D(2024, 12, 20)), pts("b", 4, D(2025, 2, 1)))
    assert d.year_totals == {2025: 9}
    assert spans(d) == [(S, D(2025, 2, 1), D(2025, 4, 1))]


def test_rule1_total_never_below_zero() -> None:
    assert run(pts("a", 2, D(2025, 3, 1)), reduce("r", D(2025, 4, 1), 5)).year_totals == {2025: 0}


def test_rule1_reduction_is_never_banked_against_later_points() -> None:
    # Rule 1: the reduce takes min(5, total 2 on 04-01) = 2; the 9 points of 05-01 count in full.
    d = run(pts("a", 2, D(2025, 3, 1)), reduce("r", D(2025, 4, 1), 5), pts("b", 9, D(2025, 5, 1)))
    assert d.year_totals == {2025: 9}
    assert spans(d) == [(S, D(2025, 5, 1), D(2025, 7, 1))]


def test_rule1_reduction_counts_in_the_year_it_is_approved() -> None:
    # The 2026 reduce finds a 2026 total of 0 and takes nothing; 2025's points are not its to take.
    d = run(pts("a", 8, D(2025, 10, 1)), reduce("r", D(2026, 1, 10), 3), pts("b", 9, D(2026, 2, 1)))
    assert d.year_totals == {2025: 8, 2026: 9}
    assert spans(d) == [(S, D(2026, 2, 1), D(2026, 4, 1))]
    d = run(pts("a", 8, D(2026, 1, 5)), reduce("r", D(2026, 1, 10), 3), pts("b", 4, D(2026, 2, 1)))
    assert d.year_totals == {2026: 9}
    assert spans(d) == [(S, D(2026, 2, 1), D(2026, 4, 1))]


def test_rule1_withdrawal_empties_what_a_reduction_took_from() -> None:
    # Issue case A: 11 on 09-23, reduce 5 on 09-30, 12 on 10-26; the 11 withdrawn: the reduce finds 0.
    facts = (reg(D(2024, 1, 1)), reduce("r", D(2026, 9, 30), 5), pts("c", 12, D(2026, 10, 26)))
    d = run(pts("a", 11, D(2026, 9, 23), withdrawn=D(2026, 11, 1)), *facts, rules=NATIONAL.points)
    assert spans(d) == [(T, D(2026, 10, 26), None)]
    assert d.reregistration_allowed_from == D(2029, 10, 26)
    d = run(pts("a", 11, D(2026, 9, 23)), *facts, rules=NATIONAL.points)
    assert spans(d)[-1] == (T, D(2026, 10, 26), None)  # 11 - 5 + 12 = 18


def test_rule1_reduce_larger_than_the_total_is_refused_naming_both_numbers() -> None:
    facts = ledger(pts("a", 9, D(2025, 11, 15)))
    reason = repair_refusal(facts, reduce("R-1", D(2025, 5, 5), 4), NATIONAL.points)
    assert reason is not None
    assert "reduces 4 points but the 2025 total on 2025-05-05 is 0" in reason
    assert repair_refusal(facts, reduce("R-1", D(2025, 11, 16), 3), NATIONAL.points) is None
    assert spans(run(pts("a", 9, D(2025, 11, 15)), reduce("R-1", D(2025, 5, 5), 4))) == [
        (S, D(2025, 11, 15), D(2026, 1, 15))
    ]


def test_rule1_reduction_applies_from_its_date_on() -> None:
    # 6 points, reduce 2 on 03-01 (total 4), then +5 on 04-01: total 9 -> suspension; before the repair 11 would be.
    d = run(pts("a", 6, D(2025, 2, 1)), reduce("r", D(2025, 3, 1), 2), pts("b", 5, D(2025, 4, 1)))
    assert spans(d) == [(S, D(2025, 4, 1), D(2025, 6, 1))]


def test_rule1_year_totals_list_every_year_with_a_decision_or_repair() -> None:
    d = run(
        pts("a", 3, D(2025, 5, 1)), shorten("r", D(2027, 1, 1), 3), pts("w", 4, D(2026, 1, 1), withdrawn=D(2026, 2, 1))
    )
    assert d.year_totals == {2025: 3, 2027: 0}


# --- Rule 2: withdrawal voids ----------------------------------------------------------------------------------------


def test_rule2_withdrawn_decision_is_never_made() -> None:
    d = run(pts("a", 9, D(2025, 3, 10), withdrawn=D(2025, 4, 1)))
    assert d.timeline == ()
    assert d.year_totals == {}


def test_rule2_withdrawal_rewrites_the_past() -> None:
    # The 1-point rise made the suspension 4 months; withdrawn, it is 2 months from the start.
    d = run(pts("a", 9, D(2025, 4, 1)), pts("b", 1, D(2025, 4, 20), withdrawn=D(2025, 9, 1)))
    assert spans(d) == [(S, D(2025, 4, 1), D(2025, 6, 1))]


def test_rule2_withdrawn_termination_disappears_with_its_ban() -> None:
    d = run(reg(D(2024, 1, 1)), pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1), withdrawn=D(2025, 5, 1)))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 5, 1))]
    assert d.reregistration_allowed_from is None
    assert d.registrations == (RegistrationSpan(HOSPITAL, D(2024, 1, 1), None),)


# --- Rule 3: suspension tiers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "until"),
    [(8, None), (9, D(2025, 5, 1)), (10, D(2025, 7, 1)), (11, D(2025, 9, 1))],
)
def test_rule3_tier_months(points: int, until: date | None) -> None:
    d = run(pts("a", points, D(2025, 3, 1)))
    assert spans(d) == ([] if until is None else [(S, D(2025, 3, 1), until)])


def test_rule3_threshold_reached_by_several_small_decisions() -> None:
    d = run(pts("a", 3, D(2025, 1, 10)), pts("b", 3, D(2025, 2, 10)), pts("c", 2, D(2025, 3, 10)))
    assert d.timeline == ()
    d = run(pts("a", 3, D(2025, 1, 10)), pts("b", 3, D(2025, 2, 10)), pts("c", 3, D(2025, 3, 10)))
    assert spans(d) == [(S, D(2025, 3, 10), D(2025, 5, 10))]


def test_rule3_uses_the_profile_tiers() -> None:
    rules = RULES.model_copy(update={"suspension_months": {6: 1, 9: 3}})
    assert spans(run(pts("a", 6, D(2025, 1, 31)), rules=rules)) == [(S, D(2025, 1, 31), D(2025, 2, 28))]
    assert spans(run(pts("a", 10, D(2025, 1, 31)), rules=rules)) == [(S, D(2025, 1, 31), D(2025, 4, 30))]


# --- Rule 4: rising within the year ----------------------------------------------------------------------------------


def test_rule4_running_suspension_grows_to_new_tier_from_its_start() -> None:
    d = run(pts("a", 9, D(2025, 3, 1)), pts("b", 1, D(2025, 3, 20)), pts("c", 1, D(2025, 4, 2)))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 9, 1))]
    assert d.timeline[0].cause == "points total 11 in 2025 (6 months)"


def test_rule4_rise_on_last_day_extends_rise_on_end_day_starts_new_period() -> None:
    # Suspension [01-10, 03-10). A rise on 03-09 (still running) extends it to 01-10 + 4 months.
    d = run(pts("a", 9, D(2025, 1, 10)), pts("b", 1, D(2025, 3, 9)))
    assert spans(d) == [(S, D(2025, 1, 10), D(2025, 5, 10))]
    # A rise on 03-10 (already ended) starts a new period of 4 - 2 = 2 months: adjacent, separate causes.
    d = run(pts("a", 9, D(2025, 1, 10)), pts("b", 1, D(2025, 3, 10)))
    assert spans(d) == [(S, D(2025, 1, 10), D(2025, 3, 10)), (S, D(2025, 3, 10), D(2025, 5, 10))]
    assert d.timeline[1].cause == "points total 10 in 2025 (2 more months)"


def test_rule4_rise_after_the_end_serves_the_difference() -> None:
    d = run(pts("a", 9, D(2025, 1, 10)), pts("b", 2, D(2025, 6, 1)))
    assert spans(d) == [(S, D(2025, 1, 10), D(2025, 3, 10)), (S, D(2025, 6, 1), D(2025, 10, 1))]


def test_rule4_difference_period_that_is_still_running_grows_by_the_difference() -> None:
    # 9 -> [01-10, 03-10); 10 on 06-01 -> [06-01, 08-01) (2 more); 11 on 06-15 -> 06-01 + (6 - 2) months.
    d = run(pts("a", 9, D(2025, 1, 10)), pts("b", 1, D(2025, 6, 1)), pts("c", 1, D(2025, 6, 15)))
    assert spans(d) == [(S, D(2025, 1, 10), D(2025, 3, 10)), (S, D(2025, 6, 1), D(2025, 10, 1))]
    assert d.timeline[1].cause == "points total 11 in 2025 (4 more months)"


def test_rule4_no_rise_within_a_tier() -> None:
    d = run(pts("a", 10, D(2025, 1, 10)), pts("b", 0, D(2025, 2, 1)))
    assert spans(d) == [(S, D(2025, 1, 10), D(2025, 5, 10))]


def test_rule4_equal_tier_lengths_add_nothing() -> None:
    rules = RULES.model_copy(update={"suspension_months": {9: 2, 10: 2, 11: 6}})
    d = run(pts("a", 9, D(2025, 1, 10)), pts("b", 1, D(2025, 4, 1)), rules=rules)
    assert spans(d) == [(S, D(2025, 1, 10), D(2025, 3, 10))]


# --- Rule 5: termination ---------------------------------------------------------------------------------------------


def test_rule5_accumulated_termination_ends_running_suspension_and_bans_one_year() -> None:
    d = run(reg(D(2024, 1, 1)), pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1)))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 4, 1)), (T, D(2025, 4, 1), None)]
    assert d.reregistration_allowed_from == D(2026, 4, 1)
    assert d.registrations == (RegistrationSpan(HOSPITAL, D(2024, 1, 1), D(2025, 4, 1)),)


def test_rule5_single_decision_of_12_gives_long_ban_even_on_top_of_others() -> None:
    d = run(pts("a", 5, D(2025, 2, 1)), pts("b", 12, D(2025, 3, 1)))
    assert d.reregistration_allowed_from == D(2028, 3, 1)


def test_rule5_same_day_suspension_and_termination_leave_only_termination() -> None:
    d = run(pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 3, 1)))
    assert spans(d) == [(T, D(2025, 3, 1), None)]
    assert d.reregistration_allowed_from == D(2026, 3, 1)


def test_rule5_termination_ends_only_at_a_registration_on_or_after_ban_end() -> None:
    base = (reg(D(2024, 1, 1)), pts("a", 12, D(2025, 7, 1)))
    d = run(*base, reg(D(2028, 6, 30), CLINIC), reg(D(2026, 1, 1)))
    assert spans(d) == [(T, D(2025, 7, 1), None)]
    assert d.reregistration_allowed_from == D(2028, 7, 1)
    # Registrations inside the ban were refused: they give no span at all.
    assert d.registrations == (RegistrationSpan(HOSPITAL, D(2024, 1, 1), D(2025, 7, 1)),)
    d = run(*base, reg(D(2028, 6, 30), CLINIC), reg(D(2028, 7, 1)), reg(D(2029, 1, 1), CLINIC))
    assert spans(d) == [(T, D(2025, 7, 1), D(2028, 7, 1))]
    assert d.reregistration_allowed_from is None
    assert d.registrations == (  # sorted by institution, then start
        RegistrationSpan(HOSPITAL, D(2024, 1, 1), D(2025, 7, 1)),
        RegistrationSpan(HOSPITAL, D(2028, 7, 1), None),
        RegistrationSpan(CLINIC, D(2029, 1, 1), None),
    )
    assert status_on(d, D(2028, 6, 30)) is not None
    assert status_on(d, D(2028, 7, 1)) is None


def test_rule5_registration_ended_before_termination_is_untouched() -> None:
    d = run(reg(D(2024, 1, 1), ended=D(2025, 1, 1)), reg(D(2024, 6, 1), CLINIC), pts("a", 12, D(2025, 7, 1)))
    assert d.registrations == (
        RegistrationSpan(HOSPITAL, D(2024, 1, 1), D(2025, 1, 1)),
        RegistrationSpan(CLINIC, D(2024, 6, 1), D(2025, 7, 1)),
    )


def test_rule5_later_12_point_decision_extends_the_ban() -> None:
    base = (pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1)))  # accumulated: ban to 2026-04-01
    d = run(*base, pts("c", 12, D(2025, 9, 1)))
    assert d.reregistration_allowed_from == D(2028, 9, 1)
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 4, 1)), (T, D(2025, 4, 1), None)]
    # A registration between the old and the new ban end no longer ends the termination.
    d = run(*base, pts("c", 12, D(2025, 9, 1)), reg(D(2026, 5, 1)))
    assert d.timeline[-1].until is None
    assert d.registrations == ()


def test_rule5_extension_never_shortens_the_ban() -> None:
    # Two single 12s on one day: the second falls in the termination; max(ban, same day + 3 years) keeps it.
    d = run(pts("a", 12, D(2025, 7, 1)), pts("b", 12, D(2025, 7, 1)))
    assert d.reregistration_allowed_from == D(2028, 7, 1)


def test_rule5_small_decisions_during_termination_only_add_to_totals() -> None:
    d = run(
        pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1)), pts("c", 11, D(2025, 6, 1)), pts("d", 9, D(2026, 2, 1))
    )
    assert d.reregistration_allowed_from == D(2026, 4, 1)
    assert d.year_totals == {2025: 23, 2026: 9}
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 4, 1)), (T, D(2025, 4, 1), None)]


def test_rule5_registration_after_a_termination_then_new_termination_ends_it_again() -> None:
    d = run(
        reg(D(2024, 1, 1)),
        pts("a", 12, D(2025, 1, 10)),
        reg(D(2028, 2, 1)),
        pts("b", 9, D(2028, 3, 1)),
        pts("c", 3, D(2028, 3, 20)),
    )
    assert spans(d) == [
        (T, D(2025, 1, 10), D(2028, 2, 1)),
        (S, D(2028, 3, 1), D(2028, 3, 20)),
        (T, D(2028, 3, 20), None),
    ]
    assert d.registrations == (
        RegistrationSpan(HOSPITAL, D(2024, 1, 1), D(2025, 1, 10)),
        RegistrationSpan(HOSPITAL, D(2028, 2, 1), D(2028, 3, 20)),
    )
    assert d.reregistration_allowed_from == D(2029, 3, 20)


def test_rule5_tier_reached_in_a_later_year_during_termination_is_owed() -> None:
    # Terminated 2025-01-10 (ban to 2028-01-10). 9 points in 2028 before re-registration: owed from it.
    d = run(pts("a", 12, D(2025, 1, 10)), pts("b", 9, D(2028, 1, 5)), reg(D(2028, 1, 20)))
    assert spans(d) == [(T, D(2025, 1, 10), D(2028, 1, 20)), (S, D(2028, 1, 20), D(2028, 3, 20))]
    # One more point later in 2028: rule 4 on the owed suspension that runs (start + 4 months).
    d = run(pts("a", 12, D(2025, 1, 10)), pts("b", 9, D(2028, 1, 5)), reg(D(2028, 1, 20)), pts("c", 1, D(2028, 3, 1)))
    assert spans(d) == [(T, D(2025, 1, 10), D(2028, 1, 20)), (S, D(2028, 1, 20), D(2028, 5, 20))]


def test_rule5_tier_reached_in_the_termination_year_is_not_owed() -> None:
    d = run(pts("a", 6, D(2025, 3, 1)), pts("b", 6, D(2025, 3, 2)), pts("c", 9, D(2025, 6, 1)), reg(D(2026, 3, 2)))
    assert spans(d) == [(T, D(2025, 3, 2), D(2026, 3, 2))]


def test_rule5_later_year_threshold_during_termination_extends_the_ban() -> None:
    # Issue case E: 2026's total reaches 12 on 02-10 during the 2025 termination: ban to 2027-02-10.
    facts = ledger(
        reg(D(2024, 1, 1)), pts("a", 6, D(2025, 3, 1)), pts("b", 6, D(2025, 3, 2)),
        pts("c", 6, D(2026, 1, 10)), pts("d", 6, D(2026, 2, 10)),
    )  # fmt: skip
    assert derive(facts, NATIONAL.points).reregistration_allowed_from == D(2027, 2, 10)
    reason = registration_refusal(facts, reg(D(2026, 3, 2)), NATIONAL.points)
    assert reason is not None
    assert "may register again from 2027-02-10" in reason
    # Registered on the new ban end: normal, and the 2026 threshold owes no suspension besides.
    d = derive(dataclasses.replace(facts, registrations=(*facts.registrations, reg(D(2027, 2, 10)))), NATIONAL.points)
    assert spans(d) == [(T, D(2025, 3, 2), D(2027, 2, 10))]


def test_rule5_later_registration_inside_an_extended_ban_no_longer_ends_the_termination() -> None:
    # The registration on 2028-03-02 was fine when made; a 12-point decision dated 2026-02-01, recorded
    # later, moves the ban to 2029-02-01: the registration is void and the termination runs on.
    d = run(pts("a", 12, D(2025, 3, 2)), reg(D(2028, 3, 2)), pts("b", 12, D(2026, 2, 1)))
    assert spans(d) == [(T, D(2025, 3, 2), None)]
    assert d.reregistration_allowed_from == D(2029, 2, 1)


def test_rule5_zero_year_ban_allows_registration_from_the_next_day() -> None:
    rules = RULES.model_copy(update={"ban_years_accumulated": 0})
    d = run(pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1)), rules=rules)
    assert d.reregistration_allowed_from == D(2025, 4, 2)
    d = run(pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1)), reg(D(2025, 4, 2)), rules=rules)
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 4, 1)), (T, D(2025, 4, 1), D(2025, 4, 2))]


def test_rule5_same_day_registration_at_ban_end_comes_before_points() -> None:
    # Terms: registrations first, then points. The registration ends the termination; the 12 points of
    # that day count against it and terminate again from the same day.
    d = run(pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1)), pts("c", 12, D(2026, 4, 1)), reg(D(2026, 4, 1)))
    assert spans(d)[-2:] == [(T, D(2025, 4, 1), D(2026, 4, 1)), (T, D(2026, 4, 1), None)]
    assert d.reregistration_allowed_from == D(2029, 4, 1)
    # Issue case H: registered on the ban end, 9 points that day: suspended from it.
    d = run(pts("a", 6, D(2025, 3, 1)), pts("b", 6, D(2025, 3, 1)), reg(D(2026, 3, 1)), pts("c", 9, D(2026, 3, 1)))
    assert spans(d) == [(T, D(2025, 3, 1), D(2026, 3, 1)), (S, D(2026, 3, 1), D(2026, 5, 1))]


def test_rule5_registration_on_the_termination_day_gets_no_span() -> None:
    d = run(reg(D(2025, 7, 1)), pts("a", 12, D(2025, 7, 1)))
    assert d.registrations == ()


# --- Rule 6: new year ------------------------------------------------------------------------------------------------


def test_rule6_running_suspension_keeps_running_into_new_year() -> None:
    d = run(pts("a", 11, D(2025, 11, 15)))
    assert spans(d) == [(S, D(2025, 11, 15), D(2026, 5, 15))]
    assert status_on(d, D(2026, 1, 1)) is not None


def test_rule6_new_year_suspension_starts_when_the_running_one_ends() -> None:
    d = run(pts("a", 11, D(2025, 11, 15)), pts("b", 9, D(2026, 2, 1)))
    assert spans(d) == [(S, D(2025, 11, 15), D(2026, 5, 15)), (S, D(2026, 5, 15), D(2026, 7, 15))]
    assert d.timeline[1].cause == "points total 9 in 2026 (2 months)"


def test_rule6_new_year_suspension_on_its_own_date_when_none_runs() -> None:
    d = run(pts("a", 9, D(2025, 11, 15)), pts("b", 9, D(2026, 2, 1)))
    assert spans(d) == [(S, D(2025, 11, 15), D(2026, 1, 15)), (S, D(2026, 2, 1), D(2026, 4, 1))]


def test_rule6_queued_suspension_grows_with_its_year_total() -> None:
    d = run(pts("a", 11, D(2025, 11, 15)), pts("b", 9, D(2026, 2, 1)), pts("c", 1, D(2026, 3, 1)))
    assert spans(d) == [(S, D(2025, 11, 15), D(2026, 5, 15)), (S, D(2026, 5, 15), D(2026, 9, 15))]


def test_rule6_shortening_the_running_one_pulls_the_queued_one_forward() -> None:
    # [2025-11-15, 2026-05-15) is 181 days; cap 90. Shorten 30 on 2026-03-01 -> ends 2026-04-15.
    d = run(pts("a", 11, D(2025, 11, 15)), pts("b", 9, D(2026, 2, 1)), shorten("r", D(2026, 3, 1), 30))
    assert spans(d) == [(S, D(2025, 11, 15), D(2026, 4, 15)), (S, D(2026, 4, 15), D(2026, 6, 15))]


def test_rule6_termination_cancels_queued_suspension() -> None:
    d = run(pts("a", 11, D(2025, 11, 15)), pts("b", 9, D(2026, 2, 1)), pts("c", 3, D(2026, 3, 1)))
    assert spans(d) == [(S, D(2025, 11, 15), D(2026, 3, 1)), (T, D(2026, 3, 1), None)]


def test_rule6_repair_of_new_year_does_not_touch_last_years_suspension() -> None:
    d = run(pts("a", 11, D(2025, 11, 15)), pts("b", 2, D(2026, 1, 5)), reduce("r", D(2026, 2, 1), 2))
    assert spans(d) == [(S, D(2025, 11, 15), D(2026, 5, 15))]
    assert d.year_totals == {2025: 11, 2026: 0}


def test_rule6_reduce_cancels_a_queued_suspension_of_its_year() -> None:
    d = run(pts("a", 11, D(2025, 11, 15)), pts("b", 9, D(2026, 2, 1)), reduce("r", D(2026, 3, 1), 1))
    assert spans(d) == [(S, D(2025, 11, 15), D(2026, 5, 15))]


# --- Rule 7: reduce points -------------------------------------------------------------------------------------------


def test_rule7_running_suspension_recomputed_from_new_tier() -> None:
    d = run(pts("a", 11, D(2025, 3, 1)), reduce("r", D(2025, 4, 10), 1))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 7, 1))]
    assert d.timeline[0].cause == "points total 11 in 2025 (4 months), cut by repair r (total 10)"
    d = run(pts("a", 11, D(2025, 3, 1)), reduce("r", D(2025, 4, 10), 2))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 5, 1))]


def test_rule7_recomputed_end_never_before_repair_date() -> None:
    d = run(pts("a", 10, D(2025, 3, 1)), reduce("r", D(2025, 6, 1), 1))  # start + 2 months = 05-01 < 06-01
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 6, 1))]


def test_rule7_below_every_tier_ends_on_repair_date() -> None:
    d = run(pts("a", 9, D(2025, 3, 1)), reduce("r", D(2025, 3, 20), 1))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 3, 20))]
    assert d.year_totals == {2025: 8}


def test_rule7_repair_on_the_first_day_leaves_no_period() -> None:
    d = run(pts("a", 9, D(2025, 3, 1)), reduce("r", D(2025, 3, 1), 1))
    assert d.timeline == ()


def test_rule7_granted_tier_drops_with_the_total() -> None:
    # 11 -> 8 ends the suspension on 04-01; back up to 9 later is a fresh 2-month suspension.
    d = run(pts("a", 11, D(2025, 3, 1)), reduce("r", D(2025, 4, 1), 3), pts("b", 1, D(2025, 6, 1)))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 4, 1)), (S, D(2025, 6, 1), D(2025, 8, 1))]


def test_rule7_rise_after_reduction_extends_running_suspension_against_granted_tier() -> None:
    # 11 on 03-01; reduce 2 on 03-15 -> tier 9, end 05-01; +1 on 04-01 -> tier 10, end 03-01 + 4 months.
    d = run(pts("a", 11, D(2025, 3, 1)), reduce("r", D(2025, 3, 15), 2), pts("b", 1, D(2025, 4, 1)))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 7, 1))]


def test_rule7_rise_after_reduction_and_end_serves_difference_from_granted_tier() -> None:
    # 11 -> reduce 2 on 03-15 (tier 9, ends 05-01); +2 on 06-01 -> tier 11: 6 - 2 = 4 more months.
    d = run(pts("a", 11, D(2025, 3, 1)), reduce("r", D(2025, 3, 15), 2), pts("b", 2, D(2025, 6, 1)))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 5, 1)), (S, D(2025, 6, 1), D(2025, 10, 1))]


def test_rule7_reduction_avoids_a_later_termination() -> None:
    d = run(pts("a", 11, D(2025, 3, 1)), reduce("r", D(2025, 3, 15), 2), pts("b", 2, D(2025, 6, 1)))
    assert all(p.status is S for p in d.timeline)
    assert d.year_totals == {2025: 11}


def test_rule7_reduction_keeps_the_days_already_cut() -> None:
    # 11 on 03-01 ([03-01, 09-01), 184 days, cap 92); shorten 90 on 03-10 -> ends 06-03;
    # reduce 1 -> tier 10: start + 4 months - 90 days = 07-01 - 90 days = 04-02.
    d = run(pts("a", 11, D(2025, 3, 1)), shorten("s", D(2025, 3, 10), 90), reduce("r", D(2025, 3, 20), 1))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 4, 2))]


def test_rule7_reduction_never_lengthens_a_suspension() -> None:
    # 10 on 03-01 (to 07-01); reduce 1 on 06-15 -> tier 9 -> 05-01 is before R: ends on R, not later than 07-01.
    d = run(pts("a", 10, D(2025, 3, 1)), reduce("r", D(2025, 6, 15), 1))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 6, 15))]


def test_rule3_a_reduce_with_no_suspension_to_act_on_keeps_the_granted_tier() -> None:
    # Issue case C: tier 9 served [01-10, 03-10); reduce 1 on 04-01; 1 more point on 06-01 starts nothing.
    d = run(pts("a", 9, D(2025, 1, 10)), reduce("r", D(2025, 4, 1), 1), pts("b", 1, D(2025, 6, 1)))
    assert spans(d) == [(S, D(2025, 1, 10), D(2025, 3, 10))]


def test_rule7_not_allowed_during_termination() -> None:
    facts = (pts("a", 12, D(2025, 3, 1)),)
    repair = reduce("r", D(2025, 5, 1), 3)
    assert run(*facts, repair).year_totals == {2025: 12}
    reason = repair_refusal(ledger(*facts), repair, RULES)
    assert reason is not None
    assert "repairs are not allowed during a termination" in reason


def test_rule7_cap_per_year() -> None:
    facts = (pts("a", 11, D(2025, 3, 1)), reduce("r1", D(2025, 3, 10), 4))
    second = reduce("r2", D(2025, 3, 20), 4)
    assert run(*facts, second).year_totals == {2025: 5}  # 4 + 2 (capped at 6)
    reason = repair_refusal(ledger(*facts), second, RULES)
    assert reason is not None
    assert "cap of 6 points per year" in reason
    assert repair_refusal(ledger(*facts), reduce("r2", D(2025, 3, 20), 2), RULES) is None
    # The cap restarts with the year.
    later = ledger(*facts, second, pts("c", 7, D(2026, 1, 1)))
    assert repair_refusal(later, reduce("r3", D(2026, 1, 2), 6), RULES) is None


def test_rule8_a_repair_that_would_shrink_an_accepted_one_is_refused() -> None:
    # Issue case D (national, cap 6 a year): reduce 5 on 05-01 accepted; reduce 2 dated 04-01 would leave it 4.
    facts = ledger(pts("a", 8, D(2025, 3, 1)), reduce("R-7", D(2025, 5, 1), 5))
    reason = repair_refusal(facts, reduce("R-8", D(2025, 4, 1), 2), NATIONAL.points)
    assert reason is not None
    assert "would leave repair R-7 taking 4 of its 5 points" in reason
    assert repair_refusal(facts, reduce("R-8", D(2025, 4, 1), 1), NATIONAL.points) is None


def test_rule8_a_shorten_that_would_shrink_an_accepted_one_is_refused() -> None:
    # 10 on 03-01 ([03-01, 07-01), 122 days, cap 61). S-2 cut 50 days on 05-01 (to 05-12); an earlier
    # S-1 of 20 days on 04-01 would leave S-2 only 41 days of its 50 under the cap.
    facts = ledger(pts("a", 10, D(2025, 3, 1)), shorten("S-2", D(2025, 5, 1), 50))
    reason = repair_refusal(facts, shorten("S-1", D(2025, 4, 1), 20), NATIONAL.points)
    assert reason is not None
    assert "would leave repair S-2 taking 41 of its 50 days" in reason
    assert repair_refusal(facts, shorten("S-1", D(2025, 4, 1), 11), NATIONAL.points) is None


def test_rule7_uncapped_profile() -> None:
    d = run(pts("a", 11, D(2025, 3, 1)), reduce("r1", D(2025, 3, 10), 8), rules=UNCAPPED)
    assert d.year_totals == {2025: 3}
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 3, 10))]


# --- Rule 8: shorten suspension --------------------------------------------------------------------------------------


def test_rule8_shorten_moves_end_earlier() -> None:
    d = run(pts("a", 11, D(2025, 3, 1)), shorten("s", D(2025, 4, 1), 10))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 8, 22))]
    assert d.timeline[0].cause == "points total 11 in 2025 (6 months), shortened by repair s"


def test_rule8_shorten_never_before_repair_date() -> None:
    # [03-01, 05-01) is 61 days: cap 30. Shorten 30 on 04-25 -> 04-01 would be past: ends 04-25.
    d = run(pts("a", 9, D(2025, 3, 1)), shorten("s", D(2025, 4, 25), 30))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 4, 25))]


def test_rule8_shorten_needs_a_running_suspension() -> None:
    facts = (pts("a", 9, D(2025, 3, 1)),)
    for day in (D(2025, 2, 28), D(2025, 5, 1)):
        repair = shorten("s", day, 5)
        assert spans(run(*facts, repair)) == [(S, D(2025, 3, 1), D(2025, 5, 1))]
        reason = repair_refusal(ledger(*facts), repair, RULES)
        assert reason is not None
        assert "no suspension runs" in reason
    assert repair_refusal(ledger(*facts), shorten("s", D(2025, 3, 1), 5), RULES) is None
    assert repair_refusal(ledger(*facts), shorten("s", D(2025, 4, 30), 1), RULES) is None
    # Rule 8: a shorten that would end before R does not take its full amount: refused.
    reason = repair_refusal(ledger(*facts), shorten("s", D(2025, 4, 30), 5), RULES)
    assert reason is not None
    assert "ends on 2025-05-01, 1 day after 2025-04-30" in reason


def test_rule8_cap_is_a_fraction_of_the_suspension_rounded_down() -> None:
    facts = (pts("a", 9, D(2025, 3, 1)), shorten("s1", D(2025, 3, 2), 20))  # 61 days -> cap 30
    second = shorten("s2", D(2025, 3, 3), 20)
    assert spans(run(*facts, second)) == [(S, D(2025, 3, 1), D(2025, 4, 1))]  # 05-01 - 30 days
    reason = repair_refusal(ledger(*facts), second, RULES)
    assert reason is not None
    assert "cap of 30 days" in reason
    assert repair_refusal(ledger(*facts), shorten("s2", D(2025, 3, 3), 10), RULES) is None


def test_rule8_cap_fraction_is_exact() -> None:
    # 11 on 2025-01-01: [01-01, 07-01) is 181 days; 0.29 * 181 = 52.49 -> 52. And 0.29 * 100 must give 29.
    rules = RULES.model_copy(update={"max_shorten_fraction": 0.29})
    assert repair_refusal(ledger(pts("a", 11, D(2025, 1, 1))), shorten("s", D(2025, 1, 2), 52), rules) is None
    assert repair_refusal(ledger(pts("a", 11, D(2025, 1, 1))), shorten("s", D(2025, 1, 2), 53), rules) is not None
    rules = RULES.model_copy(update={"max_shorten_fraction": 0.29, "suspension_months": {9: 100}})
    # 2025-01-01 + 100 months = 2033-05-01: 3042 days; 0.29 * 3042 = 882.18 -> 882.
    assert repair_refusal(ledger(pts("a", 9, D(2025, 1, 1))), shorten("s", D(2025, 1, 2), 882), rules) is None


def test_rule8_rise_after_shortening_keeps_the_days_cut() -> None:
    # Rule 4: start + new months - the days already cut: 07-01 - 20 days = 06-11.
    d = run(pts("a", 9, D(2025, 3, 1)), shorten("s", D(2025, 3, 2), 20), pts("b", 1, D(2025, 3, 20)))
    assert spans(d) == [(S, D(2025, 3, 1), D(2025, 6, 11))]
    # Issue case B (national): 10 on 03-23, shorten 22 on 04-02, 1 more on 05-14: until 09-23 - 22 = 09-01.
    d = run(
        pts("a", 10, D(2027, 3, 23)), shorten("s", D(2027, 4, 2), 22), pts("b", 1, D(2027, 5, 14)),
        rules=NATIONAL.points,
    )  # fmt: skip
    assert spans(d) == [(S, D(2027, 3, 23), D(2027, 9, 1))]


def test_rule8_shorten_after_termination_is_refused() -> None:
    facts = (pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1)))
    reason = repair_refusal(ledger(*facts), shorten("s", D(2025, 4, 1), 5), RULES)
    assert reason is not None
    assert "termination" in reason


# --- Rule 9: external sanctions --------------------------------------------------------------------------------------


def test_rule9_external_period_alone() -> None:
    d = run(ext("XZ-2025-001", S, D(2025, 3, 1), D(2025, 4, 1)))
    assert d.timeline == (Period(S, D(2025, 3, 1), D(2025, 4, 1), "external XZ-2025-001 (西藏)"),)


def test_rule9_external_termination_overlays_local_suspension() -> None:
    d = run(pts("a", 11, D(2025, 3, 1)), ext("X-1", T, D(2025, 4, 1), D(2025, 5, 1), "四川"))
    assert spans(d) == [
        (S, D(2025, 3, 1), D(2025, 4, 1)),
        (T, D(2025, 4, 1), D(2025, 5, 1)),
        (S, D(2025, 5, 1), D(2025, 9, 1)),
    ]
    assert d.timeline[1].cause == "external X-1 (四川)"
    assert d.timeline[0].cause == d.timeline[2].cause == "points total 11 in 2025 (6 months)"


def test_rule9_local_termination_beats_external_suspension() -> None:
    d = run(pts("a", 12, D(2025, 3, 1)), ext("X-1", S, D(2025, 2, 1), D(2025, 6, 1)))
    assert spans(d) == [(S, D(2025, 2, 1), D(2025, 3, 1)), (T, D(2025, 3, 1), None)]


def test_rule9_external_periods_never_end_local_ones() -> None:
    d = run(pts("a", 9, D(2025, 3, 1)), ext("X-1", S, D(2025, 2, 1), D(2025, 3, 15)))
    # The external period started first and covers 03-01..03-14, so it keeps those days; local continues after.
    assert spans(d) == [(S, D(2025, 2, 1), D(2025, 3, 15)), (S, D(2025, 3, 15), D(2025, 5, 1))]
    assert d.timeline[1].cause == "points total 9 in 2025 (2 months)"


def test_rule9_overlapping_same_status_keeps_the_longest_running_period() -> None:
    d = run(pts("a", 9, D(2025, 3, 1)), ext("X-1", S, D(2025, 1, 1), D(2025, 12, 1)))
    assert spans(d) == [(S, D(2025, 1, 1), D(2025, 12, 1))]


def test_rule9_open_external_termination() -> None:
    d = run(reg(D(2024, 1, 1)), ext("X-1", T, D(2025, 3, 1), None))
    assert spans(d) == [(T, D(2025, 3, 1), None)]
    # External sanctions overlay the status; they neither end registrations nor set a local ban.
    assert d.registrations == (RegistrationSpan(HOSPITAL, D(2024, 1, 1), None),)
    assert d.reregistration_allowed_from is None


def test_rule9_normal_or_empty_external_periods_are_ignored() -> None:
    d = run(ext("X-1", Status.NORMAL, D(2025, 3, 1), None), ext("X-2", S, D(2025, 3, 1), D(2025, 3, 1)))
    assert d.timeline == ()


def test_rule9_repairs_refused_during_external_termination() -> None:
    facts = (pts("a", 9, D(2025, 3, 1)), ext("X-1", T, D(2025, 3, 10), D(2025, 3, 20)))
    repair = shorten("s", D(2025, 3, 15), 5)
    assert repair_refusal(ledger(*facts), repair, RULES) is not None
    assert spans(run(*facts, repair))[-1] == (S, D(2025, 3, 20), D(2025, 5, 1))
    assert repair_refusal(ledger(*facts), shorten("s", D(2025, 3, 20), 5), RULES) is None


# --- Rule 10: exceptions are read off the profile (decided by service.check.decision) --------------------------------------


def test_rule10_termination_exception_is_regional() -> None:
    d = run(reg(D(2024, 1, 1)), pts("a", 12, D(2025, 3, 1)))
    day = D(2025, 4, 1)
    assert _decide(d, day, CareType.RESCUE).reason is Reason.RESCUE_EXCEPTION
    assert _decide(d, day, CareType.EMERGENCY, NATIONAL).decision is Decision.REJECT
    assert _decide(d, day, CareType.ROUTINE).decision is Decision.REJECT


def test_rule10_med_type_counts_as_emergency_when_care_type_unspecified() -> None:
    d = run(reg(D(2024, 1, 1)), pts("a", 9, D(2025, 3, 1)))
    for med_type in ("13", "24"):
        assert _decide(d, D(2025, 3, 5), CareType.UNSPECIFIED, med_type=med_type).reason is Reason.EMERGENCY_EXCEPTION
    assert _decide(d, D(2025, 3, 5), CareType.UNSPECIFIED, med_type="11").decision is Decision.REJECT


# --- Write-path refusals ---------------------------------------------------------------------------------------------


def test_registration_refusal_names_the_allowed_date() -> None:
    facts = ledger(reg(D(2024, 1, 1)), pts("a", 12, D(2025, 7, 1)))
    reason = registration_refusal(facts, reg(D(2028, 6, 30), CLINIC), RULES)
    assert reason is not None
    assert "2028-07-01" in reason
    assert registration_refusal(facts, reg(D(2025, 7, 2), CLINIC), RULES) is not None
    # Same day: the registration comes before the points, so it is accepted (and clipped to nothing).
    assert registration_refusal(facts, reg(D(2025, 7, 1), CLINIC), RULES) is None
    assert registration_refusal(facts, reg(D(2028, 7, 1), CLINIC), RULES) is None
    assert registration_refusal(facts, reg(D(2025, 6, 30), CLINIC), RULES) is None  # before the termination
    assert registration_refusal(ledger(), reg(D(2025, 6, 30)), RULES) is None


def test_registration_refusal_after_the_termination_ended() -> None:
    facts = ledger(pts("a", 12, D(2025, 7, 1)), reg(D(2028, 8, 1)))
    assert registration_refusal(facts, reg(D(2029, 1, 1), CLINIC), RULES) is None
    assert registration_refusal(facts, reg(D(2028, 7, 15), CLINIC), RULES) is None  # ban over: ends it earlier


def test_registration_refusal_names_the_extended_ban() -> None:
    facts = ledger(pts("a", 9, D(2025, 3, 1)), pts("b", 3, D(2025, 4, 1)), pts("c", 12, D(2025, 9, 1)))
    reason = registration_refusal(facts, reg(D(2025, 5, 1)), RULES)
    assert reason is not None
    assert "2028-09-01" in reason


def test_repair_refusal_none_when_fine() -> None:
    facts = ledger(pts("a", 11, D(2025, 3, 1)))
    assert repair_refusal(facts, reduce("r", D(2025, 3, 5), 6), RULES) is None
    assert repair_refusal(facts, shorten("s", D(2025, 3, 5), 92), RULES) is None  # 184 days -> cap 92
    assert repair_refusal(facts, shorten("s", D(2025, 3, 5), 93), RULES) is not None
    assert repair_refusal(ledger(), reduce("r", D(2025, 3, 5), 1), RULES) is not None  # nothing to reduce


def test_repair_refusal_on_the_day_a_termination_ends_is_none() -> None:
    # The re-registration day is normal (registrations are applied before repairs of the same day).
    facts = ledger(pts("a", 12, D(2025, 7, 1)), reg(D(2028, 7, 1)), pts("b", 5, D(2028, 7, 1)))
    assert repair_refusal(facts, reduce("r", D(2028, 7, 1), 2), RULES) is None
    assert repair_refusal(facts, reduce("r", D(2028, 6, 30), 2), RULES) is not None


# --- status_on and ordering --------------------------------------------------------------------------------------------


def test_status_on_empty_and_between_periods() -> None:
    assert status_on(run(), D(2025, 1, 1)) is None
    d = run(pts("a", 9, D(2025, 1, 10)), pts("b", 2, D(2025, 6, 1)))
    assert status_on(d, D(2025, 1, 9)) is None
    assert status_on(d, D(2025, 4, 1)) is None
    assert status_on(d, D(2025, 6, 1)) == d.timeline[1]
    assert status_on(d, D(2025, 10, 1)) is None


def test_same_day_decisions_give_the_same_result_in_any_order() -> None:
    a, b = pts("a", 10, D(2025, 3, 1)), pts("b", 1, D(2025, 3, 1))
    assert derive(Ledger(CODE, points=(a, b)), RULES) == derive(Ledger(CODE, points=(b, a)), RULES)
    assert spans(derive(Ledger(CODE, points=(b, a)), RULES)) == [(S, D(2025, 3, 1), D(2025, 9, 1))]
