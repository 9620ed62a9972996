"""CheckClaim / GetPractitionerStatus bad input over real gRPC: INVALID_ARGUMENT + google.rpc.BadRequest.

Every bad field is named by its path, all at once, and no line of a malformed request is decided.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2_grpc
from tests.conftest import Gatekeeper
from tests.e2e.builders import (
    BAD_CLAIMS,
    BAD_STATUS_QUERIES,
    HOSPITAL,
    POLICY_ID,
    assert_one_sentence,
    bad_fields,
    bad_request,
    claim,
    file_request,
    line,
    many_lines,
    new_code,
    points,
    register,
    rpc_error,
)


@pytest.mark.parametrize(("request_", "expected"), [c[1:] for c in BAD_CLAIMS], ids=[c[0] for c in BAD_CLAIMS])
def test_malformed_claim_names_every_bad_field(
    shared_gatekeeper: Gatekeeper, request_: eligibility_pb2.CheckClaimRequest, expected: set[str]
) -> None:
    error = rpc_error(shared_gatekeeper.check.CheckClaim, request_)
    assert bad_fields(error) == expected
    assert_one_sentence(error.details())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("request_", "expected"), [c[1:] for c in BAD_STATUS_QUERIES], ids=[c[0] for c in BAD_STATUS_QUERIES]
)
def test_malformed_status_query_names_every_bad_field(
    shared_gatekeeper: Gatekeeper, request_: eligibility_pb2.GetPractitionerStatusRequest, expected: set[str]
) -> None:
    error = rpc_error(shared_gatekeeper.check.GetPractitionerStatus, request_)
    assert bad_fields(error) == expected


def test_descriptions_say_what_is_wrong(shared_gatekeeper: Gatekeeper) -> None:
    request = claim(
        line("L1", "D54", "2025-02-30", care_type=99),
        line("L1", "D54010200000", "2025-03-10"),
        claim_id="",
    )
    fields = bad_request(rpc_error(shared_gatekeeper.check.CheckClaim, request))
    assert "required" in fields["claim_id"]
    assert "2025-02-30" in fields["lines[0].service_date"]
    assert "99" in fields["lines[0].care_type"]
    assert "'D54'" in fields["lines[0].practitioner_code"]
    assert "lines[0]" in fields["lines[1].line_id"]  # names the line it duplicates


def test_bad_line_next_to_a_suspended_persons_line_decides_nothing(shared_gatekeeper: Gatekeeper) -> None:
    """The good line belongs to someone who is suspended: a partial answer would show a REJECT."""
    gk = shared_gatekeeper
    code = new_code()
    gk.admin.RegisterPractitioner(register(code))
    written = gk.admin.RecordPoints(points(code, 9, "2025-03-10"))
    request = claim(
        line("good", code, "2025-03-10"),
        line("bad", code, "2025-02-30"),
        min_data_version=written.data_version,
    )
    error = rpc_error(gk.check.CheckClaim, request)
    assert bad_fields(error) == {"lines[1].service_date"}
    # The same claim without the bad line is decided (so the refusal above was about the bad line alone).
    del request.lines[1]
    (decision,) = gk.check.CheckClaim(request, timeout=10).decisions
    assert decision.decision == enums_pb2.DECISION_REJECT


def test_boundary_values_are_accepted(shared_gatekeeper: Gatekeeper) -> None:
    """The edges of every shape are valid input: an unknown person is decided, not refused."""
    request = claim(
        line("L" * 64, "D540", "2024-02-29"),
        line("L2", "D" * 30, "2025-12-31", dispenser_code="R540", care_type=enums_pb2.CARE_TYPE_RESCUE),
        line("L3", "D5401", "2025-01-01", med_type="24ABCdef"),
        claim_id="C" * 64,
        institution_code="P54010200001",
    )
    response = shared_gatekeeper.check.CheckClaim(request, timeout=10)
    assert [d.line_id for d in response.decisions] == ["L" * 64, "L2", "L3"]
    assert {d.reason for d in response.decisions} == {enums_pb2.REASON_UNKNOWN_PRACTITIONER}
    assert response.claim_id == "C" * 64
    assert response.policy_id == POLICY_ID


def test_exactly_the_maximum_of_lines_is_decided(shared_gatekeeper: Gatekeeper) -> None:
    request = claim(*many_lines(1000))
    response = shared_gatekeeper.check.CheckClaim(request, timeout=30)
    assert len(response.decisions) == 1000
    assert [d.line_id for d in response.decisions] == [f"L{i}" for i in range(1000)]


def test_oversized_claim_still_reports_its_other_header_faults(shared_gatekeeper: Gatekeeper) -> None:
    request = claim(*many_lines(1001), claim_id="", institution_code="nope")
    error = rpc_error(shared_gatekeeper.check.CheckClaim, request, timeout=30)
    fields = bad_request(error)
    assert set(fields) == {"claim_id", "institution_code", "lines"}
    assert "1001" in fields["lines"]
    assert "1000" in fields["lines"]


def test_configured_max_lines_is_enforced(start_gatekeeper: Callable[..., Gatekeeper]) -> None:
    gk = start_gatekeeper(max_lines=5)
    fields = bad_request(rpc_error(gk.check.CheckClaim, claim(*many_lines(6))))
    assert set(fields) == {"lines"}
    assert "5" in fields["lines"]
    assert len(gk.check.CheckClaim(claim(*many_lines(5)), timeout=10).decisions) == 5


def test_registry_is_not_served_on_the_check_port(shared_gatekeeper: Gatekeeper) -> None:
    """Writes never on the check port: RegistryService there is UNIMPLEMENTED."""
    stub = registry_pb2_grpc.RegistryServiceStub(shared_gatekeeper.channel)
    error = rpc_error(stub.RegisterPractitioner, register(new_code()))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    error = rpc_error(stub.GetPractitionerFile, file_request(new_code()))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


def test_unknown_person_status_is_answered_not_refused(shared_gatekeeper: Gatekeeper) -> None:
    response = shared_gatekeeper.check.GetPractitionerStatus(
        eligibility_pb2.GetPractitionerStatusRequest(practitioner_code=new_code(), institution_code=HOSPITAL),
        timeout=10,
    )
    assert not response.known
    assert response.status == enums_pb2.PRACTITIONER_STATUS_UNSPECIFIED
    assert not response.registered
