"""Process wiring: settings -> Redis (or the embedded one) -> replica -> servers -> metrics.

``start`` returns a handle with the bound ports and a ``stop``; ``serve`` runs until SIGTERM.
"""

from __future__ import annotations

import logging
import pathlib
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from grpc_health.v1 import health, health_pb2
from prometheus_client import REGISTRY, CollectorRegistry

from cache.embedded import EmbeddedRedis
from cache.replica import Follower, Replica
from cache.store import Store, connect
from service.check.decision_log import DecisionLog
from service.check.servicer import CheckLimits, EligibilityServicer
from service.config import Settings
from service.convert import today_in_china
from service.metrics import Metrics, RpcMetrics
from service.registry.dataset import read_dataset
from service.registry.servicer import RegistryServicer
from service.rules.profile import Profile, load_profile
from service.server import (
    CHECK_DESCRIPTOR,
    CHECK_SERVICE,
    REGISTRY_DESCRIPTOR,
    REGISTRY_SERVICE,
    admin_services,
    check_services,
    create_server,
    new_health,
)

log = logging.getLogger("gatekeeper")
DEMO_DATA = pathlib.Path(__file__).parent / "demo" / "people.jsonl"


@dataclass
class Running:
    check_port: int
    admin_port: int  # 0: off
    redis_url: str
    replica: Replica
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def on_stop(self, stop: Callable[[], None]) -> None:
        """Run ``stop`` when the process stops; the last registered runs first."""
        self._stops.append(stop)

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:  # keep stopping the rest
                log.exception("error while stopping")
        self._stops.clear()


def load_demo(store: Store, profile: Profile) -> None:
    if store.version() == 0:
        dataset = read_dataset(DEMO_DATA, profile)
        version = store.swap(dataset.ledgers, dataset.projections, dataset.docs, profile.policy_id, _now())
        log.info("loaded demo data", extra={"people": len(dataset), "data_version": version})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _redis(settings: Settings, profile: Profile, running: Running) -> Store:
    if settings.redis_url:
        return Store(connect(settings.redis_url))
    embedded = EmbeddedRedis(pathlib.Path(settings.data_dir) / "redis").start()
    running.on_stop(embedded.stop)
    running.redis_url = embedded.url
    # `gatekeeper load` and friends find the embedded Redis through this file.
    (embedded.data_dir / "redis.url").write_text(embedded.url + "\n")
    log.info("started embedded redis-server", extra={"url": embedded.url})
    store = Store(connect(embedded.url))
    if settings.demo_data:
        load_demo(store, profile)
    return store


def _mark_serving_when_ready(replica: Replica, servicer: health.HealthServicer, stopping: threading.Event) -> None:
    def watch() -> None:
        while not stopping.is_set():
            if replica.ready.wait(0.5):
                for name in ("", CHECK_SERVICE, REGISTRY_SERVICE):
                    servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
                log.info("serving", extra={"data_version": replica.state.version})
                return

    threading.Thread(target=watch, name="health-ready", daemon=True).start()


def start(settings: Settings, *, registry: CollectorRegistry = REGISTRY) -> Running:
    profile = load_profile(settings.profile)
    replica = Replica()
    running = Running(0, 0, settings.redis_url or "", replica)
    try:
        _start(settings, profile, registry, running)
    except BaseException:
        running.stop()
        raise
    return running


def _start(settings: Settings, profile: Profile, registry: CollectorRegistry, running: Running) -> None:
    store = _redis(settings, profile, running)
    replica = running.replica
    follower = Follower(replica, store)
    follower.start()
    running.on_stop(follower.stop)

    metrics = Metrics(registry)
    metrics.profile.info({"policy_id": profile.policy_id, "name": profile.name})
    metrics.watch_replica(
        version=lambda: replica.state.version,
        age=replica.age_seconds,
        people=lambda: len(replica.state.people),
        ready=lambda: float(replica.ready.is_set()),
    )
    metrics.watch_follower(follower.stats)
    health_servicer = new_health()
    stopping = threading.Event()
    running.on_stop(stopping.set)
    running.on_stop(lambda: health_servicer.enter_graceful_shutdown())
    _mark_serving_when_ready(replica, health_servicer, stopping)
    rpc_metrics = RpcMetrics(metrics)

    eligibility = EligibilityServicer(
        replica,
        profile,
        metrics,
        limits=CheckLimits(settings.max_lines, settings.min_version_wait_ms / 1000),
        decision_log=DecisionLog(settings.decision_log),
        today=today_in_china,
    )
    running.check_port = _serve(
        running,
        f"{settings.host}:{settings.port}",
        check_services(rpc_metrics.instrument(eligibility, CHECK_DESCRIPTOR), health_servicer),
        settings.workers,
    )
    if settings.effective_admin_port:
        registry_servicer = RegistryServicer(store, profile, clock=_now)
        running.admin_port = _serve(
            running,
            f"{settings.admin_host}:{settings.effective_admin_port}",
            admin_services(rpc_metrics.instrument(registry_servicer, REGISTRY_DESCRIPTOR), health_servicer),
            settings.workers,
        )

    if settings.metrics_port:
        http, _thread = metrics.serve_http(settings.metrics_port, settings.host)
        running.on_stop(http.shutdown)
    log.info(
        "gatekeeper started",
        extra={
            "check": f"{settings.host}:{running.check_port}",
            "admin": f"{settings.admin_host}:{running.admin_port}" if running.admin_port else "off",
            "metrics": f"{settings.host}:{settings.metrics_port}" if settings.metrics_port else "off",
            "redis": running.redis_url,
            "policy_id": profile.policy_id,
        },
    )


def _serve(running: Running, address: str, register: Callable[[grpc.Server], None], workers: int) -> int:
    """Start a gRPC server that stops with the process; returns its port."""
    server, port = create_server(address, register, workers=workers)
    server.start()
    running.on_stop(lambda: _stop_server(server))
    return port


def _stop_server(server: grpc.Server, grace: float = 5.0) -> None:
    server.stop(grace).wait(grace + 1)


def serve(settings: Settings) -> int:
    running = start(settings)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    log.info("stopping")
    running.stop()
    return 0
