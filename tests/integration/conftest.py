"""Fixtures of the integration tests: in-process servers on any Redis, and dedicated redis-servers
that a test may kill and restart (the session one from tests/conftest.py must stay up)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cache.embedded import EmbeddedRedis
from tests.integration.helpers import Server, start_server, stop_server


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """``serve(redis_url, wait=True, **settings)``: an in-process gatekeeper, stopped after the test."""
    started: list[Server] = []

    def start(redis_url: str, *, wait: bool = True, **overrides: Any) -> Server:
        server = start_server(redis_url, wait=wait, **overrides)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        stop_server(server)


@pytest.fixture
def dedicated_redis(tmp_path: pathlib.Path) -> Iterator[Callable[..., EmbeddedRedis]]:
    """``dedicated_redis(name, port=None, appendonly=True)``: a redis-server of this test alone.

    Started again with the same name and port, it reuses its data directory (and so its AOF)."""
    servers: list[EmbeddedRedis] = []

    def start(name: str = "redis", *, port: int | None = None, appendonly: bool = True) -> EmbeddedRedis:
        server = EmbeddedRedis(tmp_path / name, port=port, appendonly=appendonly).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
