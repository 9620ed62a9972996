"""The bulk stream's figure: lines/s on one core for 10-line claims, over one CheckClaims stream vs unary.

    python -m loadtest.bulk              # 100k people, 3 repetitions, ~3 min on an idle machine
    python -m loadtest.bulk --quick      # smoke run

Issue 10: "lines/s on one core for 10-line claims over one stream >= 2 x the unary figure". What it does
(the machinery and fairness rules of loadtest/bench.py):

1. generates the synthetic dataset (loadtest/dataset.py) and ``--claims`` distinct 10-line claims at one
   hospital (mixed outcomes, each line's expected decision known); two h2load bodies: ``unary.bin``, the
   first claim as one gRPC frame, and ``stream.bin``, every claim as consecutive gRPC frames (1 flag byte,
   4-byte big-endian length, the message) - h2load POSTs it as one CheckClaims stream, and the server
   answers one message per claim;
2. starts a private redis-server and loads the dataset with ``gatekeeper load``;
3. per repetition, a fresh ``gatekeeper serve`` pinned to the server core (``taskset -c 0``), checked
   before measuring: every claim of the stream body over a real gRPC CheckClaims stream, every line
   against the generator's expectation and each response equal to CheckClaim's; warmed up; then both
   scenarios measured with h2load on the load core (``taskset -c 1``), alternating which goes first:
   unary CheckClaim of the 10-line claim (``-c 8 -m 8``, the unary figure at its best concurrency) and
   CheckClaims streams of all the claims, one stream at a time (``-c 1 -m 1``);
4. every h2load run must return exactly the expected bytes (h2load sees HTTP statuses only; a gRPC error
   is an HTTP 200 without DATA): DATA bytes = requests x the response frames of one request;
5. the same two runs against a bare grpcio echo server (``--serve-echo``: the request bytes back, unary
   and bidi, no parsing) on the same core: what the transport alone allows for these bodies;
6. prints a table of medians: req/s, claims/s, lines/s (= claims/s x 10), the ratio of stream to unary
   lines/s of the same repetition and server, the server's share of its core.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2
from loadtest import dataset
from loadtest.bench import (
    BenchError,
    Children,
    Server,
    _children_cpu,
    check_port_exclusive,
    child_env,
    core_busy_seconds,
    cpu_seconds,
    gatekeeper_command,
    load_dataset,
    machine_check,
    markdown_table,
    parse_h2load,
    run_guarded,
    serve_env,
    wait_serving,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
SERVICE = "gatekeeper.v1.EligibilityService"
LINES = 10
TARGET = 2.0  # stream lines/s >= 2 x unary lines/s


@dataclass(frozen=True)
class Options:
    people: int
    claims: int  # claims per stream
    unary_requests: int  # per unary run
    stream_requests: int  # streams per stream run
    warmup: float  # share of each run's requests sent once, unrecorded, after the server starts
    repeat: int
    server_cpu: int
    load_cpu: int
    clients: int
    streams: int
    workers: int
    max_other: float
    keep: pathlib.Path | None
    echo: bool


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bulk", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3,000 people, small runs, 2 repetitions")
    parser.add_argument("--people", type=int, help="people in the dataset [100000; quick 3000]")
    parser.add_argument("--claims", type=int, help="10-line claims per stream [1000; quick 200]")
    parser.add_argument("--unary-requests", type=int, help="requests per unary run [12000; quick 2000]")
    parser.add_argument("--stream-requests", type=int, help="streams per stream run [25; quick 5]")
    parser.add_argument("--repeat", type=int, help="repetitions, each with a fresh server [3; quick 2]")
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to [0]")
    parser.add_argument("--load-cpu", type=int, default=1, help="core h2load, redis and this script use [1]")
    parser.add_argument("--clients", type=int, default=8, help="h2load connections for the unary runs (-c) [8]")
    parser.add_argument("--streams", type=int, default=8, help="h2load streams per connection, unary runs (-m) [8]")
    parser.add_argument("--workers", type=int, default=16, help="gatekeeper's GATEKEEPER_WORKERS [16]")
    parser.add_argument("--max-other", type=float, default=0.10, help="others' share of the server core [0.10]")
    parser.add_argument("--keep", type=pathlib.Path, help="keep dataset, bodies and server logs in this directory")
    parser.add_argument("--no-echo", action="store_true", help="skip the bare grpcio echo reference")
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_echo is not None:
        raise SystemExit(serve_echo(args.serve_echo, args.workers))
    quick = args.quick

    def pick(value: int | None, full: int, small: int) -> int:
        return value if value is not None else (small if quick else full)

    if args.server_cpu == args.load_cpu:
        parser.error("--server-cpu and --load-cpu must differ")
    return Options(
        people=pick(args.people, 100_000, 3000),
        claims=pick(args.claims, 1000, 200),
        unary_requests=pick(args.unary_requests, 12_000, 2000),
        stream_requests=pick(args.stream_requests, 25, 5),
        warmup=0.2,
        repeat=pick(args.repeat, 3, 2),
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
        clients=args.clients,
        streams=args.streams,
        workers=args.workers,
        max_other=args.max_other,
        keep=args.keep,
        echo=not args.no_echo,
    )


# --- The reference: bare grpcio, the bytes back -----------------------------------------------------


def serve_echo(port: int, workers: int) -> int:
    """A bare grpcio server (sync, as gatekeeper) answering each message with its own bytes: unary at
    CheckClaim, bidi at CheckClaims (one answer per message, in order). Runs until SIGTERM."""

    def unary(request: bytes, _context: grpc.ServicerContext) -> bytes:
        return request

    def bidi(requests: Iterator[bytes], _context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from requests

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="echo"))
    handlers = {
        "CheckClaim": grpc.unary_unary_rpc_method_handler(unary),
        "CheckClaims": grpc.stream_stream_rpc_method_handler(bidi),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"could not bind 127.0.0.1:{port}")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    done.wait()
    server.stop(grace=1).wait(2)
    return 0


# --- Claims and bodies ---------------------------------------------------------------------------


def settlement_claims(
    people: Sequence[dataset.Person], count: int, seed: int = dataset.DEFAULT_SEED
) -> list[dataset.Claim]:
    """``count`` distinct 10-line claims at one hospital: its staff as they come (some suspended or
    terminated), a few emergencies, a line of someone unknown now and then."""
    rng = random.Random(seed * 31 + 10)
    hospital = dataset.HOSPITALS[0]
    staff = [p for p in people if hospital in p.institutions]
    claims = []
    for n in range(count):
        builder = dataset.ClaimBuilder(f"settle-{n}", hospital, f"SETTLE-{n:06d}")
        for _ in range(LINES):
            person = rng.choice(staff) if rng.random() > 0.01 else None
            care = "emergency" if rng.random() < 0.03 else rng.choice(("routine", "unspecified"))
            builder.add(person, dataset.LAST_SERVICE_DAY - timedelta(days=rng.randrange(6)), care)
        claims.append(builder.build())
    return claims


def verify_echo(server: Server, claims: Sequence[dataset.Claim], timeout: float = 30) -> None:
    """The echo answers every message of a stream with its bytes, in order (retried while it starts)."""
    sent = [c.request.SerializeToString() for c in claims]
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.stream_stream(f"/{SERVICE}/CheckClaims")
        while True:
            try:
                answers = list(call(iter(sent), timeout=10))
                break
            except grpc.RpcError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"echo server on port {server.port} did not answer; see {server.log}") from None
                time.sleep(0.1)
    if answers != sent:
        raise BenchError("the echo server answered other bytes than it was sent")


def _decisions(response: eligibility_pb2.CheckClaimResponse) -> list[tuple[str, str]]:
    return [(enums_pb2.Decision.Name(d.decision), enums_pb2.Reason.Name(d.reason)) for d in response.decisions]


def verify(server: Server, claims: Sequence[dataset.Claim]) -> tuple[int, int]:
    """Every claim over a real CheckClaims stream: decided as expected, each response equal to CheckClaim's.
    Returns the DATA bytes of one unary answer (the first claim) and of one whole stream."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
        answers = list(stub.CheckClaims(iter([c.request for c in claims]), timeout=120))
        if len(answers) != len(claims):
            raise BenchError(f"CheckClaims answered {len(answers)} of {len(claims)} claims")
        for claim, answer in zip(claims, answers, strict=True):
            if answer.claim_id != claim.request.claim_id or _decisions(answer) != list(claim.expected):
                raise BenchError(f"{claim.name}: {_decisions(answer)} != expected {list(claim.expected)}")
        for claim, answer in list(zip(claims, answers, strict=True))[:: max(1, len(claims) // 50)]:
            if stub.CheckClaim(claim.request, timeout=10) != answer:
                raise BenchError(f"{claim.name}: CheckClaims and CheckClaim answered differently")
        if not answers[0].policy_id.startswith("national@") or answers[0].data_version < 1:
            raise BenchError(f"unexpected policy/data version {answers[0].policy_id} {answers[0].data_version}")
    unary = len(dataset.grpc_frame(answers[0].SerializeToString()))
    whole = sum(len(dataset.grpc_frame(a.SerializeToString())) for a in answers)
    return unary, whole


# --- Runs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str  # unary / stream
    title: str
    method: str
    body: str
    claims: int  # claims per h2load request
    clients: int
    streams: int
    requests: int


@dataclass
class Run:
    server: str  # gatekeeper / echo
    scenario: str
    repetition: int
    req_per_s: float
    claims_per_s: float
    lines_per_s: float
    seconds: float
    server_cpu: float
    others_on_server_core: float
    load_cpu: float


class Bulk:
    def __init__(self, options: Options, workdir: pathlib.Path, children: Children) -> None:
        self.o = options
        self.workdir = workdir
        self.children = children
        self.redis: EmbeddedRedis | None = None
        self.claims: list[dataset.Claim] = []
        self.bodies: dict[str, pathlib.Path] = {}
        self.runs: list[Run] = []
        self.commands: dict[str, str] = {}
        o = options
        self.scenarios = [
            Scenario("unary", f"CheckClaim, {LINES}-line claim (-c {o.clients} -m {o.streams})", "CheckClaim",
                     "unary", 1, o.clients, o.streams, o.unary_requests),
            Scenario("stream", f"CheckClaims, {o.claims} x {LINES}-line claims per stream, one stream at a time",
                     "CheckClaims", "stream", o.claims, 1, 1, o.stream_requests),
        ]  # fmt: skip

    def prepare(self) -> None:
        people = dataset.generate_people(self.o.people)
        dataset.write_dataset(people, self.workdir / "people.jsonl")
        self.claims = settlement_claims(people, self.o.claims)
        self.bodies = {"unary": self.workdir / "unary.bin", "stream": self.workdir / "stream.bin"}
        self.bodies["unary"].write_bytes(self.claims[0].body())
        self.bodies["stream"].write_bytes(b"".join(c.body() for c in self.claims))
        print(
            f"bulk: {len(people)} people; {len(self.claims)} claims of {LINES} lines; bodies "
            f"{self.bodies['unary'].stat().st_size} B (unary), {self.bodies['stream'].stat().st_size} B (stream)",
            flush=True,
        )
        with self.children.shimmed("redis-server", self.workdir / "bin"):
            self.redis = EmbeddedRedis(self.workdir / "redis", appendonly=False).start()
        summary = load_dataset(self.children, self.workdir / "people.jsonl", self.redis.url, timeout=900)
        print(f"bulk: {summary}", flush=True)

    def start_server(self, kind: str, repetition: int) -> Server:
        port = free_port()
        pin = ["taskset", "-c", str(self.o.server_cpu)]
        log = self.workdir / f"{kind}-{repetition}.log"
        if kind == "echo":
            argv = [*pin, sys.executable, "-m", "loadtest.bulk", "--serve-echo", str(port)]
            process = self.children.start([*argv, "--workers", str(self.o.workers)], env=child_env(), log=log)
            server = Server(kind, process, port, log)
            verify_echo(server, self.claims)
            check_port_exclusive(server)
            server.response_frames["unary"] = self.bodies["unary"].stat().st_size
            server.response_frames["stream"] = self.bodies["stream"].stat().st_size
            return server
        assert self.redis is not None
        env = serve_env(self.redis.url, port, self.workdir, GATEKEEPER_WORKERS=str(self.o.workers))
        process = self.children.start([*pin, *gatekeeper_command(), "serve"], env=env, log=log)
        server = Server("gatekeeper", process, port, log)
        wait_serving(server)
        check_port_exclusive(server)
        server.response_frames["unary"], server.response_frames["stream"] = verify(server, self.claims)
        return server

    def h2load(self, server: Server, scenario: Scenario, requests: int) -> tuple[dict[str, Any], float, float]:
        """One h2load run, checked byte for byte; returns its figures, h2load's CPU share and wall time."""
        argv = [
            "taskset", "-c", str(self.o.load_cpu), "h2load",
            "-n", str(requests), "-c", str(scenario.clients), "-m", str(scenario.streams),
            "-d", str(self.bodies[scenario.body]),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            f"http://127.0.0.1:{server.port}/{SERVICE}/{scenario.method}",
        ]  # fmt: skip
        cpu0, wall0 = _children_cpu(), time.monotonic()
        done = subprocess.run(self.children.wrap(argv), capture_output=True, text=True, timeout=600, cwd=ROOT)
        wall = time.monotonic() - wall0
        load_cpu = (_children_cpu() - cpu0) / wall
        check_port_exclusive(server)
        if done.returncode != 0:
            raise BenchError(f"h2load failed ({done.returncode}): {shlex.join(argv)}\n{done.stdout}{done.stderr}")
        result = parse_h2load(done.stdout)
        expected = requests * server.response_frames[scenario.body]
        if result["succeeded"] != requests or result["failed"] or result["status_2xx"] != requests:
            raise BenchError(f"{scenario.key}: {result['succeeded']}/{requests} succeeded\n{done.stdout}")
        if result["data_bytes"] != expected:
            raise BenchError(
                f"{scenario.key}: {result['data_bytes']} DATA bytes, expected {expected} ({requests} x "
                f"{server.response_frames[scenario.body]}): some answers were gRPC errors or different"
            )
        self.commands[scenario.key] = shlex.join(argv)
        return result, load_cpu, wall

    def wait_quiet(self, limit: float = 60) -> None:
        began = time.monotonic()
        while time.monotonic() - began < limit:
            before = core_busy_seconds(self.o.server_cpu)
            time.sleep(0.5)
            if (core_busy_seconds(self.o.server_cpu) - before) / 0.5 <= self.o.max_other:
                return
        print(f"    (server core still busy after {limit:.0f}s; measuring anyway)", flush=True)

    def measure(self, server: Server, scenario: Scenario, repetition: int) -> Run:
        for attempt in range(3):
            self.wait_quiet()
            cpu0, core0, wall0 = cpu_seconds(server.process.pid), core_busy_seconds(self.o.server_cpu), time.monotonic()
            result, load_cpu, _ = self.h2load(server, scenario, scenario.requests)
            wall = time.monotonic() - wall0
            server_cpu = cpu_seconds(server.process.pid) - cpu0
            others = max(0.0, core_busy_seconds(self.o.server_cpu) - core0 - server_cpu) / wall
            claims_per_s = result["req_per_s"] * scenario.claims
            run = Run(server.kind, scenario.key, repetition, result["req_per_s"], claims_per_s, claims_per_s * LINES,
                      result["seconds"], server_cpu / wall, others, load_cpu)  # fmt: skip
            contended = others > self.o.max_other
            print(
                f"  [{repetition + 1}/{self.o.repeat}] {server.kind:<10} {scenario.key:<6} {run.req_per_s:>9,.1f} req/s "
                f"{run.claims_per_s:>8,.0f} claims/s {run.lines_per_s:>9,.0f} lines/s in {run.seconds:5.1f}s  "
                f"server cpu {run.server_cpu:4.0%}  h2load cpu {load_cpu:4.0%}  others on server core {others:3.0%}"
                + ("  (contended: repeating)" if contended and attempt < 2 else ""),
                flush=True,
            )
            if not contended:
                break
        return run

    def run(self) -> None:
        self.prepare()
        kinds = ("gatekeeper", "echo") if self.o.echo else ("gatekeeper",)
        for repetition in range(self.o.repeat):
            for kind in kinds if repetition % 2 == 0 else tuple(reversed(kinds)):
                t = time.monotonic()
                server = self.start_server(kind, repetition)
                try:
                    for scenario in self.scenarios:  # warm up, unrecorded
                        self.h2load(server, scenario, max(1, int(scenario.requests * self.o.warmup)))
                    print(f"  {kind} up, verified and warmed in {time.monotonic() - t:.1f}s", flush=True)
                    order = self.scenarios if repetition % 2 == 0 else list(reversed(self.scenarios))
                    self.runs.extend(self.measure(server, s, repetition) for s in order)
                finally:
                    self.children.stop(server.process)

    def table(self) -> str:
        rows = [
            ("server", "scenario", "req/s", "claims/s", "lines/s", "ratio to unary lines/s", "server cpu", "target")
        ]
        for kind, scenario in ((k, s) for k in ("gatekeeper", "echo") for s in self.scenarios):
            runs = [r for r in self.runs if r.scenario == scenario.key and r.server == kind]
            if not runs:
                continue
            unary = {r.repetition: r for r in self.runs if r.scenario == "unary" and r.server == kind}
            ratio, target = "-", "-"
            if scenario.key == "stream":
                paired = sorted(r.lines_per_s / unary[r.repetition].lines_per_s for r in runs if r.repetition in unary)
                if paired:
                    median = statistics.median(paired)
                    ratio = f"{median:.2f} ({paired[0]:.2f}-{paired[-1]:.2f})"
                    if kind == "gatekeeper":
                        target = f">= {TARGET:g} x unary: {'met' if median >= TARGET else 'NOT met'}"
            rows.append(
                (
                    kind if kind == "gatekeeper" else "bare grpcio echo",
                    scenario.title,
                    f"{statistics.median(r.req_per_s for r in runs):,.1f}",
                    f"{statistics.median(r.claims_per_s for r in runs):,.0f}",
                    f"{statistics.median(r.lines_per_s for r in runs):,.0f}",
                    ratio,
                    f"{statistics.median(r.server_cpu for r in runs):.0%}",
                    target,
                )
            )
        return markdown_table(rows, left=(0, 1, 7))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(argv)
    children = Children()
    workdir = options.keep or pathlib.Path(tempfile.mkdtemp(prefix="gk-bulk-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bulk = Bulk(options, workdir, children)
    started = time.monotonic()

    def body() -> None:
        machine_check(options)  # type: ignore[arg-type]  # needs only server_cpu and load_cpu
        os.sched_setaffinity(0, {options.load_cpu})  # this script, redis and h2load stay off the server core
        bulk.run()

    status = run_guarded(
        "bulk",
        workdir,
        options.keep,
        children,
        body,
        lambda: bulk.redis.stop() if bulk.redis is not None else None,
        kept="logs, dataset and bodies",
    )
    if status is not None:
        return status
    print()
    print(f"command: python -m loadtest.bulk {shlex.join(argv)}".rstrip())
    print(
        f"medians of {options.repeat} repetition(s), a fresh server each; server pinned to core {options.server_cpu}, "
        f"h2load to core {options.load_cpu}; {options.people} people; {options.workers} worker threads"
    )
    for key, command in bulk.commands.items():
        print(f"  h2load ({key}): {command}")
    print(bulk.table())
    others = max((r.others_on_server_core for r in bulk.runs), default=0.0)
    print(f"other processes on the server core: at most {others:.0%}; elapsed {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
