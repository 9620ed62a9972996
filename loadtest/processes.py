"""`serve --processes N`: memory per worker, throughput N=2 vs N=1, write-to-visible latency (a table).

    flock /tmp/gk-bench.lock python -m loadtest.processes               # 1,000,000 people
    flock /tmp/gk-bench.lock python -m loadtest.processes --people 100000 --repeat 3

For each N (1, then 2): a fresh `gatekeeper serve --processes N` on a private redis-server loaded
with the synthetic dataset (loadtest/dataset.py, loaded as loadtest/bench.py does), checked for right
answers, then measured:

1. memory: unique set size (psutil ``memory_full_info().uss``) of every worker and RSS of the
   supervisor, at SERVING and again after the load below;
2. 1-line CheckClaim req/s with h2load, *unpinned* (the kernel places server and h2load on the
   machine's cores as it likes), median of ``--repeat`` runs, every answer checked byte for byte;
3. write-to-visible: an admin RegisterPractitioner acknowledged -> a check answers from that data
   version on every one of ``--channels`` connections, which together reach every worker (checked
   in /proc); p50/p99 over ``--writes`` writes.

Not a test: it prints figures. The machine is shared, so wrap it in ``flock /tmp/gk-bench.lock``.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
import psutil  # type: ignore[import-untyped]
from google.type.date_pb2 import Date

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2, registry_pb2, registry_pb2_grpc
from loadtest import bench, dataset

MB = 1024 * 1024


@dataclass
class Figures:
    processes: int
    uss_serving: list[float] = field(default_factory=list)  # MB per worker (the process itself when N = 1)
    uss_loaded: list[float] = field(default_factory=list)
    supervisor_rss: tuple[float, float] = (0.0, 0.0)  # MB at SERVING, after load (N > 1)
    req_per_s: list[float] = field(default_factory=list)
    visible_ms: list[float] = field(default_factory=list)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.processes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="h2load runs per N (the median is reported)")
    parser.add_argument("--requests", type=int, default=40_000, help="1-line checks per h2load run")
    parser.add_argument("--clients", type=int, default=8, help="h2load connections (spread over the workers)")
    parser.add_argument("--streams", type=int, default=8, help="h2load streams per connection")
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--channels", type=int, default=8, help="connections polled for each write")
    parser.add_argument("--seed", type=int, default=dataset.DEFAULT_SEED)
    return parser.parse_args(argv)


class Run:
    def __init__(self, options: argparse.Namespace, workdir: pathlib.Path, children: bench.Children) -> None:
        self.o = options
        self.workdir = workdir
        self.children = children

    def prepare(self) -> None:
        t = time.monotonic()
        self.files, _people, self.claims = dataset.write_all(self.workdir, self.o.people, self.o.seed)
        self.bodies = {c.name: p.read_bytes() for c, p in ((self.claims.one_line, self.files.one_line),
                                                            (self.claims.big, self.files.big))}  # fmt: skip
        with self.children.shimmed("redis-server", self.workdir / "bin"):
            self.redis = EmbeddedRedis(self.workdir / "redis", appendonly=False).start()
        summary = bench.load_dataset(self.children, self.files.people, self.redis.url, timeout=1800)
        print(f"processes: {summary} [{time.monotonic() - t:.0f}s]", flush=True)

    def start(self, processes: int) -> tuple[bench.Server, int]:
        port, admin = free_port(), free_port()
        env = bench.child_env(
            GATEKEEPER_REDIS_URL=self.redis.url, GATEKEEPER_PROFILE="national", GATEKEEPER_PORT=str(port),
            GATEKEEPER_ADMIN_PORT=str(admin), GATEKEEPER_METRICS_PORT="0", GATEKEEPER_DECISION_LOG="off",
            GATEKEEPER_PROCESSES=str(processes),
        )  # fmt: skip
        log = self.workdir / f"serve-{processes}.log"
        process = self.children.start([*bench.gatekeeper_command(), "serve"], env=env, log=log)
        server = bench.Server(f"gatekeeper x{processes}", process, port, log)
        t = time.monotonic()
        bench.wait_serving(server, timeout=1800)
        wait_workers(process.pid, processes)
        print(f"processes: N={processes} SERVING [{time.monotonic() - t:.0f}s]", flush=True)
        bench.verify_gatekeeper(server, self.claims, self.bodies)
        return server, admin

    def measure(self, processes: int) -> Figures:
        figures = Figures(processes)
        server, admin = self.start(processes)
        try:
            figures.uss_serving, rss = memory(server.process.pid, processes)
            for repetition in range(self.o.repeat):
                rate = self.h2load(server)
                figures.req_per_s.append(rate)
                print(f"  N={processes} [{repetition + 1}/{self.o.repeat}] {rate:,.0f} req/s", flush=True)
            figures.uss_loaded, rss_loaded = memory(server.process.pid, processes)
            figures.supervisor_rss = (rss, rss_loaded)
            figures.visible_ms = write_to_visible(server, admin, processes, self.o.writes, self.o.channels)
        finally:
            self.children.stop(server.process, timeout=60)
        return figures

    def h2load(self, server: bench.Server) -> float:
        argv = [
            "h2load", "-n", str(self.o.requests), "-c", str(self.o.clients), "-m", str(self.o.streams),
            "-d", str(self.files.one_line), "-H", "content-type: application/grpc", "-H", "te: trailers", server.url,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        result = bench.parse_h2load(done.stdout)
        expected = self.o.requests * server.response_frames[self.claims.one_line.name]
        if done.returncode or result["succeeded"] != self.o.requests or result["data_bytes"] != expected:
            raise bench.BenchError(f"h2load: not every answer was right:\n{done.stdout}{done.stderr}")
        return float(result["req_per_s"])


def workers_of(pid: int, processes: int) -> list[psutil.Process]:
    """The serving processes: the one process, or the supervisor's forked children (not its redis-server)."""
    me = psutil.Process(pid)
    if processes == 1:
        return [me]
    return [child for child in me.children() if child.name() != "redis-server"]


