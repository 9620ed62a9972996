"""Synthetic benchmark data: a `gatekeeper load` dataset and pre-encoded CheckClaim bodies.

    python -m loadtest.dataset --people 100000 --seed 7 --out /tmp/gk-bench

writes ``people.jsonl`` (docs/dataset.md), ``claim-1.bin`` and ``claim-200.bin`` (gRPC-framed
CheckClaimRequest bodies for ``h2load -d``) and ``expected.json`` (the decision every line must get).

The population is deterministic for a seed: mostly normal staff registered at a few hospitals
(and pharmacists at two pharmacies), about 5% suspended and 1% terminated on the service dates
the claims use, some with minor or past points that leave them normal. Practitioner codes are
``D510105`` + 6 digits, so up to a million people.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from gatekeeper.v1 import eligibility_pb2, enums_pb2

HOSPITALS = ("H51010500001", "H51010500002", "H51010500003", "H51010500004", "H51010500005")
PHARMACIES = ("P51010500001", "P51010500002")
# Every claim line is dated in this window; the statuses below are chosen to hold on all of it.
FIRST_SERVICE_DAY = date(2025, 3, 28)
LAST_SERVICE_DAY = date(2025, 4, 2)
SUSPENDED_SHARE = 0.05
TERMINATED_SHARE = 0.01
UNKNOWN_CODE = "D999999999999"  # never generated (indices stop at 999999 under D510105)
DEFAULT_SEED = 7
BIG_CLAIM_LINES = 200
MEDIUM_CLAIM_LINES = 50

NORMAL, SUSPENDED, TERMINATED = "normal", "suspended", "terminated"


@dataclass(frozen=True, slots=True)
class Person:
    code: str
    kind: str  # normal / suspended / terminated on every service day of the window
    institutions: tuple[str, ...]
    category: str
    record: dict[str, object] = field(compare=False, repr=False)


def code_of(index: int) -> str:
    if not 0 <= index < 1_000_000:
        raise ValueError("practitioner index must fit in 6 digits")
    return f"D510105{index:06d}"


def _day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randrange((last - first).days + 1))


def _points(decision_no: str, institution: str, points: int, day: date, responsibility: str) -> dict[str, object]:
    return {
        "decision_no": decision_no,
        "institution_code": institution,
        "points": points,
        "responsibility": responsibility,
        "violation": "synthetic benchmark violation",
        "decided_on": day.isoformat(),
    }


def generate_people(count: int, seed: int = DEFAULT_SEED) -> list[Person]:
    """``count`` people, the same for the same (count, seed)."""
    rng = random.Random(seed)
    people: list[Person] = []
    for index in range(count):
        code = code_of(index)
        pharmacist = rng.random() < 0.04
        if pharmacist:
            category, homes = "pharmacist", (rng.choice(PHARMACIES),)
        else:
            category = rng.choices(("doctor", "nurse", "technician"), weights=(6, 3, 1))[0]
            homes = (rng.choice(HOSPITALS),)
            if rng.random() < 0.05:  # some work at two hospitals
                homes = (*homes, rng.choice([h for h in HOSPITALS if h != homes[0]]))
        registrations = [
            {
                "institution_code": home,
                "category": category,
                "registered_on": _day(rng, date(2018, 1, 1), date(2024, 12, 31)).isoformat(),
            }
            for home in homes
        ]
        points: list[dict[str, object]] = []
        roll = rng.random()
        if roll < SUSPENDED_SHARE:
            # 9 points: suspended for 2 months from the decision (national profile), which covers
            # the whole service window for any decision day in this range.
            kind = SUSPENDED
            day = _day(rng, date(2025, 2, 10), FIRST_SERVICE_DAY - timedelta(days=1))
            points.append(_points(f"BENCH-{index:06d}-1", homes[0], 9, day, "main"))
        elif roll < SUSPENDED_SHARE + TERMINATED_SHARE:
            kind = TERMINATED  # 12 points: terminated from the decision day, open-ended
            day = _day(rng, date(2025, 1, 5), FIRST_SERVICE_DAY - timedelta(days=1))
            points.append(_points(f"BENCH-{index:06d}-1", homes[0], 12, day, "main"))
        else:
            kind = NORMAL
            history = rng.random()
            if history < 0.10:  # minor points this year: still normal
                day = _day(rng, date(2025, 1, 2), FIRST_SERVICE_DAY - timedelta(days=1))
                points.append(_points(f"BENCH-{index:06d}-1", homes[0], rng.randint(1, 8), day, "general"))
            elif history < 0.12:  # a 2-month suspension last year, long over
                day = _day(rng, date(2024, 1, 2), date(2024, 9, 30))
                points.append(_points(f"BENCH-{index:06d}-1", homes[0], 9, day, "important"))
        record: dict[str, object] = {"practitioner_code": code, "registrations": registrations}
        if points:
            record["points"] = points
        people.append(Person(code, kind, homes, category, record))
    return people


def write_dataset(people: Iterable[Person], path: pathlib.Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for person in people:
            out.write(json.dumps(person.record, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")


# --- Claims -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """A request and the (decision, reason) names every line must get, in line order."""

    name: str
    request: eligibility_pb2.CheckClaimRequest
    expected: tuple[tuple[str, str], ...]

    @property
    def lines(self) -> int:
        return len(self.request.lines)

    def body(self) -> bytes:
        return grpc_frame(self.request.SerializeToString())


def grpc_frame(payload: bytes) -> bytes:
    """A gRPC length-prefixed message: flag byte 0 (uncompressed), 4-byte big-endian length, bytes."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def grpc_unframe(body: bytes) -> bytes:
    if len(body) < 5 or body[0] != 0 or int.from_bytes(body[1:5], "big") != len(body) - 5:
        raise ValueError("not one uncompressed gRPC message")
    return body[5:]


