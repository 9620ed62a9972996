"""Prometheus metrics: go-grpc-prometheus names for the RPC layer, gatekeeper_* for the domain.

No practitioner, institution or claim codes ever appear in labels (unbounded cardinality and
personal data); the decision log carries those.
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cache.replica import FollowerStats
from domain.values import Decision, Reason
from service.tally import Row, Sink, TalliedHistogram, Tally

# grpc_code label values as Go's codes.Code.String() spells them, so go-grpc-prometheus
# dashboards and alert rules work unchanged.
GO_CODE_NAMES = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
# Causes of REVIEW/STALE_DATA answers (service/check/servicer.py); exported at zero from the start.
STALE_CAUSES = ("age", "not_loaded", "min_data_version", "profile_mismatch")
T = TypeVar("T")

# Why an admin call was refused (service/admin_guard.py); the series exist at zero so rates and alerts see 0.
AUTH_FAILURE_REASONS = ("no_credentials", "malformed_credentials", "unknown_token", "unknown_certificate", "role")


class _Gauge(Gauge):
    """A gauge whose ``set_function`` also works under multiprocess mode, where values live in files
    and a function is never called at scrape time: ``refresh`` writes the function's value."""

    _function: Callable[[], float] | None = None

    def set_function(self, f: Callable[[], float]) -> None:
        super().set_function(f)
        self._function = f

    def refresh(self) -> None:
        if self._function is not None:
            self.set(self._function())


