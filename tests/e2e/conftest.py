"""End-to-end fixtures on top of tests/conftest.py.

``shared_gatekeeper`` is one real in-process server per test module, on its own real
redis-server. Stopping a server costs up to a second (its change-feed follower blocks on
XREAD for 1 s), so modules whose tests are independent by construction (every test uses
practitioner codes and document numbers no other test uses, see builders.new_code) share one
server instead of starting one per test. Tests that need a clean Redis or special settings
keep using the per-test ``gatekeeper`` / ``start_gatekeeper`` / ``spawn_gatekeeper`` fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis
from service import app
from tests.conftest import Gatekeeper, connect_gatekeeper, make_settings, wait_serving


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("module-redis"), appendonly=False).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_gatekeeper(module_redis: EmbeddedRedis) -> Iterator[Gatekeeper]:
    handle = app.start(make_settings(module_redis.url), registry=CollectorRegistry())
    gk = connect_gatekeeper(handle.check_port, handle.admin_port)
    try:
        wait_serving(handle.check_port)
        yield gk
    finally:
        gk.close()
        handle.stop()