_CARE = {
    "routine": enums_pb2.CARE_TYPE_ROUTINE,
    "emergency": enums_pb2.CARE_TYPE_EMERGENCY,
    "unspecified": enums_pb2.CARE_TYPE_UNSPECIFIED,
}


def expected_outcome(person: Person | None, institution: str, care: str, *, dispenser: bool = False) -> tuple[str, str]:
    """What the national profile decides for one person on a line dated in the service window."""
    if person is None:
        return "DECISION_REJECT", "REASON_UNKNOWN_PRACTITIONER"
    # A pharmacy's prescriber is registered elsewhere: only their status counts.
    needs_registration = dispenser or not institution.startswith("P")
    registered = institution in person.institutions or not needs_registration
    if person.kind == TERMINATED:  # the national profile's exceptions do not cover termination
        return "DECISION_REJECT", "REASON_TERMINATED"
    if person.kind == SUSPENDED:
        if care == "emergency" and registered:
            return "DECISION_ALLOW", "REASON_EMERGENCY_EXCEPTION"
        if care != "emergency":
            return "DECISION_REJECT", "REASON_SUSPENDED"
    if not registered:
        return "DECISION_REJECT", "REASON_NOT_REGISTERED"
    return "DECISION_ALLOW", "REASON_ELIGIBLE"


_RANK = {
    "REASON_ELIGIBLE": (0, 0),
    "REASON_EMERGENCY_EXCEPTION": (0, 1),
    "REASON_UNKNOWN_PRACTITIONER": (2, 2),
    "REASON_NOT_REGISTERED": (2, 3),
    "REASON_SUSPENDED": (2, 4),
    "REASON_TERMINATED": (2, 5),
}


class ClaimBuilder:
    def __init__(self, name: str, institution: str, claim_id: str) -> None:
        self.name = name
        self.request = eligibility_pb2.CheckClaimRequest(claim_id=claim_id, institution_code=institution)
        self.expected: list[tuple[str, str]] = []

    def add(
        self,
        person: Person | None,
        day: date,
        care: str = "unspecified",
        *,
        code: str | None = None,
        dispenser: Person | None = None,
    ) -> ClaimBuilder:
        institution = self.request.institution_code
        line = self.request.lines.add()
        line.line_id = str(len(self.request.lines))
        line.practitioner_code = code or (person.code if person else UNKNOWN_CODE)
        line.service_date.year, line.service_date.month, line.service_date.day = day.year, day.month, day.day
        line.care_type = _CARE[care]
        outcome = expected_outcome(person, institution, care)
        if dispenser is not None:
            line.dispenser_code = dispenser.code
            other = expected_outcome(dispenser, institution, care, dispenser=True)
            if _RANK[other[1]] > _RANK[outcome[1]]:
                outcome = other
        self.expected.append(outcome)
        return self

    def build(self) -> Claim:
        return Claim(self.name, self.request, tuple(self.expected))


@dataclass(frozen=True, slots=True)
class Claims:
    one_line: Claim  # a POS-style single line: a normal doctor at their hospital, ALLOW
    big: Claim  # a HIS claim of BIG_CLAIM_LINES lines at one hospital, mixed outcomes
    medium: Claim  # the first MEDIUM_CLAIM_LINES lines of ``big``, as a claim of their own
    probe: Claim  # one line of every kind of outcome at a hospital, for the pre-flight correctness check
    probe_pos: Claim  # the same at a pharmacy (prescriber from elsewhere, dispenser registered there)


