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
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry

from cache.embedded import EmbeddedRedis
from cache.replica import Follower, Replica
from cache.store import Store, connect
from service.access import AccessList, load_access
from service.admin_guard import AdminGuard
from service.check.decision_log import DecisionLog
from service.check.servicer import CheckLimits, EligibilityServicer
from service.check.stream import NameStreamPositions
from service.check.validation import Codes
from service.config import Settings
from service.convert import today_in_china
from service.health import HealthReporter
from service.metrics import Metrics, RpcMetrics
from service.pool import Pool
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
from service.tls import ReloadingCredentials, TlsFiles
from service.tolerant import RejectUndecodable
from service.watch.hub import WatchHub
from service.watch.stream import Watches

log = logging.getLogger("gatekeeper")
DEMO_DATA = pathlib.Path(__file__).parent / "demo" / "people.jsonl"


@dataclass
class Running:
    check_port: int
    admin_port: int  # 0: off
    redis_url: str
    replica: Replica
    reload_tls: Callable[[], None] = lambda: None  # SIGHUP: take the certificate files again
    begin_shutdown: Callable[[], None] = lambda: None  # NOT_SERVING and bounded waits cut short
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def on_stop(self, stop: Callable[[], None]) -> None:
        """Run ``stop`` when the process stops; the last registered runs first."""
        self._stops.append(stop)

    def stop(self) -> None:
        self.begin_shutdown()
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:  # keep stopping the rest
                log.exception("error while stopping")
        self._stops.clear()


def load_demo(store: Store, profile: Profile) -> None:
    if store.version() == 0:
        dataset = read_dataset(DEMO_DATA, profile)
        version = store.swap(
            dataset.ledgers, dataset.projections, dataset.docs, profile.policy_id, _now(), profile.rules_fingerprint
        )
        log.info("loaded demo data", extra={"people": len(dataset), "data_version": version})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def open_store(settings: Settings, profile: Profile, running: Running) -> Store:
    """The configured Redis, or the embedded one (stopped with ``running``, demo data loaded)."""
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


@dataclass(frozen=True, slots=True)
class Inherited:
    """What a worker of ``serve --processes N`` (service/processes.py) gets from its supervisor: the
    replica primed with the startup snapshot (shared copy-on-write), the Redis in use, and the ports
    every worker listens on with SO_REUSEPORT. Metrics go to the supervisor's /metrics (multiprocess)."""

    replica: Replica
    redis_url: str
    check_port: int
    admin_port: int  # 0: off


def start(settings: Settings, *, registry: CollectorRegistry = REGISTRY, inherited: Inherited | None = None) -> Running:
    profile = load_profile(settings.profile)
    replica = inherited.replica if inherited else Replica()
    running = Running(0, 0, settings.redis_url or "", replica)
    try:
        _start(settings, profile, registry, running, inherited)
    except BaseException:
        running.stop()
        raise
    return running


def _start(
    settings: Settings, profile: Profile, registry: CollectorRegistry, running: Running, inherited: Inherited | None
) -> None:
    if inherited is None:
        store = open_store(settings, profile, running)
        ports = Ports(settings.port, settings.effective_admin_port, reuse=False)
    else:  # a connection of its own: a forked worker shares no socket with its supervisor
        store = Store(connect(inherited.redis_url))
        running.redis_url = inherited.redis_url
        ports = Ports(inherited.check_port, inherited.admin_port, reuse=True)
    replica = running.replica
    follower = Follower(replica, store)  # on a primed replica: follows on from its snapshot's place in the feed
    follower.start()
    running.on_stop(follower.stop)

    metrics = Metrics(registry, multiprocess=inherited is not None)
    running.on_stop(metrics.refresh)  # runs after the servers have stopped: the last calls' counts too
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
    reporter = HealthReporter(health_servicer, ("", CHECK_SERVICE, REGISTRY_SERVICE), replica, profile)
    reporter.start(stopping)
    if metrics.multiprocess:
        _refresh_periodically(metrics, stopping)
    running.begin_shutdown = lambda: _begin_shutdown(stopping, health_servicer, replica)
    rpc_metrics = RpcMetrics(metrics)

    decision_log = DecisionLog(settings.decision_log, settings.decision_log_file)
    running.on_stop(decision_log.close)
    limits = CheckLimits(settings.max_lines, settings.min_version_wait_ms / 1000, settings.max_waiting_checks)
    hub = WatchHub()
    replica.on_change(hub.published)
    metrics.watch_watchers(count=hub.watchers, lag=hub.max_lag)
    # Waiting checks, watchers and bulk streams lend their thread's place while they block, so they
    # never take the threads that answer the rest (service/pool.py).
    spare = settings.max_waiting_checks + settings.max_watchers + limits.max_streams
    check_pool = Pool(settings.workers, settings.workers + spare)
    watches = Watches(replica, hub, Codes.of(profile), today_in_china, max_watchers=settings.max_watchers,
                      lend=check_pool.lend)  # fmt: skip
    eligibility = EligibilityServicer(
        replica,
        profile,
        metrics,
        limits=limits,
        decision_log=decision_log,
        today=today_in_china,
        watches=watches,
        lend=check_pool.lend,
    )
    undecodable = RejectUndecodable(metrics.undecodable)
    positions = NameStreamPositions(metrics.undecodable)  # a stream's bad bytes are named requests[N]
    guarded = positions.protect(undecodable.protect(eligibility, CHECK_DESCRIPTOR), CHECK_DESCRIPTOR)
    check = rpc_metrics.instrument(guarded, CHECK_DESCRIPTOR)
    tls = _tls(settings, running)
    running.check_port = _serve(
        running,
        f"{settings.host}:{ports.check}",
        check_services(check, health_servicer),
        ServerShape(settings.workers, settings.max_concurrent_rpcs, check_pool),
        tls.check if tls else None,
        reuse_port=ports.reuse,
    )
    if ports.admin:
        guard = AdminGuard(_access(settings), metrics.admin_auth_failures)
        writes = RegistryServicer(
            store,
            profile,
            clock=_now,
            seen=lambda: (replica.state.identity, replica.state.version),
            replicas=settings.write_replicas,
        )
        protected = guard.protect(undecodable.protect(writes, REGISTRY_DESCRIPTOR), REGISTRY_DESCRIPTOR)
        running.admin_port = _serve(
            running,
            f"{settings.admin_host}:{ports.admin}",
            admin_services(rpc_metrics.instrument(protected, REGISTRY_DESCRIPTOR), health_servicer),
            ServerShape(settings.workers, settings.max_concurrent_rpcs),
            tls.admin if tls else None,
            reuse_port=ports.reuse,
        )

    if settings.metrics_port and inherited is None:  # a worker's metrics are served by its supervisor
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