class Metrics:
    """All metrics of one process, on one registry (tests pass a fresh one).

    ``multiprocess``: a worker of ``serve --processes N`` (prometheus-client multiprocess mode, values
    in files the supervisor's /metrics merges); its read-at-scrape-time figures are written by
    ``refresh``, which the worker calls periodically.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY, *, multiprocess: bool = False) -> None:
        self.registry = registry
        self.multiprocess = multiprocess
        self._refreshers: list[Callable[[], None]] = []
        # Hot-path counts (service/tally.py), flushed by the first collector of the registry, so before
        # any metric is read at a scrape.
        self.tally = Tally()
        registry.register(_FlushFirst(self.tally))
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", _RPC_LABELS, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, regardless of success or failure.",
            (*_RPC_LABELS, "grpc_code"),
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received_total",
            "RPC stream messages received on the server.",
            _RPC_LABELS,
            registry=registry,
        )
        self.sent = Counter(
            "grpc_server_msg_sent_total", "gRPC stream messages sent by the server.", _RPC_LABELS, registry=registry
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            _RPC_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.decisions = Counter(
            "gatekeeper_decisions_total", "Claim lines decided, by decision and reason.", ("decision", "reason"),
            registry=registry,
        )  # fmt: skip
        self.claim_lines = Histogram(
            "gatekeeper_claim_lines", "Lines per CheckClaim request.", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=registry,
        )  # fmt: skip
        # multiprocess_mode: how the workers' values of a gauge merge under `serve --processes N` (live*: a
        # dead worker's value is dropped); ignored by a single process.
        self.replica_version = _Gauge(
            "gatekeeper_replica_data_version", "Data version the replica holds.", registry=registry,
            multiprocess_mode="livemin",
        )  # fmt: skip
        self.replica_age = _Gauge(
            "gatekeeper_replica_age_seconds",
            "Seconds since the replica last confirmed it is current.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.replica_people = _Gauge(
            "gatekeeper_replica_people", "People in the replica.", registry=registry, multiprocess_mode="livemax"
        )
        self.replica_ready = _Gauge(
            "gatekeeper_replica_ready", "1 once the first snapshot is loaded.", registry=registry,
            multiprocess_mode="livemin",
        )  # fmt: skip
        self.stale_answers = Counter(
            "gatekeeper_stale_answers_total",
            "Checks answered REVIEW/STALE_DATA, by cause.",
            ("cause",),
            registry=registry,
        )
        for cause in STALE_CAUSES:
            self.stale_answers.labels(cause)
        self.profile = Info("gatekeeper_profile", "The active regional profile.", registry=registry)
        self.admin_auth_failures = Counter(
            "gatekeeper_admin_auth_failures_total",
            "Admin calls refused UNAUTHENTICATED or PERMISSION_DENIED, by reason.",
            ("reason",),
            registry=registry,
        )
        for reason in AUTH_FAILURE_REASONS:  # every series exists from the start, so rates and alerts see 0
            self.admin_auth_failures.labels(reason)
        self.waiting_checks = _Gauge(
            "gatekeeper_waiting_checks", "Checks waiting for their min_data_version now.", registry=registry,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.watchers = _Gauge(
            "gatekeeper_watchers", "WatchStatusChanges streams open.", registry=registry, multiprocess_mode="livesum"
        )
        self.bulk_streams = _Gauge(
            "gatekeeper_bulk_streams", "CheckClaims streams open.", registry=registry, multiprocess_mode="livesum"
        )
        self.watch_lag = _Gauge(
            "gatekeeper_watch_lag_versions",
            "Data versions the slowest watcher is behind the replica.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.undecodable = Counter(
            "gatekeeper_undecodable_requests_total",
            "Requests whose bytes were not a valid message, answered INVALID_ARGUMENT.",
            ("grpc_service", "grpc_method"),
            registry=registry,
        )
        self._decision_sinks: dict[tuple[Decision, Reason], Sink] = {}  # created on first use

    def count_decisions(self, counts: Iterable[tuple[tuple[Decision, Reason], int]]) -> None:
        """Count lines decided, given as ((decision, reason), lines) pairs (a pair may repeat)."""
        row = self.tally.row()
        sinks = self._decision_sinks
        for pair, n in counts:
            sink = sinks.get(pair)
            if sink is None:
                sink = sinks[pair] = self.decisions.labels(pair[0].name, pair[1].name).inc
            row[sink] = row.get(sink, 0) + n

    def claim_lines_observer(self) -> Callable[[int], None]:
        """``observe(lines)`` of gatekeeper_claim_lines through the tally."""
        histogram, tally = TalliedHistogram(self.claim_lines), self.tally

        def observe(lines: int) -> None:
            histogram.observe(tally.row(), lines)

        return observe

    def watch_replica(self, version: Callable[[], float], age: Callable[[], float], people: Callable[[], float],
                      ready: Callable[[], float]) -> None:  # fmt: skip
        """Read the replica's figures at scrape time instead of updating them on every change."""
        self.replica_version.set_function(version)
        self.replica_age.set_function(age)
        self.replica_people.set_function(people)
        self.replica_ready.set_function(ready)

    def watch_watchers(self, count: Callable[[], float], lag: Callable[[], float]) -> None:
        self.watchers.set_function(count)
        self.watch_lag.set_function(lag)

    def watch_follower(self, stats: FollowerStats) -> None:
        """Export the change-feed follower's counts (Redis errors, snapshots, feed lag) at scrape time."""
        if self.multiprocess:
            self._refreshers.append(_FollowerMetrics(stats, self.registry).refresh)
        else:
            self.registry.register(_FollowerCollector(stats))

    def refresh(self) -> None:
        """Write the figures that a single process reads at scrape time (multiprocess mode), and the
        tally's counts (both modes: a scrape flushes it too)."""
        self.tally.flush()
        if not self.multiprocess:
            return
        for gauge in (self.replica_version, self.replica_age, self.replica_people, self.replica_ready,
                      self.waiting_checks, self.watchers, self.bulk_streams, self.watch_lag):  # fmt: skip
            gauge.refresh()
        for refresh in self._refreshers:
            refresh()

    def serve_http(self, port: int, addr: str = "0.0.0.0") -> Any:
        return start_http_server(port, addr=addr, registry=self.registry)