def _staff(people: Sequence[Person], institution: str, kind: str | None = None) -> list[Person]:
    return [p for p in people if institution in p.institutions and (kind is None or p.kind == kind)]


def build_claims(people: Sequence[Person], seed: int = DEFAULT_SEED, big_lines: int = BIG_CLAIM_LINES) -> Claims:
    rng = random.Random(seed * 7919 + 1)
    hospital = HOSPITALS[0]
    staff = _staff(people, hospital)
    normal = [p for p in staff if p.kind == NORMAL]
    suspended = [p for p in staff if p.kind == SUSPENDED]
    terminated = [p for p in staff if p.kind == TERMINATED]
    if not (normal and suspended and terminated):
        raise ValueError("too few people for the claims: need normal, suspended and terminated staff at one hospital")
    service_day = LAST_SERVICE_DAY

    one = ClaimBuilder("claim-1", hospital, "POS-BENCH-1").add(normal[0], service_day, "routine").build()

    big = ClaimBuilder(f"claim-{big_lines}", hospital, f"HIS-BENCH-{big_lines}")
    # Fixed coverage first (a suspended person routine and in an emergency, a terminated person),
    # then lines drawn from the hospital's staff as they come, ~3% of them emergency care.
    big.add(suspended[0], service_day, "routine").add(suspended[0], service_day, "emergency")
    big.add(terminated[0], service_day, "routine")
    while len(big.request.lines) < big_lines:
        person = rng.choice(staff)
        care = "emergency" if rng.random() < 0.03 else rng.choice(("routine", "unspecified"))
        big.add(person, _day(rng, FIRST_SERVICE_DAY, LAST_SERVICE_DAY), care)

    other_hospital_normal = next(p for p in people if p.kind == NORMAL and hospital not in p.institutions)
    pharmacist = next(p for p in people if p.kind == NORMAL and PHARMACIES[0] in p.institutions)
    probe = ClaimBuilder("probe", hospital, "PROBE-BENCH")
    probe.add(normal[0], service_day)
    probe.add(suspended[0], service_day)
    probe.add(suspended[0], service_day, "emergency")
    probe.add(terminated[0], service_day)
    probe.add(terminated[0], service_day, "emergency")
    probe.add(None, service_day)
    probe.add(other_hospital_normal, service_day)
    pos = ClaimBuilder("probe-pos", PHARMACIES[0], "PROBE-POS")
    pos.add(other_hospital_normal, service_day, dispenser=pharmacist)
    pos.add(suspended[0], service_day, dispenser=pharmacist)
    built = big.build()
    return Claims(one, built, first_lines(built, MEDIUM_CLAIM_LINES), probe.build(), pos.build())


def first_lines(claim: Claim, count: int) -> Claim:
    request = eligibility_pb2.CheckClaimRequest()
    request.CopyFrom(claim.request)
    request.claim_id = f"{claim.request.claim_id}-{count}"
    del request.lines[count:]
    return Claim(f"claim-{count}", request, claim.expected[:count])


# --- CLI ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Files:
    people: pathlib.Path
    one_line: pathlib.Path
    big: pathlib.Path
    medium: pathlib.Path
    expected: pathlib.Path


def write_all(out: pathlib.Path, count: int, seed: int = DEFAULT_SEED) -> tuple[Files, list[Person], Claims]:
    out.mkdir(parents=True, exist_ok=True)
    people = generate_people(count, seed)
    claims = build_claims(people, seed)
    files = Files(
        out / "people.jsonl",
        out / "claim-1.bin",
        out / f"claim-{claims.big.lines}.bin",
        out / f"claim-{claims.medium.lines}.bin",
        out / "expected.json",
    )
    write_dataset(people, files.people)
    files.one_line.write_bytes(claims.one_line.body())
    files.big.write_bytes(claims.big.body())
    files.medium.write_bytes(claims.medium.body())
    files.expected.write_text(
        json.dumps(
            {
                c.name: [list(e) for e in c.expected]
                for c in (claims.one_line, claims.big, claims.medium, claims.probe, claims.probe_pos)
            },
            indent=1,
        )
    )
    return files, people, claims


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    files, people, claims = write_all(args.out, args.people, args.seed)
    kinds = {k: sum(p.kind == k for p in people) for k in (NORMAL, SUSPENDED, TERMINATED)}
    print(f"{files.people}: {len(people)} people {kinds}")
    for claim, path in ((claims.one_line, files.one_line), (claims.medium, files.medium), (claims.big, files.big)):
        print(f"{path}: {claim.lines} line(s), {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
