"""Reading the decision log back: JSON lines of the "gatekeeper.decisions" logger, one claim each.

Other log lines in the same file are passed over, as are records from before the log carried
what it takes to decide a line again (they are counted, so a report can say so).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from domain.values import CareType, Decision, Reason
from service.check.decision import Line

LOGGER = "gatekeeper.decisions"


@dataclass(frozen=True, slots=True)
class LoggedLine:
    claim_id: str
    institution_code: str
    data_version: int
    policy_id: str
    line: Line
    decision: Decision
    reason: Reason
    about: str  # the person the reason was about


@dataclass(slots=True)
class ReadCounts:
    claims: int = 0
    lines: int = 0
    unreadable: int = 0  # not JSON, or a decision log record without the fields to decide again
    files: list[str] = field(default_factory=list)


def _line(claim: dict[str, Any], item: dict[str, Any]) -> LoggedLine:
    line = Line(
        line_id=str(item["line_id"]),
        practitioner_code=str(item["line_practitioner_code"]),
        service_date=date.fromisoformat(item["service_date"]),
        dispenser_code=str(item.get("dispenser_code", "")),
        care_type=CareType[item["care_type"]],
        med_type=str(item.get("med_type", "")),
    )
    return LoggedLine(
        claim_id=str(claim["claim_id"]),
        institution_code=str(claim["institution_code"]),
        data_version=int(claim["data_version"]),
        policy_id=str(claim.get("policy_id", "")),
        line=line,
        decision=Decision[item["decision"]],
        reason=Reason[item["reason"]],
        about=str(item["practitioner_code"]),
    )


def read_lines(paths: Iterable[str | pathlib.Path], counts: ReadCounts | None = None) -> Iterator[LoggedLine]:
    counts = counts if counts is not None else ReadCounts()
    for path in paths:
        counts.files.append(str(path))
        with open(path, encoding="utf-8", errors="replace") as handle:
            for raw in handle:
                yield from _claim_lines(raw, counts)


def _claim_lines(raw: str, counts: ReadCounts) -> Iterator[LoggedLine]:
    if not raw.startswith("{"):
        return
    try:
        record = json.loads(raw)
    except json.JSONDecodeError:
        counts.unreadable += 1
        return
    if record.get("name") != LOGGER or "decisions" not in record:
        return
    counts.claims += 1
    for item in record["decisions"]:
        try:
            parsed = _line(record, item)
        except (KeyError, ValueError, TypeError):
            counts.unreadable += 1
            continue
        counts.lines += 1
        yield parsed
