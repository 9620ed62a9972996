"""Figures for the live status feed (issue 11): a write to visible on 100 watchers, and check
throughput with 100 idle watchers connected against none.

    python -m loadtest.watchers              # 20,000 people, 3 x 2 throughput runs, 200 writes: ~3 min
    python -m loadtest.watchers --quick      # smoke run, ~40 s

What it does (loadtest/bench.py's machinery: its dataset, private redis-server, pinning,
start-up answer checks, quiet-core waits, contention retries and exact-bytes check of every
h2load run are reused as they are):

1. generates the dataset (loadtest/dataset.py, seed 7), starts a private redis-server and runs
   ``gatekeeper load``;
2. starts one ``gatekeeper serve`` alone on the server core (``taskset -c 0``; profile national,
   decision log off, 16 workers as bench.py, the admin port on, /metrics on a free port) and checks
   real answers (loadtest.bench.verify_gatekeeper);
3. **throughput**: per repetition, alternating which goes first, the 1-line CheckClaim exactly as
   bench.py's "gatekeeper, 1-line claim" (h2load ``-n N -c 8 -m 8`` pinned to the load core):
   - **no watchers**: h2load only (the server's ``gatekeeper_watchers`` gauge must read 0);
   - **N idle watchers**: this script (on the load core) first opens ``--watchers`` streams, each
     on a connection of its own, scoped to one hospital, reads each to its SNAPSHOT_END and
     checks the gauge reads N; nothing is written meanwhile; after the run every stream must still
     be open, then all are cancelled;
   the table gives the ratio with/without per repetition (median, min-max; target >= 0.95);
4. **write to visible**: with N watchers open, ``--writes`` admin RecordPoints on the admin port,
   one at a time, each suspending another normal doctor of that hospital (9 points, decided five
   days ago in China). The time runs from just before the call to the moment each watcher's reader
   thread has the CHANGE (SUSPENDED) for that person; a write is "visible on all" when the last of
   the N has it. The next write starts ``--gap`` s after that. Reported: p50/p99/max of "visible
   on all", of each single watcher's delay, and of the RecordPoints round trip itself.

The N readers are threads of this one Python process on the load core, so the slowest watcher's
delay includes handing 100 messages through one GIL.

Bounded (a total ``--budget``, timeouts on every wait); every child is stopped on exit, failure,
Ctrl-C and SIGTERM (with ``setpriv`` also if this script is SIGKILLed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import pathlib
import platform
import shlex
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import grpc

from cache.embedded import free_port
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2, registry_pb2, registry_pb2_grpc
from loadtest import bench as benchmod
from loadtest import dataset
from loadtest.bench import (
    Bench,
    BenchError,
    Children,
    Run,
    Server,
    _cpu_model,
    _first_line,
    check_port_exclusive,
    child_env,
    gatekeeper_command,
    markdown_table,
    run_guarded,
    verify_gatekeeper,
    wait_serving,
)
from loadtest.stack import wait_until
from service.convert import today_in_china

TARGET_RATIO = 0.95
SCOPE = dataset.HOSPITALS[0]
SNAPSHOT_END = eligibility_pb2.STATUS_CHANGE_KIND_SNAPSHOT_END
CHANGE = eligibility_pb2.STATUS_CHANGE_KIND_CHANGE


@dataclass(frozen=True)
class Options:
    people: int
    watchers: int
    writes: int
    gap: float
    requests: int
    repeat: int
    warmup: int
    budget: float
    server_cpu: int
    load_cpu: int
    keep: pathlib.Path | None
    py_spy: pathlib.Path | None


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.watchers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3,000 people, 10,000 requests, 2 repetitions, 40 writes")
    parser.add_argument("--people", type=int, help="people in the dataset [20000; quick 3000]")
    parser.add_argument("--watchers", type=int, default=100, help="WatchStatusChanges streams [100]")
    parser.add_argument("--writes", type=int, help="RecordPoints writes timed to visible [200; quick 40]")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between one write seen by all and the next")
    parser.add_argument("--requests", type=int, help="h2load requests per throughput run [30000; quick 10000]")
    parser.add_argument("--repeat", type=int, help="repetitions of both throughput phases [3; quick 2]")
    parser.add_argument("--warmup", type=int, default=3000, help="unrecorded requests after the server starts [3000]")
    parser.add_argument("--budget", type=float, default=1200, help="seconds the whole run may take [1200]")
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to [0]")
    parser.add_argument("--load-cpu", type=int, default=1, help="core h2load, redis, the watchers and this script use")
    parser.add_argument("--keep", type=pathlib.Path, help="keep dataset and server log in this directory")
    parser.add_argument(
        "--py-spy",
        type=pathlib.Path,
        metavar="DIR",
        help="sample the server with `py-spy record --gil --nonblocking` during each throughput run "
        "(collapsed stacks into DIR; the sampler runs on the load core and disturbs the figures)",
    )
    args = parser.parse_args(argv)
    if args.server_cpu == args.load_cpu:
        parser.error("--server-cpu and --load-cpu must differ")
    quick = args.quick
    options = Options(
        people=args.people or (3000 if quick else 20_000),
        watchers=args.watchers,
        writes=args.writes or (40 if quick else 200),
        gap=args.gap,
        requests=args.requests or (10_000 if quick else 30_000),
        repeat=args.repeat or (2 if quick else 3),
        warmup=args.warmup,
        budget=args.budget,
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
        keep=args.keep,
        py_spy=args.py_spy,
    )
    if min(options.people, options.watchers, options.writes, options.requests, options.repeat) < 1:
        parser.error("sizes must be positive")
    return options


class Watchers:
    """``count`` WatchStatusChanges streams, each on its own connection, each read by a thread of its own
    that notes when every CHANGE arrived (perf_counter) by practitioner code."""

    def __init__(self, port: int, count: int, scope: str) -> None:
        self.channels = [
            grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(count)
        ]
        request = eligibility_pb2.WatchStatusChangesRequest(institution_code=scope)
        self.calls = [eligibility_pb2_grpc.EligibilityServiceStub(c).WatchStatusChanges(request) for c in self.channels]
        self.lock = threading.Condition()
        self.ready = 0  # streams that have had their SNAPSHOT_END
        self.seen: list[dict[str, float]] = [{} for _ in range(count)]
        self.errors: list[str] = []
        self.closing = False
        self.threads = [
            threading.Thread(target=self._read, args=(i,), name=f"watcher-{i}", daemon=True) for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _read(self, i: int) -> None:
        seen = self.seen[i]
        try:
            for message in self.calls[i]:
                now = time.perf_counter()
                with self.lock:
                    if message.kind == SNAPSHOT_END:
                        self.ready += 1
                    elif message.kind == CHANGE and message.status == enums_pb2.PRACTITIONER_STATUS_SUSPENDED:
                        seen[message.practitioner_code] = now
                    self.lock.notify_all()
        except grpc.RpcError as error:
            with self.lock:
                if not self.closing:
                    self.errors.append(f"watcher {i}: {error.code()}: {error.details()}")  # type: ignore[attr-defined]
                self.lock.notify_all()
            return
        with self.lock:
            if not self.closing:
                self.errors.append(f"watcher {i}: the stream ended")
                self.lock.notify_all()

    def wait_ready(self, timeout: float) -> None:
        with self.lock:
            if not self.lock.wait_for(lambda: self.ready == len(self.calls) or self.errors, timeout):
                raise BenchError(f"only {self.ready} of {len(self.calls)} watchers had their snapshot in {timeout}s")
        self.check()

    def wait_seen(self, code: str, timeout: float) -> list[float]:
        with self.lock:
            if not self.lock.wait_for(lambda: all(code in s for s in self.seen) or self.errors, timeout):
                missing = sum(code not in s for s in self.seen)
                raise BenchError(f"{missing} of {len(self.seen)} watchers never saw {code}'s change in {timeout}s")
            self.check()
            return [s[code] for s in self.seen]

    def check(self) -> None:
        if self.errors:
            raise BenchError(f"{len(self.errors)} watcher(s) failed, first: {self.errors[0]}")

    def close(self) -> None:
        with self.lock:
            self.closing = True
        for call in self.calls:
            call.cancel()
        for thread in self.threads:
            thread.join(10)
        for channel in self.channels:
            channel.close()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


class WatcherBench(Bench):
    """bench.py's Bench with one long-lived gatekeeper (admin and metrics ports on) and watcher phases."""

    def __init__(self, options: Options, workdir: pathlib.Path, children: Children) -> None:
        base = benchmod.parse_args(["--people", str(options.people), "--requests", str(options.requests)])
        super().__init__(
            dataclasses.replace(
                base,
                repeat=options.repeat,
                warmup=options.warmup,
                budget=options.budget,
                server_cpu=options.server_cpu,
                load_cpu=options.load_cpu,
                quiet_wait=20,
                keep=options.keep,
            ),
            workdir,
            children,
        )
        self.w = options
        self.admin_port = 0
        self.metrics_port = 0
        self.phases: list[tuple[str, Run]] = []  # ("none" | "watchers", run)
        self.visible_all: list[float] = []  # per write: seconds until the last watcher had it
        self.visible_each: list[float] = []  # per (write, watcher)
        self.write_rtt: list[float] = []
        self.people: list[dataset.Person] = []

    def prepare(self) -> None:
        super().prepare()
        self.people = dataset.generate_people(self.w.people)  # the same people (same count and seed)

    def start_gatekeeper(self) -> Server:
        port, self.admin_port, self.metrics_port = free_port(), free_port(), free_port()
        env = child_env(
            GATEKEEPER_REDIS_URL=self.redis_url,
            GATEKEEPER_PROFILE="national",
            GATEKEEPER_HOST="127.0.0.1",
            GATEKEEPER_PORT=str(port),
            GATEKEEPER_ADMIN_PORT=str(self.admin_port),
            GATEKEEPER_METRICS_PORT=str(self.metrics_port),
            GATEKEEPER_DECISION_LOG="off",
            GATEKEEPER_WORKERS=str(self.o.workers),
            GATEKEEPER_MAX_WATCHERS=str(max(256, self.w.watchers)),
            GATEKEEPER_DATA_DIR=str(self.workdir / "data"),
        )
        log = self.workdir / "gatekeeper.log"
        pin = ["taskset", "-c", str(self.o.server_cpu)]
        process = self.children.start([*pin, *gatekeeper_command(), "serve"], env=env, log=log)
        server = Server("gatekeeper", process, port, log)
        wait_serving(server, timeout=min(180, self.remaining()))
        check_port_exclusive(server)
        assert self.claims is not None
        verify_gatekeeper(server, self.claims, self.bodies)
        return server

    def watcher_gauge(self) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as reply:
            for line in reply.read().decode().splitlines():
                if line.startswith("gatekeeper_watchers "):
                    return float(line.split()[1])
        raise BenchError("no gatekeeper_watchers gauge on /metrics")

    def expect_watchers(self, count: int) -> None:
        try:
            wait_until(lambda: self.watcher_gauge() == count, 15, f"gatekeeper_watchers did not read {count}")
        except TimeoutError as exc:
            raise BenchError(f"{exc} (reads {self.watcher_gauge():g})") from None

    def open_watchers(self, server: Server) -> Watchers:
        watchers = Watchers(server.port, self.w.watchers, SCOPE)
        try:
            watchers.wait_ready(min(60, self.remaining()))
            self.expect_watchers(self.w.watchers)
        except BaseException:
            watchers.close()
            raise
        return watchers

    @contextlib.contextmanager
    def sampled(self, server: Server, name: str) -> Iterator[None]:
        """With --py-spy: the server's GIL-holding stacks while the block runs (SIGINT makes py-spy write them)."""
        if self.w.py_spy is None:
            yield
            return
        self.w.py_spy.mkdir(parents=True, exist_ok=True)
        spy = pathlib.Path(sys.executable).parent / "py-spy"
        argv = [str(spy if spy.exists() else "py-spy"), "record", "--pid", str(server.process.pid), "--gil",
                "--nonblocking", "--rate", "200", "--format", "raw", "-o", str(self.w.py_spy / f"{name}.txt")]  # fmt: skip
        sampler = self.children.start(argv, env=child_env(), log=self.workdir / "py-spy.log")
        try:
            time.sleep(1)  # attached
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sampler.pid, signal.SIGINT)
            try:
                sampler.wait(30)
            finally:
                self.children.stop(sampler)

    def throughput(self, server: Server) -> None:
        scenario = next(s for s in self.scenarios if s.key == "gk-1")
        for repetition in range(self.o.repeat):
            order = ("none", "watchers") if repetition % 2 == 0 else ("watchers", "none")
            for phase in order:
                if phase == "none":
                    self.expect_watchers(0)
                    with self.sampled(server, f"none-{repetition}"):
                        self.phases.append((phase, self.measure(server, scenario, repetition)))
                    continue
                watchers = self.open_watchers(server)
                try:
                    print(f"  ({self.w.watchers} idle watchers open)", flush=True)
                    with self.sampled(server, f"watchers-{repetition}"):
                        self.phases.append((phase, self.measure(server, scenario, repetition)))
                    watchers.check()
                    self.expect_watchers(self.w.watchers)
                finally:
                    watchers.close()

    def writes(self, server: Server) -> None:
        assert self.claims is not None
        used = {
            line.practitioner_code
            for claim in (self.claims.one_line, self.claims.big, self.claims.probe, self.claims.probe_pos)
            for line in claim.request.lines
        }
        candidates = [
            p for p in self.people
            if p.kind == dataset.NORMAL and p.institutions == (SCOPE,) and "points" not in p.record and p.code not in used
        ]  # fmt: skip
        if len(candidates) < self.w.writes:
            raise BenchError(f"only {len(candidates)} normal doctors at {SCOPE} for {self.w.writes} writes")
        decided = today_in_china() - timedelta(days=5)
        watchers = self.open_watchers(server)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{self.admin_port}") as channel:
                admin = registry_pb2_grpc.RegistryServiceStub(channel)
                for i, person in enumerate(candidates[: self.w.writes]):
                    self.remaining()
                    request = registry_pb2.RecordPointsRequest(
                        decision_no=f"WATCHBENCH-{os.getpid()}-{i}", practitioner_code=person.code,
                        institution_code=SCOPE, points=9, responsibility=enums_pb2.RESPONSIBILITY_MAIN,
                        violation="loadtest.watchers",
                    )  # fmt: skip
                    request.decided_on.year, request.decided_on.month, request.decided_on.day = (
                        decided.year, decided.month, decided.day,
                    )  # fmt: skip
                    began = time.perf_counter()
                    admin.RecordPoints(request, timeout=10)
                    self.write_rtt.append(time.perf_counter() - began)
                    arrivals = watchers.wait_seen(person.code, 10)
                    self.visible_all.append(max(arrivals) - began)
                    self.visible_each.extend(t - began for t in arrivals)
                    if (i + 1) % 50 == 0:
                        print(
                            f"  {i + 1} writes: visible on all {self.w.watchers} p50 "
                            f"{statistics.median(self.visible_all) * 1000:.1f} ms",
                            flush=True,
                        )
                    time.sleep(self.w.gap)
        finally:
            watchers.close()

    def run(self) -> None:
        server = self.start_gatekeeper()
        try:
            if self.o.warmup:
                self.h2load(server, "claim-1", self.o.warmup, self.o.clients, self.o.streams)
            self.throughput(server)
            self.writes(server)
        finally:
            self.children.stop(server.process)

    # --- report -----------------------------------------------------------------------------------

    def tables(self) -> str:
        out = []
        none = {run.repetition: run for phase, run in self.phases if phase == "none"}
        loaded = {run.repetition: run for phase, run in self.phases if phase == "watchers"}
        ratios = sorted(loaded[r].req_per_s / none[r].req_per_s for r in none if r in loaded)
        rows = [("1-line CheckClaim", "req/s", "ratio to none", "mean lat", "max lat", "server cpu", "target")]
        for name, runs in (("no watchers", list(none.values())), (f"{self.w.watchers} idle watchers", list(loaded.values()))):  # fmt: skip
            if not runs:
                continue
            ratio = target = "-"
            if name != "no watchers" and ratios:
                median = statistics.median(ratios)
                ratio = f"{median:.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"
                target = f">= {TARGET_RATIO} x none: {'met' if median >= TARGET_RATIO else 'NOT met'}"
            rows.append(
                (
                    name,
                    f"{statistics.median(r.req_per_s for r in runs):,.0f}",
                    ratio,
                    f"{statistics.median(r.mean_ms for r in runs):.2f} ms",
                    f"{statistics.median(r.max_ms for r in runs):.1f} ms",
                    f"{statistics.median(r.server_cpu for r in runs):.0%}",
                    target,
                )
            )
        out.append(markdown_table(rows))
        if self.visible_all:
            rows = [("write to visible", "n", "p50", "p99", "max")]
            for name, values in (
                (f"on all {self.w.watchers} watchers", self.visible_all),
                ("on one watcher", self.visible_each),
                ("RecordPoints round trip", self.write_rtt),
            ):
                rows.append(
                    (
                        name,
                        f"{len(values):,}",
                        f"{percentile(values, 50) * 1000:.1f} ms",
                        f"{percentile(values, 99) * 1000:.1f} ms",
                        f"{max(values) * 1000:.1f} ms",
                    )
                )
            out.append(markdown_table(rows))
        return "\n\n".join(out)


