"""/metrics over HTTP from a running server: go-grpc-prometheus names, domain metrics, no personal codes."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cache.embedded import free_port
from gatekeeper.v1 import eligibility_pb2, enums_pb2
from tests.integration.helpers import (
    CLEAN,
    DATASET_A,
    HOSPITAL,
    LINES,
    OTHER_HOSPITAL,
    POLICY_ID,
    SUSPENDED,
    TERMINATED,
    UNKNOWN,
    Server,
    check,
    load,
    loaded_points_again,
    scrape,
    write_dataset,
)

CHECK = {"grpc_type": "unary", "grpc_service": "gatekeeper.v1.EligibilityService", "grpc_method": "CheckClaim"}
STATUS = {**CHECK, "grpc_method": "GetPractitionerStatus"}
RECORD = {"grpc_type": "unary", "grpc_service": "gatekeeper.v1.RegistryService", "grpc_method": "RecordPoints"}
# Codes sent in requests below; none may show up in the metrics.
BAD_PRACTITIONER = "QQ7"  # too short for the profile's pattern
BAD_INSTITUTION = "X99887766554"
CLAIM_IDS = ("CLAIM-7F3A9C", "CLAIM-BAD-51E2")


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, **labels: str) -> float:
    return parsed[(metric, frozenset(labels.items()))]


@pytest.fixture
def metered(serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path) -> tuple[Server, int]:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    port = free_port()
    server = serve(redis_url, metrics_port=port)
    assert server.replica.wait_for(1, 10)
    return server, port


def test_metrics_after_some_calls(metered: tuple[Server, int]) -> None:
    server, port = metered
    gk = server.gk
    lines = [*LINES, (UNKNOWN, LINES[0][1])]

    # Two good claims: 2 x (suspended, eligible, terminated, unknown).
    for _ in range(2):
        check(gk, lines, claim_id=CLAIM_IDS[0])
    # One malformed claim: INVALID_ARGUMENT, nothing decided.
    with pytest.raises(grpc.RpcError) as error:
        check(gk, [(BAD_PRACTITIONER, LINES[0][1])], claim_id=CLAIM_IDS[1], institution=BAD_INSTITUTION)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    gk.check.GetPractitionerStatus(
        eligibility_pb2.GetPractitionerStatusRequest(practitioner_code=SUSPENDED, institution_code=OTHER_HOSPITAL),
        timeout=10,
    )
    # An admin write refused as a duplicate of a loaded decision number: AlreadyExists.
    with pytest.raises(grpc.RpcError) as error:
        gk.admin.RecordPoints(loaded_points_again(), timeout=10)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS

    text = scrape(port)
    parsed = samples(text)

    # go-grpc-prometheus RPC metrics, with Go's spelling of codes.
    assert value(parsed, "grpc_server_started_total", **CHECK) == 3
    assert value(parsed, "grpc_server_handled_total", **CHECK, grpc_code="OK") == 2
    assert value(parsed, "grpc_server_handled_total", **CHECK, grpc_code="InvalidArgument") == 1
    assert value(parsed, "grpc_server_msg_received_total", **CHECK) == 3
    assert value(parsed, "grpc_server_msg_sent_total", **CHECK) == 2
    assert value(parsed, "grpc_server_handling_seconds_bucket", **CHECK, le="+Inf") == 3
    assert value(parsed, "grpc_server_handling_seconds_count", **CHECK) == 3
    assert value(parsed, "grpc_server_handling_seconds_sum", **CHECK) > 0
    buckets = [v for (name, labels), v in parsed.items() if name == "grpc_server_handling_seconds_bucket"
               and dict(labels).get("grpc_method") == "CheckClaim"]  # fmt: skip
    assert len(buckets) > 5
    assert value(parsed, "grpc_server_handled_total", **STATUS, grpc_code="OK") == 1
    assert value(parsed, "grpc_server_handled_total", **RECORD, grpc_code="AlreadyExists") == 1
    assert "# TYPE grpc_server_handled_total counter" in text
    assert "# TYPE grpc_server_handling_seconds histogram" in text

    # Domain metrics: one count per decided line, by decision and reason.
    for decision, reason in (("REJECT", "SUSPENDED"), ("ALLOW", "ELIGIBLE"), ("REJECT", "TERMINATED")):
        assert value(parsed, "gatekeeper_decisions_total", decision=decision, reason=reason) == 2
    assert value(parsed, "gatekeeper_decisions_total", decision="REJECT", reason="UNKNOWN_PRACTITIONER") == 2
    # Series appear on first use, so impossible pairs (ALLOW/SUSPENDED) are never exported.
    assert ("gatekeeper_decisions_total", frozenset({("decision", "REVIEW"), ("reason", "STALE_DATA")})) not in parsed
    assert sum(v for (name, _), v in parsed.items() if name == "gatekeeper_decisions_total") == 8
    assert value(parsed, "gatekeeper_claim_lines_count") == 2
    assert value(parsed, "gatekeeper_replica_data_version") == 1
    assert value(parsed, "gatekeeper_replica_people") == len(DATASET_A)
    assert value(parsed, "gatekeeper_replica_ready") == 1
    assert value(parsed, "gatekeeper_replica_age_seconds") >= 0
    assert value(parsed, "gatekeeper_profile_info", policy_id=POLICY_ID, name="Xizang (Tibet)") == 1
    # Follower figures, and series that exist at zero so alert rules evaluate before anything happens.
    assert value(parsed, "gatekeeper_redis_errors_total") == 0
    assert value(parsed, "gatekeeper_replica_snapshots_total") == 1
    assert value(parsed, "gatekeeper_replica_feed_lag_seconds") >= 0
    for reason in ("no_credentials", "unknown_token", "role"):
        assert value(parsed, "gatekeeper_admin_auth_failures_total", reason=reason) == 0
    for cause in ("age", "not_loaded", "min_data_version"):
        assert value(parsed, "gatekeeper_stale_answers_total", cause=cause) == 0

    # No practitioner, institution, claim or document code anywhere in the text.
    for code in (SUSPENDED, CLEAN, TERMINATED, UNKNOWN, BAD_PRACTITIONER, HOSPITAL, OTHER_HOSPITAL, BAD_INSTITUTION,
                 *CLAIM_IDS, "XZ-A-001"):  # fmt: skip
        assert code not in text, code


def test_replica_metrics_follow_the_data(metered: tuple[Server, int], redis_url: str, tmp_path: pathlib.Path) -> None:
    server, port = metered
    assert value(samples(scrape(port)), "gatekeeper_replica_data_version") == 1

    assert load(redis_url, write_dataset(tmp_path / "one.jsonl", DATASET_A[:1]), "xizang", "--allow-shrink") == 0
    assert server.replica.wait_for(2, 10)
    parsed = samples(scrape(port))
    assert value(parsed, "gatekeeper_replica_data_version") == 2
    assert value(parsed, "gatekeeper_replica_people") == 1
    assert value(parsed, "gatekeeper_replica_snapshots_total") == 2  # a load is re-read whole

    response = check(server.gk, min_data_version=1_000)
    assert response.decisions[0].reason == enums_pb2.REASON_STALE_DATA
    parsed = samples(scrape(port))
    assert value(parsed, "gatekeeper_stale_answers_total", cause="min_data_version") == 1
    assert value(parsed, "gatekeeper_decisions_total", decision="REVIEW", reason="STALE_DATA") == len(LINES)
