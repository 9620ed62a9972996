"""Readable tables for people at a terminal (the CLI's output)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2


def _day(message: Any, field: str) -> str:
    if not message.HasField(field):
        return "-"
    d = getattr(message, field)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _short(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def print_decisions(response: eligibility_pb2.CheckClaimResponse) -> None:
    print(f"claim {response.claim_id}  data version {response.data_version}  policy {response.policy_id}")
    rows = [
        [
            d.line_id,
            _short(enums_pb2.Decision, d.decision, "DECISION_"),
            _short(enums_pb2.Reason, d.reason, "REASON_"),
            d.practitioner_code,
            _short(enums_pb2.PractitionerStatus, d.status, "PRACTITIONER_STATUS_"),
            _day(d, "status_since"),
            _day(d, "status_until"),
        ]
        for d in response.decisions
    ]
    print(table(["line", "decision", "reason", "person", "status", "since", "until"], rows))
    for d in response.decisions:
        print(f"  {d.line_id}: {d.message}")


def print_status(response: eligibility_pb2.GetPractitionerStatusResponse) -> None:
    if not response.known:
        print(f"{response.practitioner_code}: no record (data version {response.data_version})")
        return
    status = _short(enums_pb2.PractitionerStatus, response.status, "PRACTITIONER_STATUS_")
    print(
        f"{response.practitioner_code}: {status} since {_day(response, 'status_since')} "
        f"until {_day(response, 'status_until')}  registered={response.registered}  "
        f"re-registration from {_day(response, 'reregistration_allowed_from')}  data version {response.data_version}"
    )


def print_file(file: registry_pb2.PractitionerFile) -> None:
    print(f"file of {file.practitioner_code}  data version {file.data_version}")
    totals = ", ".join(f"{y}: {t}" for y, t in sorted(file.year_totals.items())) or "-"
    print(f"year totals: {totals}   re-registration from: {_day(file, 'reregistration_allowed_from')}")
    print("\ntimeline")
    status = enums_pb2.PractitionerStatus
    print(table(["status", "since", "until", "cause"], [
        [_short(status, p.status, "PRACTITIONER_STATUS_"), _day(p, "since"), _day(p, "until"), p.cause]
        for p in file.timeline
    ]))  # fmt: skip
    print("\nregistrations")
    print(table(["institution", "category", "registered", "ended"], [
        [r.institution_code, _short(enums_pb2.PractitionerCategory, r.category, "PRACTITIONER_CATEGORY_"),
         _day(r, "registered_on"), _day(r, "ended_on")]
        for r in file.registrations
    ]))  # fmt: skip
    print("\npoints")
    print(table(["decision", "points", "effective", "withdrawn", "violation"], [
        [p.decision_no, str(p.points), _day(p, "effective_on"), _day(p, "withdrawn_on"), p.violation]
        for p in file.points_entries
    ]))  # fmt: skip
    if file.repairs:
        print("\nrepairs")
        print(table(["repair", "approved", "effect", "basis"], [
            [r.repair_no, _day(r, "approved_on"),
             f"-{r.reduce_points} points" if r.WhichOneof("effect") == "reduce_points"
             else f"-{r.shorten_suspension_days} days", r.basis]
            for r in file.repairs
        ]))  # fmt: skip
    if file.sanctions:
        print("\nexternal sanctions")
        print(table(["source", "status", "start", "end", "region"], [
            [s.source_decision_no, _short(status, s.status, "PRACTITIONER_STATUS_"), _day(s, "start"), _day(s, "end"),
             s.origin_region]
            for s in file.sanctions
        ]))  # fmt: skip
    print("\naudit")
    print(table(["at", "method", "document", "version", "actor"], [
        [a.at.ToJsonString(), a.method, a.document, str(a.data_version), a.actor] for a in file.audit
    ]))  # fmt: skip


def print_change(change: eligibility_pb2.StatusChange, *, flush: bool = False) -> None:
    """One line per StatusChange, as `gatekeeper watch` prints them."""
    if change.kind == eligibility_pb2.STATUS_CHANGE_KIND_SNAPSHOT_END:
        print(f"-- snapshot complete at data version {change.data_version}; changes follow --", flush=flush)
        return
    kind = _short(eligibility_pb2.StatusChangeKind, change.kind, "STATUS_CHANGE_KIND_")
    status = _short(enums_pb2.PractitionerStatus, change.status, "PRACTITIONER_STATUS_")
    since, until = _day(change, "status_since"), _day(change, "status_until")
    line = f"{kind:<8} {change.practitioner_code:<16} {status:<10} {since:<10}  {until:<10}  v{change.data_version}"
    print(line, flush=flush)


def print_institution_reports(response: registry_pb2.ListInstitutionReportsResponse) -> None:
    print(
        f"institutions in {response.year}: staff suspended or terminated at any time in the year  "
        f"(flags at {response.withheld_settlement_share:.0%} and {response.suspended_agreement_share:.0%}, "
        f"policy {response.policy_id}, data version {response.data_version})"
    )
    print(table(["institution", "staff", "sanctioned", "share", "flag"], [
        [r.institution_code, str(r.registered_staff), str(r.sanctioned_staff), f"{r.sanctioned_share:.1%}",
         _short(registry_pb2.InstitutionFlag, r.flag, "INSTITUTION_FLAG_")]
        for r in response.reports
    ]))  # fmt: skip


def print_staff(response: registry_pb2.ListInstitutionStaffResponse) -> None:
    print(f"staff of {response.institution_code} on {_day(response, 'date')}  data version {response.data_version}")
    print(table(["person", "category", "registered", "ended", "may bill", "status", "since", "until", "points",
                 "re-registration"], [
        [s.practitioner_code, _short(enums_pb2.PractitionerCategory, s.category, "PRACTITIONER_CATEGORY_"),
         _day(s, "registered_on"), _day(s, "ended_on"), "yes" if s.registered else "no",
         _short(enums_pb2.PractitionerStatus, s.status, "PRACTITIONER_STATUS_"), _day(s, "status_since"),
         _day(s, "status_until"), str(s.points_this_year), _day(s, "reregistration_allowed_from")]
        for s in response.staff
    ]))  # fmt: skip
