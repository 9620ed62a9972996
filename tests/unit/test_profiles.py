"""Regional profiles: the bundled ones load; a bad file fails with a ProfileError naming the file and the key."""

from __future__ import annotations

import pathlib
import re

import pydantic
import pytest

from domain.values import CareType, Decision
from service.rules.profile import PROFILE_DIR, Profile, ProfileError, load_profile, resolve_path

NATIONAL_TEXT = (PROFILE_DIR / "national.toml").read_text(encoding="utf-8")


# --- The bundled profiles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["national", "xizang"])
def test_bundled_profile_loads_by_name_and_by_path(name: str) -> None:
    by_name = load_profile(name)
    by_path = load_profile(str(PROFILE_DIR / f"{name}.toml"))
    assert by_name == by_path
    assert by_name.id == name
    assert by_name.policy_id == f"{by_name.id}@{by_name.version}"
    assert re.fullmatch(r"[a-z0-9_-]+@\S+", by_name.policy_id)


def test_bundled_policy_ids() -> None:
    assert load_profile("national").policy_id == "national@2025.1"
    assert load_profile("xizang").policy_id == "xizang@2025.1"


def test_every_bundled_file_loads() -> None:
    files = sorted(PROFILE_DIR.glob("*.toml"))
    assert {f.stem for f in files} >= {"national", "xizang"}
    for f in files:
        assert load_profile(str(f)).id == f.stem


@pytest.mark.parametrize("name", ["national", "xizang"])
def test_bundled_numbers_follow_the_policy_rules(name: str) -> None:
    profile = load_profile(name)
    assert profile.points.suspension_months == {9: 2, 10: 4, 11: 6}  # rule 3 (TOML string keys became ints)
    assert profile.points.termination_threshold == 12
    assert profile.points.ban_years_accumulated == 1
    assert profile.points.ban_years_single_decision == 3
    assert profile.exceptions.care_types == frozenset({CareType.EMERGENCY, CareType.RESCUE})
    assert profile.exceptions.emergency_med_types == frozenset({"13", "24"})
    assert profile.unknown.unknown_decision is Decision.REJECT
    assert profile.unknown.not_registered_decision is Decision.REJECT


def test_exception_coverage_differs_between_national_and_xizang() -> None:
    assert load_profile("national").exceptions.covers_termination is False
    assert load_profile("xizang").exceptions.covers_termination is True


def test_profile_is_frozen() -> None:
    profile = load_profile("national")
    with pytest.raises(pydantic.ValidationError):
        profile.version = "other"  # type: ignore[misc]


def test_resolve_path() -> None:
    assert resolve_path("xizang") == PROFILE_DIR / "xizang.toml"
    assert resolve_path("/some/where/custom.toml") == pathlib.Path("/some/where/custom.toml")


# --- Invalid profiles ------------------------------------------------------------------------------------------------


def write(tmp_path: pathlib.Path, text: str, name: str = "custom.toml") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edited(old: str, new: str) -> str:
    assert old in NATIONAL_TEXT, old
    return NATIONAL_TEXT.replace(old, new, 1)


def without_section(section: str) -> str:
    text, count = re.subn(rf"^\[{section}\]\n.*?(?=^\[)", "", NATIONAL_TEXT, flags=re.S | re.M)
    assert count == 1
    return text


def load_error(path: pathlib.Path) -> str:
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_a_copy_of_national_loads(tmp_path: pathlib.Path) -> None:
    """The base of the edits below is valid, so each edit alone is what breaks the file."""
    assert load_profile(str(write(tmp_path, NATIONAL_TEXT))) == load_profile("national")


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        pytest.param(edited("[points]", 'colour = "red"\n\n[points]'), ["colour"], id="unknown-top-level-key"),
        pytest.param(
            edited("termination_threshold = 12", "termination_threshold = 12\nban_months = 3"),
            ["points.ban_months"],
            id="unknown-key-in-points",
        ),
        pytest.param(
            edited("covers_termination = false", "covers_termination = false\ncovers_repairs = true"),
            ["exceptions.covers_repairs"],
            id="unknown-key-in-exceptions",
        ),
        pytest.param(NATIONAL_TEXT + "\n[extras]\nx = 1\n", ["extras"], id="unknown-section"),
        pytest.param(edited("11 = 6", "11 = 6, 12 = 8"), ["points", "[12]"], id="tier-equals-termination"),
        pytest.param(edited("11 = 6", "11 = 6, 15 = 8"), ["points", "[15]"], id="tier-above-termination"),
        pytest.param(
            edited("termination_threshold = 12", "termination_threshold = 10"),
            ["points", "[10, 11]"],
            id="threshold-lowered-below-tiers",
        ),
        pytest.param(edited("9 = 2", "0 = 1, 9 = 2"), ["points", "[0]"], id="tier-zero"),
        pytest.param(
            edited('care_types = ["emergency", "rescue"]', 'care_types = ["emergency", "routine"]'),
            ["exceptions.care_types", "routine"],
            id="unknown-care-type",
        ),
        pytest.param(
            edited('care_types = ["emergency", "rescue"]', 'care_types = ["EMERGENCY"]'),
            ["exceptions.care_types", "EMERGENCY"],
            id="care-type-wrong-case",
        ),
        pytest.param(without_section("points"), ["points"], id="missing-points-section"),
        pytest.param(without_section("exceptions"), ["exceptions"], id="missing-exceptions-section"),
        pytest.param(edited('version = "2025.1"\n', ""), ["version"], id="missing-version"),
        pytest.param(edited('id = "national"', 'id = "National Baseline"'), ["id"], id="bad-id"),
        pytest.param(edited("9 = 2", "9 = 0"), ["points.suspension_months.9"], id="zero-months"),
        pytest.param(edited("11 = 6", "11 = 121"), ["points.suspension_months.11"], id="months-above-cap"),
        pytest.param(edited("9 = 2", "nine = 2"), ["points.suspension_months"], id="tier-not-a-number"),
        pytest.param(edited("11 = 6", "11 = 3"), ["points", "shrink"], id="months-shrink-as-tier-rises"),
        pytest.param(
            edited("suspension_months = { 9 = 2, 10 = 4, 11 = 6 }", "suspension_months = {}"), ["points"], id="no-tiers"
        ),
        pytest.param(
            edited('unknown_practitioner = "reject"', 'unknown_practitioner = "maybe"'),
            ["unknown.unknown_practitioner"],
            id="unknown-practitioner-value",
        ),
        pytest.param(
            edited('not_registered = "reject"', 'not_registered = "deny"'),
            ["unknown.not_registered"],
            id="not-registered-value",
        ),
        pytest.param(edited("staleness_seconds = 300", "staleness_seconds = 0"), ["staleness_seconds"], id="stale-0"),
        pytest.param(
            edited("max_shorten_fraction = 0.5", "max_shorten_fraction = 1.5"),
            ["points.max_shorten_fraction"],
            id="fraction-above-one",
        ),
    ],
)
def test_invalid_profile_names_file_and_key(tmp_path: pathlib.Path, text: str, keys: list[str]) -> None:
    message = load_error(write(tmp_path, text))
    for key in keys:
        assert key in message, (key, message)


