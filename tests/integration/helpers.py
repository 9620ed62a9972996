"""Shared pieces of the integration tests: datasets, claims, polling, servers on any Redis.

Everything here drives real parts: datasets go through `gatekeeper load` / Store.swap into a
real redis-server, servers are started with service.app.start and called over gRPC sockets.
"""

from __future__ import annotations

import json
import pathlib
import re
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any, TypeVar

import grpc
from google.type.date_pb2 import Date
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from cache.codec import encode_ledger, encode_projection
from cache.store import PersonWrite
from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2
from service import app
from service.cli import main as cli
from service.registry.dataset import parse_person
from service.rules import engine as policy
from service.rules.profile import PROFILE_DIR, load_profile
from tests.conftest import Gatekeeper, make_settings

T = TypeVar("T")

PROFILE = load_profile("xizang")
POLICY_ID = PROFILE.policy_id
HOSPITAL = "H54010200001"
OTHER_HOSPITAL = "H54010200002"

# Four people of dataset A (Xizang profile).
SUSPENDED = "D540102000001"  # 9 points, main, decided 2025-03-10 -> suspended [2025-03-10, 2025-05-10)
CLEAN = "D540102000002"  # registered, never sanctioned
TERMINATED = "D540102000003"  # 12 points decided 2025-07-01 -> terminated from 2025-07-01
NEWCOMER = "D540102000004"  # only in dataset B
UNKNOWN = "D540102000999"  # in no dataset


def _registered(code: str, **extra: Any) -> dict[str, Any]:
    return {
        "practitioner_code": code,
        "registrations": [{"institution_code": HOSPITAL, "category": "doctor", "registered_on": "2024-01-01"}],
        **extra,
    }


def _points(no: str, points: int, decided_on: str) -> list[dict[str, Any]]:
    return [
        {
            "decision_no": no,
            "institution_code": HOSPITAL,
            "points": points,
            "responsibility": "main",
            "violation": "test",
            "decided_on": decided_on,
        }
    ]


DATASET_A: list[dict[str, Any]] = [
    _registered(SUSPENDED, points=_points("XZ-A-001", 9, "2025-03-10")),
    _registered(CLEAN),
    _registered(TERMINATED, points=_points("XZ-A-002", 12, "2025-07-01")),
]
# Dataset B: SUSPENDED and TERMINATED are gone, CLEAN is suspended by a legacy period, NEWCOMER arrives.
DATASET_B: list[dict[str, Any]] = [
    _registered(CLEAN, status_periods=[{"status": "suspended", "since": "2025-03-01", "until": "2025-06-01"}]),
    _registered(NEWCOMER),
]

# (practitioner, service date) -> expected (decision, reason) under each dataset.
LINES = [(SUSPENDED, date(2025, 4, 1)), (CLEAN, date(2025, 4, 1)), (TERMINATED, date(2025, 8, 1))]
EXPECTED_A = [
    (enums_pb2.DECISION_REJECT, enums_pb2.REASON_SUSPENDED),
    (enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE),
    (enums_pb2.DECISION_REJECT, enums_pb2.REASON_TERMINATED),
]
LINES_B = [*LINES, (NEWCOMER, date(2025, 4, 1))]
EXPECTED_B = [
    (enums_pb2.DECISION_REJECT, enums_pb2.REASON_UNKNOWN_PRACTITIONER),
    (enums_pb2.DECISION_REJECT, enums_pb2.REASON_SUSPENDED),
    (enums_pb2.DECISION_REJECT, enums_pb2.REASON_UNKNOWN_PRACTITIONER),
    (enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE),
]
STALE = (enums_pb2.DECISION_REVIEW, enums_pb2.REASON_STALE_DATA)


def write_dataset(path: pathlib.Path, people: Iterable[Mapping[str, Any]]) -> pathlib.Path:
    path.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in people), encoding="utf-8")
    return path


def load(url: str, path: pathlib.Path, profile: str = "xizang", *flags: str) -> int:
    """`gatekeeper load FILE` against ``url``; the exit status."""
    return cli.main(["load", str(path), "--redis-url", url, "--profile", profile, *flags])


