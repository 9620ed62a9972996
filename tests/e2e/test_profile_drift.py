"""A process whose profile derives timelines differently from the stored data's refuses to decide:
health NOT_SERVING, checks REVIEW/STALE_DATA, writes FAILED_PRECONDITION, one log line saying why."""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from gatekeeper.v1 import enums_pb2
from service import app
from service.rules.profile import PROFILE_DIR, load_profile
from tests.conftest import Gatekeeper, connect_gatekeeper, make_settings
from tests.e2e.builders import claim, line, new_code, points, register, rpc_error


def _health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status)
        except grpc.RpcError:
            return -1


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_other_points_rules_than_the_stored_data_refuse_to_decide(
    start_gatekeeper: Callable[..., Gatekeeper], redis_url: str, tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    national = start_gatekeeper(profile="national")
    code = new_code()
    national.admin.RegisterPractitioner(register(code, "2024-01-01"), timeout=10)
    written = national.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)  # stamps the rules
    draft = tmp_path / "draft.toml"
    draft.write_text(
        (PROFILE_DIR / "national.toml").read_text().replace("{ 9 = 2, 10 = 4, 11 = 6 }", "{ 9 = 3, 10 = 4, 11 = 6 }")
    )
    assert load_profile(str(draft)).rules_fingerprint != load_profile("national").rules_fingerprint

    caplog.set_level(logging.WARNING, logger="gatekeeper")
    handle = app.start(make_settings(redis_url, profile=str(draft)), registry=CollectorRegistry())
    other = connect_gatekeeper(handle.check_port, handle.admin_port)
    try:
        _wait_for(lambda: handle.replica.ready.is_set(), "the replica never loaded")
        _wait_for(lambda: any("not serving" in r.getMessage() for r in caplog.records), "no log line said why")
        assert _health(handle.check_port) == health_pb2.HealthCheckResponse.NOT_SERVING
        [why] = [r.getMessage() for r in caplog.records if "not serving" in r.getMessage()]
        assert "national@2025.1" in why
        assert load_profile(str(draft)).rules_fingerprint in why

        answer = other.check.CheckClaim(
            claim(line("1", code, "2025-04-01"), min_data_version=written.data_version), timeout=10
        )
        assert (answer.decisions[0].decision, answer.decisions[0].reason) == (
            enums_pb2.DECISION_REVIEW,
            enums_pb2.REASON_STALE_DATA,
        )

        error = rpc_error(other.admin.RecordPoints, points(code, 1, "2025-04-01"))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
        assert "writing would mix the two" in error.details()  # type: ignore[attr-defined]
        # The process with the matching profile serves on.
        assert _health(national.check_port) == health_pb2.HealthCheckResponse.SERVING
    finally:
        other.close()
        handle.stop()


def test_profiles_that_differ_only_in_exceptions_share_the_data(start_gatekeeper: Callable[..., Gatekeeper]) -> None:
    """Xizang differs from the national baseline only in its exceptions, which the serving process applies."""
    assert load_profile("xizang").rules_fingerprint == load_profile("national").rules_fingerprint
    national = start_gatekeeper(profile="national")
    national.admin.RegisterPractitioner(register(new_code(), "2024-01-01"), timeout=10)
    start_gatekeeper(profile="xizang")  # waits for SERVING
