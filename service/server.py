"""gRPC server assembly: ``create_server(address, ...) -> (server, port)``, as grpc's examples do.

The check server carries EligibilityService, grpc.health.v1.Health and reflection; the admin
server carries RegistryService (and health), on its own port. Our services are registered with
tolerant deserializers (``service.tolerant``): undecodable bytes are the caller's error.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gatekeeper.v1 import eligibility_pb2, registry_pb2, registry_pb2_grpc
from service.check.servicer import EligibilityServicer
from service.config import BindError
from service.pool import Pool
from service.tolerant import add_service

CHECK_DESCRIPTOR = eligibility_pb2.DESCRIPTOR.services_by_name["EligibilityService"]
REGISTRY_DESCRIPTOR = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
CHECK_SERVICE = CHECK_DESCRIPTOR.full_name
REGISTRY_SERVICE = REGISTRY_DESCRIPTOR.full_name

# Both sides keep HTTP/2 connections healthy through idle periods and load balancers. A claim of
# 1,000 lines is about 150 KB; 4 MB leaves room without letting one caller send a gigabyte.
SERVER_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_concurrent_streams", 256),  # per connection
)


def create_server(
    address: str,
    register: Callable[[grpc.Server], None],
    *,
    workers: int = 16,
    credentials: grpc.ServerCredentials | None = None,
    max_concurrent_rpcs: int | None = None,
    reuse_port: bool = False,
    pool: futures.Executor | None = None,
) -> tuple[grpc.Server, int]:
    """A started-not-yet server bound to ``address`` (port 0 picks a free one); returns the port.

    Port reuse is off unless asked for (only the workers of one ``serve`` share a port): a second
    process on the port is a start-up error, not half the connections under another profile.
    Beyond ``max_concurrent_rpcs`` calls in flight the server sheds with RESOURCE_EXHAUSTED.
    ``pool`` (default: ``workers`` threads) runs the calls; see service/pool.py.
    """
    server = grpc.server(
        pool or Pool(workers, workers),  # type: ignore[arg-type]  # any Executor: the stubs say ThreadPoolExecutor
        options=(*SERVER_OPTIONS, ("grpc.so_reuseport", int(reuse_port))),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    register(server)
    if not reuse_port:
        _refuse_taken(address)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise BindError(f"cannot listen on {address}: the port is in use by another process or not available")
    return server, port


def _refuse_taken(address: str) -> None:
    """A BindError when any address ``address`` names is already listened on.

    grpc binds what it can and only warns about the rest: ``localhost:P`` with 127.0.0.1:P taken
    would quietly serve on [::1] alone. So every address the name resolves to is tried first, with
    SO_REUSEADDR as grpc binds (a port in TIME_WAIT is free; one with a listener is not)."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        found = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)  # fmt: skip
    except socket.gaierror as error:
        raise BindError(f"cannot listen on {address}: {error}") from error
    for family, kind, proto, _name, sockaddr in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(sockaddr)
            except OSError as error:
                raise BindError(
                    f"cannot listen on {address} ({sockaddr[0]}): the port is in use by another process"
                ) from error


def reserve_port(address: str) -> tuple[int, list[socket.socket]]:
    """Hold ``address``'s port for the workers of one supervisor (service/processes.py): refused, as a
    single process would be, when another process listens there; then bound (not listening) with
    SO_REUSEPORT on every address the name resolves to, so the workers can bind it too, with port 0
    replaced by a free port they all share. Returns the port and the sockets to keep open meanwhile."""
    _refuse_taken(address)
    host, _, text = address.rpartition(":")
    port, held = int(text), []
    try:
        found = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _name, sockaddr in found:
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((sockaddr[0], port, *sockaddr[2:]))
            port = port or int(sock.getsockname()[1])  # the first free port; the other addresses take it too
    except OSError as error:
        for sock in held:
            sock.close()
        raise BindError(f"cannot listen on {address}: {error}") from error
    return port, held


def new_health() -> health.HealthServicer:
    """Health starts NOT_SERVING; the app flips it once the replica holds data."""
    servicer = health.HealthServicer()
    for name in ("", CHECK_SERVICE, REGISTRY_SERVICE):
        servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    return servicer


def check_services(
    eligibility: EligibilityServicer, health_servicer: health.HealthServicer
) -> Callable[[grpc.Server], None]:
    def register(server: grpc.Server) -> None:
        add_service(server, CHECK_DESCRIPTOR, eligibility)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((CHECK_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    return register


def admin_services(
    registry: registry_pb2_grpc.RegistryServiceServicer, health_servicer: health.HealthServicer
) -> Callable[[grpc.Server], None]:
    def register(server: grpc.Server) -> None:
        add_service(server, REGISTRY_DESCRIPTOR, registry)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((REGISTRY_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    return register
