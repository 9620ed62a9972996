"""gRPC server assembly: ``create_server(address, ...) -> (server, port)``, as grpc's examples do.

The check server carries EligibilityService, grpc.health.v1.Health and reflection; the admin
server carries RegistryService (and health), on its own port.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, registry_pb2, registry_pb2_grpc
from service.check.servicer import EligibilityServicer

CHECK_DESCRIPTOR = eligibility_pb2.DESCRIPTOR.services_by_name["EligibilityService"]
REGISTRY_DESCRIPTOR = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
CHECK_SERVICE = CHECK_DESCRIPTOR.full_name
REGISTRY_SERVICE = REGISTRY_DESCRIPTOR.full_name

# Both sides keep HTTP/2 connections healthy through idle periods and load balancers.
SERVER_OPTIONS: Sequence[tuple[str, Any]] = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.so_reuseport", 1),  # several processes may serve one port
)


def create_server(
    address: str,
    register: Callable[[grpc.Server], None],
    *,
    workers: int = 16,
) -> tuple[grpc.Server, int]:
    """A started-not-yet server bound to ``address`` (port 0 picks a free one); returns the port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc"),
        options=SERVER_OPTIONS,
    )
    register(server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return server, port


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
        eligibility_pb2_grpc.add_EligibilityServiceServicer_to_server(eligibility, server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((CHECK_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    return register


def admin_services(
    registry: registry_pb2_grpc.RegistryServiceServicer, health_servicer: health.HealthServicer
) -> Callable[[grpc.Server], None]:
    def register(server: grpc.Server) -> None:
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(registry, server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection((REGISTRY_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    return register
