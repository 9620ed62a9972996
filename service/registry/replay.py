"""A person's ledger as it stood at an earlier data version: how a replayed write answers.

Idempotency documents keep only (fingerprint, owner, version): storing each first answer would
grow every document with the person's file. The first answer is rebuilt instead from the ledger
as of that version. Every admin write leaves an audit entry naming its document and version, so
facts written later are left out and withdrawals or ended registrations recorded later undone;
facts without an audit entry came with a load and are as old as any write.
"""

from __future__ import annotations

import dataclasses

from domain.values import Ledger
from service.registry.idempotency import (
    end_key,
    points_key,
    registration_key,
    repair_key,
    sanction_key,
    withdraw_key,
)


def ledger_as_of(ledger: Ledger, version: int) -> Ledger:
    written = {entry.document: entry.data_version for entry in ledger.audit}

    def later(document: str) -> bool:
        return written.get(document, 0) > version

    code = ledger.practitioner_code
    points = tuple(
        dataclasses.replace(p, withdrawn_on=None, withdrawal_reason="") if later(withdraw_key(p.decision_no)) else p
        for p in ledger.points
        if not later(points_key(p.decision_no))
    )
    return dataclasses.replace(
        ledger,
        registrations=tuple(
            dataclasses.replace(r, ended_on=None)
            if r.ended_on and later(end_key(code, r.institution_code, r.ended_on.isoformat()))
            else r
            for r in ledger.registrations
            if not later(registration_key(code, r.institution_code, r.registered_on.isoformat()))
        ),
        points=points,
        repairs=tuple(r for r in ledger.repairs if not later(repair_key(r.repair_no))),
        sanctions=tuple(s for s in ledger.sanctions if not later(sanction_key(s.source_decision_no))),
        audit=tuple(entry for entry in ledger.audit if entry.data_version <= version),
    )
