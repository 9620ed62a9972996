"""One benchmark run: gatekeeper against a bare grpcio echo server, on the same core, same run.

    python -m loadtest.bench              # full run (make bench): 100k people, 5 repetitions
    python -m loadtest.bench --quick      # smoke run, well under a minute

What it does (see loadtest/README.md for what every figure means):

1. generates a synthetic dataset (loadtest/dataset.py) and pre-encoded gRPC request bodies;
2. starts a private redis-server (cache.embedded.EmbeddedRedis) and loads the dataset into it with
   ``gatekeeper load``;
3. for each repetition, one server at a time on the server core (``taskset -c 0``), alternating
   which goes first: the echo server (loadtest/echo_server.py), then ``gatekeeper serve``, or the
   other way round. Each is started fresh, checked for correct answers over gRPC, warmed up, then
   measured with h2load pinned to the load core (``taskset -c 1``), and stopped;
4. prints per-run figures as it goes and a table of medians at the end.

Every h2load run must return exactly the expected bytes: h2load only sees HTTP statuses, and a gRPC
error is an HTTP 200 with no DATA, so the run fails unless the DATA bytes equal
requests x the expected response frame size (taken from a real gRPC call before measuring).

Everything is bounded (per-run timeouts, a total budget), and every child process is stopped on
exit, on failure, on Ctrl-C and on SIGTERM; with ``setpriv`` installed children also die with us
on SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2
from loadtest import dataset, echo_server

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECK_PATH = echo_server.PATH
ONE_LINE_TARGET_RATIO = 0.90  # single-line checks: at least 0.90 x echo on the same core (issue 10)
CLAIM_TARGET_LINES = {50: 200_000, 200: 250_000}  # lines/s per core for claims of that many lines (issue 10)
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


class SharedPort(BenchError):
    """Another process listens on the server's port too (SO_REUSEPORT): h2load's connections would be split."""


class Interrupted(BaseException):
    """SIGTERM/SIGHUP, raised like KeyboardInterrupt so cleanup runs."""


# --- Settings -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    people: int
    requests: int  # per 1-line run with 8 connections x 8 streams
    big_requests: int  # per 200-line run
    latency_requests: int  # per one-at-a-time run
    warmup: int
    repeat: int
    seed: int
    server_cpu: int
    load_cpu: int
    clients: int
    streams: int
    workers: int
    run_timeout: float
    budget: float
    max_other: float
    retries: int
    quiet_wait: float
    keep: pathlib.Path | None
    json_out: pathlib.Path | None
    decision_log: str = "off"


QUICK = {
    "people": 3000,
    "requests": 3000,
    "big_requests": 200,
    "latency_requests": 300,
    "warmup": 300,
    "repeat": 2,
    "retries": 0,
    "quiet_wait": 5,
}
FULL = {
    "people": 1_000_000,  # province scale (issue 10)
    "requests": 40_000,
    "big_requests": 2000,
    "latency_requests": 5000,
    "warmup": 3000,
    "repeat": 5,
    "retries": 2,
    "quiet_wait": 60,
}


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"small numbers for a smoke run: {QUICK}")
    parser.add_argument("--people", type=int, help=f"people in the dataset [{FULL['people']}]")
    parser.add_argument("--requests", type=int, help=f"requests per 1-line run (-c/-m below) [{FULL['requests']}]")
    parser.add_argument(
        "--big-requests", type=int, help=f"requests per 200-line run (4x as many 50-line) [{FULL['big_requests']}]"
    )
    parser.add_argument(
        "--latency-requests", type=int, help=f"requests per one-at-a-time run [{FULL['latency_requests']}]"
    )
    parser.add_argument("--warmup", type=int, help=f"unrecorded requests after each server start [{FULL['warmup']}]")
    parser.add_argument(
        "--repeat", type=int, help=f"repetitions, alternating which server goes first [{FULL['repeat']}]"
    )
    parser.add_argument("--seed", type=int, default=dataset.DEFAULT_SEED)
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server under test is pinned to [0]")
    parser.add_argument("--load-cpu", type=int, default=1, help="core h2load, redis and this script use [1]")
    parser.add_argument("--clients", type=int, default=8, help="h2load connections (-c) [8]")
    parser.add_argument("--streams", type=int, default=8, help="h2load concurrent streams per connection (-m) [8]")
    parser.add_argument("--workers", type=int, default=16, help="gRPC worker threads of both servers [16]")
    parser.add_argument("--run-timeout", type=float, default=300, help="seconds one h2load run may take [300]")
    parser.add_argument("--budget", type=float, default=3600, help="seconds the whole benchmark may take [3600]")
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.10,
        help="share of a core other processes may use during a run before it counts as contended [0.10]",
    )
    parser.add_argument("--retries", type=int, help=f"times a contended run is repeated [{FULL['retries']}]")
    parser.add_argument(
        "--quiet-wait", type=float, help=f"seconds to wait for quiet cores before each run [{FULL['quiet_wait']}]"
    )
    parser.add_argument(
        "--decision-log",
        choices=("off", "rejects", "all"),
        default="off",
        help="gatekeeper's decision log: off measures the check alone; rejects is the service's default [off]",
    )
    parser.add_argument("--keep", type=pathlib.Path, help="keep dataset, bodies and server logs in this directory")
    parser.add_argument("--json", dest="json_out", type=pathlib.Path, help="also write every run as JSON here")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    values = {name: getattr(args, name) if getattr(args, name) is not None else base[name] for name in base}
    for name, value in values.items():
        if value < (0 if name in ("warmup", "retries", "quiet_wait") else 1):
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.server_cpu == args.load_cpu:
        parser.error("--server-cpu and --load-cpu must differ")
    return Options(
        **values,
        seed=args.seed,
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
        clients=args.clients,
        streams=args.streams,
        workers=args.workers,
        run_timeout=args.run_timeout,
        budget=args.budget,
        max_other=args.max_other,
        keep=args.keep,
        json_out=args.json_out,
        decision_log=args.decision_log,
    )


# --- Child processes ----------------------------------------------------------------------------


class Children:
    """Every long-lived child, each in its own session, stopped in reverse order on exit."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.setpriv = shutil.which("setpriv")

    def wrap(self, argv: list[str]) -> list[str]:
        """Have the child die with us even if we are SIGKILLed (prctl PR_SET_PDEATHSIG)."""
        return [self.setpriv, "--pdeathsig", "TERM", *argv] if self.setpriv else argv

    @contextlib.contextmanager
    def shimmed(self, tool: str, bin_dir: pathlib.Path) -> Iterator[None]:
        """Children that others start (EmbeddedRedis runs ``redis-server`` from PATH) die with us too:
        put a wrapper that execs ``setpriv --pdeathsig TERM <tool>`` first on PATH meanwhile."""
        real = shutil.which(tool)
        if self.setpriv is None or real is None:
            yield
            return
        bin_dir.mkdir(parents=True, exist_ok=True)
        shim = bin_dir / tool
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(self.setpriv)} --pdeathsig TERM {shlex.quote(real)} "$@"\n')
        shim.chmod(0o755)
        path = os.environ.get("PATH", "")
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"
        try:
            yield
        finally:
            os.environ["PATH"] = path

    def start(self, argv: list[str], *, env: dict[str, str], log: pathlib.Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                self.wrap(argv),
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
            )
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes)):
            try:
                self.stop(process)
            except Exception as exc:  # keep stopping the rest
                print(f"bench: could not stop pid {process.pid}: {exc}", file=sys.stderr)


