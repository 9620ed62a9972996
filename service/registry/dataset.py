"""`gatekeeper load FILE`: a whole dataset of people, imported in one atomic swap.

The format is JSON lines, one person per line (see docs/dataset.md):

    {"practitioner_code": "D510105000123",
     "registrations": [{"institution_code": "H51010500001", "category": "doctor",
                        "registered_on": "2024-01-01", "ended_on": null}],
     "points": [{"decision_no": "XZ-2025-001", "institution_code": "H51010500001", "points": 9,
                 "responsibility": "main", "violation": "...", "decided_on": "2025-03-10",
                 "effective_on": "2025-03-10"}],
     "repairs": [{"repair_no": "R-1", "approved_on": "2025-04-01", "reduce_points": 2, "basis": "..."}],
     "status_periods": [{"status": "suspended", "since": "2025-03-10", "until": "2025-05-10",
                         "origin": "legacy system"}]}

``status_periods`` are statuses decided outside this ledger (another region, a legacy system);
they are kept as external sanctions, so the policy engine overlays them (policy rule 9).
A bad line stops the load before anything is written, naming line number and field.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from cache.codec import encode_ledger, encode_projection
from domain.values import ExternalSanction, Ledger, PointsDecision, Registration, Repair, Status
from service.check.validation import EARLIEST, LATEST
from service.registry.idempotency import Doc, points_key
from service.rules import engine
from service.rules.profile import Profile

CATEGORIES = {"doctor": 1, "nurse": 2, "technician": 3, "pharmacist": 4, "fee_reviewer": 5, "pharmacy_principal": 6}
RESPONSIBILITIES = {"general": 1, "important": 2, "main": 3}
STATUSES = {"suspended": Status.SUSPENDED, "terminated": Status.TERMINATED}


class DatasetError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Dataset:
    ledgers: dict[str, str]  # code -> ledger JSON
    projections: dict[str, str]  # code -> projection JSON
    docs: dict[str, str]  # loaded document numbers, so WithdrawPoints can find them

    def __len__(self) -> int:
        return len(self.ledgers)


class _Fields:
    """Typed access to one JSON object, with errors that say where."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"{where}: expected an object")
        self.data, self.where = data, where

    def text(self, key: str, *, required: bool = True, pattern: re.Pattern[str] | None = None) -> str:
        value = self.data.get(key)
        if value in (None, "") and not required:
            return ""
        if not isinstance(value, str) or not value or (pattern is not None and not pattern.fullmatch(value)):
            raise DatasetError(
                f"{self.where}.{key}: expected {'a code of shape ' + pattern.pattern if pattern else 'text'}"
            )
        return value

    def day(self, key: str, *, required: bool = True) -> date | None:
        value = self.data.get(key)
        if value is None and not required:
            return None
        try:
            day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
        except ValueError:
            day = None
        if day is None or not EARLIEST <= day <= LATEST:
            raise DatasetError(
                f"{self.where}.{key}: expected a date YYYY-MM-DD from {EARLIEST} to {LATEST}, got {value!r}"
            )
        return day

    def required_day(self, key: str) -> date:
        day = self.day(key)
        assert day is not None
        return day

    def number(self, key: str, low: int, high: int, *, default: int | None = None) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise DatasetError(f"{self.where}.{key}: expected a whole number from {low} to {high}")
        return value

    def name(self, key: str, names: dict[str, Any], default: str | None = None) -> Any:
        value = self.data.get(key, default)
        if value not in names:
            raise DatasetError(f"{self.where}.{key}: expected one of {sorted(names)}")
        return names[value]

    def items(self, key: str) -> Iterator[_Fields]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise DatasetError(f"{self.where}.{key}: expected a list")
        for i, item in enumerate(value):
            yield _Fields(item, f"{self.where}.{key}[{i}]")


def _repair(r: _Fields, code: str) -> Repair:
    reduce = r.number("reduce_points", 0, 12, default=0)
    shorten = r.number("shorten_suspension_days", 0, 3660, default=0)
    if (reduce > 0) == (shorten > 0):
        raise DatasetError(f"{r.where}: give exactly one of reduce_points and shorten_suspension_days")
    return Repair(
        r.text("repair_no"), code, r.required_day("approved_on"), reduce, shorten, r.text("basis", required=False)
    )


def parse_person(data: Any, where: str, codes: tuple[re.Pattern[str], re.Pattern[str]]) -> Ledger:
    practitioner, institution = codes
    f = _Fields(data, where)
    code = f.text("practitioner_code", pattern=practitioner)

    def each(key: str, build: Callable[[_Fields, int], Any]) -> tuple[Any, ...]:
        return tuple(build(item, i) for i, item in enumerate(f.items(key)))

    return Ledger(
        practitioner_code=code,
        registrations=each(
            "registrations",
            lambda r, _: Registration(
                code,
                r.text("institution_code", pattern=institution),
                r.name("category", CATEGORIES, "doctor"),
                r.required_day("registered_on"),
                r.day("ended_on", required=False),
            ),
        ),
        points=each(
            "points",
            lambda p, _: PointsDecision(
                p.text("decision_no"),
                code,
                p.text("institution_code", pattern=institution),
                p.number("points", 1, 12),
                p.name("responsibility", RESPONSIBILITIES, "general"),
                p.text("violation", required=False),
                p.required_day("decided_on"),
                p.day("effective_on", required=False) or p.required_day("decided_on"),
            ),
        ),
        repairs=each("repairs", lambda r, _: _repair(r, code)),
        sanctions=each(
            "status_periods",
            lambda s, i: ExternalSanction(
                f"load:{code}:{i}",
                code,
                s.name("status", STATUSES),
                s.required_day("since"),
                s.day("until", required=False),
                s.text("origin", required=False) or "import",
            ),
        ),
    )


def read_dataset(path: pathlib.Path, profile: Profile) -> Dataset:
    """Parse and derive every person; raise DatasetError (nothing written) on the first bad line."""
    codes = (re.compile(profile.codes.practitioner_pattern), re.compile(profile.codes.institution_pattern))
    ledgers: dict[str, str] = {}
    projections: dict[str, str] = {}
    docs: dict[str, str] = {}
    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not JSON ({exc.msg})") from None
            ledger = parse_person(data, where, codes)
            if ledger.practitioner_code in ledgers:
                raise DatasetError(f"{where}.practitioner_code: {ledger.practitioner_code} appears twice")
            ledgers[ledger.practitioner_code] = encode_ledger(ledger)
            projections[ledger.practitioner_code] = encode_projection(engine.derive(ledger, profile.points))
            for decision in ledger.points:
                key = points_key(decision.decision_no)
                if key in docs:
                    raise DatasetError(f"{where}: decision_no {decision.decision_no} appears twice")
                docs[key] = Doc(None, ledger.practitioner_code, 0).encode()
    return Dataset(ledgers, projections, docs)
