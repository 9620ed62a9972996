"""Two spellings of one address are one address: `localhost` overlaps 127.0.0.1 and ::1.

grpc binds what it can and only warns about the rest, so without a probe of every address a name
resolves to, a second `serve` on ``localhost:P`` (127.0.0.1:P taken) would serve on [::1] alone and
take every client that resolves ``localhost`` to it.
"""

from __future__ import annotations

import grpc
import pytest

from cache.embedded import free_port
from service.config import BindError, ConfigError, Settings
from service.server import create_server


def _nothing(server: grpc.Server) -> None:
    pass


def test_a_second_server_on_localhost_is_refused_when_127_0_0_1_is_taken() -> None:
    port = free_port()
    first, _ = create_server(f"127.0.0.1:{port}", _nothing)
    first.start()
    try:
        with pytest.raises(BindError, match=f"localhost:{port}"):
            create_server(f"localhost:{port}", _nothing)
    finally:
        first.stop(None)


def test_the_admin_port_on_localhost_may_not_equal_a_loopback_check_port() -> None:
    port = free_port()
    environ = {
        "GATEKEEPER_REDIS_URL": "redis://127.0.0.1:1/0",
        "GATEKEEPER_HOST": "127.0.0.1",
        "GATEKEEPER_PORT": str(port),
        "GATEKEEPER_ADMIN_HOST": "localhost",
        "GATEKEEPER_ADMIN_PORT": str(port),
    }
    with pytest.raises(ConfigError, match="GATEKEEPER_ADMIN_PORT"):
        Settings.from_args(None, environ=environ)
