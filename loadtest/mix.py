"""A locust run of the HIS/POS mix (loadtest/locustfile.py) against ``gatekeeper serve``, decisions by reason.

    python -m loadtest.mix --people 1000000 --users 32 --seconds 60 [--keep DIR] [--processes N]

1. generates the dataset (loadtest/dataset.py), or reuses ``DIR/data-PEOPLE-SEED/`` as loadtest/scale.py
   lays it out;
2. starts a private redis-server, ``gatekeeper load``s it, starts ``gatekeeper serve`` pinned to core 0
   (unpinned with ``--processes N``) with /metrics on a free port, and waits for health SERVING;
3. runs locust headless on core 1 (``-u USERS -r USERS -t SECONDS``). This file is given to locust as a
   second locustfile for two hooks: ``init`` builds the scenarios' population before the clock starts
   (at 1M people that takes ~20 s, which would otherwise eat into the run; then ``gc.freeze()``, or
   collections over it stall locust itself: p99 8 ms instead of 17 at 1M), and ``quitting`` writes
   ``PREFIX_final_stats.csv`` (``PREFIX_stats.csv`` is rewritten once a second and lags the end);
4. prints locust's figures per request name, lines/s from the server's ``gatekeeper_decisions_total``
   deltas over the run, those decisions by (decision, reason), and the server's CPU and memory.

This script, redis, ``gatekeeper load`` and locust stay on core 1. Every child is stopped on exit,
failure and Ctrl-C (bench.Children). Serialize heavy runs: ``flock /tmp/gk-bench.lock python -m loadtest.mix``.
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence

import psutil
from prometheus_client.parser import text_string_to_metric_families

from cache.embedded import EmbeddedRedis, free_port
from loadtest import dataset, scale
from loadtest.bench import BenchError, Children, child_env, gatekeeper_command, markdown_table, run_guarded

LOAD_CPU = 1
CLOCK_STARTED = "Run time limit set to"  # locust's log line as the headless run's timer starts
FINAL_STATS = "_final_stats.csv"  # PREFIX_final_stats.csv: as PREFIX_stats.csv, written as locust quits

if __name__ == "mix":  # imported by locust as its second locustfile
    import gc

    import gevent
    from locust import events
    from locust.env import Environment
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    @events.init.add_listener
    def _population_before_the_clock(**_kwargs: object) -> None:
        sys.modules["locustfile"].pool()
        gc.freeze()  # millions of permanent objects: full collections over them stall every user
        gevent.get_hub().loop.update_now()  # else -t counts from the loop's stale clock and ends that much early

    @events.quitting.add_listener
    def _final_stats(environment: Environment, **_kwargs: object) -> None:
        """Locust's PREFIX_stats.csv is its last once-a-second rewrite: write the final figures too."""
        with open(f"{environment.parsed_options.csv_prefix}{FINAL_STATS}", "w", newline="") as out:
            StatsCSV(environment, PERCENTILES_TO_REPORT).requests_csv(csv.writer(out))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.mix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=32, help="locust users, all spawned in the first second [32]")
    parser.add_argument("--seconds", type=int, default=60, help="locust run time [60]")
    parser.add_argument("--seed", type=int, default=dataset.DEFAULT_SEED)
    parser.add_argument("--processes", type=int, help="gatekeeper serve --processes N, then not pinned [1, on core 0]")
    parser.add_argument(
        "--decision-log", default="rejects", help="GATEKEEPER_DECISION_LOG of the server [rejects, its default]"
    )
    parser.add_argument("--keep", type=pathlib.Path, help="keep (and reuse) the dataset, logs and locust CSVs here")
    return parser.parse_args(argv)


def server_tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def cpu_seconds(pid: int) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in server_tree(pid))


