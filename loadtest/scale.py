"""Start and memory at scale: how long ``gatekeeper serve`` takes to be SERVING, and how much it holds.

    python -m loadtest.scale --people 1000000 --repeat 3 --keep /tmp/gk-scale

1. generates a dataset of ``--people`` people (loadtest/dataset.py), or reuses the one in ``--keep``;
2. starts a private redis-server (cache.embedded.EmbeddedRedis) and loads it with ``gatekeeper load``;
3. per repetition starts ``gatekeeper serve --redis-url ...`` and reports the seconds from spawn to
   health SERVING, the serving process's VmRSS and USS then, and again after ``CheckClaim`` has looked
   up ``--sample`` random people (so lazily decoded views show), with the longest gc pause the server
   saw (a ``gc.callbacks`` probe put in the server by a sitecustomize module on its PYTHONPATH);
4. prints a table of every repetition and the medians.

A benchmark, not a test: it asserts nothing. Heavy runs on a shared machine should be serialized:
``flock /tmp/gk-bench.lock python -m loadtest.scale ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2
from loadtest import dataset
from loadtest.bench import (
    BenchError,
    Children,
    gatekeeper_command,
    load_dataset,
    markdown_table,
    serve_env,
    signals_ignored,
    signals_raise,
)

LINES_PER_CLAIM = 100
# Put in the server by PYTHONPATH: records gc pauses and rewrites them to a file twice a second.
GC_PROBE = """\
import gc, json, os, threading, time
_out = os.environ.get("GK_SCALE_GC_FILE")
if _out:
    _began = [0.0]
    _stats = {"collections": 0, "pauses": []}  # pauses of 1 ms or more: [wall time at end, seconds, generation]
    def _probe(phase, info):
        if phase == "start":
            _began[0] = time.perf_counter()
            return
        pause = time.perf_counter() - _began[0]
        _stats["collections"] += 1
        if pause >= 0.001 and len(_stats["pauses"]) < 10000:
            _stats["pauses"].append([time.time(), pause, info["generation"]])
    gc.callbacks.append(_probe)
    def _write():
        while True:
            time.sleep(0.5)
            with open(_out + ".tmp", "w") as f:
                json.dump(_stats, f)
            os.replace(_out + ".tmp", _out)
    threading.Thread(target=_write, name="gc-probe", daemon=True).start()
"""


@dataclass(frozen=True)
class Run:
    start_s: float
    rss_mb: float
    uss_mb: float
    sample_rss_mb: float
    sample_uss_mb: float
    sample_s: float
    max_gc_pause_ms: float


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.scale", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="server starts to take the median of [1]")
    parser.add_argument("--sample", type=int, default=20_000, help="random people checked after SERVING [20000]")
    parser.add_argument("--seed", type=int, default=dataset.DEFAULT_SEED)
    parser.add_argument("--keep", type=pathlib.Path, help="keep (and reuse) the dataset and logs in this directory")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a server may take to be SERVING [300]")
    return parser.parse_args(argv)


def ensure_dataset(workdir: pathlib.Path, people: int, seed: int) -> pathlib.Path:
    """The dataset file for (people, seed), generated unless a kept one is there."""
    out = workdir / f"data-{people}-{seed}"
    path = out / "people.jsonl"
    if not path.exists():
        t = time.monotonic()
        dataset.write_all(out, people, seed)
        print(f"scale: generated {people} people in {time.monotonic() - t:.1f}s", flush=True)
    return path


def load(children: Children, redis_url: str, path: pathlib.Path) -> None:
    t = time.monotonic()
    summary = load_dataset(children, path, redis_url)
    print(f"scale: {summary} [{time.monotonic() - t:.1f}s]", flush=True)


def wait_serving(process: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise BenchError(f"gatekeeper serve exited with {process.returncode}")
            with contextlib.suppress(grpc.RpcError):
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            if time.monotonic() > deadline:
                raise BenchError(f"gatekeeper serve was not SERVING within {timeout}s")
            time.sleep(0.05)


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, USS) of a process, in MB."""
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 1e6, info.uss / 1e6


def sample_claims(people: int, sample: int, seed: int) -> Iterator[eligibility_pb2.CheckClaimRequest]:
    """Claims naming ``sample`` random people (LINES_PER_CLAIM lines each), so each is looked up once."""
    rng = random.Random(seed)
    codes = [dataset.code_of(i) for i in rng.sample(range(people), min(sample, people))]
    for n, start in enumerate(range(0, len(codes), LINES_PER_CLAIM)):
        request = eligibility_pb2.CheckClaimRequest(claim_id=f"SCALE-{n}", institution_code=dataset.HOSPITALS[0])
        for i, code in enumerate(codes[start : start + LINES_PER_CLAIM]):
            line = request.lines.add(line_id=str(i + 1), practitioner_code=code)
            line.service_date.year, line.service_date.month, line.service_date.day = 2025, 4, 1
            line.care_type = enums_pb2.CARE_TYPE_ROUTINE
        yield request


