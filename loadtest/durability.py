"""What durable, proportionate writes cost: admin writes/s under ``appendfsync everysec`` vs
``always``, and what a 1,000-item ImportSanctions adds to Redis and how long it holds it.

    .venv/bin/python -m loadtest.durability [--writes 400] [--items 1000]

One ``gatekeeper serve`` subprocess against a private redis-server with AOF on (loopback, free
ports). Writes are RegisterPractitioner calls one at a time (each a commit and, with ``always``, an
fsync before the answer). The import is measured with Redis' own numbers: ``used_memory`` and
``aof_current_size`` before and after, and the longest command in SLOWLOG (every command logged).
"""

from __future__ import annotations

import argparse
import datetime
import os
import pathlib
import platform
import sys
import tempfile
import time
from typing import Any

import grpc
from google.type.date_pb2 import Date

from cache.embedded import EmbeddedRedis
from gatekeeper.v1 import enums_pb2, registry_pb2, registry_pb2_grpc
from loadtest.stack import spawn_gatekeeper, wait_until

ONE_DAY = Date(year=2025, month=3, day=10)


def registrations(stub: Any, prefix: str, count: int) -> float:
    """Writes per second, one at a time."""
    began = time.perf_counter()
    for i in range(count):
        stub.RegisterPractitioner(
            registry_pb2.RegisterPractitionerRequest(
                practitioner_code=f"{prefix}{i:08d}",
                institution_code="H51010500001",
                category=enums_pb2.PRACTITIONER_CATEGORY_DOCTOR,
                registered_on=ONE_DAY,
            ),
            timeout=30,
        )
    return count / (time.perf_counter() - began)


def sanctions(count: int) -> registry_pb2.ImportSanctionsRequest:
    request = registry_pb2.ImportSanctionsRequest()
    for i in range(count):
        request.sanctions.add(
            source_decision_no=f"EXT-{i:06d}",
            practitioner_code=f"D99{i:010d}",
            status=enums_pb2.PRACTITIONER_STATUS_SUSPENDED,
            start=ONE_DAY,
            end=Date(year=2025, month=5, day=10),
            origin_region="四川省",
        )
    return request


def measure(writes: int, items: int, workdir: pathlib.Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with EmbeddedRedis(workdir / "redis") as redis_server:
        client = redis_server_client(redis_server)
        gk = spawn_gatekeeper(redis_server.url, workdir, GATEKEEPER_DEMO_DATA="false")
        try:
            wait_until(gk.serving, 60, "gatekeeper SERVING")
            with grpc.insecure_channel(f"127.0.0.1:{gk.admin_port}") as channel:
                stub = registry_pb2_grpc.RegistryServiceStub(channel)
                for mode in ("everysec", "always"):
                    client.config_set("appendfsync", mode)
                    registrations(stub, "DW" + mode[:2].upper(), 20)  # warm up
                    rate = registrations(stub, "DM" + mode[:2].upper(), writes)
                    rows.append((f"admin writes/s, appendfsync {mode}", f"{rate:,.0f}"))
                client.config_set("appendfsync", "always")
                before_mem = int(client.info("memory")["used_memory"])
                before_aof = int(client.info("persistence")["aof_current_size"])
                client.config_set("slowlog-log-slower-than", 0)
                client.config_set("slowlog-max-len", 10000)
                client.slowlog_reset()
                request = sanctions(items)
                began = time.perf_counter()
                first = stub.ImportSanctions(request, timeout=60)
                took = time.perf_counter() - began
                longest = max(entry["duration"] for entry in client.slowlog_get(10000))
                after_mem = int(client.info("memory")["used_memory"])
                after_aof = int(client.info("persistence")["aof_current_size"])
                again = stub.ImportSanctions(request, timeout=60)
                rows += [
                    (
                        f"ImportSanctions of {items} items ({request.ByteSize() / 1024:.0f} KB): answered in",
                        f"{took * 1000:.0f} ms",
                    ),
                    ("  Redis used_memory added", f"{(after_mem - before_mem) / 2**20:.2f} MB"),
                    ("  AOF bytes added", f"{(after_aof - before_aof) / 2**20:.2f} MB"),
                    ("  longest Redis command (SLOWLOG)", f"{longest / 1000:.1f} ms"),
                    ("  identical retry: same data_version", str(again.data_version == first.data_version)),
                ]
        finally:
            gk.stop()
    return rows


def redis_server_client(server: EmbeddedRedis) -> Any:
    import redis

    return redis.Redis(port=server.port, decode_responses=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=400, help="writes per fsync mode")
    parser.add_argument("--items", type=int, default=1000, help="items of the ImportSanctions batch")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gk-durability-") as workdir:
        rows = measure(args.writes, args.items, pathlib.Path(workdir))
    print(f"# {' '.join(['python -m loadtest.durability', *(argv or sys.argv[1:])])}")
    print(f"# {platform.node()} {os.cpu_count()} cores, {datetime.date.today()}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
