"""The shortest path through the product: an admin write, then a check that reads it."""

from __future__ import annotations

from google.type.date_pb2 import Date

from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2
from tests.conftest import Gatekeeper


def test_points_write_is_visible_to_the_next_check(gatekeeper: Gatekeeper) -> None:
    gatekeeper.admin.RegisterPractitioner(
        registry_pb2.RegisterPractitionerRequest(
            practitioner_code="D540102000001",
            institution_code="H54010200001",
            category=enums_pb2.PRACTITIONER_CATEGORY_DOCTOR,
            registered_on=Date(year=2025, month=1, day=1),
        )
    )
    written = gatekeeper.admin.RecordPoints(
        registry_pb2.RecordPointsRequest(
            decision_no="XZ-2025-001",
            practitioner_code="D540102000001",
            institution_code="H54010200001",
            points=9,
            responsibility=enums_pb2.RESPONSIBILITY_MAIN,
            decided_on=Date(year=2025, month=3, day=10),
        )
    )
    response = gatekeeper.check.CheckClaim(
        eligibility_pb2.CheckClaimRequest(
            claim_id="c1",
            institution_code="H54010200001",
            min_data_version=written.data_version,
            lines=[
                eligibility_pb2.ClaimLine(
                    line_id="1", practitioner_code="D540102000001", service_date=Date(year=2025, month=3, day=10)
                )
            ],
        )
    )
    (decision,) = response.decisions
    assert decision.decision == enums_pb2.DECISION_REJECT
    assert decision.reason == enums_pb2.REASON_SUSPENDED
    assert (decision.status_until.year, decision.status_until.month, decision.status_until.day) == (2025, 5, 10)
    assert response.data_version >= written.data_version
    assert response.policy_id == "xizang@2025.1"