def person_write(person: Mapping[str, Any]) -> PersonWrite:
    """Ledger and projection JSON of one dataset-format person, derived under the Xizang profile."""
    codes = (re.compile(PROFILE.codes.practitioner_pattern), re.compile(PROFILE.codes.institution_pattern))
    ledger = parse_person(dict(person), "test", codes)
    return PersonWrite(
        ledger.practitioner_code, encode_ledger(ledger), encode_projection(policy.derive(ledger, PROFILE.points))
    )


def suspended_person(code: str, decided_on: str = "2025-03-10", no: str | None = None) -> dict[str, Any]:
    return _registered(code, points=_points(no or f"XZ-{code}", 9, decided_on))


def proto_date(day: date) -> Date:
    return Date(year=day.year, month=day.month, day=day.day)


def claim(
    lines: Iterable[tuple[str, date]],
    *,
    claim_id: str = "claim-1",
    institution: str = HOSPITAL,
    min_data_version: int = 0,
) -> eligibility_pb2.CheckClaimRequest:
    return eligibility_pb2.CheckClaimRequest(
        claim_id=claim_id,
        institution_code=institution,
        min_data_version=min_data_version,
        lines=[
            eligibility_pb2.ClaimLine(line_id=str(i), practitioner_code=code, service_date=proto_date(day))
            for i, (code, day) in enumerate(lines, start=1)
        ],
    )


def outcomes(response: eligibility_pb2.CheckClaimResponse) -> list[tuple[int, int]]:
    return [(d.decision, d.reason) for d in response.decisions]


def check(
    gk: Gatekeeper, lines: Iterable[tuple[str, date]] = LINES, **kwargs: Any
) -> eligibility_pb2.CheckClaimResponse:
    return gk.check.CheckClaim(claim(lines, **kwargs), timeout=10)


def poll(probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except grpc.RpcError as error:  # a server still starting or restarting
            last = error
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def health_status(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def profile_file(tmp_path: pathlib.Path, staleness_seconds: float) -> pathlib.Path:
    """A copy of the Xizang profile with another staleness bound."""
    text = (PROFILE_DIR / "xizang.toml").read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^staleness_seconds = .*$", f"staleness_seconds = {staleness_seconds}", text)
    assert n == 1, "xizang.toml has no staleness_seconds line"
    path = tmp_path / f"xizang-stale-{staleness_seconds}.toml"
    path.write_text(text, encoding="utf-8")
    assert load_profile(str(path)).staleness_seconds == staleness_seconds
    return path


@dataclass
class Server:
    """An in-process gatekeeper on any Redis, with its handle (replica) and metrics registry."""

    handle: app.Running
    gk: Gatekeeper
    registry: CollectorRegistry

    @property
    def replica(self) -> Any:
        return self.handle.replica

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, dict(labels or {})) or 0.0


def start_server(redis_url: str, *, wait: bool = True, **overrides: Any) -> Server:
    registry = CollectorRegistry()
    # make_settings(url, profile=...) would pass `profile` twice (it sets it itself): replace afterwards.
    settings = replace(make_settings(redis_url), **overrides)
    handle = app.start(settings, registry=registry)
    gk = Gatekeeper(
        handle.check_port,
        handle.admin_port,
        grpc.insecure_channel(f"127.0.0.1:{handle.check_port}"),
        grpc.insecure_channel(f"127.0.0.1:{handle.admin_port}"),
    )
    server = Server(handle, gk, registry)
    if wait:
        try:
            poll(lambda: health_status(handle.check_port) == SERVING, timeout=20, what="SERVING")
        except BaseException:
            stop_server(server)
            raise
    return server


def stop_server(server: Server) -> None:
    server.gk.close()
    server.handle.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode("utf-8"))


def loaded_points_again() -> registry_pb2.RecordPointsRequest:
    """RecordPoints for the decision number DATASET_A loads (XZ-A-001): the load owns that number."""
    return registry_pb2.RecordPointsRequest(
        decision_no="XZ-A-001",
        practitioner_code=SUSPENDED,
        institution_code=HOSPITAL,
        points=9,
        responsibility=enums_pb2.RESPONSIBILITY_MAIN,
        decided_on=Date(year=2025, month=3, day=10),
    )
