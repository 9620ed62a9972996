"""What any gRPC tool sees: health, reflection, and the fields every answer carries."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2_grpc, enums_pb2
from service import app
from tests.conftest import Gatekeeper, make_settings
from tests.e2e.builders import (
    POLICY_ID,
    claim,
    dated_claim,
    line,
    new_code,
    points,
    poll,
    register,
    rpc_error,
    status_request,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status  # type: ignore[no-any-return]


def reflection(channel: grpc.Channel, **request: object) -> reflection_pb2.ServerReflectionResponse:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (response,) = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)]), timeout=5))
    return response


def listed_services(channel: grpc.Channel) -> set[str]:
    response = reflection(channel, list_services="")
    return {service.name for service in response.list_services_response.service}


# --- Health ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", "gatekeeper.v1.EligibilityService", "gatekeeper.v1.RegistryService"])
def test_health_is_serving_once_loaded(shared_gatekeeper: Gatekeeper, service: str) -> None:
    assert health(shared_gatekeeper.channel, service) == SERVING
    assert health(shared_gatekeeper.admin_channel, service) == SERVING


def test_health_of_an_unknown_service_is_not_found(shared_gatekeeper: Gatekeeper) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        health(shared_gatekeeper.channel, "gatekeeper.v1.NoSuchService")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]


def test_not_serving_until_the_data_is_loaded(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Redis is not there yet: the port answers NOT_SERVING and checks go to review; once Redis comes up
    (on the configured port) the replica loads and health turns SERVING."""
    port = free_port()
    handle = app.start(make_settings(f"redis://127.0.0.1:{port}/0"), registry=CollectorRegistry())
    redis_server: EmbeddedRedis | None = None
    channel = grpc.insecure_channel(f"127.0.0.1:{handle.check_port}")
    try:
        assert poll(lambda: _answers(channel)) == NOT_SERVING
        response = eligibility_pb2_grpc.EligibilityServiceStub(channel).CheckClaim(
            dated_claim(new_code(), ["2025-03-10"]), timeout=10
        )
        (decision,) = response.decisions
        assert (decision.decision, decision.reason) == (enums_pb2.DECISION_REVIEW, enums_pb2.REASON_STALE_DATA)
        # "No record" would be a guess before the data is loaded.
        error = rpc_error(
            eligibility_pb2_grpc.EligibilityServiceStub(channel).GetPractitionerStatus,
            status_request(new_code(), "2025-03-10"),
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]

        redis_server = EmbeddedRedis(tmp_path_factory.mktemp("late-redis"), port=port, appendonly=False).start()
        poll(lambda: health(channel) == SERVING, timeout=30)
        assert health(channel, "gatekeeper.v1.EligibilityService") == SERVING
    finally:
        channel.close()
        handle.stop()
        if redis_server is not None:
            redis_server.stop()


def _answers(channel: grpc.Channel) -> int | None:
    try:
        return health(channel)
    except grpc.RpcError:
        return None  # not listening yet


# --- Reflection --------------------------------------------------------------------------------------------------


def test_reflection_lists_the_check_services(shared_gatekeeper: Gatekeeper) -> None:
    services = listed_services(shared_gatekeeper.channel)
    assert "gatekeeper.v1.EligibilityService" in services
    assert "grpc.health.v1.Health" in services
    assert "gatekeeper.v1.RegistryService" not in services  # writes live on the admin port only


def test_reflection_lists_the_registry_on_the_admin_port(shared_gatekeeper: Gatekeeper) -> None:
    services = listed_services(shared_gatekeeper.admin_channel)
    assert "gatekeeper.v1.RegistryService" in services
    assert "gatekeeper.v1.EligibilityService" not in services


def test_reflection_describes_the_contract_names(shared_gatekeeper: Gatekeeper) -> None:
    response = reflection(shared_gatekeeper.channel, file_containing_symbol="gatekeeper.v1.EligibilityService")
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    by_package = {f.name: f for f in files}
    service_file = next(f for f in by_package.values() if f.service)
    assert service_file.package == "gatekeeper.v1"
    methods = {m.name for m in service_file.service[0].method}
    assert {"CheckClaim", "GetPractitionerStatus", "WatchStatusChanges"} <= methods


# --- Every answer carries its explanation ----------------------------------------------------------------------------


def test_every_line_decision_carries_reason_status_and_window(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    normal, sanctioned = new_code(), new_code()
    for code in (normal, sanctioned):
        gk.admin.RegisterPractitioner(register(code), timeout=10)
    written = gk.admin.RecordPoints(points(sanctioned, 9, "2025-03-10"), timeout=10)
    request = claim(
        line("n", normal, "2025-03-10"),
        line("before", sanctioned, "2025-03-09"),
        line("during", sanctioned, "2025-04-01"),
        line("after", sanctioned, "2025-05-10"),
        line("emergency", sanctioned, "2025-04-01", care_type=enums_pb2.CARE_TYPE_EMERGENCY),
        claim_id="every-line",
        min_data_version=written.data_version,
    )
    response = gk.check.CheckClaim(request, timeout=10)
    assert response.claim_id == "every-line"
    assert response.policy_id == POLICY_ID
    assert response.data_version >= written.data_version > 0
    assert len(response.decisions) == 5
    for decision in response.decisions:
        assert decision.decision != enums_pb2.DECISION_UNSPECIFIED, decision
        assert decision.reason != enums_pb2.REASON_UNSPECIFIED, decision
        assert decision.status != enums_pb2.PRACTITIONER_STATUS_UNSPECIFIED, decision
        assert decision.message, decision
        assert decision.practitioner_code, decision
    by_id = {x.line_id: x for x in response.decisions}
    # The never-sanctioned person's normal window is open on both sides.
    assert not by_id["n"].HasField("status_since")
    assert not by_id["n"].HasField("status_until")
    for line_id in ("during", "emergency"):
        assert by_id[line_id].HasField("status_since")
        assert by_id[line_id].HasField("status_until")
    assert by_id["before"].HasField("status_until")  # normal until the suspension starts
    assert by_id["after"].HasField("status_since")  # normal since it ended


def test_status_response_carries_version_and_policy(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    code = new_code()
    written = gk.admin.RegisterPractitioner(register(code), timeout=10)
    gk.check.CheckClaim(dated_claim(code, ["2025-01-01"], min_data_version=written.data_version), timeout=10)
    response = gk.check.GetPractitionerStatus(status_request(code, "2025-06-01", "H54010200001"), timeout=10)
    assert response.practitioner_code == code
    assert response.known
    assert response.registered
    assert response.status == enums_pb2.PRACTITIONER_STATUS_NORMAL
    assert response.data_version >= written.data_version
    assert response.policy_id == POLICY_ID
