"""Hostile bytes on every method of both services, over real gRPC against a real server and Redis.

Random bytes, well-formed messages cut short, and invalid UTF-8 in each string field are sent raw
(no client-side serializer). Every one is the caller's error: INVALID_ARGUMENT with a
google.rpc.BadRequest, never INTERNAL or UNKNOWN; each undecodable request is counted in
``gatekeeper_undecodable_requests_total`` and every refusal in ``grpc_server_handled_total``; a
refused write changes nothing. A claim with 1,000 bad lines gets a BadRequest that a C-core client
limited to 8 KB of trailers still reads.
"""

from __future__ import annotations

import logging
import random
import re
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from cache.embedded import EmbeddedRedis, free_port
from cache.store import Store, connect
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc
from service import app
from tests.conftest import Gatekeeper, connect_gatekeeper, make_settings, wait_serving
from tests.e2e.builders import HOSPITAL, bad_request, claim, line, new_code, register
from tests.e2e.hostile import (
    INVALID_UTF8,
    METHOD_IDS,
    METHODS,
    SPECIAL_PAYLOADS,
    Method,
    bit_flips,
    call_raw,
    full_sample,
    random_payloads,
    undecodable_prefixes,
    with_invalid_utf8,
)

TRAILER_LIMIT = 8 * 1024  # what proxies often allow, and half of C-core clients' default
MORE = re.compile(r"(\d+) more invalid field\(s\) not listed")


@dataclass
class Served:
    gk: Gatekeeper
    registry: CollectorRegistry
    store: Store
    metrics_port: int

    def channel(self, method: Method) -> grpc.Channel:
        return self.gk.admin_channel if method.admin else self.gk.channel

    def undecodable(self, method: Method) -> float:
        labels = {"grpc_service": method.service, "grpc_method": method.name}
        return self.registry.get_sample_value("gatekeeper_undecodable_requests_total", labels) or 0.0

    def handled(self, method: Method, code: str) -> float:
        labels = {
            "grpc_type": method.grpc_type,
            "grpc_service": method.service,
            "grpc_method": method.name,
            "grpc_code": code,
        }
        return self.registry.get_sample_value("grpc_server_handled_total", labels) or 0.0


@pytest.fixture(scope="module")
def served(module_redis: EmbeddedRedis) -> Iterator[Served]:
    """One server for the module, with its metrics registry at hand and /metrics over HTTP."""
    registry = CollectorRegistry()
    metrics_port = free_port()
    handle = app.start(make_settings(module_redis.url, metrics_port=metrics_port), registry=registry)
    gk = connect_gatekeeper(handle.check_port, handle.admin_port)
    store = Store(connect(module_redis.url))
    try:
        wait_serving(handle.check_port)
        # Something to spoil: a person and a version above zero, so "changes nothing" means something.
        gk.admin.RegisterPractitioner(register(new_code()), timeout=10)
        yield Served(gk, registry, store, metrics_port)
    finally:
        store.client.close()
        gk.close()
        handle.stop()


def payloads(method: Method) -> list[tuple[str, bytes]]:
    """(kind, bytes) for one method: random, special shapes, cut short, invalid UTF-8, spoiled bytes."""
    rng = random.Random(f"hostile-{method.name}")
    sample, markers = full_sample(method)
    out = [("random", data) for data in random_payloads(rng, 150)]
    out += [(f"special-{name}", data) for name, data in SPECIAL_PAYLOADS]
    out += [("truncated", data) for data in undecodable_prefixes(method, sample)]
    out += [
        (f"utf8-{m.decode()}-{i}", with_invalid_utf8(sample, m, bad))
        for m in markers
        for i, bad in enumerate(INVALID_UTF8)
    ]
    out += [("bit-flip", data) for data in bit_flips(rng, sample, 40)]
    return out


def assert_refused(method: Method, kind: str, data: bytes, answer: object) -> None:
    assert isinstance(answer, grpc.RpcError), f"{method.name} {kind} {data[:40]!r}: answered {answer}"
    code = answer.code()  # type: ignore[attr-defined]
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.name, kind, data[:40], code, answer.details())  # type: ignore[attr-defined]
    fields = bad_request(answer)  # exactly one BadRequest, every violation described
    if not method.decodes(data):
        assert set(fields) == {method.request_field}, (method.name, kind, fields)
        assert method.request.DESCRIPTOR.full_name in fields[method.request_field]


