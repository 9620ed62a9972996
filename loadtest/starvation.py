"""Starvation benchmark: normal-check throughput without and with 64 callers asking for an unreachable version.

    python -m loadtest.starvation               # 3 repetitions of 10 s per phase, ~2 min
    python -m loadtest.starvation --quick       # 1 repetition of 4 s per phase, ~30 s

Issue 7's figure: while 64 closed-loop clients send CheckClaim with ``min_data_version`` = 2**63
(no store will ever hold it), normal checks keep at least 0.9 x the throughput they have alone.
``--min-data-version 18446744073709551615`` sends issue 7's probe value, 2**64 - 1 (the largest uint64).

What it does (the same machinery and fairness rules as loadtest/bench.py):

1. generates the synthetic dataset (loadtest/dataset.py), starts a private redis-server and runs
   ``gatekeeper load``;
2. starts ``gatekeeper serve`` (profile national, defaults otherwise: 16 workers, 64 waiting
   checks, 500 ms min_version_wait) alone on the server core (``taskset -c 0``) and checks real
   answers (loadtest.bench.verify_gatekeeper);
3. per repetition, alternating which goes first, two phases of ``--seconds`` each, measured with
   h2load pinned to the load core (``taskset -c 1``, ``-D`` seconds, 8 connections x 8 streams,
   the 1-line claim):
   - **alone**: h2load only;
   - **with waiters**: h2load while this script (on the load core) runs 64 closed-loop clients,
     each on a connection of its own, each sending the unreachable-version claim again as soon as
     the previous one is answered; every answer must be REVIEW / STALE_DATA on every line;
4. every h2load run must return exactly the expected bytes (every request a real, complete answer);
5. prints a table: normal-check req/s per phase (median), the ratio with/alone per repetition
   (median, min-max), waiter answers per second, server CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2
from loadtest import dataset
from loadtest.bench import (
    BenchError,
    Children,
    Server,
    check_port_exclusive,
    core_busy_seconds,
    cpu_seconds,
    gatekeeper_command,
    load_dataset,
    markdown_table,
    parse_h2load,
    run_guarded,
    serve_env,
    verify_gatekeeper,
    wait_serving,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNREACHABLE = 2**63
TARGET_RATIO = 0.9
STALE = (enums_pb2.DECISION_REVIEW, enums_pb2.REASON_STALE_DATA)


@dataclass(frozen=True)
class Options:
    people: int
    seconds: float
    repeat: int
    waiters: int
    warmup: int
    server_cpu: int
    load_cpu: int
    clients: int
    streams: int
    workers: int
    keep: pathlib.Path | None
    min_data_version: int = UNREACHABLE


@dataclass
class Phase:
    name: str  # "alone" / "with waiters"
    repetition: int
    req_per_s: float
    requests: int
    server_cpu: float  # share of the server core the server used
    others_on_server_core: float
    waiter_answers: int = 0
    waiter_per_s: float = 0.0


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.starvation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition of 4 s per phase, 3,000 people")
    parser.add_argument("--people", type=int, help="people in the dataset [20000; quick 3000]")
    parser.add_argument("--seconds", type=float, help="seconds per measured phase [10; quick 4]")
    parser.add_argument("--repeat", type=int, help="repetitions of both phases [3; quick 1]")
    parser.add_argument("--waiters", type=int, default=64, help="closed-loop unreachable-version clients [64]")
    parser.add_argument("--warmup", type=int, default=3000, help="unrecorded requests after the server starts [3000]")
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to [0]")
    parser.add_argument(
        "--load-cpu", type=int, default=1, help="core h2load, redis, the waiters and this script use [1]"
    )
    parser.add_argument("--clients", type=int, default=8, help="h2load connections (-c) [8]")
    parser.add_argument("--streams", type=int, default=8, help="h2load streams per connection (-m) [8]")
    parser.add_argument("--workers", type=int, default=16, help="gatekeeper's GATEKEEPER_WORKERS [16]")
    parser.add_argument("--keep", type=pathlib.Path, help="keep dataset and server log in this directory")
    parser.add_argument(
        "--min-data-version",
        type=int,
        default=UNREACHABLE,
        help=f"the waiters' unreachable min_data_version, at most 2**64 - 1 [2**63 = {UNREACHABLE}]",
    )
    args = parser.parse_args(argv)
    if args.server_cpu == args.load_cpu:
        parser.error("--server-cpu and --load-cpu must differ")
    if not 0 < args.min_data_version < 2**64:
        parser.error("--min-data-version must be a uint64 above 0")
    return Options(
        people=args.people or (3000 if args.quick else 20_000),
        seconds=args.seconds or (4.0 if args.quick else 10.0),
        repeat=args.repeat or (1 if args.quick else 3),
        waiters=args.waiters,
        warmup=args.warmup,
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
        clients=args.clients,
        streams=args.streams,
        workers=args.workers,
        keep=args.keep,
        min_data_version=args.min_data_version,
    )


class Waiters:
    """``count`` closed-loop clients, each on its own connection, asking for a version no store holds."""

    def __init__(self, port: int, count: int, request: eligibility_pb2.CheckClaimRequest) -> None:
        # A local subchannel pool per channel: 64 connections, as 64 separate clients would open.
        self.channels = [
            grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(count)
        ]
        self.stubs = [eligibility_pb2_grpc.EligibilityServiceStub(c) for c in self.channels]
        self.request = request
        self.lock = threading.Lock()
        self.answers = 0
        self.wrong: list[str] = []
        self.in_flight = 0
        self.running = False
        self.idle = threading.Condition(self.lock)

    def start(self) -> None:
        self.running = True
        for stub in self.stubs:
            self._send(stub)

    def _send(self, stub: eligibility_pb2_grpc.EligibilityServiceStub) -> None:
        with self.lock:
            self.in_flight += 1
        future = stub.CheckClaim.future(self.request, timeout=30)
        future.add_done_callback(lambda done: self._answered(stub, done))

    def _answered(self, stub: eligibility_pb2_grpc.EligibilityServiceStub, done: grpc.Future[Any]) -> None:
        error = done.exception()
        with self.lock:
            self.in_flight -= 1
            self.answers += 1
            if error is not None:
                self.wrong.append(f"{error.code()}: {error.details()}")  # type: ignore[attr-defined]
            else:
                got = [(d.decision, d.reason) for d in done.result().decisions]
                if got != [STALE] * len(self.request.lines):
                    self.wrong.append(f"decisions {got}")
            again = self.running
            self.idle.notify_all()
        if again:
            self._send(stub)

    def count(self) -> int:
        with self.lock:
            return self.answers

    def stop(self, timeout: float = 60) -> None:
        with self.lock:
            self.running = False
            if not self.idle.wait_for(lambda: self.in_flight == 0, timeout):
                raise BenchError(f"{self.in_flight} unreachable-version checks still unanswered after {timeout}s")

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


class Starvation:
    def __init__(self, options: Options, workdir: pathlib.Path, children: Children) -> None:
        self.o = options
        self.workdir = workdir
        self.children = children
        self.phases: list[Phase] = []
        self.command = ""
        self.redis: EmbeddedRedis | None = None

    def prepare(self) -> tuple[Server, dataset.Claims, dict[str, bytes], pathlib.Path]:
        files, _people, claims = dataset.write_all(self.workdir, self.o.people)
        bodies = {claims.one_line.name: files.one_line.read_bytes(), claims.big.name: files.big.read_bytes()}
        with self.children.shimmed("redis-server", self.workdir / "bin"):
            self.redis = EmbeddedRedis(self.workdir / "redis", appendonly=False).start()
        summary = load_dataset(self.children, files.people, self.redis.url, timeout=900)
        print(f"starvation: {summary}", flush=True)
        port = free_port()
        env = serve_env(self.redis.url, port, self.workdir, GATEKEEPER_WORKERS=str(self.o.workers))
        pin = ["taskset", "-c", str(self.o.server_cpu)]
        log = self.workdir / "gatekeeper.log"
        process = self.children.start([*pin, *gatekeeper_command(), "serve"], env=env, log=log)
        server = Server("gatekeeper", process, port, log)
        wait_serving(server)
        check_port_exclusive(server)
        verify_gatekeeper(server, claims, bodies)
        return server, claims, bodies, files.one_line

    def h2load(self, server: Server, body: pathlib.Path, *, seconds: float | None, requests: int = 0) -> dict[str, Any]:
        amount = ["-D", f"{seconds:g}"] if seconds else ["-n", str(requests)]
        argv = [
            "taskset", "-c", str(self.o.load_cpu), "h2load", *amount,
            "-c", str(self.o.clients), "-m", str(self.o.streams),
            "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
            server.url,
        ]  # fmt: skip
        done = subprocess.run(self.children.wrap(argv), capture_output=True, text=True, timeout=(seconds or 60) + 120)
        if done.returncode != 0:
            raise BenchError(f"h2load failed ({done.returncode}): {shlex.join(argv)}\n{done.stdout}{done.stderr}")
        result = parse_h2load(done.stdout)
        frame = server.response_frames["claim-1"]
        if result["failed"] or result["status_2xx"] != result["succeeded"] or result["succeeded"] == 0:
            raise BenchError(f"h2load: {result['succeeded']} succeeded, {result['failed']} failed\n{done.stdout}")
        if result["data_bytes"] != result["succeeded"] * frame:
            raise BenchError(
                f"h2load: {result['data_bytes']} DATA bytes for {result['succeeded']} answers of {frame} bytes: "
                "some normal checks were gRPC errors or different"
            )
        if seconds:
            self.command = shlex.join(argv)
        return result

    def phase(self, server: Server, body: pathlib.Path, name: str, repetition: int, waiters: Waiters | None) -> Phase:
        if waiters is not None:
            waiters.start()
            deadline = time.monotonic() + 30
            while waiters.count() < self.o.waiters:  # every client has been answered once: steady state
                if time.monotonic() > deadline:
                    raise BenchError("the unreachable-version clients got no answers within 30 s")
                time.sleep(0.05)
        answered0 = waiters.count() if waiters else 0
        cpu0, core0, wall0 = cpu_seconds(server.process.pid), core_busy_seconds(self.o.server_cpu), time.monotonic()
        result = self.h2load(server, body, seconds=self.o.seconds)
        wall = time.monotonic() - wall0
        server_cpu = cpu_seconds(server.process.pid) - cpu0
        others = max(0.0, core_busy_seconds(self.o.server_cpu) - core0 - server_cpu) / wall
        answered = (waiters.count() - answered0) if waiters else 0
        if waiters is not None:
            waiters.stop()
            if waiters.wrong:
                raise BenchError(
                    f"{len(waiters.wrong)} unreachable-version answers were wrong, first {waiters.wrong[0]}"
                )
        phase = Phase(
            name,
            repetition,
            result["req_per_s"],
            result["succeeded"],
            server_cpu / wall,
            others,
            answered,
            answered / wall,
        )
        print(
            f"  [{repetition + 1}/{self.o.repeat}] {name:<13} {phase.req_per_s:>8,.0f} normal checks/s"
            f"  ({phase.requests} in {result['seconds']:.1f}s)  waiters answered {phase.waiter_per_s:6,.0f}/s"
            f"  server cpu {phase.server_cpu:4.0%}  others on server core {others:3.0%}",
            flush=True,
        )
        return phase

    def run(self) -> None:
        server, claims, _bodies, body = self.prepare()
        request = eligibility_pb2.CheckClaimRequest()
        request.CopyFrom(claims.one_line.request)
        request.claim_id, request.min_data_version = "STARVE-1", self.o.min_data_version
        waiters = Waiters(server.port, self.o.waiters, request)
        try:
            if self.o.warmup:
                self.h2load(server, body, seconds=None, requests=self.o.warmup)
            for repetition in range(self.o.repeat):
                order = (False, True) if repetition % 2 == 0 else (True, False)
                for with_waiters in order:
                    name = "with waiters" if with_waiters else "alone"
                    self.phases.append(self.phase(server, body, name, repetition, waiters if with_waiters else None))
        finally:
            waiters.close()
            self.children.stop(server.process)

    def table(self) -> str:
        alone = {p.repetition: p for p in self.phases if p.name == "alone"}
        loaded = {p.repetition: p for p in self.phases if p.name == "with waiters"}
        ratios = sorted(loaded[r].req_per_s / alone[r].req_per_s for r in alone if r in loaded)
        rows = [("phase", "normal checks/s", "ratio to alone", "waiter answers/s", "server cpu", "target")]
        for name, phases in (("alone", list(alone.values())), (f"{self.o.waiters} waiters", list(loaded.values()))):
            if not phases:
                continue
            ratio, target = "-", "-"
            if name != "alone" and ratios:
                median = statistics.median(ratios)
                ratio = f"{median:.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"
                target = f">= {TARGET_RATIO} x alone: {'met' if median >= TARGET_RATIO else 'NOT met'}"
            rows.append(
                (
                    name,
                    f"{statistics.median(p.req_per_s for p in phases):,.0f}",
                    ratio,
                    f"{statistics.median(p.waiter_per_s for p in phases):,.0f}",
                    f"{statistics.median(p.server_cpu for p in phases):.0%}",
                    target,
                )
            )
        return markdown_table(rows)


def machine_check(options: Options) -> None:
    for tool in ("h2load", "taskset", "redis-server"):
        if shutil.which(tool) is None:
            hint = {"h2load": "apt-get install -y nghttp2-client", "taskset": "apt-get install -y util-linux"}
            raise BenchError(f"{tool} is not installed ({hint.get(tool, 'scripts/bootstrap.sh')})")
    cpus = os.sched_getaffinity(0)
    for cpu in (options.server_cpu, options.load_cpu):
        if cpu not in cpus:
            raise BenchError(f"core {cpu} is not available to this process (have {sorted(cpus)})")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(argv)
    children = Children()
    workdir = options.keep or pathlib.Path(tempfile.mkdtemp(prefix="gk-starvation-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Starvation(options, workdir, children)
    started = time.monotonic()

    def body() -> None:
        machine_check(options)
        os.sched_setaffinity(0, {options.load_cpu})  # this script and its clients stay off the server core
        bench.run()

    status = run_guarded(
        "starvation",
        workdir,
        options.keep,
        children,
        body,
        lambda: bench.redis.stop() if bench.redis is not None else None,
        kept="logs",
    )
    if status is not None:
        return status
    print()
    print(f"command: python -m loadtest.starvation {shlex.join(argv)}".rstrip())
    print(
        f"server on core {options.server_cpu}, h2load and {options.waiters} closed-loop clients "
        f"(min_data_version = {options.min_data_version}) on core {options.load_cpu}; {options.repeat} repetition(s) x "
        f"{options.seconds:g} s per phase; {options.people} people; h2load: {bench.command}"
    )
    print(bench.table())
    others = max((p.others_on_server_core for p in bench.phases), default=0.0)
    print(f"other processes on the server core: at most {others:.0%}; elapsed {time.monotonic() - started:.0f}s")
    for phase in bench.phases:
        print("  " + repr(dataclasses.astuple(phase)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
