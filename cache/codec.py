"""JSON forms of ledgers and projections as stored in Redis. Dates are ISO strings.

Projections are what the check path reads (cache/people.py keeps them as the raw bytes and decodes a
person's ``PersonView`` with ``decode_view`` on first lookup); ledgers are the facts the policy engine
derives projections from.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from typing import Any, TypeVar

from domain.projection import PersonView
from domain.values import (
    AuditEntry,
    Derivation,
    ExternalSanction,
    Ledger,
    Period,
    PointsDecision,
    Registration,
    RegistrationSpan,
    Repair,
    Status,
)

T = TypeVar("T")


def _day(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


# --- projection ----------------------------------------------------------------------------


def encode_projection(derivation: Derivation) -> str:
    return dumps(
        {
            "t": [[int(p.status), p.since.isoformat(), _iso(p.until), p.cause] for p in derivation.timeline],
            "r": [[s.institution_code, s.since.isoformat(), _iso(s.until)] for s in derivation.registrations],
            "y": {str(year): total for year, total in sorted(derivation.year_totals.items())},
            "b": _iso(derivation.reregistration_allowed_from),
        }
    )


# A population's dates are a few thousand distinct days: one shared date object each saves both the
# parsing and the memory of every decoded view (lru_cache is thread-safe; dates are immutable).
_shared_day = functools.lru_cache(maxsize=16384)(date.fromisoformat)


def _shared_optional_day(value: str | None) -> date | None:
    return None if value is None else _shared_day(value)


def decode_view(code: str, raw: str | bytes) -> PersonView:
    """``PersonView.of(code, decode_projection(raw))`` in one pass, for the check path's lazy decode.

    Skips what a view does not hold (year totals); most people have an empty timeline and cost one
    ``json.loads`` and their registrations. Institution codes are interned: a few per population."""
    data = json.loads(raw)
    by_institution: dict[str, list[RegistrationSpan]] = {}
    for institution, since, until in data["r"]:
        name = sys.intern(institution)
        span = RegistrationSpan(name, _shared_day(since), _shared_optional_day(until))
        by_institution.setdefault(name, []).append(span)
    periods = tuple(
        Period(Status(s), _shared_day(a), _shared_optional_day(b), c) for s, a, b, c in data["t"]
    )  # fmt: skip
    return PersonView(
        code=code,
        periods=periods,
        starts=tuple(p.since for p in periods),
        registrations={k: tuple(v) for k, v in by_institution.items()},
        reregistration_allowed_from=_shared_optional_day(data.get("b")),
    )


# How ``encode_projection`` (sorted keys, no spaces) writes a projection without a re-registration date
# ("b", first) and without a timeline ("t"): inside a string every quote is escaped, so these bytes
# can only be the keys themselves. Any other spelling just takes the full decode.
_NO_BAN = b'{"b":null,'
_NO_TIMELINE = b'"t":[]'


class LazyRegistrations(Mapping[str, tuple[RegistrationSpan, ...]]):
    """A never-sanctioned person's registrations, decoded from the projection on first access."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._decoded: Mapping[str, tuple[RegistrationSpan, ...]] | None = None

    def _spans(self) -> Mapping[str, tuple[RegistrationSpan, ...]]:
        if self._decoded is None:  # two threads may both decode: the same answer either way
            self._decoded = decode_view("", self._raw).registrations
        return self._decoded

    def __getitem__(self, institution: str) -> tuple[RegistrationSpan, ...]:
        return self._spans()[institution]

    def __iter__(self) -> Iterator[str]:
        return iter(self._spans())

    def __len__(self) -> int:
        return len(self._spans())


def has_timeline(raw: bytes) -> bool:
    """Whether a stored projection has any status period (False only when it surely has none)."""
    return _NO_TIMELINE not in raw


def skim_view(code: str, raw: bytes) -> PersonView:
    """The person's view for a walk of everyone (e.g. a watch snapshot, which looks at the timelines):
    for most people, whose projection has no timeline, no JSON is parsed until a registration is
    asked for. Equal to ``decode_view``."""
    if raw.startswith(_NO_BAN) and _NO_TIMELINE in raw:
        return PersonView(code, (), (), LazyRegistrations(raw))
    return decode_view(code, raw)