def wait_workers(pid: int, processes: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(workers_of(pid, processes)) < processes:
        if time.monotonic() > deadline:
            raise bench.BenchError(f"{processes} workers did not start")
        time.sleep(0.1)


def memory(pid: int, processes: int) -> tuple[list[float], float]:
    """USS of each serving process (MB) and the supervisor's RSS (MB; 0 when N = 1)."""
    uss = [p.memory_full_info().uss / MB for p in workers_of(pid, processes)]
    return uss, psutil.Process(pid).memory_info().rss / MB if processes > 1 else 0.0


def write_to_visible(server: bench.Server, admin: int, processes: int, writes: int, count: int) -> list[float]:
    """Per write: ms from the admin write's acknowledgement until every connection answers from it."""
    channels = [grpc.insecure_channel(f"127.0.0.1:{server.port}", options=[("bench.channel", i)])
                for i in range(count)]  # fmt: skip
    stubs = [eligibility_pb2_grpc.EligibilityServiceStub(c) for c in channels]
    try:
        for stub in stubs:  # connect all, then make sure they reach every worker
            stub.CheckClaim(probe_claim(dataset.code_of(0)), timeout=10)
        reached = {pid for pid in (p.pid for p in workers_of(server.process.pid, processes))
                   if bench._socket_inodes(pid) & established_on(server.port)}  # fmt: skip
        if len(reached) < processes:
            raise bench.BenchError(
                f"{count} connections reached {len(reached)} of {processes} workers; more --channels"
            )
        with grpc.insecure_channel(f"127.0.0.1:{admin}") as admin_channel:
            registry = registry_pb2_grpc.RegistryServiceStub(admin_channel)
            return [_one_write(registry, stubs, n) for n in range(writes)]
    finally:
        for channel in channels:
            channel.close()


def _one_write(
    registry: registry_pb2_grpc.RegistryServiceStub, stubs: list[eligibility_pb2_grpc.EligibilityServiceStub], n: int
) -> float:
    code = f"W{time.time_ns() % 10**12:012d}{n:04d}"
    request = registry_pb2.RegisterPractitionerRequest(
        practitioner_code=code, institution_code=dataset.HOSPITALS[0],
        category=enums_pb2.PRACTITIONER_CATEGORY_DOCTOR, registered_on=bench_date(),
    )  # fmt: skip
    version = registry.RegisterPractitioner(request, timeout=10).data_version
    acknowledged = time.perf_counter()
    pending = list(stubs)
    while pending:  # round robin over the connections that have not seen it yet
        pending = [s for s in pending if s.CheckClaim(probe_claim(code), timeout=10).data_version < version]
    return (time.perf_counter() - acknowledged) * 1000


def probe_claim(code: str) -> eligibility_pb2.CheckClaimRequest:
    line = eligibility_pb2.ClaimLine(line_id="1", practitioner_code=code, service_date=bench_date())
    return eligibility_pb2.CheckClaimRequest(claim_id="visible", institution_code=dataset.HOSPITALS[0], lines=[line])


def bench_date() -> Date:
    day = dataset.FIRST_SERVICE_DAY
    return Date(year=day.year, month=day.month, day=day.day)


def established_on(port: int) -> set[int]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in pathlib.Path(table).read_text().splitlines()[1:]:
            f = row.split()
            if f[3] == "01" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(f[9]))
    return inodes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(options: argparse.Namespace, results: list[Figures]) -> str:
    one = statistics.median(results[0].req_per_s)
    rows = [
        f"`serve --processes N`, {options.people:,} people, 1-line CheckClaim, h2load unpinned "
        f"-c {options.clients} -m {options.streams} -n {options.requests}, median of {options.repeat}; "
        f"{psutil.cpu_count()} cores shared with others (flock /tmp/gk-bench.lock)",
        "",
        "| N | req/s | x N=1 | USS per worker at SERVING (MB) | after load (MB) | supervisor RSS (MB) "
        "| write->visible p50 / p99 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in results:
        rate = statistics.median(f.req_per_s)
        uss = " / ".join(f"{u:.0f}" for u in f.uss_serving)
        loaded = " / ".join(f"{u:.0f}" for u in f.uss_loaded)
        rss = f"{f.supervisor_rss[0]:.0f} / {f.supervisor_rss[1]:.0f}" if f.processes > 1 else "-"
        visible = f"{percentile(f.visible_ms, 0.5):.1f} / {percentile(f.visible_ms, 0.99):.1f}"
        rows.append(f"| {f.processes} | {rate:,.0f} | {rate / one:.2f} | {uss} | {loaded} | {rss} | {visible} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if shutil.which("h2load") is None:
        print("processes: h2load is not installed (apt-get install nghttp2-client)", file=sys.stderr)
        return 2
    children = bench.Children()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="gk-processes-"))
    run = Run(options, workdir, children)
    try:
        run.prepare()
        results = [run.measure(processes) for processes in (1, 2)]
    finally:
        children.stop_all()
        if hasattr(run, "redis"):
            run.redis.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(table(options, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
