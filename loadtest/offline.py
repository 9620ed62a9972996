"""Figures for the offline tools (issue 11): `gatekeeper recheck` lines/s and `gatekeeper simulate` seconds.

    python -m loadtest.offline                  # 1,000,000 people, a log of 1,000,000 rejected lines
    python -m loadtest.offline --people 100000 --lines 100000
    python -m loadtest.offline --quick          # 20,000 people and lines: a smoke run, ~1 min

What it does:

1. generates the synthetic people (loadtest/dataset.py, seed 7), starts a private redis-server
   (cache.embedded.EmbeddedRedis, no AOF) and runs ``gatekeeper load``;
2. writes a decision log of ``--lines`` non-eligible lines with service/check/decision_log.py's own
   writer (``DecisionLog("rejects", path)``), in claims of ``--claim-lines`` lines at one institution:
   suspended and terminated staff at their hospital (REJECT SUSPENDED / TERMINATED), and about 5%
   each of unknown codes and of normal people at a hospital they are not registered at, all dated
   in the dataset's service window with the decisions the national profile gives them;
3. starts ``gatekeeper serve`` (admin port on) and withdraws ``--withdraw`` suspended people's
   points decisions over gRPC (an upheld appeal each), then stops it: their logged lines become
   payable, and recheck must list exactly those;
4. runs, pinned to the tool core (``taskset -c 0``; redis and this script stay on core 1):
   - ``gatekeeper recheck LOG --format csv`` and checks it listed exactly the expected lines,
     each with ``withdraw:<decision>`` as the document that changed it;
   - ``gatekeeper simulate --profile draft.toml --on 2025-05-15 --format json`` with a draft of
     longer suspensions (9 points: 3 months instead of 2) and checks it compared every ledger and
     found the people the draft keeps suspended on that day;
   ``--repeat`` times each, alternating, reporting the median;
5. prints the machine, the date, the exact command and a table: wall seconds, lines (or ledgers)
   per second, the tool's own timing, CPU seconds and peak RSS (VmHWM, sampled every 20 ms) of the tool.

Bounded: every child has a timeout taken from ``--budget``; every child is stopped on exit,
failure, Ctrl-C and SIGTERM (with ``setpriv``, also if this script is SIGKILLed).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import json
import os
import pathlib
import platform
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import grpc

from cache.embedded import EmbeddedRedis, free_port
from cache.store import Store, connect
from domain.values import CareType, Decision, Reason
from gatekeeper.v1 import registry_pb2, registry_pb2_grpc
from loadtest import dataset
from loadtest.bench import (
    BenchError,
    Children,
    Server,
    _cpu_model,
    child_env,
    gatekeeper_command,
    load_dataset,
    markdown_table,
    run_guarded,
    serve_env,
    wait_serving,
)
from service.check.decision import Line, Outcome
from service.check.decision_log import DecisionLog

ROOT = pathlib.Path(__file__).resolve().parent.parent
NATIONAL = ROOT / "service" / "rules" / "profiles" / "national.toml"
SIMULATE_ON = date(2025, 5, 15)  # 9-point suspensions (decided 2025-02-10..03-27) have partly ended under national


@dataclass(frozen=True)
class Options:
    people: int
    lines: int
    claim_lines: int
    withdraw: int
    repeat: int
    tool_cpu: int
    load_cpu: int
    budget: float
    keep: pathlib.Path | None
    py_spy: pathlib.Path | None


@dataclass
class Measured:
    tool: str
    repetition: int
    wall: float
    own_seconds: float  # what the tool says it took (reading the log / the ledgers and deciding)
    cpu: float
    max_rss_mb: float
    count: int  # lines re-decided / ledgers compared


@dataclass
class Offline:
    o: Options
    workdir: pathlib.Path
    children: Children
    started: float = field(default_factory=time.monotonic)
    redis: EmbeddedRedis | None = None
    runs: list[Measured] = field(default_factory=list)
    commands: dict[str, str] = field(default_factory=dict)
    expected_payable: set[tuple[str, str]] = field(default_factory=set)
    steps: list[tuple[str, float]] = field(default_factory=list)  # preparation step, seconds
    transitions: dict[str, int] = field(default_factory=dict)  # simulate's, for the table

    def remaining(self) -> float:
        left = self.o.budget - (time.monotonic() - self.started)
        if left <= 0:
            raise BenchError(f"the --budget of {self.o.budget:.0f}s is used up")
        return left

    def step(self, name: str, began: float) -> None:
        seconds = time.monotonic() - began
        self.steps.append((name, seconds))
        print(f"offline: {name}: {seconds:.1f}s", flush=True)

    # --- preparation --------------------------------------------------------------------------

    def prepare(self) -> pathlib.Path:
        began = time.monotonic()
        files, people, _claims = dataset.write_all(self.workdir, self.o.people)
        self.step(f"{self.o.people:,} people generated", began)
        began = time.monotonic()
        with self.children.shimmed("redis-server", self.workdir / "bin"):
            self.redis = EmbeddedRedis(self.workdir / "redis", appendonly=False).start()
        summary = load_dataset(self.children, files.people, self.redis.url, timeout=self.remaining())
        self.step(f"gatekeeper load ({summary})", began)
        began = time.monotonic()
        version = Store(connect(self.redis.url)).version()
        log, withdrawn = self.write_log(people, version)
        self.step(f"decision log of {self.o.lines:,} lines written ({log.stat().st_size / 1e6:,.0f} MB)", began)
        began = time.monotonic()
        self.withdraw_points(withdrawn)
        self.step(f"{len(withdrawn):,} points decisions withdrawn over gRPC", began)
        return log

    def write_log(self, people: list[dataset.Person], version: int) -> tuple[pathlib.Path, list[dataset.Person]]:
        """``--lines`` non-eligible lines, written by the service's own decision log writer."""
        rng = random.Random(11)
        rejected = [p for p in people if p.kind != dataset.NORMAL]
        normal = [p for p in people if p.kind == dataset.NORMAL and len(p.institutions) == 1]
        suspended = [p for p in rejected if p.kind == dataset.SUSPENDED and p.institutions[0].startswith("H")]
        if not rejected or not normal or len(suspended) < self.o.withdraw:
            raise BenchError(f"too few people ({self.o.people}) for the log and {self.o.withdraw} withdrawals")
        withdrawn = rng.sample(suspended, self.o.withdraw)
        withdrawn_codes = {p.code for p in withdrawn}
        by_home: dict[str, list[dataset.Person]] = {}
        for person in rejected:  # hospitals only: a pharmacy's prescriber need not be registered there
            if person.institutions[0].startswith("H"):
                by_home.setdefault(person.institutions[0], []).append(person)
        homes = sorted(by_home)
        path = self.workdir / "decisions.jsonl"
        path.unlink(missing_ok=True)
        writer = DecisionLog("rejects", str(path))
        days = (dataset.LAST_SERVICE_DAY - dataset.FIRST_SERVICE_DAY).days + 1
        service_days = [date.fromordinal(dataset.FIRST_SERVICE_DAY.toordinal() + i) for i in range(days)]
        written = claims = 0
        try:
            while written < self.o.lines:
                institution = rng.choice(homes)
                claim_id = f"OFFLINE-{claims:07d}"
                lines: list[tuple[str, None, Line]] = []
                outcomes: list[Outcome] = []
                for n in range(min(self.o.claim_lines, self.o.lines - written)):
                    roll = rng.random()
                    person: dataset.Person | None
                    if roll < 0.05:
                        person, code = None, f"D999{claims % 1000:03d}{n:06d}"  # never generated: unknown
                    elif roll < 0.10:  # a normal person billed at a hospital they are not registered at
                        person = rng.choice(normal)
                        while institution in person.institutions:
                            person = rng.choice(normal)
                        code = person.code
                    else:
                        person = rng.choice(by_home[institution])
                        code = person.code
                    care = rng.choice(("routine", "unspecified"))
                    decision, reason = dataset.expected_outcome(person, institution, care)
                    line = Line(str(n + 1), code, rng.choice(service_days), care_type=CareType[care.upper()])
                    lines.append((line.line_id, None, line))  # as the check path hands its lines to the log
                    outcomes.append(Outcome(Decision[decision[9:]], Reason[reason[7:]], code, None, ""))
                    if code in withdrawn_codes:
                        self.expected_payable.add((claim_id, line.line_id))
                writer.record(claim_id, institution, lines, outcomes, version, "national@2025.1")
                written += len(lines)
                claims += 1
                if claims % 5000 == 0:
                    writer.flush(timeout=self.remaining())
                    self.remaining()
        finally:
            writer.close()
        if writer.dropped:
            raise BenchError(f"the decision log writer dropped {writer.dropped} claims")
        return path, withdrawn

    def withdraw_points(self, withdrawn: list[dataset.Person]) -> None:
        """An upheld appeal for each: `gatekeeper serve` with the admin port, WithdrawPoints over gRPC."""
        assert self.redis is not None
        port, admin = free_port(), free_port()
        env = serve_env(self.redis.url, port, self.workdir, GATEKEEPER_ADMIN_PORT=str(admin))
        log = self.workdir / "gatekeeper.log"
        process = self.children.start([*gatekeeper_command(), "serve"], env=env, log=log)
        try:
            wait_serving(Server("gatekeeper", process, port, log), timeout=min(600, self.remaining()))
            with grpc.insecure_channel(f"127.0.0.1:{admin}") as channel:
                stub = registry_pb2_grpc.RegistryServiceStub(channel)

                def one(person: dataset.Person) -> None:
                    index = int(person.code[-6:])
                    request = registry_pb2.WithdrawPointsRequest(
                        decision_no=f"BENCH-{index:06d}-1", reason="appeal upheld (loadtest.offline)"
                    )
                    request.withdrawn_on.year, request.withdrawn_on.month, request.withdrawn_on.day = 2025, 9, 1
                    stub.WithdrawPoints(request, timeout=30)

                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    for future in [pool.submit(one, p) for p in withdrawn]:
                        future.result(timeout=self.remaining())
        finally:
            self.children.stop(process)

    def write_draft(self) -> pathlib.Path:
        draft = NATIONAL.read_text()
        for old, new in (
            ('id = "national"', 'id = "bench-draft"'),
            ('version = "2025.1"', 'version = "2026.0"'),
            ("{ 9 = 2, 10 = 4, 11 = 6 }", "{ 9 = 3, 10 = 5, 11 = 6 }"),
        ):
            if old not in draft:
                raise BenchError(f"{NATIONAL} no longer has {old!r}; update loadtest/offline.py's draft")
            draft = draft.replace(old, new)
        path = self.workdir / "draft.toml"
        path.write_text(draft)
        return path

    # --- measuring ----------------------------------------------------------------------------

    def measured(self, tool: str, argv: list[str], repetition: int) -> tuple[Measured, str, str]:
        """Run one tool pinned to the tool core; wall time, and CPU and peak RSS of that very process."""
        assert self.redis is not None
        pinned = ["taskset", "-c", str(self.o.tool_cpu), *gatekeeper_command(), *argv]
        if self.o.py_spy is not None:  # sampled from the load core: py-spy record runs the pinned tool
            self.o.py_spy.mkdir(parents=True, exist_ok=True)
            stacks = self.o.py_spy / f"{tool}-{repetition}.txt"
            pinned = [_py_spy(), "record", "--rate", "100", "--format", "raw", "-o", str(stacks), "--", *pinned]
        self.commands[tool] = shlex.join(["taskset", "-c", str(self.o.tool_cpu), "gatekeeper", *argv])
        out_path, err_path = self.workdir / f"{tool}.out", self.workdir / f"{tool}.err"
        env = child_env(GATEKEEPER_REDIS_URL=self.redis.url, GATEKEEPER_PROFILE="national")
        with out_path.open("wb") as out, err_path.open("wb") as err:
            began = time.perf_counter()
            process = subprocess.Popen(
                self.children.wrap(pinned), env=env, cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=out, stderr=err, start_new_session=True,
            )  # fmt: skip
            self.children.processes.append(process)
            deadline = time.monotonic() + self.remaining()
            peak_kb = 0  # VmHWM after the exec: rusage's maxrss would count this (big) process's pages before it
            while True:
                peak_kb = max(peak_kb, _vm_hwm_kb(process.pid))
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"{tool} did not finish within the budget")
                time.sleep(0.02)
            wall = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        self.children.processes.remove(process)
        stdout, stderr = out_path.read_text(), err_path.read_text()
        if self.o.py_spy is not None:  # py-spy's own lines go to the same stdout
            stdout = "\n".join(ln for ln in stdout.splitlines() if not ln.startswith("py-spy>")).lstrip()
        if process.returncode != 0:
            raise BenchError(f"{tool} exited with {process.returncode}:\n{stderr[-3000:]}")
        if tool == "recheck":
            found = re.search(r"(\d+) logged lines in \d+ claims re-decided in ([\d.]+) s", stderr)
        else:
            found = re.search(r"([\d,]+) ledgers compared in ([\d.]+) s", stderr)
        if found is None:
            raise BenchError(f"{tool} did not print its summary line:\n{stderr[-3000:]}")
        run = Measured(
            tool, repetition, wall, float(found.group(2)), usage.ru_utime + usage.ru_stime,
            peak_kb / 1024, int(found.group(1).replace(",", "")),
        )  # fmt: skip
        print(
            f"  [{repetition + 1}/{self.o.repeat}] {tool:<8} {wall:7.1f}s wall  {run.count / wall:>10,.0f}/s"
            f"  (tool's own {run.own_seconds:.1f}s)  cpu {run.cpu:.1f}s  peak RSS {run.max_rss_mb:,.0f} MB",
            flush=True,
        )
        return run, stdout, stderr

    def recheck(self, log: pathlib.Path, repetition: int) -> Measured:
        run, stdout, _ = self.measured("recheck", ["recheck", str(log), "--format", "csv"], repetition)
        rows = list(csv.DictReader(stdout.splitlines()))
        got = {(r["claim_id"], r["line_id"]) for r in rows}
        if run.count != self.o.lines:
            raise BenchError(f"recheck re-decided {run.count} lines, the log has {self.o.lines}")
        if got != self.expected_payable or len(rows) != len(got):
            raise BenchError(
                f"recheck listed {len(rows)} payable lines; expected {len(self.expected_payable)} "
                f"(missing {len(self.expected_payable - got)}, unexpected {len(got - self.expected_payable)})"
            )
        bad = [r for r in rows if not r["changed_by"].startswith("withdraw:BENCH-") or r["now"] != "ALLOW/ELIGIBLE"]
        if bad:
            raise BenchError(f"recheck rows without the withdrawal that changed them, e.g. {bad[0]}")
        return run

    def simulate(self, draft: pathlib.Path, repetition: int) -> Measured:
        argv = ["simulate", "--profile", str(draft), "--on", SIMULATE_ON.isoformat(), "--format", "json"]
        run, stdout, _ = self.measured("simulate", argv, repetition)
        report = json.loads(stdout)
        if report["people"] != self.o.people or run.count != self.o.people:
            raise BenchError(f"simulate compared {report['people']} ledgers; the dataset has {self.o.people}")
        if not report["transitions"].get("NORMAL -> SUSPENDED") or report["suspended_days_gained"] <= 0:
            raise BenchError(f"simulate found no one the draft keeps suspended: {report['transitions']}")
        self.transitions = report["transitions"]
        return run

    def run(self) -> None:
        log = self.prepare()
        draft = self.write_draft()
        for repetition in range(self.o.repeat):
            order = ("recheck", "simulate") if repetition % 2 == 0 else ("simulate", "recheck")
            for tool in order:
                self.runs.append(
                    self.recheck(log, repetition) if tool == "recheck" else self.simulate(draft, repetition)
                )

    # --- report -------------------------------------------------------------------------------

    def table(self) -> str:
        rows = [("tool", "input", "wall s", "per second", "tool's own s", "cpu s", "peak RSS", "check")]
        for tool, unit, size, check in (
            ("recheck", "lines", self.o.lines, f"{len(self.expected_payable):,} payable lines listed, as expected"),
            ("simulate", "ledgers", self.o.people, "every ledger compared; " + json.dumps(self.transitions)),
        ):  # fmt: skip
            runs = [r for r in self.runs if r.tool == tool]
            if not runs:
                continue
            walls = sorted(r.wall for r in runs)
            spread = f" ({walls[0]:.1f}-{walls[-1]:.1f})" if len(runs) > 1 else ""
            rows.append(
                (
                    tool,
                    f"{size:,} {unit}",
                    f"{statistics.median(walls):.1f}{spread}",
                    f"{statistics.median(r.count / r.wall for r in runs):,.0f} {unit}/s",
                    f"{statistics.median(r.own_seconds for r in runs):.1f}",
                    f"{statistics.median(r.cpu for r in runs):.1f}",
                    f"{max(r.max_rss_mb for r in runs):,.0f} MB",
                    check,
                )
            )
        return markdown_table(rows)

    def close(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def _py_spy() -> str:
    beside = pathlib.Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else (shutil.which("py-spy") or "")


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident set of a running process since its last exec (0 once it has exited)."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_line() -> str:
    return (
        f"{platform.node()}: {_cpu_model()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
        f"{platform.system()} {platform.release()}; python {platform.python_version()}"
    )


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.offline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 people and lines, 100 withdrawals")
    parser.add_argument("--people", type=int, help="people (= ledgers simulate compares) [1000000; quick 20000]")
    parser.add_argument("--lines", type=int, help="rejected lines in the decision log [1000000; quick 20000]")
    parser.add_argument("--claim-lines", type=int, default=10, help="lines per logged claim [10]")
    parser.add_argument("--withdraw", type=int, help="suspended people whose points are withdrawn [1000; quick 100]")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool, alternating which goes first [1]")
    parser.add_argument("--tool-cpu", type=int, default=0, help="core recheck and simulate are pinned to [0]")
    parser.add_argument("--load-cpu", type=int, default=1, help="core redis and this script use [1]")
    parser.add_argument("--budget", type=float, default=3600, help="seconds the whole run may take [3600]")
    parser.add_argument("--keep", type=pathlib.Path, help="keep dataset, log and outputs in this directory")
    parser.add_argument(
        "--py-spy",
        type=pathlib.Path,
        metavar="DIR",
        help="run each tool under `py-spy record --format raw` (collapsed stacks into DIR; slows the figures)",
    )
    args = parser.parse_args(argv)
    if args.tool_cpu == args.load_cpu:
        parser.error("--tool-cpu and --load-cpu must differ")
    options = Options(
        people=args.people or (20_000 if args.quick else 1_000_000),
        lines=args.lines or (20_000 if args.quick else 1_000_000),
        claim_lines=args.claim_lines,
        withdraw=args.withdraw if args.withdraw is not None else (100 if args.quick else 1000),
        repeat=args.repeat,
        tool_cpu=args.tool_cpu,
        load_cpu=args.load_cpu,
        budget=args.budget,
        keep=args.keep,
        py_spy=args.py_spy,
    )
    if options.py_spy is not None and not _py_spy():
        parser.error("--py-spy: py-spy is not installed (.venv/bin/pip install py-spy)")
    if min(options.people, options.lines, options.claim_lines, options.repeat) < 1 or options.withdraw < 0:
        parser.error("sizes must be positive")
    if options.people > 1_000_000:
        parser.error("--people: loadtest/dataset.py codes stop at 1,000,000 people")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(argv)
    for tool in ("taskset", "redis-server"):
        if shutil.which(tool) is None:
            print(f"offline: {tool} is not installed", file=sys.stderr)
            return 1
    children = Children()
    workdir = options.keep or pathlib.Path(tempfile.mkdtemp(prefix="gk-offline-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Offline(options, workdir, children)
    print(f"offline: {machine_line()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)

    def body() -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {options.load_cpu})  # this script and redis stay off the tool core
        bench.run()

    status = run_guarded("offline", workdir, options.keep, children, body, bench.close, kept="files")
    if status is not None:
        return status
    print()
    print(f"command: python -m loadtest.offline {shlex.join(argv)}".rstrip())
    print(f"machine: {machine_line()}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; elapsed {time.monotonic() - bench.started:.0f}s")
    for tool, command in bench.commands.items():
        print(f"{tool}: {command}")
    print(
        f"{options.people:,} people; log of {options.lines:,} non-eligible lines in claims of {options.claim_lines}; "
        f"{options.withdraw:,} withdrawals; {options.repeat} run(s) each; tools on core {options.tool_cpu}, "
        f"redis on core {options.load_cpu}"
    )
    print("preparation: " + "; ".join(f"{name} {seconds:.0f}s" for name, seconds in bench.steps))
    print(bench.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