def child_env(**extra: str) -> dict[str, str]:
    """Our environment without any gatekeeper/Redis settings the caller may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_") and k != "REDIS_URL"}
    env.update(extra)
    return env


def serve_env(redis_url: str, port: int, workdir: pathlib.Path, **extra: str) -> dict[str, str]:
    """The environment of a benchmark's ``gatekeeper serve``: its Redis, the national profile, the check
    port on loopback, no admin port, no metrics port, no decision log (``extra`` overrides any)."""
    settings = {
        "GATEKEEPER_REDIS_URL": redis_url,
        "GATEKEEPER_PROFILE": "national",
        "GATEKEEPER_HOST": "127.0.0.1",
        "GATEKEEPER_PORT": str(port),
        "GATEKEEPER_ADMIN_PORT": "0",
        "GATEKEEPER_METRICS_PORT": "0",
        "GATEKEEPER_DECISION_LOG": "off",
        "GATEKEEPER_DATA_DIR": str(workdir / "data"),
    }
    return child_env(**{**settings, **extra})


def markdown_table(rows: Sequence[Sequence[str]], left: Collection[int] | None = None) -> str:
    """A Markdown table of text cells, the first row its header; columns in ``left`` (default: all) flush
    left, the others (figures) flush right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(row: Sequence[str]) -> str:
        cells = (
            c.ljust(w) if left is None or i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def load_dataset(children: Children, people: pathlib.Path, redis_url: str, *, timeout: float = 1800) -> str:
    """``gatekeeper load`` of a dataset into a benchmark's private Redis (national profile); its summary."""
    load = subprocess.run(
        children.wrap([*gatekeeper_command(), "load", str(people)]),
        env=child_env(GATEKEEPER_REDIS_URL=redis_url, GATEKEEPER_PROFILE="national"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if load.returncode != 0:
        raise BenchError(f"gatekeeper load failed ({load.returncode}):\n{load.stdout}{load.stderr}")
    return load.stdout.strip()


def gatekeeper_command() -> list[str]:
    script = pathlib.Path(sys.executable).parent / "gatekeeper"
    return [str(script)] if script.exists() else [sys.executable, "-m", "service.cli.main"]


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so every ``finally`` runs."""

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Let cleanup finish: a second Ctrl-C must not leave children behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all threads."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children_cpu() -> float:
    """CPU seconds of our waited-for children (h2load is the only one reaped during a run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def core_busy_seconds(cpu: int) -> float:
    """Seconds core ``cpu`` spent not idle since boot (any process, interrupts included)."""
    for line in pathlib.Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            return (user + nice + system + irq + softirq + steal) / CLK_TCK
    raise BenchError(f"no cpu{cpu} in /proc/stat")


# --- Servers ------------------------------------------------------------------------------------


@dataclass
class Server:
    kind: str  # "echo" or "gatekeeper"
    process: subprocess.Popen[bytes]
    port: int
    log: pathlib.Path
    response_frames: dict[str, int] = field(default_factory=dict)  # body name -> expected DATA bytes per request

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHECK_PATH}"


def _alive(server: Server) -> None:
    if server.process.poll() is not None:
        tail = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
        raise BenchError(f"{server.kind} exited with {server.process.returncode}; log {server.log}:\n{tail}")


def _listening_inodes(port: int) -> set[int]:
    """Socket inodes listening on TCP ``port`` in this network namespace, any address, any process."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in pathlib.Path(table).read_text().splitlines()[1:]:
                f = row.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(int(f[9]))
    return inodes


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def check_port_exclusive(server: Server) -> None:
    """gRPC servers set SO_REUSEPORT, so a neighbour (another test run) handed the same free port can
    bind it too and the kernel would spread our connections over both: refuse to measure then."""
    listeners = _listening_inodes(server.port)
    ours = _socket_inodes(server.process.pid)
    if not listeners & ours:
        raise BenchError(f"{server.kind} (pid {server.process.pid}) is not listening on port {server.port}")
    if listeners - ours:
        raise SharedPort(f"another process also listens on port {server.port} (SO_REUSEPORT)")


def wait_echo(server: Server, payload: bytes, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(CHECK_PATH)
        while True:
            _alive(server)
            try:
                answer = call(payload, timeout=2)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise BenchError(f"echo server on port {server.port} did not answer within {timeout}s") from None
                time.sleep(0.05)
    if answer != payload:
        raise BenchError("echo server answered different bytes than it was sent")


def wait_serving(server: Server, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            _alive(server)
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(
                    f"gatekeeper on port {server.port} was not SERVING within {timeout}s; see {server.log}"
                )
            time.sleep(0.1)


def _decisions(response: eligibility_pb2.CheckClaimResponse) -> list[tuple[str, str]]:
    return [(enums_pb2.Decision.Name(d.decision), enums_pb2.Reason.Name(d.reason)) for d in response.decisions]


def verify_gatekeeper(server: Server, claims: dataset.Claims, bodies: dict[str, bytes]) -> None:
    """Real answers before any measurement: every probe line, and the very bodies h2load sends (those of
    ``bodies``: a harness passes the claims it sends)."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
        for claim in (claims.probe, claims.probe_pos):
            got = _decisions(stub.CheckClaim(claim.request, timeout=10))
            if got != list(claim.expected):
                raise BenchError(f"{claim.name}: decisions {got} != expected {list(claim.expected)}")
        for claim in (c for c in (claims.one_line, claims.medium, claims.big) if c.name in bodies):
            request = eligibility_pb2.CheckClaimRequest.FromString(dataset.grpc_unframe(bodies[claim.name]))
            response = stub.CheckClaim(request, timeout=10)
            got = _decisions(response)
            if got != list(claim.expected):
                wrong = [(i + 1, g, e) for i, (g, e) in enumerate(zip(got, claim.expected, strict=False)) if g != e]
                raise BenchError(f"{claim.name}: {len(wrong)} line(s) decided unexpectedly, first {wrong[:3]}")
            if response.data_version < 1 or not response.policy_id.startswith("national@"):
                raise BenchError(
                    f"{claim.name}: unexpected data_version/policy_id {response.data_version} {response.policy_id}"
                )
            server.response_frames[claim.name] = len(dataset.grpc_frame(response.SerializeToString()))


def claim_scenarios(claim: dataset.Claim) -> tuple[Scenario, Scenario]:
    """A claim of many lines: the echo of its body (the reference), then gatekeeper deciding it."""
    echo = Scenario(f"echo-{claim.lines}", f"echo, {claim.lines}-line body (reference)", "echo", claim.name,
                    claim.lines, False)  # fmt: skip
    checked = Scenario(f"gk-{claim.lines}", f"gatekeeper, {claim.lines}-line claim", "gatekeeper", claim.name,
                       claim.lines, False, echo.key)  # fmt: skip
    return echo, checked


# --- h2load -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    server: str  # echo / gatekeeper
    body: str  # claim name
    lines: int
    one_at_a_time: bool
    compare_to: str | None = None  # the echo scenario key this one is a ratio of


@dataclass
class Run:
    scenario: str
    repetition: int
    requests: int
    seconds: float
    req_per_s: float
    mean_ms: float
    min_ms: float
    max_ms: float
    server_cpu: float  # share of one core the server process used during the run
    load_cpu: float  # share of one core h2load used
    core_other: float  # share of the server core busy with anything but the server process
    load_core_other: float  # share of the load core busy with anything but h2load
    data_bytes: int
    contended: bool = False  # other processes took what the run needed (see Bench.contended)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
_TIME = r"([\d.]+)(us|ms|s)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_h2load(output: str) -> dict[str, Any]:
    finished = re.search(rf"finished in {_TIME}, ([\d.]+) req/s", output)
    requests = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        output,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", output)
    traffic = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) headers.*?, .*?\((\d+)\) data", output)
    latency = re.search(rf"time for request:\s+{_TIME}\s+{_TIME}\s+{_TIME}", output)
    if not (finished and requests and codes and traffic and latency):
        raise BenchError(f"could not read h2load's output:\n{output}")
    lat = latency.groups()
    return {
        "seconds": _ms(finished.group(1), finished.group(2)) / 1000,
        "req_per_s": float(finished.group(3)),
        "total": int(requests.group(1)),
        "succeeded": int(requests.group(4)),
        "failed": int(requests.group(5)) + int(requests.group(6)) + int(requests.group(7)),
        "status_2xx": int(codes.group(1)),
        "data_bytes": int(traffic.group(3)),
        "min_ms": _ms(lat[0], lat[1]),
        "max_ms": _ms(lat[2], lat[3]),
        "mean_ms": _ms(lat[4], lat[5]),
    }


class Bench:
    def __init__(self, options: Options, workdir: pathlib.Path, children: Children) -> None:
        self.o = options
        self.workdir = workdir
        self.children = children
        self.started = time.monotonic()
        self.runs: list[Run] = []
        self.redis_url = ""
        self.claims: dataset.Claims | None = None
        self.bodies: dict[str, bytes] = {}
        self.body_files: dict[str, pathlib.Path] = {}
        self.scenarios: list[Scenario] = []
        self.commands: dict[str, str] = {}  # scenario key -> the exact h2load command line

    # budget --------------------------------------------------------------------------------------

    def remaining(self) -> float:
        left = self.o.budget - (time.monotonic() - self.started)
        if left <= 0:
            raise BenchError(f"the benchmark ran out of its {self.o.budget:.0f}s budget")
        return left

    # setup ---------------------------------------------------------------------------------------

    def prepare(self) -> None:
        t = time.monotonic()
        files, people, claims = dataset.write_all(self.workdir, self.o.people, self.o.seed)
        self.claims = claims
        for claim, path in ((claims.one_line, files.one_line), (claims.medium, files.medium), (claims.big, files.big)):
            self.body_files[claim.name] = path
            self.bodies[claim.name] = path.read_bytes()
        big = claims.big
        self.scenarios = [
            Scenario("echo-1", "echo, 1-line body", "echo", "claim-1", 1, False),
            Scenario("gk-1", "gatekeeper, 1-line claim", "gatekeeper", "claim-1", 1, False, "echo-1"),
            *(scenario for claim in (claims.medium, big) for scenario in claim_scenarios(claim)),
            Scenario("echo-1-seq", "echo, 1-line, one at a time", "echo", "claim-1", 1, True),
            Scenario("gk-1-seq", "gatekeeper, 1-line, one at a time", "gatekeeper", "claim-1", 1, True, "echo-1-seq"),
        ]
        kinds = {k: sum(p.kind == k for p in people) for k in (dataset.NORMAL, dataset.SUSPENDED, dataset.TERMINATED)}
        print(
            f"bench: dataset {len(people)} people {kinds}; bodies {len(self.bodies['claim-1'])} B (1 line), "
            f"{len(self.bodies[big.name])} B ({big.lines} lines) [{time.monotonic() - t:.1f}s]",
            flush=True,
        )
        with self.children.shimmed("redis-server", self.workdir / "bin"):
            redis = EmbeddedRedis(self.workdir / "redis", appendonly=False).start()
        self.redis_url = redis.url
        self._stop_redis = redis.stop
        t = time.monotonic()
        summary = load_dataset(self.children, files.people, redis.url, timeout=min(900, self.remaining()))
        print(f"bench: {summary} [{time.monotonic() - t:.1f}s]", flush=True)

    def close(self) -> None:
        stop = getattr(self, "_stop_redis", None)
        if stop is not None:
            stop()

    # servers -------------------------------------------------------------------------------------

    def start_server(self, kind: str, repetition: int) -> Server:
        port = free_port()
        log = self.workdir / f"{kind}-{repetition}.log"
        pin = ["taskset", "-c", str(self.o.server_cpu)]
        if kind == "echo":
            argv = [*pin, sys.executable, "-m", "loadtest.echo_server", "--port", str(port)]
            argv += ["--workers", str(self.o.workers)]
            process = self.children.start(argv, env=child_env(), log=log)
            server = Server(kind, process, port, log)
            for name, body in self.bodies.items():
                wait_echo(server, dataset.grpc_unframe(body))
                server.response_frames[name] = len(body)
            check_port_exclusive(server)
            return server
        env = serve_env(
            self.redis_url,
            port,
            self.workdir,
            GATEKEEPER_DECISION_LOG=self.o.decision_log,
            GATEKEEPER_WORKERS=str(self.o.workers),
        )
        process = self.children.start([*pin, *gatekeeper_command(), "serve"], env=env, log=log)
        server = Server(kind, process, port, log)
        wait_serving(server, timeout=min(180, self.remaining()))
        check_port_exclusive(server)
        assert self.claims is not None
        verify_gatekeeper(server, self.claims, self.bodies)
        return server

    # measuring -----------------------------------------------------------------------------------

    def h2load(
        self, server: Server, body: str, requests: int, clients: int, streams: int
    ) -> tuple[dict[str, Any], str]:
        argv = [
            "taskset", "-c", str(self.o.load_cpu), "h2load",
            "-n", str(requests), "-c", str(clients), "-m", str(streams),
            "-d", str(self.body_files[body]),
            "-H", "content-type: application/grpc", "-H", "te: trailers",
            server.url,
        ]  # fmt: skip
        timeout = min(self.o.run_timeout, self.remaining())
        try:
            done = subprocess.run(self.children.wrap(argv), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        except subprocess.TimeoutExpired:
            raise BenchError(f"h2load took more than {timeout:.0f}s: {shlex.join(argv)}") from None
        _alive(server)
        check_port_exclusive(server)
        if done.returncode != 0:
            raise BenchError(f"h2load failed ({done.returncode}): {shlex.join(argv)}\n{done.stdout}{done.stderr}")
        result = parse_h2load(done.stdout)
        expected_bytes = requests * server.response_frames[body]
        problems = []
        if result["total"] != requests or result["succeeded"] != requests or result["failed"]:
            problems.append(f"{result['succeeded']}/{requests} succeeded, {result['failed']} failed/errored/timed out")
        if result["status_2xx"] != requests:
            problems.append(f"{result['status_2xx']}/{requests} HTTP 2xx")
        if result["data_bytes"] != expected_bytes:
            problems.append(
                f"{result['data_bytes']} DATA bytes, expected {expected_bytes} "
                f"({requests} x {server.response_frames[body]}): some answers were gRPC errors or different"
            )
        if problems:
            raise BenchError(f"{server.kind} {body}: " + "; ".join(problems) + f"\n{shlex.join(argv)}")
        return result, shlex.join(argv)

    def wait_quiet(self) -> None:
        """Start a run only when nothing else is busy on the server core and the load core has room
        (a bounded wait, then go anyway: the run itself is checked afterwards)."""
        began = time.monotonic()
        busy = {}
        while time.monotonic() - began < self.o.quiet_wait:
            self.remaining()
            before = {c: core_busy_seconds(c) for c in (self.o.server_cpu, self.o.load_cpu)}
            time.sleep(0.5)
            busy = {c: (core_busy_seconds(c) - b) / 0.5 for c, b in before.items()}
            if busy[self.o.server_cpu] <= self.o.max_other and busy[self.o.load_cpu] <= 0.5:
                break
        waited = time.monotonic() - began
        if waited > 1:
            shares = ", ".join(f"core {c} {b:.0%}" for c, b in busy.items())
            print(f"    (waited {waited:.0f}s for quiet cores; last: {shares} busy)", flush=True)

    def contended(self, run: Run, scenario: Scenario) -> bool:
        """Others on the server core always spoil a run. On the load core they matter when h2load could
        not get the core it needed: one at a time (its reaction time is in every round trip), or when the
        core was saturated."""
        if run.core_other > self.o.max_other:
            return True
        if scenario.one_at_a_time:
            return run.load_core_other > self.o.max_other
        return run.load_cpu + run.load_core_other > 0.9

    def measure(self, server: Server, scenario: Scenario, repetition: int) -> Run:
        """One recorded run; repeated (up to --retries times) when something else used our cores meanwhile."""
        for attempt in range(self.o.retries + 1):
            self.wait_quiet()
            run = self._measure_once(server, scenario, repetition)
            contended = run.contended = self.contended(run, scenario)
            mark = "  (contended: repeating)" if contended and attempt < self.o.retries else ""
            mark = mark or ("  (contended)" if contended else "")
            print(
                f"  [{repetition + 1}/{self.o.repeat}] {scenario.title:<36} {run.req_per_s:>8,.0f} req/s"
                f"  mean {run.mean_ms:7.2f} ms  min {run.min_ms:5.2f} ms  max {run.max_ms:7.1f} ms"
                f"  server cpu {run.server_cpu:4.0%}  h2load cpu {run.load_cpu:4.0%}"
                f"  others {run.core_other:3.0%}/{run.load_core_other:3.0%}{mark}",
                flush=True,
            )
            if not contended:
                break
        return run

    def _measure_once(self, server: Server, scenario: Scenario, repetition: int) -> Run:
        if scenario.one_at_a_time:
            requests, clients, streams = self.o.latency_requests, 1, 1
        elif scenario.lines > 1:  # about as many lines per run whatever the claim's size
            requests = self.o.big_requests * dataset.BIG_CLAIM_LINES // scenario.lines
            clients, streams = self.o.clients, self.o.streams
        else:
            requests, clients, streams = self.o.requests, self.o.clients, self.o.streams
        server0, h2load0 = cpu_seconds(server.process.pid), _children_cpu()
        core0, load0 = core_busy_seconds(self.o.server_cpu), core_busy_seconds(self.o.load_cpu)
        wall0 = time.monotonic()
        result, command = self.h2load(server, scenario.body, requests, clients, streams)
        wall = time.monotonic() - wall0
        server_cpu = cpu_seconds(server.process.pid) - server0
        h2load_cpu = _children_cpu() - h2load0
        core_busy = core_busy_seconds(self.o.server_cpu) - core0
        load_busy = core_busy_seconds(self.o.load_cpu) - load0
        self.commands[scenario.key] = command
        return Run(
            scenario=scenario.key,
            repetition=repetition,
            requests=requests,
            seconds=result["seconds"],
            req_per_s=result["req_per_s"],
            mean_ms=result["mean_ms"],
            min_ms=result["min_ms"],
            max_ms=result["max_ms"],
            server_cpu=server_cpu / wall,
            load_cpu=h2load_cpu / wall,
            core_other=max(0.0, core_busy - server_cpu) / wall,
            load_core_other=max(0.0, load_busy - h2load_cpu) / wall,
            data_bytes=result["data_bytes"],
        )

    def run(self) -> None:
        for repetition in range(self.o.repeat):
            order = ("echo", "gatekeeper") if repetition % 2 == 0 else ("gatekeeper", "echo")
            for kind in order:
                for attempt in range(3):
                    try:
                        self.runs.extend(self.server_phase(kind, repetition))
                        break
                    except SharedPort as exc:
                        if attempt == 2:
                            raise
                        print(f"  {kind}: {exc}; discarding its runs and starting it again on another port")

    def server_phase(self, kind: str, repetition: int) -> list[Run]:
        """Start one server alone on the server core, verify, warm up, measure its scenarios, stop it."""
        self.remaining()
        t = time.monotonic()
        server = self.start_server(kind, repetition)
        try:
            if self.o.warmup:
                for body in self.bodies:
                    n = self.o.warmup if body == "claim-1" else max(1, self.o.warmup // 10)
                    self.h2load(server, body, n, self.o.clients, self.o.streams)
            print(f"  {kind} up, verified and warmed in {time.monotonic() - t:.1f}s", flush=True)
            return [self.measure(server, s, repetition) for s in self.scenarios if s.server == kind]
        finally:
            self.children.stop(server.process)

    # report --------------------------------------------------------------------------------------

    def table(self) -> str:
        rows = [
            ("scenario", "req/s", "lines/s", "ratio to echo", "mean lat", "min lat", "max lat", "server cpu", "target")
        ]
        for scenario in self.scenarios:
            runs = [r for r in self.runs if r.scenario == scenario.key]
            if not runs:
                continue
            rps = statistics.median(r.req_per_s for r in runs)
            ratio = "-"
            if scenario.compare_to:
                base = {r.repetition: r.req_per_s for r in self.runs if r.scenario == scenario.compare_to}
                paired = sorted(r.req_per_s / base[r.repetition] for r in runs if r.repetition in base)
                if paired:
                    ratio = f"{statistics.median(paired):.2f} ({paired[0]:.2f}-{paired[-1]:.2f})"
            target = "-"
            if scenario.key == "gk-1" and ratio != "-":
                met = float(ratio.split()[0]) >= ONE_LINE_TARGET_RATIO
                target = f">= {ONE_LINE_TARGET_RATIO} x echo: {'met' if met else 'NOT met'}"
            elif scenario.server == "gatekeeper" and scenario.lines in CLAIM_TARGET_LINES:
                goal = CLAIM_TARGET_LINES[scenario.lines]
                target = f">= {goal:,} lines/s: {'met' if rps * scenario.lines >= goal else 'NOT met'}"
            rows.append(
                (
                    scenario.title,
                    f"{rps:,.0f}",
                    f"{rps * scenario.lines:,.0f}",
                    ratio,
                    f"{statistics.median(r.mean_ms for r in runs):.2f} ms",
                    f"{statistics.median(r.min_ms for r in runs):.2f} ms",
                    f"{statistics.median(r.max_ms for r in runs):.1f} ms",
                    f"{statistics.median(r.server_cpu for r in runs):.0%}",
                    target,
                )
            )
        return markdown_table(rows, left=(0, 8))

    def report(self, argv: Sequence[str]) -> None:
        o = self.o
        print()
        print(f"command: python -m loadtest.bench {shlex.join(argv)}".rstrip())
        print(
            f"medians of {o.repeat} repetition(s); server pinned to core {o.server_cpu}, h2load to core {o.load_cpu}; "
            f"-c {o.clients} -m {o.streams} (one at a time: -c 1 -m 1); {o.requests} / {o.big_requests} / "
            f"{o.latency_requests} requests per 1-line / {self.claims.big.lines if self.claims else 0}-line / "
            f"one-at-a-time run; {o.people} people; {o.workers} worker threads; decision log {o.decision_log}"
        )
        print(self.table())
        other = max((r.core_other for r in self.runs), default=0.0)
        spoiled = sum(r.contended for r in self.runs)
        note = (
            "ok" if not spoiled else f"WARNING: {spoiled} of {len(self.runs)} runs contended; those figures are suspect"
        )
        print(
            f"other processes on the server core during a recorded run: at most {other:.0%} of core {o.server_cpu} - {note}"
        )
        print(
            f"python {platform.python_version()}, grpcio {grpc.__version__}, "
            f"{_first_line(['h2load', '--version'])}, {_cpu_model()}, elapsed {time.monotonic() - self.started:.0f}s"
        )
        if o.json_out:
            o.json_out.write_text(
                json.dumps(
                    {
                        "argv": list(argv),
                        "options": {k: str(v) for k, v in dataclasses.asdict(o).items()},
                        "scenarios": [dataclasses.asdict(s) for s in self.scenarios],
                        "h2load": self.commands,
                        "runs": [dataclasses.asdict(r) for r in self.runs],
                    },
                    indent=1,
                )
            )
            print(f"runs written to {o.json_out}")


def _first_line(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def _cpu_model() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def run_guarded(
    name: str,
    workdir: pathlib.Path,
    keep: pathlib.Path | None,
    children: Children,
    body: Callable[[], None],
    close: Callable[[], None] = lambda: None,
    kept: str = "logs",
) -> int | None:
    """Run a benchmark's ``body``: on any end every child is stopped and ``close`` runs, and the work
    directory goes unless asked to keep it or the run failed. The exit status on an interrupt (130) or a
    failure (1, after saying what is kept where); None when the body ran through."""
    failed = True
    try:
        with signals_raise():
            try:
                body()
                failed = False
            except (KeyboardInterrupt, Interrupted):
                failed = False  # nothing to look into: remove the work directory
                raise
            finally:
                with signals_ignored():
                    children.stop_all()
                    close()
                    if keep is None and not failed:
                        shutil.rmtree(workdir, ignore_errors=True)
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"\n{name}: interrupted ({type(exc).__name__} {exc}); children stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"{name}: FAILED: {exc}\n{name}: {kept} kept in {workdir}", file=sys.stderr)
        return 1
    return None


def machine_check(options: Options) -> None:
    for tool in ("h2load", "taskset", "redis-server"):
        if shutil.which(tool) is None:
            hint = {"h2load": "apt-get install -y nghttp2-client", "taskset": "apt-get install -y util-linux"}
            raise BenchError(f"{tool} is not installed ({hint.get(tool, 'scripts/bootstrap.sh')})")
    cpus = os.sched_getaffinity(0)
    for cpu in (options.server_cpu, options.load_cpu):
        if cpu not in cpus:
            raise BenchError(f"core {cpu} is not available to this process (have {sorted(cpus)})")
    # An idle machine is the premise: say so when it is not.
    before = {c: core_busy_seconds(c) for c in (options.server_cpu, options.load_cpu)}
    time.sleep(1.0)
    busy = {c: core_busy_seconds(c) - before[c] for c in before}
    if max(busy.values()) > 0.15:
        shares = ", ".join(f"core {c} {b:.0%}" for c, b in busy.items())
        print(f"bench: WARNING: the machine is not idle before starting ({shares} busy); figures will be noisy")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(argv)
    children = Children()
    workdir = options.keep or pathlib.Path(tempfile.mkdtemp(prefix="gk-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(options, workdir, children)
    failed = True  # keep the logs of a failed run
    try:
        with signals_raise():
            try:
                machine_check(options)
                # This script, redis and `gatekeeper load` stay off the server core.
                os.sched_setaffinity(0, {options.load_cpu})
                bench.prepare()
                bench.run()
                failed = False
            except (KeyboardInterrupt, Interrupted):
                failed = False
                raise
            finally:
                with signals_ignored():
                    children.stop_all()
                    bench.close()
                    if options.keep is None and not failed:
                        shutil.rmtree(workdir, ignore_errors=True)
        bench.report(argv)
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        print(f"\nbench: interrupted ({type(exc).__name__} {exc}); children stopped", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: FAILED: {exc}\nbench: logs, dataset and bodies kept in {workdir}", file=sys.stderr)
        if bench.runs:
            print(bench.table(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
