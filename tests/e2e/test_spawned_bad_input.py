"""The bad-input cases against a real `gatekeeper serve` process configured by GATEKEEPER_* variables.

One process serves the whole module (starting one costs 1-2 s). It runs with GATEKEEPER_MAX_LINES=5,
its metrics on HTTP and its decision log on, so the tests can see from outside that a malformed request
decides no line at all: neither the decision counters nor the decision log move.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, registry_pb2
from tests.conftest import ROOT, Gatekeeper, wait_serving
from tests.e2e.builders import (
    BAD_CLAIMS,
    BAD_STATUS_QUERIES,
    assert_one_sentence,
    bad_fields,
    bad_request,
    claim,
    d,
    dated_claim,
    file_request,
    many_lines,
    new_code,
    points,
    register,
    repair,
    rpc_error,
)


@dataclass
class Served(Gatekeeper):
    """A spawned server, plus where to scrape its metrics and read its log."""

    metrics_port: int = 0
    log: pathlib.Path = pathlib.Path()


@pytest.fixture(scope="module")
def served(module_redis: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    check_port, admin_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "GATEKEEPER_REDIS_URL": module_redis.url,
        "GATEKEEPER_PORT": str(check_port),
        "GATEKEEPER_ADMIN_PORT": str(admin_port),
        "GATEKEEPER_METRICS_PORT": str(metrics_port),
        "GATEKEEPER_PROFILE": "xizang",
        "GATEKEEPER_DATA_DIR": str(tmp / "data"),
        "GATEKEEPER_MAX_LINES": "5",
        "GATEKEEPER_DECISION_LOG": "all",
        "GATEKEEPER_LOG_FORMAT": "json",
    }
    log = tmp / "serve.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli.main", "serve"], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    gk = Served(
        check_port,
        admin_port,
        grpc.insecure_channel(f"127.0.0.1:{check_port}"),
        grpc.insecure_channel(f"127.0.0.1:{admin_port}"),
        metrics_port,
        log,
    )
    try:
        wait_serving(check_port)
        yield gk
    finally:
        gk.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(gk: Served, sample_name: str, **labels: str) -> float:
    """Sum of one metric's samples matching ``labels``, scraped from the process over HTTP."""
    with urllib.request.urlopen(f"http://127.0.0.1:{gk.metrics_port}/metrics", timeout=10) as page:
        text = page.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def decided_lines(gk: Served) -> float:
    return scrape(gk, "gatekeeper_decisions_total")


def invalid_checks(gk: Served) -> float:
    return scrape(gk, "grpc_server_handled_total", grpc_method="CheckClaim", grpc_code="InvalidArgument")


def logged_claims(gk: Served) -> list[dict[str, Any]]:
    records = []
    for raw in gk.log.read_text(encoding="utf-8", errors="replace").splitlines():
        if raw.startswith("{"):
            record = json.loads(raw)
            if record.get("name") == "gatekeeper.decisions":
                records.append(record)
    return records


# --- Malformed checks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("request_", "expected"), [c[1:] for c in BAD_CLAIMS], ids=[c[0] for c in BAD_CLAIMS])
def test_malformed_claim(served: Served, request_: eligibility_pb2.CheckClaimRequest, expected: set[str]) -> None:
    error = rpc_error(served.check.CheckClaim, request_)
    assert bad_fields(error) == expected
    assert_one_sentence(error.details())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("request_", "expected"), [c[1:] for c in BAD_STATUS_QUERIES], ids=[c[0] for c in BAD_STATUS_QUERIES]
)
def test_malformed_status_query(served: Served, request_: Any, expected: set[str]) -> None:
    assert bad_fields(rpc_error(served.check.GetPractitionerStatus, request_)) == expected


def test_max_lines_from_the_environment(served: Served) -> None:
    fields = bad_request(rpc_error(served.check.CheckClaim, claim(*many_lines(6))))
    assert set(fields) == {"lines"}
    assert "5" in fields["lines"]
    assert len(served.check.CheckClaim(claim(*many_lines(5)), timeout=10).decisions) == 5


def test_malformed_claims_decide_no_line(served: Served) -> None:
    """Observed from outside the process: no decision counted, no decision logged."""
    counted, logged, refused = decided_lines(served), len(logged_claims(served)), invalid_checks(served)
    for _, request, _ in BAD_CLAIMS:
        rpc_error(served.check.CheckClaim, request)
    mixed = claim(*dated_claim(new_code(), ["2025-03-10", "2025-03-11"]).lines, claim_id="")  # good lines, bad header
    rpc_error(served.check.CheckClaim, mixed)
    assert invalid_checks(served) == refused + len(BAD_CLAIMS) + 1
    assert decided_lines(served) == counted
    assert len(logged_claims(served)) == logged

    # The instruments do work: a valid claim of two lines moves both.
    served.check.CheckClaim(dated_claim(new_code(), ["2025-03-10", "2025-03-11"]), timeout=10)
    assert decided_lines(served) == counted + 2
    (record,) = logged_claims(served)[logged:]
    assert record["lines"] == 2


# --- Malformed and refused writes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "request_", "expected"),
    [
        ("RecordPoints", points("D540102000001", 13, "2025-03-01"), {"points"}),
        ("RecordPoints", points("D540102000001", 3, "2025-03-10", effective_on="2025-03-01"), {"effective_on"}),
        ("RegisterPractitioner", register("D540102000001", category=99), {"category"}),
        (
            "RegisterPractitioner",
            register("D540102000001", "2025-02-30", institution_code="Z1"),
            {"registered_on", "institution_code"},
        ),
        ("ApplyRepair", repair("D540102000001", "2025-03-01", reduce_points=0), {"reduce_points"}),
        ("ApplyRepair", repair("D540102000001", "2025-03-01", shorten_days=-3), {"shorten_suspension_days"}),
        ("ApplyRepair", repair("D540102000001", "2025-03-01"), {"effect"}),
        ("GetPractitionerFile", file_request("x"), {"practitioner_code"}),
    ],
    ids=[
        "points-13",
        "effective-before",
        "category-99",
        "date-and-institution",
        "reduce-0",
        "shorten-neg",
        "no-effect",
        "file-code",
    ],
)
def test_malformed_write(served: Served, method: str, request_: Any, expected: set[str]) -> None:
    error = rpc_error(getattr(served.admin, method), request_)
    assert bad_fields(error) == expected
    assert_one_sentence(error.details())  # type: ignore[attr-defined]


def test_refused_and_unknown_writes(served: Served) -> None:
    code = new_code()
    served.admin.RegisterPractitioner(register(code), timeout=10)
    served.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)
    before = served.admin.GetPractitionerFile(file_request(code), timeout=10)
    for method, request in (
        ("RegisterPractitioner", register(code, "2026-07-01")),
        ("ApplyRepair", repair(code, "2025-09-01", reduce_points=1)),
        (
            "WithdrawPoints",
            registry_pb2.WithdrawPointsRequest(decision_no="NOPE-1", withdrawn_on=d("2025-08-01"), reason="x"),
        ),
    ):
        error = rpc_error(getattr(served.admin, method), request)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION, method  # type: ignore[attr-defined]
        assert_one_sentence(error.details())  # type: ignore[attr-defined]
    assert served.admin.GetPractitionerFile(file_request(code), timeout=10) == before
    error = rpc_error(served.admin.GetPractitionerFile, file_request(new_code()))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
