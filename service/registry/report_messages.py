"""Institution reports (service/registry/reports.py) as RegistryService messages, read from the store."""

from __future__ import annotations

from datetime import date

from cache.codec import decode_ledger, decode_projection
from cache.store import Store
from domain.values import Derivation, Ledger
from gatekeeper.v1 import enums_pb2, registry_pb2
from service.convert import set_date, status_value
from service.registry import reports
from service.registry.writer import store_errors
from service.rules.profile import Profile


def read_people(store: Store) -> tuple[int, list[tuple[Ledger, Derivation]]]:
    """Everyone's ledger with the derivation the writer stored beside it, at one data version."""
    with store_errors():
        version, ledgers, projections = store.read_everyone()
    return version, [(decode_ledger(raw), decode_projection(projections[code])) for code, raw in ledgers.items()]


def institution_reports(
    store: Store, profile: Profile, year: int, region: str
) -> registry_pb2.ListInstitutionReportsResponse:
    version, people = read_people(store)
    rules = profile.reports
    out = registry_pb2.ListInstitutionReportsResponse(
        year=year, policy_id=profile.policy_id, data_version=version,
        withheld_settlement_share=rules.withheld_settlement_share,
        suspended_agreement_share=rules.suspended_agreement_share,
    )  # fmt: skip
    for s in reports.institution_shares(people, year, rules, region):
        out.reports.add(
            institution_code=s.institution_code, registered_staff=s.registered, sanctioned_staff=s.sanctioned,
            sanctioned_share=s.share, flag=registry_pb2.InstitutionFlag.ValueType(int(s.flag)),
        )  # fmt: skip
    return out


def institution_staff(store: Store, institution_code: str, day: date) -> registry_pb2.ListInstitutionStaffResponse:
    version, people = read_people(store)
    out = registry_pb2.ListInstitutionStaffResponse(institution_code=institution_code, data_version=version)
    set_date(out.date, day)
    for row in reports.institution_staff(people, institution_code, day):
        member = out.staff.add(
            practitioner_code=row.practitioner_code, registered=row.registered,
            category=enums_pb2.PractitionerCategory.ValueType(row.registration.category),
            status=status_value(row.status.status), points_this_year=row.points_this_year,
        )  # fmt: skip
        set_date(member.registered_on, row.registration.registered_on)
        set_date(member.ended_on, row.registration.ended_on)
        set_date(member.status_since, row.status.since)
        set_date(member.status_until, row.status.until)
        set_date(member.reregistration_allowed_from, row.reregistration_allowed_from)
    return out
