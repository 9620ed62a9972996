"""The decision log: one JSON line per claim that auditors can search by code, claim or reason.

Billing under a suspended person's code is itself an offence, so the log names the people;
it goes to its own logger ("gatekeeper.decisions") so operators can route it separately.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from domain.values import Reason
from service.check.decision import Line, Outcome

log = logging.getLogger("gatekeeper.decisions")


class DecisionLog:
    def __init__(self, mode: str) -> None:
        self.mode = mode  # "all", "rejects" (claims with any non-eligible line) or "off"

    def record(
        self,
        claim_id: str,
        institution_code: str,
        lines: Sequence[Line],
        outcomes: Sequence[Outcome],
        data_version: int,
        policy_id: str,
    ) -> None:
        if self.mode == "off":
            return
        notable = [(line, o) for line, o in zip(lines, outcomes, strict=True) if o.reason is not Reason.ELIGIBLE]
        if self.mode == "rejects" and not notable:
            return
        shown = notable if self.mode == "rejects" else list(zip(lines, outcomes, strict=True))
        log.info(
            "claim decided",
            extra={
                "claim_id": claim_id,
                "institution_code": institution_code,
                "lines": len(lines),
                "data_version": data_version,
                "policy_id": policy_id,
                "decisions": [
                    {
                        "line_id": line.line_id,
                        "service_date": line.service_date.isoformat(),
                        "practitioner_code": o.practitioner_code,
                        "decision": o.decision.name,
                        "reason": o.reason.name,
                    }
                    for line, o in shown
                ],
            },
        )