@pytest.mark.parametrize("method", METHODS, ids=METHOD_IDS)
def test_hostile_bytes_are_invalid_argument_and_counted(served: Served, method: Method) -> None:
    sent = payloads(method)
    undecodable = sum(not method.decodes(data) for _, data in sent)
    assert undecodable >= len(sent) * 0.8  # the point of the exercise: mostly bytes that do not parse
    assert all(not method.decodes(data) for kind, data in sent if kind.startswith(("utf8", "truncated", "special")))
    counted, refused = served.undecodable(method), served.handled(method, "InvalidArgument")
    answered = served.handled(method, "OK")
    version = served.store.version()
    channel = served.channel(method)

    accepted = 0
    for kind, data in sent:
        answer = call_raw(method, channel, data)
        if method.may_answer(data) and not isinstance(answer, grpc.RpcError):
            accepted += 1  # bytes that parse into a valid request of a method whose fields are all optional
            continue
        assert_refused(method, kind, data, answer)

    assert served.undecodable(method) - counted == undecodable
    assert served.handled(method, "InvalidArgument") - refused == len(sent) - accepted
    if method.ends_by_itself:  # an answered watch is cancelled by the client, not ended OK
        assert served.handled(method, "OK") - answered == accepted
    for code in ("Internal", "Unknown"):
        assert served.handled(method, code) == 0, code
    assert served.store.version() == version  # a refused write changes nothing


def test_every_method_still_answers_a_good_request_afterwards(served: Served) -> None:
    """The hostile bytes broke nothing: the same channels carry ordinary calls."""
    code = new_code()
    written = served.gk.admin.RegisterPractitioner(register(code), timeout=10)
    response = served.gk.check.CheckClaim(
        claim(line("L1", code, "2025-03-10"), min_data_version=written.data_version), timeout=10
    )
    assert [d.line_id for d in response.decisions] == ["L1"]


def test_undecodable_requests_are_on_metrics_http(served: Served) -> None:
    method = METHODS[0]
    call_raw(method, served.channel(method), b"\xff\xff\xff")
    with urllib.request.urlopen(f"http://127.0.0.1:{served.metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    scraped = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = {"grpc_service": method.service, "grpc_method": method.name}
    assert scraped[("gatekeeper_undecodable_requests_total", frozenset(labels.items()))] == served.undecodable(method)
    handled = {"grpc_type": "unary", **labels, "grpc_code": "InvalidArgument"}
    assert scraped[("grpc_server_handled_total", frozenset(handled.items()))] >= 1


def test_undecodable_requests_are_logged_at_most_once_a_second(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    method = METHODS[0]
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="gatekeeper.requests"):
        for i in range(300):
            call_raw(method, served.channel(method), b"\xff" * (i % 7 + 1))
    elapsed = time.monotonic() - began
    lines = [r for r in caplog.records if r.name == "gatekeeper.requests"]
    assert len(lines) <= int(elapsed) + 2, (len(lines), elapsed)
    for record in lines:
        assert "\xff" not in record.getMessage()


# --- A BadRequest every client can read -----------------------------------------------------------


def trailer_bytes(error: grpc.RpcError) -> int:
    """Bytes of the trailers as sent: -bin values travel base64-encoded, the message percent-encoded;
    each entry counts name + value + 32, as HTTP/2 (and C-core's limit) counts a header list."""
    size = len("grpc-status") + 2 + 32
    size += len("grpc-message") + len(quote(error.details(), safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")) + 32  # type: ignore[attr-defined]
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        wire = len(value) if not key.endswith("-bin") else (len(value) + 2) // 3 * 4
        size += len(key) + wire + 32
    return size


def thousand_bad_lines() -> eligibility_pb2.CheckClaimRequest:
    """1,000 lines, each with exactly one fault: a practitioner code of the wrong shape."""
    return claim(*(line(f"L{i}", f"bad-code-{i}", "2025-03-10") for i in range(1000)), institution_code=HOSPITAL)


def test_a_thousand_bad_lines_fit_in_a_trailer_a_c_core_client_reads(served: Served) -> None:
    limit = [("grpc.max_metadata_size", TRAILER_LIMIT), ("grpc.absolute_max_metadata_size", TRAILER_LIMIT)]
    with grpc.insecure_channel(f"127.0.0.1:{served.gk.check_port}", options=limit) as channel:
        stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
        try:
            stub.CheckClaim(thousand_bad_lines(), timeout=30)
        except grpc.RpcError as raised:
            error = raised
        else:
            raise AssertionError("1,000 bad lines were answered OK")

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()  # type: ignore[attr-defined]
    assert trailer_bytes(error) < TRAILER_LIMIT
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    (packed,) = status.details
    detail = error_details_pb2.BadRequest()
    assert packed.Unpack(detail)
    *listed, last = detail.field_violations
    assert 0 < len(listed) < 1000
    assert [v.field for v in listed] == [f"lines[{i}].practitioner_code" for i in range(len(listed))]
    assert last.field == "request"
    more = MORE.fullmatch(last.description)
    assert more, last.description
    assert len(listed) + int(more.group(1)) == 1000
    assert "1000" in error.details()  # type: ignore[attr-defined]