class _FlushFirst(Collector):
    """Registered first, so collected first: the tally's counts are in the metrics read after it."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        self.tally.flush()
        return ()


class _FollowerCollector(Collector):
    def __init__(self, stats: FollowerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        s = self.stats
        yield CounterMetricFamily(
            "gatekeeper_redis_errors",
            "Failed syncs of the replica with Redis (down, timing out, failing over).",
            value=s.errors,
        )
        yield CounterMetricFamily(
            "gatekeeper_replica_snapshots",
            "Full snapshot loads of the replica: at start, after a load, a feed gap or Redis losing data.",
            value=s.snapshots,
        )
        yield GaugeMetricFamily(
            "gatekeeper_replica_feed_lag_seconds",
            "Seconds from the last applied change's commit in Redis to its application in this replica.",
            value=s.feed_lag_seconds,
        )
        yield CounterMetricFamily(
            "gatekeeper_replica_bad_entries",
            "Change-feed entries the replica could not apply (each answered by a fresh snapshot).",
            value=s.bad_entries,
        )
        yield GaugeMetricFamily(
            "gatekeeper_replica_in_doubt",
            "1 while the replica distrusts the store (emptied, replaced or behind): NOT_SERVING, writes refused.",
            value=float(s.in_doubt),
        )


class _FollowerMetrics:
    """The follower's figures as file-backed metrics (multiprocess mode), with the names and help of
    ``_FollowerCollector``: counters advance by what the follower counted since the last refresh."""

    def __init__(self, stats: FollowerStats, registry: CollectorRegistry) -> None:
        self.stats = stats
        self.counters = {
            name: Counter(f"gatekeeper_{name}", help_text, registry=registry)
            for name, help_text in (
                ("redis_errors", "Failed syncs of the replica with Redis (down, timing out, failing over)."),
                ("replica_snapshots", "Full snapshot loads of the replica: at start, after a load, a feed gap or "
                 "Redis losing data."),
                ("replica_bad_entries", "Change-feed entries the replica could not apply (each answered by a "
                 "fresh snapshot)."),
            )
        }  # fmt: skip
        self.counted = dict.fromkeys(self.counters, 0)
        self.feed_lag = Gauge(
            "gatekeeper_replica_feed_lag_seconds",
            "Seconds from the last applied change's commit in Redis to its application in this replica.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.in_doubt = Gauge(
            "gatekeeper_replica_in_doubt",
            "1 while the replica distrusts the store (emptied, replaced or behind): NOT_SERVING, writes refused.",
            registry=registry,
            multiprocess_mode="livemax",
        )

    def refresh(self) -> None:
        s = self.stats
        now = {"redis_errors": s.errors, "replica_snapshots": s.snapshots, "replica_bad_entries": s.bad_entries}
        for name, value in now.items():
            if value > self.counted[name]:
                self.counters[name].inc(value - self.counted[name])
                self.counted[name] = value
        self.feed_lag.set(s.feed_lag_seconds)
        self.in_doubt.set(float(s.in_doubt))


class _ProcessTreeCollector(Collector):
    """``process_resident_memory_bytes`` and ``process_cpu_seconds_total`` of a supervisor and its
    workers together (the dashboards' names; multiprocess mode has no process metrics of its own).
    Memory is the sum of proportional set sizes: pages the workers share are counted once."""

    def __init__(self, workers: Callable[[], Iterable[int]]) -> None:
        self.workers = workers

    def collect(self) -> Iterable[Metric]:
        pids = [os.getpid(), *self.workers()]
        reaped = os.times()
        cpu = reaped.user + reaped.system + reaped.children_user + reaped.children_system
        pss = 0.0
        for pid in pids[1:]:
            cpu += _cpu_seconds(pid)
        for pid in pids:
            pss += _pss_bytes(pid)
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory size in bytes.", value=pss)
        yield CounterMetricFamily("process_cpu_seconds", "Total user and system CPU time spent in seconds.", value=cpu)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # exited meanwhile: counted among the reaped children once the supervisor waits for it
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pss_bytes(pid: int) -> float:
    try:
        for line in pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return 0.0


def multiprocess_registry(
    profile_id: str, profile_name: str, workers: Callable[[], Iterable[int]]
) -> CollectorRegistry:
    """The registry of a supervisor's /metrics: every worker's values merged from their files, the
    profile (an Info, which multiprocess mode does not share) from the supervisor itself, and the
    memory and CPU of the whole process tree."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(_ProcessTreeCollector(workers))
    Info("gatekeeper_profile", "The active regional profile.", registry=registry).info(
        {"policy_id": profile_id, "name": profile_name}
    )
    return registry


def _final_code(context: Any) -> grpc.StatusCode:
    """The code a call ended with by raising: the one it aborted with, CANCELLED when the caller
    left (DEADLINE_EXCEEDED when its deadline passed), else UNKNOWN."""
    code: grpc.StatusCode | None = context.code()
    if code is not None:
        return code
    if context.is_active():
        return grpc.StatusCode.UNKNOWN
    remaining = context.time_remaining()
    return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED


def once_per_call(context: Any, end: Callable[[grpc.StatusCode], None]) -> Callable[[grpc.StatusCode | None], None]:
    """``end`` run once per call: by the handler when its stream ends, or when the call itself ends
    first. A stream whose caller cancels or leaves is dropped by grpc without being closed, so its
    generator's ``finally`` may run only when it is garbage-collected, much later; the call's end
    (``context.add_callback``) does not wait for that. Called without a code, the code is the call's."""
    pending = [True]

    def once(code: grpc.StatusCode | None = None) -> None:
        try:
            pending.pop()  # atomic: exactly one caller gets past it
        except IndexError:
            return
        end(_final_code(context) if code is None else code)

    context.add_callback(once)
    return once


class RpcMetrics:
    """go-grpc-prometheus compatible metrics for the methods of one servicer: unary, server-streaming
    (``server_stream``) and bidirectional (``bidi_stream``), each message counted as received or sent.

    The servicer's methods are wrapped once, before registration, with their label children
    bound: a server interceptor would rebuild a handler on every call and route every call
    through grpc's slower interceptor path.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._handled: dict[tuple[str, str, grpc.StatusCode], Any] = {}

    def instrument(self, servicer: T, service: ServiceDescriptor) -> T:
        for method in service.methods:
            behavior = getattr(servicer, method.name)
            if method.server_streaming:
                streaming = method.client_streaming
                wrapped = self._wrap_stream(behavior, service.full_name, method.name, client_streaming=streaming)
            elif method.client_streaming:
                raise TypeError(f"{method.full_name}: client-streaming methods are not instrumented yet")
            else:
                wrapped = self._wrap(behavior, service.full_name, method.name)
            setattr(servicer, method.name, wrapped)
        return servicer

    def _wrap_stream(
        self, behavior: Callable[[Any, Any], Any], service: str, method: str, *, client_streaming: bool
    ) -> Callable[[Any, Any], Any]:
        """A server stream (``server_stream``) or a bidirectional one (``bidi_stream``): each request
        counted as received as it is read, each response as sent; handled (with its code) and the
        handling time observed when the stream ends, however it ends."""
        m = self.metrics
        kind = "bidi_stream" if client_streaming else "server_stream"
        labels = (kind, service, method)
        started, received, sent = m.started.labels(*labels), m.received.labels(*labels), m.sent.labels(*labels)
        handling = m.handling.labels(*labels)
        clock = time.perf_counter
        tally, got, put = m.tally, received.inc, sent.inc  # messages counted through the tally (one thread a stream)

        def counted(requests: Iterator[Any], row: Row) -> Iterator[Any]:
            for request in requests:
                row[got] = row.get(got, 0) + 1
                yield request

        def wrapped(request: Any, context: Any) -> Iterator[Any]:
            started.inc()
            row = tally.row()
            if client_streaming:
                request = counted(request, row)
            else:
                received.inc()
            begin = clock()

            def end(code: grpc.StatusCode) -> None:
                handling.observe(clock() - begin)
                m.handled.labels(kind, service, method, GO_CODE_NAMES[code]).inc()

            ended = once_per_call(context, end)
            code = grpc.StatusCode.OK
            try:
                for message in behavior(request, context):
                    row[put] = row.get(put, 0) + 1
                    yield message
            except BaseException:
                code = _final_code(context)
                raise
            finally:
                ended(code)

        return wrapped

    def _wrap(self, behavior: Callable[[Any, Any], Any], service: str, method: str) -> Callable[[Any, Any], Any]:
        """A unary method, counted through the tally: one count at the start for started and received,
        one at a success for sent and handled OK, plus the handling time (failures count directly)."""
        m = self.metrics
        labels = ("unary", service, method)
        started, received, sent = m.started.labels(*labels), m.received.labels(*labels), m.sent.labels(*labels)
        handling = m.handling.labels(*labels)
        handled_ok = self._handled_child(service, method, grpc.StatusCode.OK)
        timed, tally = TalliedHistogram(handling), m.tally
        clock = time.perf_counter

        def began(n: float) -> None:
            started.inc(n)
            received.inc(n)

        def succeeded(n: float) -> None:
            sent.inc(n)
            handled_ok.inc(n)

        def wrapped(request: Any, context: Any) -> Any:
            row = tally.row()
            row[began] = row.get(began, 0) + 1
            begin = clock()
            try:
                response = behavior(request, context)
            except BaseException:
                handling.observe(clock() - begin)
                self._handled_child(service, method, context.code() or grpc.StatusCode.UNKNOWN).inc()
                raise
            row[succeeded] = row.get(succeeded, 0) + 1
            timed.observe(row, clock() - begin)
            return response

        return wrapped

    def _handled_child(self, service: str, method: str, code: grpc.StatusCode) -> Any:
        key = (service, method, code)
        child = self._handled.get(key)
        if child is None:
            child = self._handled[key] = self.metrics.handled.labels("unary", service, method, GO_CODE_NAMES[code])
        return child