@dataclass(frozen=True, slots=True)
class Ports:
    check: int
    admin: int  # 0: off
    reuse: bool  # SO_REUSEPORT: the workers of one supervisor share them


def _refresh_periodically(metrics: Metrics, stopping: threading.Event, interval: float = 0.25) -> None:
    """Write the figures a single process reads at scrape time into the shared metric files."""

    def run() -> None:
        while not stopping.is_set():
            metrics.refresh()
            stopping.wait(interval)

    threading.Thread(target=run, name="metrics-refresh", daemon=True).start()


@dataclass(frozen=True, slots=True)
class ServerShape:
    threads: int
    max_concurrent_rpcs: int
    pool: Pool | None = None  # None: ``threads`` threads


@dataclass(frozen=True, slots=True)
class PortCredentials:
    check: ReloadingCredentials
    admin: ReloadingCredentials


def _tls(settings: Settings, running: Running) -> PortCredentials | None:
    if not (settings.tls_cert and settings.tls_key):
        return None
    ca = pathlib.Path(settings.tls_client_ca) if settings.tls_client_ca else None
    files = TlsFiles(pathlib.Path(settings.tls_cert), pathlib.Path(settings.tls_key), ca)
    creds = PortCredentials(ReloadingCredentials(files, mutual=False), ReloadingCredentials(files, mutual=True))

    def reload() -> None:
        creds.check.request_reload()
        creds.admin.request_reload()

    running.reload_tls = reload
    return creds


def _access(settings: Settings) -> AccessList | None:
    if settings.admin_access:
        return load_access(settings.admin_access)
    # Only reachable on loopback (Settings refuses otherwise): the embedded default's local operator.
    log.warning("admin port open to every local caller: no access file (set GATEKEEPER_ADMIN_ACCESS)")
    return None


def _serve(
    running: Running,
    address: str,
    register: Callable[[grpc.Server], None],
    shape: ServerShape,
    tls: ReloadingCredentials | None,
    *,
    reuse_port: bool,
) -> int:
    """Start a gRPC server that stops with the process; returns its port."""
    server, port = create_server(
        address,
        register,
        workers=shape.threads,
        pool=shape.pool,
        credentials=tls.server_credentials() if tls else None,
        max_concurrent_rpcs=shape.max_concurrent_rpcs,
        reuse_port=reuse_port,
    )
    server.start()
    running.on_stop(lambda: _stop_server(server))
    return port


def _stop_server(server: grpc.Server, grace: float = 5.0) -> None:
    server.stop(grace).wait(grace + 1)


def _begin_shutdown(stopping: threading.Event, health_servicer: Any, replica: Replica) -> None:
    """First of a stop: say NOT_SERVING (load balancers stop sending) and end every bounded wait
    (its check answers STALE_DATA now), so draining takes the grace period at most."""
    stopping.set()  # the reporter must not turn it back to SERVING
    health_servicer.enter_graceful_shutdown()
    replica.close_waits()


def serve(settings: Settings) -> int:
    return run_until_signalled(start(settings))


def run_until_signalled(running: Running) -> int:
    """Serve until SIGTERM or SIGINT, then drain; SIGHUP takes the certificate files again."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    signal.signal(signal.SIGHUP, lambda *_: running.reload_tls())
    done.wait()
    log.info("stopping")
    running.stop()
    return 0
