"""Rule 2 after the fact: claims rejected in a period that an upheld appeal (or a repair, or a
corrected sanction) made disappear become payable, and the insurer must find them.

Pure: each logged non-eligible line is decided again against the current data; those now ALLOW are
listed with the documents that changed it: the audit entries, newer than the data the line was
decided from, of every person on the line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from domain.projection import PersonView
from domain.values import AuditEntry, Decision
from service.check.decision import Outcome, decide_line
from service.offline.decision_records import LoggedLine
from service.rules.profile import Profile


@dataclass(frozen=True, slots=True)
class Payable:
    logged: LoggedLine
    now: Outcome
    documents: tuple[str, ...]  # e.g. "withdraw:XZ-2025-001", newest last


def payable(
    logged: Iterable[LoggedLine],
    people: Mapping[str, PersonView],
    audit_of: Callable[[str], Sequence[AuditEntry]],
    profile: Profile,
    *,
    since: date | None = None,
) -> Iterator[Payable]:
    """The logged non-ALLOW lines (served on or after ``since``) that the current data allows."""
    for item in logged:
        if item.decision is Decision.ALLOW or (since is not None and item.line.service_date < since):
            continue
        now = decide_line(item.line, item.institution_code, people, profile)
        if now.decision is Decision.ALLOW:
            yield Payable(item, now, _documents(item, audit_of))


def _documents(item: LoggedLine, audit_of: Callable[[str], Sequence[AuditEntry]]) -> tuple[str, ...]:
    codes = [c for c in (item.line.practitioner_code, item.line.dispenser_code) if c]
    entries = [e for code in codes for e in audit_of(code) if e.data_version > item.data_version]
    entries.sort(key=lambda e: e.data_version)
    return tuple(dict.fromkeys(e.document for e in entries))