def decisions(metrics_port: int) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return {
        (s.labels["decision"], s.labels["reason"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "gatekeeper_decisions_total"
    }


def table(header: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    """The first ``left`` columns flush left, the rest (figures) flush right."""
    return markdown_table([list(header), *([str(c) for c in row] for row in rows)], left=range(left))


def report(stats_csv: pathlib.Path, delta: dict[tuple[str, str], float], cpu: float, wall: float, pid: int) -> None:
    rows = {row["Name"].split(" ", 1)[-1]: row for row in csv.DictReader(stats_csv.open())}  # "POS 1 line", ...
    total = rows.pop("Aggregated")
    lines = sum(delta.values())
    pos = int(rows["POS 1 line"]["Request Count"]) if "POS 1 line" in rows else 0
    lines_of = {"POS 1 line": pos, "HIS 20-200 lines": lines - pos, "all": lines}
    # Locust's own time base: requests / its req/s, so lines/s matches its req/s.
    seconds = int(total["Request Count"]) / float(total["Requests/s"]) if float(total["Requests/s"]) else float("nan")
    out = [
        [
            name,
            r["Request Count"],
            r["Failure Count"],
            f"{float(r['Requests/s']):,.1f}",
            f"{lines_of.get(name, 0) / seconds:,.0f}",
            r["Median Response Time"],
            r["95%"],
            r["99%"],
            f"{float(r['Max Response Time']):.0f}",
        ]
        for name, r in [*sorted(rows.items()), ("all", total)]
    ]
    print(table(["locust", "requests", "failures", "req/s", "lines/s", "median ms", "p95 ms", "p99 ms", "max ms"], out))
    by_reason = sorted(((v, k) for k, v in delta.items() if v), reverse=True)
    out = [[d, r, f"{v:,.0f}", f"{v / lines:.2%}"] for v, (d, r) in by_reason]
    print(
        f"\n{table(['decision', 'reason', 'lines', 'share'], [*out, ['all', '', f'{lines:,.0f}', '100%']], left=2)}\n"
    )
    rss, uss = (sum(m) for m in zip(*(scale.memory_mb(p.pid) for p in server_tree(pid)), strict=True))
    print(f"server: {cpu / wall:.0%} of one core over the run ({cpu:.1f} CPU s in {wall:.1f} s)")
    print(f"server: RSS {rss:.0f} MB, USS {uss:.0f} MB at the end (summed over its processes)")


def run(args: argparse.Namespace, workdir: pathlib.Path, children: Children, redis: list[EmbeddedRedis]) -> None:
    server_cpus = ",".join(map(str, sorted(os.sched_getaffinity(0)))) if args.processes else "0"
    os.sched_setaffinity(0, {LOAD_CPU})  # we, redis, `gatekeeper load` and locust stay off the server core
    people = scale.ensure_dataset(workdir, args.people, args.seed)
    with children.shimmed("redis-server", workdir / "bin"):
        redis.append(EmbeddedRedis(workdir / "redis-mix", appendonly=False).start())
    scale.load(children, redis[0].url, people)

    port, metrics_port = free_port(), free_port()
    serve = ["serve", "--redis-url", redis[0].url, "--port", str(port), "--metrics-port", str(metrics_port)]
    serve += ["--admin-port", "0", *(["--processes", str(args.processes)] if args.processes else [])]
    env = child_env(GATEKEEPER_PROFILE="national", GATEKEEPER_DECISION_LOG=args.decision_log)
    server = children.start(
        ["taskset", "-c", server_cpus, *gatekeeper_command(), *serve], env=env, log=workdir / "serve-mix.log"
    )
    scale.wait_serving(server, port, timeout=300)
    print(f"mix: gatekeeper serve pid {server.pid} SERVING on {port} (cores {server_cpus})", flush=True)

    prefix, log = workdir / "locust", workdir / "locust.log"
    log.unlink(missing_ok=True)
    locust = [str(pathlib.Path(sys.executable).parent / "locust"), "-f", "loadtest/locustfile.py,loadtest/mix.py"]
    locust += ["--headless", "-u", str(args.users), "-r", str(args.users), "-t", f"{args.seconds}s"]
    locust += ["--csv", str(prefix), "--only-summary"]
    env = child_env(
        GATEKEEPER_TARGET=f"127.0.0.1:{port}", LOADTEST_PEOPLE=str(args.people), LOADTEST_SEED=str(args.seed)
    )
    before = decisions(metrics_port)  # the server is idle until locust's users start
    process = children.start(["taskset", "-c", str(LOAD_CPU), *locust], env=env, log=log)
    while CLOCK_STARTED not in log.read_text(errors="replace"):  # the population is built by then
        if process.poll() is not None:
            raise BenchError(f"locust exited with {process.returncode} before starting; see {log}")
        time.sleep(0.1)
    began, cpu = time.monotonic(), cpu_seconds(server.pid)
    print(f"mix: locust running {args.users} users for {args.seconds}s", flush=True)
    try:
        code = process.wait(args.seconds + 120)
    except subprocess.TimeoutExpired:
        raise BenchError(f"locust did not finish; see {log}") from None
    wall, cpu = time.monotonic() - began, cpu_seconds(server.pid) - cpu
    after = decisions(metrics_port)
    if code not in (0, 1):  # 1: some requests failed, which the table shows
        raise BenchError(f"locust exited with {code}; see {log}")
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    print(f"\n{args.people:,} people, {args.users} users, {args.seconds} s, serve --processes {args.processes or 1}\n")
    report(pathlib.Path(f"{prefix}{FINAL_STATS}"), delta, cpu, wall, server.pid)
    failures = pathlib.Path(f"{prefix}_failures.csv")
    if code == 1 and failures.exists():
        print(f"\nlocust failures ({failures}):\n{failures.read_text()}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = (args.keep or pathlib.Path(tempfile.mkdtemp(prefix="gk-mix-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    children, redis = Children(), []

    def close() -> None:
        for r in redis:
            r.stop()

    return run_guarded("mix", workdir, args.keep, children, lambda: run(args, workdir, children, redis), close) or 0


if __name__ == "__main__":
    sys.exit(main())
