"""Institution reports (service/registry/reports.py): counts, shares, flags, regions, staff rows."""

from __future__ import annotations

import pathlib
from datetime import date

import pytest

from domain.values import Derivation, Ledger, PointsDecision, Registration, Status
from service.registry.reports import Flag, flag_of, institution_shares, institution_staff
from service.rules import engine
from service.rules.profile import PROFILE_DIR, ProfileError, ReportRules, load_profile

RULES = load_profile("national")
REPORTS = ReportRules()
H1, H2, P3 = "H51010500001", "H51010500002", "P54010200003"


def person(code: str, *places: tuple[str, str], points: tuple[tuple[int, str], ...] = ()) -> tuple[Ledger, Derivation]:
    ledger = Ledger(
        code,
        registrations=tuple(Registration(code, inst, 1, date.fromisoformat(on)) for inst, on in places),
        points=tuple(
            PointsDecision(f"{code}-{i}", code, places[0][0], n, 3, "", date.fromisoformat(d), date.fromisoformat(d))
            for i, (n, d) in enumerate(points)
        ),
    )
    return ledger, engine.derive(ledger, RULES.points)


def staff(institution: str, n: int, sanctioned: int, *, on: str = "2025-03-01") -> list[tuple[Ledger, Derivation]]:
    return [
        person(f"D{institution[1:]}{i:03d}", (institution, "2024-01-01"), points=((9, on),) if i < sanctioned else ())
        for i in range(n)
    ]


def test_share_and_flag_per_institution_highest_first() -> None:
    people = staff(H1, 10, 2) + staff(H2, 4, 2) + staff(P3, 5, 0)
    shares = institution_shares(people, 2025, REPORTS)
    assert [(s.institution_code, s.registered, s.sanctioned, s.flag) for s in shares] == [
        (H2, 4, 2, Flag.SUSPENDED_AGREEMENT),  # 50%: at the threshold flags
        (H1, 10, 2, Flag.WITHHELD_SETTLEMENT),  # 20%
        (P3, 5, 0, Flag.NONE),
    ]
    assert shares[0].share == 0.5


def test_only_the_year_counts() -> None:
    people = staff(H1, 4, 1, on="2024-05-01")  # a 2-month suspension in 2024 only
    (in_2024,) = institution_shares(people, 2024, REPORTS)
    (in_2025,) = institution_shares(people, 2025, REPORTS)
    assert (in_2024.sanctioned, in_2025.sanctioned) == (1, 0)
    assert institution_shares(people, 2023, REPORTS) == []  # nobody registered yet


def test_a_suspension_running_into_the_year_counts() -> None:
    people = staff(H1, 2, 1, on="2024-12-01")  # suspended 2024-12-01 to 2025-02-01
    (share,) = institution_shares(people, 2025, REPORTS)
    assert share.sanctioned == 1


def test_termination_in_an_earlier_year_leaves_the_staff_list() -> None:
    people = [person("D1", (H1, "2020-01-01"), points=((12, "2024-03-01"),)), *staff(H1, 3, 0)]
    (share,) = institution_shares(people, 2025, REPORTS)
    assert (share.registered, share.sanctioned) == (3, 0)


def test_multi_site_staff_count_at_every_institution() -> None:
    people = [person("D1", (H1, "2024-01-01"), (H2, "2024-06-01"), points=((9, "2025-03-01"),))]
    assert {(s.institution_code, s.sanctioned) for s in institution_shares(people, 2025, REPORTS)} == {(H1, 1), (H2, 1)}


def test_region_is_a_prefix_of_the_division_code() -> None:
    people = staff(H1, 2, 0) + staff(P3, 2, 0)
    assert [s.institution_code for s in institution_shares(people, 2025, REPORTS, "5101")] == [H1]
    assert [s.institution_code for s in institution_shares(people, 2025, REPORTS, "54")] == [P3]


@pytest.mark.parametrize(("share", "flag"), [(0.0, Flag.NONE), (0.1999, Flag.NONE), (0.2, Flag.WITHHELD_SETTLEMENT),
                                             (0.4999, Flag.WITHHELD_SETTLEMENT), (0.5, Flag.SUSPENDED_AGREEMENT),
                                             (1.0, Flag.SUSPENDED_AGREEMENT)])  # fmt: skip
def test_flags_at_the_thresholds(share: float, flag: Flag) -> None:
    assert flag_of(share, REPORTS) == flag


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        ReportRules(withheld_settlement_share=0.6, suspended_agreement_share=0.5)
    assert load_profile("xizang").reports == REPORTS


def test_a_profile_with_bad_report_thresholds_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "p.toml"
    text = (PROFILE_DIR / "national.toml").read_text()
    path.write_text(text.replace("withheld_settlement_share = 0.2", "withheld_settlement_share = 1.5"))
    with pytest.raises(ProfileError, match=r"reports\.withheld_settlement_share"):
        load_profile(str(path))


def test_staff_rows_status_points_and_reregistration() -> None:
    people = [
        person("D1", (H1, "2024-01-01"), points=((9, "2025-03-10"),)),
        person("D2", (H1, "2024-01-01"), points=((12, "2025-07-01"),)),
        person("D3", (H2, "2024-01-01")),
        person("D4", (H1, "2024-01-01")),
    ]
    rows = institution_staff(people, H1, date(2025, 4, 1))
    assert [(r.practitioner_code, r.status.status, r.registered, r.points_this_year) for r in rows] == [
        ("D1", Status.SUSPENDED, True, 9),
        ("D2", Status.NORMAL, True, 12),  # the year's total as recorded, decisions dated later included
        ("D4", Status.NORMAL, True, 0),
    ]
    later = {r.practitioner_code: r for r in institution_staff(people, H1, date(2025, 8, 1))}
    assert later["D2"].status.status == Status.TERMINATED
    assert later["D2"].registered is False  # a termination ends the registration
    assert later["D2"].reregistration_allowed_from == date(2028, 7, 1)
    assert later["D2"].points_this_year == 12