def machine_line() -> str:
    return (
        f"{platform.node()}: {_cpu_model()}, {os.cpu_count()} cores; {platform.system()} {platform.release()}; "
        f"python {platform.python_version()}, grpcio {grpc.__version__}, {_first_line(['h2load', '--version'])}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(argv)
    children = Children()
    workdir = options.keep or pathlib.Path(tempfile.mkdtemp(prefix="gk-watchers-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = WatcherBench(options, workdir, children)
    print(f"watchers: {machine_line()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)

    def body() -> None:
        benchmod.machine_check(bench.o)
        os.sched_setaffinity(0, {options.load_cpu})  # this script, its watchers and redis stay off the server core
        bench.prepare()
        bench.run()

    status = run_guarded("watchers", workdir, options.keep, children, body, bench.close, kept="logs")
    if status is not None:
        return status
    o = bench.o
    print()
    print(f"command: python -m loadtest.watchers {shlex.join(argv)}".rstrip())
    print(f"machine: {machine_line()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; elapsed {time.monotonic() - bench.started:.0f}s")
    print(f"h2load: {bench.commands.get('gk-1', '-')}")
    print(
        f"server on core {o.server_cpu}; h2load, redis and the {options.watchers} watcher streams (one connection "
        f"and one reader thread each, scoped to {SCOPE}) on core {o.load_cpu}; {o.people} people; "
        f"{o.repeat} repetition(s) x {o.requests} requests per phase; {options.writes} writes, {options.gap:g} s apart"
    )
    print(bench.tables())
    spoiled = sum(run.contended for _phase, run in bench.phases)
    other = max((run.core_other for _phase, run in bench.phases), default=0.0)
    print(
        f"other processes on the server core during a recorded run: at most {other:.0%}"
        + (f"; WARNING: {spoiled} of {len(bench.phases)} runs contended" if spoiled else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
