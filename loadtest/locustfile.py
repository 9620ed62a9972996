"""Locust scenarios for gatekeeper's check port: hospital HIS claims and pharmacy POS lines.

    # a server with the synthetic dataset (or any other; unknown codes are just REJECT answers)
    python -m loadtest.dataset --out /tmp/gk-data && gatekeeper load /tmp/gk-data/people.jsonl
    GATEKEEPER_TARGET=127.0.0.1:50051 locust -f loadtest/locustfile.py --headless -u 4 -r 4 -t 5s

- ``HisUser`` sends whole claims of 20-200 lines from one hospital's staff (weight 1);
- ``PosUser`` sends single lines as a pharmacy till does: prescriber from anywhere, dispenser a
  pharmacist registered at the pharmacy (weight 3).

The pattern is locust's documented gRPC one: a custom ``User`` owning a grpc channel wrapped in a
client interceptor that fires locust ``request`` events, with grpc patched for gevent. A call also
counts as failed when the answer has not exactly one decision per line. Practitioner codes come
from loadtest/dataset.py (``LOADTEST_PEOPLE`` people, default 100000, ``LOADTEST_SEED``), the
same codes ``python -m loadtest.dataset`` writes with the same numbers.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, between, task
from locust.env import Environment

from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2
from loadtest import dataset

grpc_gevent.init_gevent()  # grpc must cooperate with gevent, or one call blocks every user

TARGET = os.environ.get("GATEKEEPER_TARGET", "127.0.0.1:50051")
PEOPLE = int(os.environ.get("LOADTEST_PEOPLE", "100000"))
SEED = int(os.environ.get("LOADTEST_SEED", str(dataset.DEFAULT_SEED)))


class ClaimMismatch(Exception):
    pass


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Fires one locust request event per unary call, with its latency, size and outcome."""

    def __init__(self, environment: Environment) -> None:
        self.env = environment

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        lines = len(getattr(request, "lines", ()))
        name = f"{client_call_details.method} {'POS 1 line' if lines == 1 else 'HIS 20-200 lines'}"
        exception: BaseException | None = None
        response_length = 0
        start = time.perf_counter()
        call = continuation(client_call_details, request)
        try:
            response = call.result()
            response_length = response.ByteSize()
            if lines and len(response.decisions) != lines:
                exception = ClaimMismatch(f"{len(response.decisions)} decisions for {lines} lines")
        except grpc.RpcError as error:
            exception = error
        self.env.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=response_length,
            response=None,
            context={},
            exception=exception,
        )
        return call


class GrpcUser(User):
    abstract = True
    host = TARGET

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.channel = grpc.intercept_channel(grpc.insecure_channel(self.host), LocustInterceptor(environment))
        self.stub = eligibility_pb2_grpc.EligibilityServiceStub(self.channel)
        self.rng = random.Random()

    def on_stop(self) -> None:
        self.channel.close()

    def check(self, request: eligibility_pb2.CheckClaimRequest) -> None:
        with contextlib.suppress(grpc.RpcError):  # the interceptor already counted it as a failure
            self.stub.CheckClaim(request, timeout=10)


class _Pool:
    """Who works where, built once per locust process from the synthetic population."""

    def __init__(self) -> None:
        people = dataset.generate_people(PEOPLE, SEED)
        self.everyone = [p.code for p in people]
        self.hospital_staff = {h: [p.code for p in people if h in p.institutions] for h in dataset.HOSPITALS}
        self.pharmacists = {h: [p.code for p in people if h in p.institutions] for h in dataset.PHARMACIES}


_pool: _Pool | None = None


def pool() -> _Pool:
    global _pool
    if _pool is None:
        _pool = _Pool()
    return _pool


def _service_day(rng: random.Random) -> Any:
    days = (dataset.LAST_SERVICE_DAY - dataset.FIRST_SERVICE_DAY).days
    return dataset.FIRST_SERVICE_DAY + timedelta(days=rng.randint(0, days))


def _line(line: eligibility_pb2.ClaimLine, number: int, code: str, rng: random.Random) -> None:
    day = _service_day(rng)
    line.line_id = str(number)
    line.practitioner_code = code
    line.service_date.year, line.service_date.month, line.service_date.day = day.year, day.month, day.day
    if rng.random() < 0.03:
        line.care_type = enums_pb2.CARE_TYPE_EMERGENCY


class HisUser(GrpcUser):
    """Hospital billing: a whole claim, 20-200 lines, the visit's few practitioners repeated."""

    weight = 1
    wait_time = between(0.05, 0.3)

    @task
    def check_claim(self) -> None:
        rng, people = self.rng, pool()
        hospital = rng.choice(dataset.HOSPITALS)
        staff = rng.sample(people.hospital_staff[hospital], k=rng.randint(1, 8))
        request = eligibility_pb2.CheckClaimRequest(
            claim_id=f"HIS-LOCUST-{rng.getrandbits(48):012x}", institution_code=hospital
        )
        for number in range(1, rng.randint(20, 200) + 1):
            _line(request.lines.add(), number, rng.choice(staff), rng)
        self.check(request)


class PosUser(GrpcUser):
    """Pharmacy till: one line while the customer waits; prescriber from anywhere, our pharmacist."""

    weight = 3
    wait_time = between(0.01, 0.1)

    @task
    def check_line(self) -> None:
        rng, people = self.rng, pool()
        pharmacy = rng.choice(dataset.PHARMACIES)
        request = eligibility_pb2.CheckClaimRequest(
            claim_id=f"POS-LOCUST-{rng.getrandbits(48):012x}", institution_code=pharmacy
        )
        line = request.lines.add()
        _line(line, 1, rng.choice(people.everyone), rng)
        line.dispenser_code = rng.choice(people.pharmacists[pharmacy])
        line.care_type = enums_pb2.CARE_TYPE_UNSPECIFIED
        self.check(request)
