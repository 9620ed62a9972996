"""Regional profiles: every regional number and switch, as data (one TOML file per region).

A profile is loaded and validated once at start; a bad file stops the process with an error
that names the file and the key. Its ``policy_id`` ("id@version") is stamped on every answer.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import tomllib
from datetime import date
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain.values import CareType, Decision

PROFILE_DIR = pathlib.Path(__file__).parent / "profiles"

Months = Annotated[int, Field(ge=1, le=120)]
_DECISIONS = {"allow": Decision.ALLOW, "reject": Decision.REJECT, "review": Decision.REVIEW}
_CARE = {"emergency": CareType.EMERGENCY, "rescue": CareType.RESCUE}


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PointsRules(_Strict):
    """Numbers of policy rules 1-8."""

    # Year total -> suspension months (rule 3). TOML keys are strings; they become ints.
    suspension_months: dict[int, Months]
    termination_threshold: int = Field(12, ge=1)
    ban_years_accumulated: int = Field(1, ge=0)
    ban_years_single_decision: int = Field(3, ge=0)
    # A single decision with at least this many points makes the long ban apply (rule 5).
    single_decision_points: int = Field(12, ge=1)
    # Repair caps (rules 7-8); absent means uncapped.
    max_reduce_points_per_year: int | None = Field(None, ge=0)
    max_shorten_fraction: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _tiers_below_termination(self) -> PointsRules:
        if not self.suspension_months:
            raise ValueError("suspension_months: needs at least one tier")
        bad = [t for t in self.suspension_months if not 1 <= t < self.termination_threshold]
        if bad:
            raise ValueError(f"suspension_months: tiers {bad} must lie between 1 and termination_threshold - 1")
        months = [self.suspension_months[t] for t in sorted(self.suspension_months)]
        if months != sorted(months):
            raise ValueError("suspension_months: months must not shrink as the tier rises")
        return self


class ExceptionRules(_Strict):
    """Rule 10: which care is still paid during a suspension (and maybe a termination)."""

    care_types: frozenset[CareType]
    emergency_med_types: frozenset[str] = frozenset()
    covers_termination: bool = False

    @field_validator("care_types", mode="before")
    @classmethod
    def _care_names(cls, value: object) -> object:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            unknown = [v for v in value if v not in _CARE]
            if unknown:
                raise ValueError(f"unknown care types {unknown}; use {sorted(_CARE)}")
            return frozenset(_CARE[v] for v in value)
        return value


class UnknownRules(_Strict):
    """How to decide people the data does not cover (staff groups are phased in)."""

    unknown_practitioner: Literal["allow", "reject", "review"] = "reject"
    not_registered: Literal["allow", "reject", "review"] = "reject"

    @property
    def unknown_decision(self) -> Decision:
        return _DECISIONS[self.unknown_practitioner]

    @property
    def not_registered_decision(self) -> Decision:
        return _DECISIONS[self.not_registered]


class CodeRules(_Strict):
    """Shape of codes. Strict on length and characters, configurable on format."""

    practitioner_pattern: str = r"[A-Z0-9]{4,30}"
    institution_pattern: str = r"[HP][A-Z0-9]{11}"

    @field_validator("practitioner_pattern", "institution_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value


class ReportRules(_Strict):
    """Institution reports: the share of an institution's registered staff suspended or terminated
    at any time in a natural year that flags it (domain.md: one province withholds settlement
    from 20% and suspends the agreement from 50%). A share at or above a threshold is flagged."""

    withheld_settlement_share: float = Field(0.2, gt=0, le=1)
    suspended_agreement_share: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> ReportRules:
        if self.withheld_settlement_share > self.suspended_agreement_share:
            raise ValueError("withheld_settlement_share must not exceed suspended_agreement_share")
        return self


class Profile(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_-]+$")
    version: str = Field(min_length=1)
    name: str = ""
    effective_from: date | None = None
    # Older replica data than this is never used for a decision (REVIEW / STALE_DATA). A healthy
    # replica re-confirms freshness every 0.25 s, so bounds under a second make no sense.
    staleness_seconds: float = Field(300.0, ge=1)
    points: PointsRules
    exceptions: ExceptionRules
    unknown: UnknownRules = UnknownRules()
    codes: CodeRules = CodeRules()
    reports: ReportRules = ReportRules()

    @property
    def policy_id(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def rules_fingerprint(self) -> str:
        """What the stored timelines depend on: a digest of the [points] rules (not of ids, names or the
        exceptions, which the serving process applies itself). Stored with the data by loads and writes."""
        return rules_fingerprint(self.points)


class _HasRules(Protocol):
    @property
    def rules(self) -> str: ...


def rules_match(data: _HasRules, profile: Profile) -> bool:
    """Whether data derived under the fingerprinted rules may be served under ``profile`` ("" unknown: yes)."""
    return not data.rules or data.rules == profile.rules_fingerprint


def rules_fingerprint(points: PointsRules) -> str:
    canonical = json.dumps(points.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def resolve_path(name_or_path: str) -> pathlib.Path:
    """A bundled profile by name (``national``, ``xizang``) or a path to a TOML file."""
    candidate = pathlib.Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    return PROFILE_DIR / f"{name_or_path}.toml"


def load_profile(name_or_path: str) -> Profile:
    path = resolve_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        bundled = sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))
        raise ProfileError(f"{path}: no such profile file (bundled profiles: {bundled})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from exc
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise ProfileError(f"{path}: {problems}") from None