def decode_projection(raw: str | bytes) -> Derivation:
    data = json.loads(raw)
    return Derivation(
        timeline=tuple(Period(Status(s), date.fromisoformat(a), _day(b), c) for s, a, b, c in data["t"]),
        registrations=tuple(RegistrationSpan(i, date.fromisoformat(a), _day(b)) for i, a, b in data["r"]),
        year_totals={int(k): v for k, v in data.get("y", {}).items()},
        reregistration_allowed_from=_day(data.get("b")),
    )


# --- ledger --------------------------------------------------------------------------------


def _registration(r: Registration) -> dict[str, Any]:
    return {"i": r.institution_code, "c": r.category, "on": r.registered_on.isoformat(), "end": _iso(r.ended_on)}


def _points(p: PointsDecision) -> dict[str, Any]:
    return {
        "no": p.decision_no,
        "i": p.institution_code,
        "pts": p.points,
        "resp": p.responsibility,
        "viol": p.violation,
        "dec": p.decided_on.isoformat(),
        "eff": p.effective_on.isoformat(),
        "wd": _iso(p.withdrawn_on),
        "wdr": p.withdrawal_reason,
    }


def _repair(r: Repair) -> dict[str, Any]:
    return {
        "no": r.repair_no,
        "on": r.approved_on.isoformat(),
        "red": r.reduce_points,
        "sh": r.shorten_days,
        "basis": r.basis,
    }


def _sanction(s: ExternalSanction) -> dict[str, Any]:
    return {
        "no": s.source_decision_no,
        "st": int(s.status),
        "start": s.start.isoformat(),
        "end": _iso(s.end),
        "reg": s.origin_region,
    }


def _audit(a: AuditEntry) -> dict[str, Any]:
    return {"at": a.at, "who": a.actor, "m": a.method, "doc": a.document, "v": a.data_version}


def encode_ledger(ledger: Ledger) -> str:
    return dumps(
        {
            "code": ledger.practitioner_code,
            "reg": [_registration(r) for r in ledger.registrations],
            "pts": [_points(p) for p in ledger.points],
            "rep": [_repair(r) for r in ledger.repairs],
            "ext": [_sanction(s) for s in ledger.sanctions],
            "audit": [_audit(a) for a in ledger.audit],
        }
    )


def records_agency_writes(raw_ledger: bytes) -> bool:
    """Whether a stored ledger holds admin writes (an audit trail), without decoding it."""
    return b'"audit":[{' in raw_ledger  # encode_ledger: sorted keys, no spaces


def _each(items: list[dict[str, Any]], build: Callable[[dict[str, Any]], T]) -> tuple[T, ...]:
    return tuple(build(item) for item in items)


def decode_ledger(raw: str | bytes) -> Ledger:
    data = json.loads(raw)
    code: str = data["code"]
    return Ledger(
        practitioner_code=code,
        registrations=_each(
            data["reg"],
            lambda r: Registration(code, r["i"], r["c"], date.fromisoformat(r["on"]), _day(r["end"])),
        ),
        points=_each(
            data["pts"],
            lambda p: PointsDecision(
                p["no"],
                code,
                p["i"],
                p["pts"],
                p["resp"],
                p["viol"],
                date.fromisoformat(p["dec"]),
                date.fromisoformat(p["eff"]),
                _day(p["wd"]),
                p["wdr"],
            ),
        ),
        repairs=_each(
            data["rep"],
            lambda r: Repair(r["no"], code, date.fromisoformat(r["on"]), r["red"], r["sh"], r["basis"]),
        ),
        sanctions=_each(
            data["ext"],
            lambda s: ExternalSanction(
                s["no"], code, Status(s["st"]), date.fromisoformat(s["start"]), _day(s["end"]), s["reg"]
            ),
        ),
        audit=_each(data["audit"], lambda a: AuditEntry(a["at"], a["who"], a["m"], a["doc"], a["v"])),
    )
