"""Redis Sentinel, as deploy/ runs it: a primary, a replica and a Sentinel (real redis-servers on
loopback). A gatekeeper given a ``redis+sentinel://`` URL keeps serving across a failover: its
admin writes land on the promoted primary and its replica follows them."""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Callable, Iterator
from datetime import date

import grpc
import pytest
import redis

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import enums_pb2
from tests.integration.helpers import HOSPITAL, Server, check, outcomes, poll
from tests.integration.test_redis_outage import register

SERVICE = "gatekeeper"
FAILOVER = 30.0  # seconds; a forced failover on loopback takes one or two


@pytest.fixture
def sentinel_setup(
    dedicated_redis: Callable[..., EmbeddedRedis], tmp_path: pathlib.Path
) -> Iterator[tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis]]:
    primary, replica = dedicated_redis("primary", appendonly=False), dedicated_redis("replica", appendonly=False)
    redis.Redis(port=replica.port).replicaof("127.0.0.1", primary.port)
    port = free_port()
    conf = tmp_path / "sentinel.conf"  # Sentinel rewrites its config file: it must be writable
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nlogfile {tmp_path / 'sentinel.log'}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\nsentinel failover-timeout {SERVICE} 10000\n"
    )
    process = subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdin=subprocess.DEVNULL)
    sentinel = redis.Redis(port=port, decode_responses=True)
    try:
        # Failover needs a replica the Sentinel knows and that is in sync.
        poll(lambda: (_ping(sentinel) and sentinel.sentinel_slaves(SERVICE)) or None, FAILOVER, what="sentinel sees the replica")  # fmt: skip
        poll(lambda: redis.Redis(port=replica.port).info("replication")["master_link_status"] == "up" or None,
             FAILOVER, what="replica in sync")  # fmt: skip
        yield primary, replica, sentinel
    finally:
        process.terminate()
        process.wait(10)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_a_gatekeeper_on_sentinel_survives_a_failover(
    sentinel_setup: tuple[EmbeddedRedis, EmbeddedRedis, redis.Redis], serve: Callable[..., Server]
) -> None:
    primary, replica, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel.connection_pool.connection_kwargs['port']}/{SERVICE}"
    server = serve(url)
    first = register(server.gk, "D540102000101")
    assert redis.Redis(port=primary.port).get("{gk}:version") == str(first.data_version).encode()

    fail_over(sentinel, primary, replica)
    version = write_after_failover(server, "D540102000102")
    assert version == first.data_version + 1
    assert redis.Redis(port=replica.port).get("{gk}:version") == str(version).encode()
    # The check path follows the promoted primary's change feed.
    assert server.replica.wait_for(version, FAILOVER)
    response = check(server.gk, [("D540102000102", date(2025, 1, 2))], institution=HOSPITAL)  # registered there
    assert outcomes(response) == [(enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)]


def fail_over(sentinel: redis.Redis, primary: EmbeddedRedis, replica: EmbeddedRedis) -> None:
    """Force a failover and wait until the replica is promoted and the old primary demoted."""
    sentinel.execute_command("SENTINEL", "FAILOVER", SERVICE)
    poll(lambda: sentinel.sentinel_get_master_addr_by_name(SERVICE)[1] == replica.port or None, FAILOVER,
         what="sentinel promoted the replica")  # fmt: skip
    # Until the old primary is demoted it still takes writes, and loses them when it resyncs: the
    # window GatekeeperDataInDoubt is for (deploy sets min-replicas-to-write against it).
    poll(lambda: redis.Redis(port=primary.port).info("replication")["role"] == "slave" or None, FAILOVER,
         what="the old primary demoted")  # fmt: skip


def write_after_failover(server: Server, code: str) -> int:
    """The data version of the first write the new primary takes (UNAVAILABLE while the switch is under way)."""

    def attempt() -> int | None:
        try:
            return int(register(server.gk, code).data_version)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            return None

    return poll(attempt, FAILOVER, interval=0.2, what="a write on the new primary")