def check_sample(port: int, people: int, sample: int, seed: int) -> float:
    t = time.monotonic()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
        for request in sample_claims(people, sample, seed):
            response = stub.CheckClaim(request, timeout=30)
            if len(response.decisions) != len(request.lines):
                raise BenchError(f"{request.claim_id}: {len(response.decisions)} decisions for {len(request.lines)}")
    return time.monotonic() - t


def max_gc_pause_ms(gc_file: pathlib.Path, serving: float, written_after: float) -> float:
    """The longest gc pause that ended after ``serving`` (wall time), from the probe's file once it was
    rewritten after ``written_after`` (twice a second); the start's own collections are left out."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if gc_file.stat().st_mtime > written_after:
                pauses = json.loads(gc_file.read_text())["pauses"]
                return max((p[1] * 1000 for p in pauses if p[0] > serving), default=0.0)
        time.sleep(0.1)
    return float("nan")


def one_run(children: Children, workdir: pathlib.Path, redis_url: str, n: int, args: argparse.Namespace) -> Run:
    port = free_port()
    probe_dir = workdir / "probe"
    probe_dir.mkdir(exist_ok=True)
    (probe_dir / "sitecustomize.py").write_text(GC_PROBE)
    gc_file = workdir / f"gc-{n}.json"
    gc_file.unlink(missing_ok=True)
    path = os.pathsep.join(p for p in (str(probe_dir), os.environ.get("PYTHONPATH", "")) if p)
    env = serve_env(redis_url, port, workdir, PYTHONPATH=path, GK_SCALE_GC_FILE=str(gc_file))
    began = time.monotonic()
    process = children.start(
        [*gatekeeper_command(), "serve", "--redis-url", redis_url], env=env, log=workdir / f"serve-{n}.log"
    )
    try:
        wait_serving(process, port, args.timeout)
        start_s = time.monotonic() - began
        serving = time.time()
        rss, uss = memory_mb(process.pid)
        sample_s = check_sample(port, args.people, args.sample, args.seed + n)
        after = time.time()
        sample_rss, sample_uss = memory_mb(process.pid)
        pause = max_gc_pause_ms(gc_file, serving, after)
    finally:
        children.stop(process)
    return Run(start_s, rss, uss, sample_rss, sample_uss, sample_s, pause)


COLUMNS = (
    ("start→SERVING s", "start_s", "{:.2f}"),
    ("RSS MB", "rss_mb", "{:.0f}"),
    ("USS MB", "uss_mb", "{:.0f}"),
    ("sample s", "sample_s", "{:.2f}"),
    ("RSS after sample MB", "sample_rss_mb", "{:.0f}"),
    ("USS after sample MB", "sample_uss_mb", "{:.0f}"),
    ("max gc pause after SERVING ms", "max_gc_pause_ms", "{:.1f}"),
)


def table(runs: list[Run], people: int, sample: int) -> str:
    rows = [[f"run {i + 1}", *(fmt.format(getattr(r, attr)) for _, attr, fmt in COLUMNS)] for i, r in enumerate(runs)]
    medians = [fmt.format(statistics.median(getattr(r, attr) for r in runs)) for _, attr, fmt in COLUMNS]
    rows.append(["median", *medians])
    header = [f"{people} people, sample {sample}", *(name for name, _, _ in COLUMNS)]
    return markdown_table([header, *rows], left=(0,))


def run(args: argparse.Namespace, workdir: pathlib.Path) -> list[Run]:
    children = Children()
    try:
        path = ensure_dataset(workdir, args.people, args.seed)
        with children.shimmed("redis-server", workdir / "bin"):
            redis = EmbeddedRedis(workdir / "redis-scale", appendonly=False).start()
        try:
            load(children, redis.url, path)
            runs = []
            for n in range(args.repeat):
                result = one_run(children, workdir, redis.url, n, args)
                print(f"scale: run {n + 1}: {result}", flush=True)
                runs.append(result)
            return runs
        finally:
            with signals_ignored():
                redis.stop()
    finally:
        with signals_ignored():
            children.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            workdir = args.keep.resolve()
        else:
            workdir = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gk-scale-")))
        with signals_raise():
            try:
                runs = run(args, workdir)
            except BenchError as exc:
                print(f"scale: {exc}", file=sys.stderr)
                return 1
    print(table(runs, args.people, args.sample))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
