"""A Sentinel failover is no data loss: the promoted replica carries the data identity and version,
so a gatekeeper following it keeps trusting it (no doubt, writes resume, versions keep rising)
instead of taking the switch for Redis having lost or replaced its data."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from datetime import date

import redis

from cache.embedded import EmbeddedRedis
from gatekeeper.v1 import enums_pb2
from tests.integration.helpers import (
    DATASET_A,
    SERVING,
    Server,
    check,
    health_status,
    load,
    outcomes,
    poll,
    write_dataset,
)
from tests.integration.test_redis_outage import register
from tests.integration.test_sentinel import FAILOVER, SERVICE, fail_over, sentinel_setup, write_after_failover

__all__ = ["sentinel_setup"]  # the fixture, used by name


def _meta(port: int) -> dict[bytes, bytes]:
    return redis.Redis(port=port).hgetall("{gk}:meta")


def test_after_a_failover_the_data_identity_holds_and_versions_keep_rising(
    sentinel_setup: tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis],
    serve: Callable[..., Server],
    tmp_path: pathlib.Path,
) -> None:
    primary, replica, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel.connection_pool.connection_kwargs['port']}/{SERVICE}"
    assert load(url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    server = serve(url)
    first = register(server.gk, "D540102000201").data_version
    assert server.replica.wait_for(first, 10)
    identity = server.replica.state.identity
    assert identity
    assert _meta(primary.port)[b"identity"] == identity.encode()
    poll(lambda: redis.Redis(port=replica.port).get("{gk}:version") == str(first).encode() or None, FAILOVER,
         what="the replica to have the write")  # fmt: skip

    fail_over(sentinel, primary, replica)
    second = write_after_failover(server, "D540102000202")
    assert second == first + 1
    assert server.replica.wait_for(second, FAILOVER)
    third = register(server.gk, "D540102000203").data_version
    assert third == second + 1
    assert server.replica.wait_for(third, FAILOVER)

    promoted = _meta(replica.port)
    assert promoted[b"identity"] == identity.encode()
    assert b"doubt" not in promoted
    assert b"high_water" not in promoted  # no process ever reported a loss
    assert server.replica.doubt is None
    assert server.replica.state.identity == identity
    assert health_status(server.handle.check_port) == SERVING
    response = check(server.gk, [("D540102000203", date(2025, 1, 2))], min_data_version=third)
    assert outcomes(response) == [(enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)]
