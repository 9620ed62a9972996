"""Pure ledger edits for each admin write: (ledger, fact) -> new ledger, or Refused.

Facts are appended, never rewritten, except that a withdrawal marks its decision withdrawn and
an end date closes a registration; both keep the original fact in the file.
"""

from __future__ import annotations

import dataclasses
from datetime import date

from domain.errors import Refused
from domain.values import AuditEntry, ExternalSanction, Ledger, PointsDecision, Registration, Repair
from service.rules import engine
from service.rules.profile import PointsRules


def register(ledger: Ledger, registration: Registration, rules: PointsRules) -> Ledger:
    refusal = engine.registration_refusal(ledger, registration, rules)
    if refusal:
        raise Refused(refusal, subject=registration.practitioner_code, kind="TERMINATION_BAN")
    return dataclasses.replace(ledger, registrations=(*ledger.registrations, registration))


def end_registration(ledger: Ledger, institution_code: str, day: date) -> Ledger:
    for i, reg in enumerate(ledger.registrations):
        if reg.institution_code == institution_code and reg.ended_on is None and reg.registered_on < day:
            ended = dataclasses.replace(reg, ended_on=day)
            rest = (*ledger.registrations[:i], ended, *ledger.registrations[i + 1 :])
            return dataclasses.replace(ledger, registrations=rest)
    raise Refused(
        f"{ledger.practitioner_code} has no running registration at {institution_code} that began before {day}.",
        subject=ledger.practitioner_code,
        kind="NO_REGISTRATION",
    )


def record_points(ledger: Ledger, decision: PointsDecision) -> Ledger:
    return dataclasses.replace(ledger, points=(*ledger.points, decision))


def withdraw(ledger: Ledger, decision_no: str, day: date, reason: str) -> Ledger:
    for i, decision in enumerate(ledger.points):
        if decision.decision_no == decision_no:
            if decision.withdrawn_on is not None:
                raise Refused(f"Decision {decision_no} was already withdrawn on {decision.withdrawn_on}.", decision_no)
            if day < decision.decided_on:
                raise Refused(f"Decision {decision_no} cannot be withdrawn before it was decided.", decision_no)
            changed = dataclasses.replace(decision, withdrawn_on=day, withdrawal_reason=reason)
            return dataclasses.replace(ledger, points=(*ledger.points[:i], changed, *ledger.points[i + 1 :]))
    raise Refused(f"No points decision {decision_no} is on file.", subject=decision_no, kind="UNKNOWN_DECISION")


def apply_repair(ledger: Ledger, repair: Repair, rules: PointsRules) -> Ledger:
    refusal = engine.repair_refusal(ledger, repair, rules)
    if refusal:
        raise Refused(refusal, subject=repair.practitioner_code, kind="REPAIR")
    return dataclasses.replace(ledger, repairs=(*ledger.repairs, repair))


def add_sanction(ledger: Ledger, sanction: ExternalSanction) -> Ledger:
    return dataclasses.replace(ledger, sanctions=(*ledger.sanctions, sanction))


def audited(ledger: Ledger, entry: AuditEntry) -> Ledger:
    return dataclasses.replace(ledger, audit=(*ledger.audit, entry))
