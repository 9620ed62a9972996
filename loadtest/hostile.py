"""Hostile-bytes memory figure: resident memory of `gatekeeper serve` before and after 50,000 random payloads.

    python -m loadtest.hostile                  # 50,000 random payloads to CheckClaim (+ the others below)
    python -m loadtest.hostile --payloads 5000  # a smoke run

Issue 7's figure: resident memory after 50,000 random payloads within 5 MB of before (grpcio's
failed-deserialization path used to keep ~16 KB a call).

What it does:

1. starts a private redis-server and ``gatekeeper serve`` (embedded demo data loaded into it; admin
   port on loopback; /metrics on) as a subprocess, pinned to the server core (``taskset -c 0``) when
   there are two cores;
2. warms up: ``--warmup`` random payloads to every method, valid checks, then waits for the
   resident set (VmRSS in /proc/PID/status) to settle;
3. sends ``--payloads`` random byte strings (1-300 bytes, seed ``--seed``) raw to CheckClaim,
   ``--utf8`` well-formed claims with invalid UTF-8 in a string field, and ``--admin`` random
   payloads to each RegistryService method, ``--concurrency`` calls in flight, tallying status codes;
4. waits for VmRSS to settle again and prints before, after and the delta, the status codes per
   kind of payload, and the server's own counts (``gatekeeper_undecodable_requests_total``,
   ``grpc_server_handled_total``) from /metrics.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc
from prometheus_client.parser import text_string_to_metric_families

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, registry_pb2
from loadtest.bench import BenchError, Children, child_env, gatekeeper_command

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHECK = eligibility_pb2.DESCRIPTOR.services_by_name["EligibilityService"]
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
TARGET_MB = 5.0
# Same length as the claim_id they replace: stray bytes, overlong NUL, surrogate, cut-short sequence.
INVALID_UTF8 = (b"\xff\xfe\xff\xfe\xff\xfe", b"\xc0\x80abcd", b"abc\xed\xa0\x80", b"abcde\xe4")


@dataclass(frozen=True)
class Options:
    payloads: int
    utf8: int
    admin: int
    warmup: int
    concurrency: int
    seed: int
    server_cpu: int | None
    load_cpu: int | None


@dataclass
class Tally:
    sent: int = 0
    codes: collections.Counter[str] = field(default_factory=collections.Counter)


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.hostile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payloads", type=int, default=50_000, help="random payloads to CheckClaim [50000]")
    parser.add_argument("--utf8", type=int, default=5_000, help="claims with invalid UTF-8 [5000]")
    parser.add_argument("--admin", type=int, default=1_000, help="random payloads per RegistryService method [1000]")
    parser.add_argument("--warmup", type=int, default=2_000, help="random payloads per method before measuring [2000]")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight [32]")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to [0]")
    parser.add_argument("--load-cpu", type=int, default=1, help="core this script is pinned to [1]")
    args = parser.parse_args(argv)
    cpus = os.sched_getaffinity(0)
    pin = args.server_cpu in cpus and args.load_cpu in cpus and args.server_cpu != args.load_cpu
    return Options(
        args.payloads,
        args.utf8,
        args.admin,
        args.warmup,
        args.concurrency,
        args.seed,
        args.server_cpu if pin else None,
        args.load_cpu if pin else None,
    )


def rss_kb(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def settled_rss_kb(pid: int, quiet: float = 3.0, timeout: float = 60.0) -> int:
    """VmRSS once it has not changed by more than 64 kB for ``quiet`` seconds (sampled 10 times a second)."""
    began = time.monotonic()
    last, since = rss_kb(pid), time.monotonic()
    while time.monotonic() - began < timeout:
        time.sleep(0.1)
        now = rss_kb(pid)
        if abs(now - last) > 64:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return rss_kb(pid)


def send_all(channel: grpc.Channel, path: str, payloads: Sequence[bytes], concurrency: int, tally: Tally) -> None:
    """Every payload raw to ``path`` with ``concurrency`` calls in flight; status codes tallied."""
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        path, request_serializer=None, response_deserializer=None
    )
    slots = threading.BoundedSemaphore(concurrency)
    lock = threading.Lock()

    def done(future: grpc.Future[bytes]) -> None:
        error = future.exception()
        code = "OK" if error is None else error.code().name  # type: ignore[attr-defined]
        with lock:
            tally.codes[code] += 1
        slots.release()

    for data in payloads:
        slots.acquire()
        tally.sent += 1
        call.future(data, timeout=30).add_done_callback(done)
    for _ in range(concurrency):
        slots.acquire()
    for _ in range(concurrency):
        slots.release()


def random_payloads(rng: random.Random, count: int) -> list[bytes]:
    return [rng.randbytes(rng.randint(1, 300)) for _ in range(count)]


def utf8_payloads(rng: random.Random, count: int) -> list[bytes]:
    out = []
    for n in range(count):
        request = eligibility_pb2.CheckClaimRequest(claim_id="~CLAIM", institution_code="H54010200001")
        request.lines.add(
            line_id="~LINE~", practitioner_code="D54010200001", service_date={"year": 2025, "month": 3, "day": 10}
        )
        data = request.SerializeToString()
        marker = b"~CLAIM" if n % 2 else b"~LINE~"
        out.append(data.replace(marker, rng.choice(INVALID_UTF8)))
    return out


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def run(options: Options, workdir: pathlib.Path, children: Children) -> int:
    redis = EmbeddedRedis(workdir / "redis", appendonly=False)
    with children.shimmed("redis-server", workdir / "bin"):
        redis.start()
    try:
        return _run(options, workdir, children, redis)
    finally:
        redis.stop()


def _run(options: Options, workdir: pathlib.Path, children: Children, redis: EmbeddedRedis) -> int:
    check_port, admin_port, metrics_port = free_port(), free_port(), free_port()
    env = child_env(
        GATEKEEPER_REDIS_URL=redis.url,
        GATEKEEPER_PROFILE="xizang",
        GATEKEEPER_PORT=str(check_port),
        GATEKEEPER_ADMIN_PORT=str(admin_port),
        GATEKEEPER_METRICS_PORT=str(metrics_port),
        GATEKEEPER_DECISION_LOG="off",
        GATEKEEPER_DATA_DIR=str(workdir / "data"),
    )
    pin = ["taskset", "-c", str(options.server_cpu)] if options.server_cpu is not None else []
    log = workdir / "gatekeeper.log"
    process = children.start([*pin, *gatekeeper_command(), "serve"], env=env, log=log)
    if options.load_cpu is not None:
        os.sched_setaffinity(0, {options.load_cpu})
    rng = random.Random(options.seed)
    check = grpc.insecure_channel(f"127.0.0.1:{check_port}")
    admin = grpc.insecure_channel(f"127.0.0.1:{admin_port}")
    try:
        grpc.channel_ready_future(check).result(timeout=60)
        grpc.channel_ready_future(admin).result(timeout=60)
        paths = [(check, f"/{CHECK.full_name}/{m.name}") for m in CHECK.methods]
        paths += [(admin, f"/{REGISTRY.full_name}/{m.name}") for m in REGISTRY.methods]
        warm = Tally()
        for channel, path in paths:
            send_all(channel, path, random_payloads(rng, options.warmup), options.concurrency, warm)
        send_all(check, paths[0][1], utf8_payloads(rng, options.warmup), options.concurrency, warm)
        before = settled_rss_kb(process.pid)
        started = time.monotonic()
        tallies: dict[str, Tally] = collections.defaultdict(Tally)
        send_all(
            check,
            paths[0][1],
            random_payloads(rng, options.payloads),
            options.concurrency,
            tallies["random → CheckClaim"],
        )
        send_all(
            check,
            paths[0][1],
            utf8_payloads(rng, options.utf8),
            options.concurrency,
            tallies["invalid UTF-8 → CheckClaim"],
        )
        for channel, path in paths[2:]:
            name = path.rsplit("/", 1)[1]
            send_all(
                channel, path, random_payloads(rng, options.admin), options.concurrency, tallies[f"random → {name}"]
            )
        elapsed = time.monotonic() - started
        after = settled_rss_kb(process.pid)
        metrics = scrape(metrics_port)
    finally:
        check.close()
        admin.close()
        children.stop(process)

    delta_mb = (after - before) / 1024
    total = sum(t.sent for t in tallies.values())
    print(f"server pid {process.pid}; {total:,} payloads in {elapsed:.0f}s after a warm-up of {warm.sent:,}")
    print("| payloads | sent | status codes |")
    print("|---|---|---|")
    for name, tally in tallies.items():
        codes = ", ".join(f"{code} {n:,}" for code, n in tally.codes.most_common())
        print(f"| {name} | {tally.sent:,} | {codes} |")
    print()
    undecodable = sum(v for (n, _l), v in metrics.items() if n == "gatekeeper_undecodable_requests_total")
    handled: collections.Counter[str] = collections.Counter()
    for (name, labels), value in metrics.items():
        if name == "grpc_server_handled_total":
            handled[dict(labels)["grpc_code"]] += int(value)
    print(
        f"server counts (warm-up included): gatekeeper_undecodable_requests_total {undecodable:,.0f}; "
        f"grpc_server_handled_total by code {dict(handled.most_common())}"
    )
    verdict = "met" if abs(delta_mb) <= TARGET_MB else "NOT met"
    print(
        f"VmRSS before {before / 1024:.1f} MB, after {after / 1024:.1f} MB: delta {delta_mb:+.1f} MB "
        f"(target within {TARGET_MB:g} MB: {verdict})"
    )
    bad = sum(t.codes[c] for t in tallies.values() for c in ("INTERNAL", "UNKNOWN"))
    if bad:
        print(f"hostile: {bad} INTERNAL/UNKNOWN answers", file=sys.stderr)
    return 0 if bad == 0 and verdict == "met" else 1


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(list(sys.argv[1:] if argv is None else argv))
    if shutil.which("redis-server") is None:
        print("hostile: redis-server is not installed (scripts/bootstrap.sh)", file=sys.stderr)
        return 2
    if options.server_cpu is not None and shutil.which("taskset") is None:
        options = Options(**{**options.__dict__, "server_cpu": None, "load_cpu": None})
    children = Children()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="gk-hostile-"))
    try:
        return run(options, workdir, children)
    except BenchError as exc:
        print(f"hostile: FAILED: {exc}; logs in {workdir}", file=sys.stderr)
        return 1
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
