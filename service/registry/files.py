"""A person's ledger and derivation as the PractitionerFile message."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from domain.values import Derivation, Ledger
from gatekeeper.v1 import enums_pb2, registry_pb2
from service.convert import set_date, status_value


def practitioner_file(ledger: Ledger, derivation: Derivation, version: int) -> registry_pb2.PractitionerFile:
    out = registry_pb2.PractitionerFile(practitioner_code=ledger.practitioner_code, data_version=version)
    for reg in sorted(ledger.registrations, key=lambda r: (r.registered_on, r.institution_code)):
        item = out.registrations.add(
            practitioner_code=ledger.practitioner_code,
            institution_code=reg.institution_code,
            category=enums_pb2.PractitionerCategory.ValueType(reg.category),
        )
        set_date(item.registered_on, reg.registered_on)
        set_date(item.ended_on, reg.ended_on)
    for p in sorted(ledger.points, key=lambda p: (p.effective_on, p.decision_no)):
        entry = out.points_entries.add(
            decision_no=p.decision_no,
            practitioner_code=ledger.practitioner_code,
            institution_code=p.institution_code,
            points=p.points,
            responsibility=enums_pb2.Responsibility.ValueType(p.responsibility),
            violation=p.violation,
            withdrawn=p.withdrawn,
            withdrawal_reason=p.withdrawal_reason,
        )
        set_date(entry.decided_on, p.decided_on)
        set_date(entry.effective_on, p.effective_on)
        set_date(entry.withdrawn_on, p.withdrawn_on)
    for r in sorted(ledger.repairs, key=lambda r: (r.approved_on, r.repair_no)):
        repair = out.repairs.add(repair_no=r.repair_no, practitioner_code=ledger.practitioner_code, basis=r.basis)
        set_date(repair.approved_on, r.approved_on)
        if r.reduce_points:
            repair.reduce_points = r.reduce_points
        else:
            repair.shorten_suspension_days = r.shorten_days
    for s in sorted(ledger.sanctions, key=lambda s: (s.start, s.source_decision_no)):
        sanction = out.sanctions.add(
            source_decision_no=s.source_decision_no,
            practitioner_code=ledger.practitioner_code,
            status=status_value(s.status),
            origin_region=s.origin_region,
        )
        set_date(sanction.start, s.start)
        set_date(sanction.end, s.end)
    for period in derivation.timeline:
        item_period = out.timeline.add(status=status_value(period.status), cause=period.cause)
        set_date(item_period.since, period.since)
        set_date(item_period.until, period.until)
    for year, total in derivation.year_totals.items():
        out.year_totals[year] = total
    set_date(out.reregistration_allowed_from, derivation.reregistration_allowed_from)
    for a in ledger.audit:
        at = Timestamp()
        at.FromJsonString(a.at)
        out.audit.add(at=at, actor=a.actor, method=a.method, document=a.document, data_version=a.data_version)
    return out
