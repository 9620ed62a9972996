"""Shared fixtures: a real redis-server on a free loopback port, and real gatekeeper servers.

Nothing here is faked: integration and end-to-end tests talk to redis-server and gRPC over
real sockets. Unit tests of pure logic need none of these.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import settings
from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis, free_port
from cache.store import Store, connect
from gatekeeper.v1 import eligibility_pb2_grpc, registry_pb2_grpc
from service import app
from service.config import Settings

ROOT = pathlib.Path(__file__).resolve().parent.parent

# CI explores the same examples every run (a red build must be reproducible); developers' runs
# keep exploring new ones. Either way no example has a wall-clock deadline.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
# The long run (e.g. tests/e2e/test_request_fuzz.py, >= 10,000 examples per method):
#   HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/e2e/test_request_fuzz.py
settings.register_profile("long", deadline=None, print_blob=True, max_examples=10_000)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """A clean database for every test."""
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(connect(redis_url))


def make_settings(redis_url: str, **overrides: object) -> Settings:
    base = Settings.from_args(None, environ={})
    defaults = replace(
        base, redis_url=redis_url, port=0, admin_port=free_port(), metrics_port=0, decision_log="off", profile="xizang"
    )
    return replace(defaults, **overrides)  # type: ignore[arg-type]


@dataclass
class Gatekeeper:
    """A running gatekeeper (in-process or a subprocess) and stubs to call it."""

    check_port: int
    admin_port: int
    channel: grpc.Channel
    admin_channel: grpc.Channel

    @property
    def check(self) -> eligibility_pb2_grpc.EligibilityServiceStub:
        return eligibility_pb2_grpc.EligibilityServiceStub(self.channel)

    @property
    def admin(self) -> registry_pb2_grpc.RegistryServiceStub:
        return registry_pb2_grpc.RegistryServiceStub(self.admin_channel)

    def close(self) -> None:
        self.channel.close()
        self.admin_channel.close()


def wait_serving(port: int, timeout: float = 20.0) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"gatekeeper on port {port} did not become SERVING")


def connect_gatekeeper(check_port: int, admin_port: int) -> Gatekeeper:
    return Gatekeeper(
        check_port,
        admin_port,
        grpc.insecure_channel(f"127.0.0.1:{check_port}"),
        grpc.insecure_channel(f"127.0.0.1:{admin_port}"),
    )


@pytest.fixture
def start_gatekeeper(redis_url: str) -> Iterator[Callable[..., Gatekeeper]]:
    """Start in-process gatekeepers against the test Redis; stopped after the test."""
    running: list[tuple[app.Running, Gatekeeper]] = []

    def start(**overrides: object) -> Gatekeeper:
        handle = app.start(make_settings(redis_url, **overrides), registry=CollectorRegistry())
        wait_serving(handle.check_port)
        gk = connect_gatekeeper(handle.check_port, handle.admin_port)
        running.append((handle, gk))
        return gk

    yield start
    for handle, gk in running:
        gk.close()
        handle.stop()


@pytest.fixture
def gatekeeper(start_gatekeeper: Callable[..., Gatekeeper]) -> Gatekeeper:
    return start_gatekeeper()


@pytest.fixture
def spawn_gatekeeper(redis_url: str, tmp_path: pathlib.Path) -> Iterator[Callable[..., Gatekeeper]]:
    """Start `gatekeeper serve` as a subprocess (the real CLI), configured by environment."""
    processes: list[tuple[subprocess.Popen[bytes], Gatekeeper]] = []

    def spawn(env: dict[str, str] | None = None, wait: bool = True) -> Gatekeeper:
        check_port, admin_port = free_port(), free_port()
        environ = {
            **os.environ,
            "GATEKEEPER_REDIS_URL": redis_url,
            "GATEKEEPER_PORT": str(check_port),
            "GATEKEEPER_ADMIN_PORT": str(admin_port),
            "GATEKEEPER_METRICS_PORT": "0",
            "GATEKEEPER_PROFILE": "xizang",
            "GATEKEEPER_DATA_DIR": str(tmp_path / "data"),
            **(env or {}),
        }
        log = open(tmp_path / f"serve-{check_port}.log", "wb")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            [sys.executable, "-m", "service.cli.main", "serve"], cwd=ROOT, env=environ, stdout=log, stderr=log
        )
        gk = connect_gatekeeper(int(environ["GATEKEEPER_PORT"]), int(environ["GATEKEEPER_ADMIN_PORT"]))
        processes.append((process, gk))
        if wait:
            wait_serving(gk.check_port)
        return gk

    yield spawn
    for process, gk in processes:
        gk.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