def test_every_problem_of_a_file_is_reported(tmp_path: pathlib.Path) -> None:
    text = edited('unknown_practitioner = "reject"', 'unknown_practitioner = "maybe"').replace(
        "ban_years_accumulated = 1", "ban_years_accumulated = 1\nban_days = 2"
    )
    message = load_error(write(tmp_path, text))
    assert "unknown.unknown_practitioner" in message
    assert "points.ban_days" in message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(edited("[points]", "[points"), id="unclosed-table"),
        pytest.param(edited('id = "national"', 'id = "national'), id="unterminated-string"),
        pytest.param(
            edited("termination_threshold = 12", "termination_threshold = 12\ntermination_threshold = 11"),
            id="duplicate-key",
        ),
        pytest.param(edited("effective_from = 2025-01-01", "effective_from = 2025-02-30"), id="impossible-date"),
    ],
)
def test_bad_toml_syntax(tmp_path: pathlib.Path, text: str) -> None:
    message = load_error(write(tmp_path, text))
    assert "line" in message  # tomllib says where


def test_missing_file_by_path(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nowhere.toml"
    message = load_error(path)
    assert "no such profile" in message


def test_missing_bundled_profile_by_name_lists_the_bundled_ones() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("atlantis")
    message = str(info.value)
    assert "atlantis.toml" in message
    assert "national" in message
    assert "xizang" in message


def test_directory_instead_of_file(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "dir.toml"
    directory.mkdir()
    load_error(directory)


def test_profile_error_is_a_value_error() -> None:
    assert issubclass(ProfileError, ValueError)


# --- Errors that name the file and key ------------------------------------------------------------------------------------------------------


def test_non_utf8_file_gives_profile_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "gbk.toml"
    path.write_bytes(NATIONAL_TEXT.replace("National baseline", "国家基线").encode("gbk"))
    load_error(path)


def test_uncompilable_code_pattern_gives_profile_error(tmp_path: pathlib.Path) -> None:
    text = edited('practitioner_pattern = "[A-Z0-9]{4,30}"', 'practitioner_pattern = "[A-Z0-9"')
    message = load_error(write(tmp_path, text))
    assert "codes.practitioner_pattern" in message


def test_tier_error_names_the_suspension_months_key(tmp_path: pathlib.Path) -> None:
    message = load_error(write(tmp_path, edited("11 = 6", "11 = 6, 12 = 8")))
    assert "suspension_months" in message


def test_custom_profile_from_a_dict_and_model_copy() -> None:
    """The construction paths the decision tests rely on."""
    custom = Profile.model_validate(
        {
            "id": "custom",
            "version": "1",
            "points": {"suspension_months": {"9": 2}},
            "exceptions": {"care_types": ["rescue"]},
            "unknown": {"unknown_practitioner": "review", "not_registered": "allow"},
        }
    )
    assert custom.policy_id == "custom@1"
    assert custom.unknown.unknown_decision is Decision.REVIEW
    assert custom.unknown.not_registered_decision is Decision.ALLOW
    assert custom.exceptions.care_types == frozenset({CareType.RESCUE})
    assert custom.exceptions.covers_termination is False
    assert custom.codes.practitioner_pattern == "[A-Z0-9]{4,30}"
    copied = load_profile("national").model_copy(update={"version": "2025.2"})
    assert copied.policy_id == "national@2025.2"
