"""Faults under mixed load, with real processes on loopback: Redis killed, a Sentinel failover, a soak.

    python -m loadtest.faults --scenario kill [--seconds 30] [--people 20000] [--kills 2]
    python -m loadtest.faults --scenario failover [--seconds 30] [--how kill|sentinel]
    python -m loadtest.faults --scenario soak [--seconds 600]

(on a shared machine: ``flock /tmp/gk-bench.lock .venv/bin/python -m loadtest.faults ...``)

Every scenario runs one ``gatekeeper serve`` subprocess (national profile) on a synthetic dataset
(loadtest/dataset.py, loaded with ``gatekeeper load``) and drives it with a mixed, closed-loop load:
check clients (threads, each with its own channel; 1-line and 20-line CheckClaim on people no write
touches, so every answer is known in advance) and one writer thread doing admin writes one at a time
(RecordPoints and RegisterPractitioner, each with a document number never used before). A write that
fails is retried with the same request until it is acknowledged (idempotency makes the retry safe),
for at most ``WRITE_RETRY_SECONDS``; every acknowledged write is remembered with its data_version.

- ``kill``: a private redis-server with AOF on (``appendfsync always``, cache/embedded.py) is
  ``kill -9``-ed and restarted on the same port and directory, ``--kills`` times.
- ``failover``: primary + replica + three Sentinels (quorum 2), gatekeeper on
  ``redis+sentinel://`` with ``GATEKEEPER_WRITE_REPLICAS=1``; the primary is ``kill -9``-ed (then
  restarted, so that Sentinel turns it into the new primary's replica) or ``SENTINEL FAILOVER``-ed.
- ``soak``: the same load for ``--seconds``, the server's RSS sampled every 10 s.

After the load every scenario checks, against what Redis holds at the end:

- failed checks: any RPC error of a check (0 required); STALE answers and wrong answers counted;
- every acknowledged write present: its document in ``{gk}:docs`` at the acknowledged data_version and
  its fact (and audit entry) in the person's ledger; no write (acknowledged or not) applied twice:
  facts and audit entries counted per document number;
- the replica's digest equals Redis': every person in ``{gk}:people`` is checked over gRPC (claims of
  1,000 lines at the person's first registered institution, on two service days) and each line must
  equal, field by field, what the same decision function (service/check/decision.py) answers from
  Redis' projections; the server must answer at Redis' data version. Comparing answers (not an
  internal hash) is what callers see, needs no test hook in the server, and covers every person.

Everything is bounded (load phases, retries, waits), loopback only, and every child process is stopped
on exit, on failure, on Ctrl-C and on SIGTERM (children also die with us on SIGKILL, via setpriv).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import os
import pathlib
import platform
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import grpc
import redis
from google.protobuf.message import Message
from google.type.date_pb2 import Date
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache.codec import decode_ledger, decode_projection
from cache.embedded import EmbeddedRedis, free_port
from cache.schema import Keys
from domain.projection import PersonView
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2, registry_pb2, registry_pb2_grpc
from loadtest import dataset
from loadtest.bench import Children, Interrupted, child_env, gatekeeper_command, signals_ignored, signals_raise
from service.check.decision import Line, decide_claim
from service.check.encoding import decision_entry, outcome_fields, response_bytes
from service.registry.idempotency import Doc, points_key, registration_key
from service.rules.profile import load_profile

ROOT = pathlib.Path(__file__).resolve().parent.parent
KEYS = Keys()
PROFILE = "national"
SERVICE = "gatekeeper"  # the Sentinel service name
CALL_TIMEOUT = 10.0  # seconds per RPC of the load
WRITE_RETRY_SECONDS = 60.0  # how long one write is retried before it is given up (reported)
RESUME_TIMEOUT = 90.0  # longest a fault may stop writes before the scenario fails
SETTLE_TIMEOUT = 60.0  # for the replica to reach Redis' version after the load
RSS_EVERY = 10.0  # seconds between RSS samples
# A check that gets one of these has failed; so does any other RPC error (a check has no benign error).
RETRYABLE_WRITE = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNKNOWN"}
POINTS_DAY = Date(year=2025, month=6, day=1)  # after the checks' service window
REGISTERED_ON = Date(year=2025, month=1, day=1)
REGISTERED_DAY = datetime.date(2025, 1, 1)
DIGEST_DAYS = (dataset.LAST_SERVICE_DAY, datetime.date(2026, 1, 15))


class FaultError(RuntimeError):
    """A scenario could not be run as described (a process did not start, a failover never came)."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; FaultError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = condition()
        except (redis.RedisError, grpc.RpcError, OSError) as error:
            last = error
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise FaultError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# --- the load -----------------------------------------------------------------------------------------


@dataclass
class Write:
    kind: str  # "RecordPoints" or "RegisterPractitioner"
    key: str  # its idempotency document in {gk}:docs (also the audit entry's document)
    code: str  # the person it changes
    request: Message
    version: int = 0  # the acknowledged data_version; 0 while not acknowledged
    attempts: int = 0
    final_error: str = ""  # why it was given up (not acknowledged)

    @property
    def acknowledged(self) -> bool:
        return self.version > 0


@dataclass
class CheckStats:
    checks: int = 0
    lines: int = 0
    stale_lines: int = 0
    wrong_lines: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[str] = field(default_factory=list)  # the first few failures and wrong answers
    per_second: collections.Counter[int] = field(default_factory=collections.Counter)  # checks done, by second

    def merge(self, other: CheckStats) -> None:
        self.checks += other.checks
        self.lines += other.lines
        self.stale_lines += other.stale_lines
        self.wrong_lines += other.wrong_lines
        self.failed.update(other.failed)
        self.examples += other.examples[: max(0, 10 - len(self.examples))]
        self.per_second.update(other.per_second)

    @property
    def failed_checks(self) -> int:
        return sum(self.failed.values())


@dataclass
class Population:
    """The dataset split in two: people the checks read (never written) and people the writer changes."""

    people: list[dataset.Person]
    read: list[dataset.Person]
    written: list[dataset.Person]

    @classmethod
    def of(cls, count: int) -> Population:
        people = dataset.generate_people(count)
        read = [p for i, p in enumerate(people) if i % 10]
        written = [p for i, p in enumerate(people) if not i % 10]
        return cls(people, read, written)

    def claims(self, lines: int, count: int, seed: int) -> list[dataset.Claim]:
        """``count`` claims of ``lines`` lines, each at one hospital, on people no write touches."""
        rng = random.Random(seed)
        by_hospital = {h: [p for p in self.read if h in p.institutions] for h in dataset.HOSPITALS}
        claims = []
        for n in range(count):
            hospital = dataset.HOSPITALS[n % len(dataset.HOSPITALS)]
            builder = dataset.ClaimBuilder(f"claim-{lines}", hospital, f"FAULT-{lines}-{n}")
            for _ in range(lines):
                day = dataset.FIRST_SERVICE_DAY + datetime.timedelta(days=rng.randrange(6))
                builder.add(rng.choice(by_hospital[hospital]), day, rng.choice(("routine", "unspecified")))
            claims.append(builder.build())
        return claims


class MixedLoad:
    """Closed-loop check clients and one writer against one gatekeeper; bounded in time and in count."""

    def __init__(
        self,
        check_port: int,
        admin_port: int,
        population: Population,
        *,
        one_line_clients: int = 2,
        big_clients: int = 2,
        max_seconds: float = 900.0,
        max_checks: int = 5_000_000,
        max_writes: int = 1_000_000,
        tag: str = "F",
        writes: str = "mixed",
    ) -> None:
        self.check_target = f"127.0.0.1:{check_port}"
        self.admin_target = f"127.0.0.1:{admin_port}"
        self.population = population
        self.max_seconds, self.max_checks, self.max_writes = max_seconds, max_checks, max_writes
        self.tag = tag
        self.kinds = writes  # "mixed": RecordPoints and RegisterPractitioner (new people); "points": RecordPoints
        self.claim_sets = [population.claims(1, 500, seed=n) for n in range(one_line_clients)]
        self.claim_sets += [population.claims(20, 200, seed=100 + n) for n in range(big_clients)]
        self.stats = [CheckStats() for _ in self.claim_sets]
        self.writes: list[Write] = []
        self.write_errors: collections.Counter[str] = collections.Counter()
        self.write_error_times: list[float] = []  # monotonic times of failed write attempts
        self.ack_times: list[float] = []  # monotonic times of acknowledgements
        self.acked_attempts: list[tuple[float, float]] = []  # (sent, acknowledged) of each acknowledged attempt
        self.started = 0.0
        self.elapsed = 0.0  # seconds from start to stop
        self._stop = threading.Event()
        self._abandon = threading.Event()  # stop retrying a write now (the harness is giving up)
        self._threads: list[threading.Thread] = []

    def start(self) -> MixedLoad:
        self.started = time.monotonic()
        for n, (claims, stats) in enumerate(zip(self.claim_sets, self.stats, strict=True)):
            self._threads.append(threading.Thread(target=self._checks, args=(claims, stats, n), daemon=True))
        self._threads.append(threading.Thread(target=self._write_loop, name="writer", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the clients; a write being retried gets the rest of its retry time, then is given up."""
        if not self._stop.is_set():
            self.elapsed = time.monotonic() - self.started
        self._stop.set()
        deadline = time.monotonic() + WRITE_RETRY_SECONDS + 2 * CALL_TIMEOUT
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self._abandon.set()
            for thread in self._threads:
                thread.join(2 * CALL_TIMEOUT)

    def pause(self, seconds: float) -> None:
        """Let the load run for ``seconds`` (a phase of the scenario), or less if it ends first."""
        self._stop.wait(seconds)

    def check_stats(self) -> CheckStats:
        total = CheckStats()
        for stats in self.stats:
            total.merge(stats)
        return total

    def acks_after(self, moment: float) -> list[float]:
        """Acknowledgement times of writes sent after ``moment`` (a reply in flight at a fault is not one)."""
        return [acked for sent, acked in list(self.acked_attempts) if sent > moment]

    def _running(self, count: int, limit: int) -> bool:
        return not self._stop.is_set() and count < limit and time.monotonic() - self.started < self.max_seconds

    def _checks(self, claims: list[dataset.Claim], stats: CheckStats, seed: int) -> None:
        rng = random.Random(seed)
        with grpc.insecure_channel(self.check_target) as channel:
            stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
            while self._running(stats.checks + stats.failed_checks, self.max_checks):
                claim = rng.choice(claims)
                try:
                    response = stub.CheckClaim(claim.request, timeout=CALL_TIMEOUT)
                except grpc.RpcError as error:
                    stats.failed[error.code().name] += 1
                    if len(stats.examples) < 5:
                        stats.examples.append(f"check {claim.request.claim_id}: {error.code().name} {error.details()}")
                    self._stop.wait(0.01)  # a failing server must not be spun on
                    continue
                stats.checks += 1
                stats.lines += len(response.decisions)
                stats.per_second[int(time.monotonic() - self.started)] += 1
                for decision, expected in zip(response.decisions, claim.expected, strict=True):
                    if decision.reason == enums_pb2.REASON_STALE_DATA:
                        stats.stale_lines += 1
                        continue
                    got = (enums_pb2.Decision.Name(decision.decision), enums_pb2.Reason.Name(decision.reason))
                    if got != expected:
                        stats.wrong_lines += 1
                        if len(stats.examples) < 5:
                            stats.examples.append(f"{decision.practitioner_code}: {got} expected {expected}")

    def _next_write(self, n: int, rng: random.Random) -> Write:
        if n % 2 == 0 or self.kinds == "points":
            person = rng.choice(self.population.written)
            number = f"FLT-{self.tag}-{n:08d}"
            request: Message = registry_pb2.RecordPointsRequest(
                decision_no=number,
                practitioner_code=person.code,
                institution_code=person.institutions[0],
                points=1,
                responsibility=enums_pb2.RESPONSIBILITY_GENERAL,
                violation="fault test",
                decided_on=POINTS_DAY,
            )
            return Write("RecordPoints", points_key(number), person.code, request)
        code = f"DF{self.tag}{n:010d}"
        hospital = dataset.HOSPITALS[n % len(dataset.HOSPITALS)]
        request = registry_pb2.RegisterPractitionerRequest(
            practitioner_code=code,
            institution_code=hospital,
            category=enums_pb2.PRACTITIONER_CATEGORY_NURSE,
            registered_on=REGISTERED_ON,
        )
        return Write("RegisterPractitioner", registration_key(code, hospital, "2025-01-01"), code, request)

    def _write_loop(self) -> None:
        rng = random.Random(42)
        with grpc.insecure_channel(self.admin_target) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            n = 0
            while self._running(n, self.max_writes):
                write = self._next_write(n, rng)
                n += 1
                self.writes.append(write)
                self._send(getattr(stub, write.kind), write)

    def _send(self, call: Callable[..., Any], write: Write) -> None:
        """Send until acknowledged: the same request every time, so a retry can never apply it twice."""
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        backoff = 0.05
        while True:
            write.attempts += 1
            sent = time.monotonic()
            try:
                reply = call(write.request, timeout=CALL_TIMEOUT)
            except grpc.RpcError as error:
                code = error.code().name
                waited = "replicas acknowledged" in (error.details() or "")  # the write's WAIT timed out
                self.write_errors[f"{code} (no replica acknowledged)" if waited else code] += 1
                self.write_error_times.append(time.monotonic())
                if code not in RETRYABLE_WRITE or time.monotonic() > deadline or self._abandon.is_set():
                    write.final_error = f"{code}: {error.details()}"
                    return
                self._abandon.wait(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            write.version = int(reply.data_version)
            self.ack_times.append(time.monotonic())
            self.acked_attempts.append((sent, self.ack_times[-1]))
            return


# --- what Redis holds afterwards ----------------------------------------------------------------------


@dataclass
class WriteAudit:
    attempted: int = 0
    acknowledged: int = 0
    given_up: int = 0  # never acknowledged (each may or may not be applied, but at most once)
    lost: list[str] = field(default_factory=list)  # acknowledged, yet missing or at another version
    twice: list[str] = field(default_factory=list)  # applied more than once
    given_up_applied: int = 0  # given up, yet applied once (the answer was lost, the write was not)


def _chunks(items: Sequence[Any], size: int = 1000) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def audit_writes(client: redis.Redis, writes: Sequence[Write]) -> WriteAudit:
    """Every acknowledged write present once at its version; none applied twice."""
    audit = WriteAudit(attempted=len(writes))
    docs: dict[str, Any] = {}
    ledgers: dict[str, Any] = {}
    for chunk in _chunks([w.key for w in writes]):
        docs.update(zip(chunk, client.hmget(KEYS.docs, list(chunk)), strict=True))
    codes = sorted({w.code for w in writes})
    for chunk in _chunks(codes):
        ledgers.update(zip(chunk, client.hmget(KEYS.ledgers, list(chunk)), strict=True))
    decoded = {code: decode_ledger(raw) for code, raw in ledgers.items() if raw}
    for write in writes:
        ledger = decoded.get(write.code)
        audits = [a for a in ledger.audit if a.document == write.key] if ledger else []
        if write.kind == "RecordPoints":
            number = write.request.decision_no  # type: ignore[attr-defined]
            facts = sum(1 for p in ledger.points if p.decision_no == number) if ledger else 0
        else:
            inst = write.request.institution_code  # type: ignore[attr-defined]
            facts = (
                sum(1 for r in ledger.registrations if r.institution_code == inst and r.registered_on == REGISTERED_DAY)
                if ledger
                else 0
            )
        applied = max(facts, len(audits))
        if applied > 1:
            audit.twice.append(f"{write.key}: {facts} facts, {len(audits)} audit entries")
        raw_doc = docs.get(write.key)
        doc = Doc.decode(raw_doc) if raw_doc else None
        if write.acknowledged:
            audit.acknowledged += 1
            problems = []
            if doc is None:
                problems.append("no document")
            elif doc.version != write.version:
                problems.append(f"document at v{doc.version}")
            if facts != 1:
                problems.append(f"{facts} facts")
            if [a.data_version for a in audits] != [write.version]:
                problems.append(f"audit versions {[a.data_version for a in audits]}")
            if problems:
                audit.lost.append(f"{write.key} acknowledged at v{write.version}: {', '.join(problems)}")
        else:
            audit.given_up += 1
            audit.given_up_applied += applied == 1
    return audit


@dataclass
class Digest:
    method: str
    version: int = 0  # Redis' data version the comparison was made at
    people: int = 0
    lines: int = 0
    mismatched: int = 0
    wrong_version: int = 0  # responses not answered at Redis' version
    examples: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return self.people > 0 and self.mismatched == 0 and self.wrong_version == 0


DIGEST_METHOD = (
    "every person in {gk}:people checked over gRPC (CheckClaim, 1,000 lines a claim) at their first "
    "registered institution on "
    f"{' and '.join(d.isoformat() for d in DIGEST_DAYS)}, each line equal to decide_claim on Redis' projections"
)


def server_version(check_port: int) -> int:
    """The data version the server answers at (a one-line check)."""
    request = eligibility_pb2.CheckClaimRequest(claim_id="FAULT-VERSION", institution_code=dataset.HOSPITALS[0])
    line = request.lines.add(line_id="1", practitioner_code=dataset.UNKNOWN_CODE)
    line.service_date.year, line.service_date.month, line.service_date.day = 2025, 4, 1
    with grpc.insecure_channel(f"127.0.0.1:{check_port}") as channel:
        reply = eligibility_pb2_grpc.EligibilityServiceStub(channel).CheckClaim(request, timeout=CALL_TIMEOUT)
    return int(reply.data_version)


def replica_digest(client: redis.Redis, check_port: int, profile_name: str = PROFILE) -> Digest:
    """Compare every person the server holds with Redis' ``{gk}:people`` (no writes may run meanwhile)."""
    profile = load_profile(profile_name)
    version = int(client.get(KEYS.version) or 0)
    wait_for(lambda: server_version(check_port) == version, SETTLE_TIMEOUT, f"the replica at data version {version}")
    stored: dict[bytes, bytes] = client.hgetall(KEYS.people)  # type: ignore[assignment]
    people = {code.decode(): PersonView.of(code.decode(), decode_projection(raw)) for code, raw in stored.items()}
    if int(client.get(KEYS.version) or 0) != version:
        raise FaultError("Redis' data version moved during the digest: stop every writer first")
    digest = Digest(DIGEST_METHOD, version=version, people=len(people))
    by_institution: dict[str, list[str]] = collections.defaultdict(list)
    for code, person in sorted(people.items()):
        by_institution[min(person.registrations, default=dataset.HOSPITALS[0])].append(code)
    with grpc.insecure_channel(f"127.0.0.1:{check_port}") as channel:
        stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
        for institution, codes in sorted(by_institution.items()):
            for day in DIGEST_DAYS:
                for n, chunk in enumerate(_chunks(codes)):
                    lines = [Line(str(i), code, day) for i, code in enumerate(chunk)]
                    request = eligibility_pb2.CheckClaimRequest(claim_id=f"DIGEST-{n}", institution_code=institution)
                    for line in lines:
                        added = request.lines.add(line_id=line.line_id, practitioner_code=line.practitioner_code)
                        added.service_date.year, added.service_date.month, added.service_date.day = (
                            day.year,
                            day.month,
                            day.day,
                        )
                    reply = stub.CheckClaim(request, timeout=60)
                    outcomes = decide_claim(lines, institution, people, profile)
                    entries = [
                        decision_entry(x.line_id, outcome_fields(o)) for x, o in zip(lines, outcomes, strict=True)
                    ]
                    expected = eligibility_pb2.CheckClaimResponse.FromString(response_bytes("", entries, 0, ""))
                    digest.lines += len(lines)
                    digest.wrong_version += reply.data_version != version
                    for got, want in zip(reply.decisions, expected.decisions, strict=True):
                        if got != want:
                            digest.mismatched += 1
                            if len(digest.examples) < 5:
                                digest.examples.append(f"{want.practitioner_code} on {day}: {got} != {want}")
    return digest


# --- processes ----------------------------------------------------------------------------------------


def serving(check_port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{check_port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class Gatekeeper:
    process: subprocess.Popen[bytes]
    check_port: int
    admin_port: int
    log: pathlib.Path

    def rss_bytes(self) -> int:
        for row in pathlib.Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) * 1024
        raise FaultError("no VmRSS for the gatekeeper")


class Stack:
    """Every process of a scenario; ``close`` stops them all (in reverse order), whatever happened."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.children = Children()
        self.redis_servers: list[EmbeddedRedis] = []

    def redis(self, name: str, port: int | None = None) -> EmbeddedRedis:
        """A redis-server of this stack with AOF on (appendfsync always); again with ``port``: a restart."""
        server = EmbeddedRedis(self.workdir / name, port=port).start()
        self.redis_servers.append(server)
        return server

    def kill9(self, server: EmbeddedRedis) -> None:
        """``kill -9`` a redis-server (no shutdown, no final fsync), reap it and free its directory."""
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.stop()

    def load_dataset(self, redis_url: str, people: Sequence[dataset.Person]) -> None:
        path = self.workdir / "people.jsonl"
        dataset.write_dataset(people, path)
        loaded = subprocess.run(
            self.children.wrap([*gatekeeper_command(), "load", str(path)]),
            env=child_env(GATEKEEPER_REDIS_URL=redis_url, GATEKEEPER_PROFILE=PROFILE),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if loaded.returncode != 0:
            raise FaultError(f"gatekeeper load failed ({loaded.returncode}):\n{loaded.stdout}{loaded.stderr}")

    def gatekeeper(self, redis_url: str, **env: str) -> Gatekeeper:
        check_port, admin_port = free_port(), free_port()
        log = self.workdir / f"gatekeeper-{check_port}.log"
        environ = child_env(
            GATEKEEPER_REDIS_URL=redis_url,
            GATEKEEPER_HOST="127.0.0.1",
            GATEKEEPER_PORT=str(check_port),
            GATEKEEPER_ADMIN_PORT=str(admin_port),
            GATEKEEPER_METRICS_PORT="0",
            GATEKEEPER_PROFILE=PROFILE,
            GATEKEEPER_DECISION_LOG="off",
            GATEKEEPER_DEMO_DATA="false",
            GATEKEEPER_DATA_DIR=str(self.workdir / "gatekeeper-data"),
            GATEKEEPER_LOG_LEVEL="WARNING",
            **env,
        )
        process = self.children.start([*gatekeeper_command(), "serve"], env=environ, log=log)
        gk = Gatekeeper(process, check_port, admin_port, log)

        def up() -> bool:
            if process.poll() is not None:
                raise FaultError(f"gatekeeper serve exited with {process.returncode}; see {log}")
            return serving(check_port)

        wait_for(up, 120, "gatekeeper SERVING", interval=0.2)
        return gk

    def sentinels(self, primary_port: int, count: int = 3, quorum: int = 2) -> list[int]:
        ports = []
        for n in range(count):
            port = free_port()
            home = self.workdir / f"sentinel-{n}"
            home.mkdir(parents=True, exist_ok=True)
            conf = home / "sentinel.conf"  # Sentinel rewrites its config file: it must be its own and writable
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {home}\nlogfile {home / 'sentinel.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {quorum}\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 10000\nsentinel parallel-syncs {SERVICE} 1\n"
            )
            self.children.start(["redis-server", str(conf), "--sentinel"], env=child_env(), log=home / "stdout.log")
            ports.append(port)
        return ports

    def close(self) -> None:
        with signals_ignored():  # a second Ctrl-C must not leave children behind
            self.children.stop_all()
            for server in reversed(self.redis_servers):
                try:
                    server.stop()
                except Exception as exc:  # keep stopping the rest
                    print(f"faults: could not stop redis on {server.port}: {exc}", file=sys.stderr)


@contextlib.contextmanager
def stack(workdir: pathlib.Path) -> Iterator[Stack]:
    running = Stack(workdir)
    try:
        with signals_raise():
            yield running
    finally:
        running.close()


# --- scenarios ----------------------------------------------------------------------------------------


@dataclass
class Result:
    scenario: str
    checks: CheckStats
    writes: WriteAudit
    digest: Digest
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the load, RSS bytes)
    health_at_end: bool = False
    resumed_after: list[float] = field(default_factory=list)  # seconds from each fault to the first ack after it
    refused_during_faults: int = 0
    acked_without_replica: int = 0  # failover: acknowledged while the new primary ran alone (WAIT 1: must be 0)

    @property
    def invariants_hold(self) -> bool:
        return not self.violations()

    def violations(self) -> list[str]:
        problems = []
        if self.checks.failed_checks:
            problems.append(f"{self.checks.failed_checks} failed checks: {dict(self.checks.failed)}")
        if self.checks.wrong_lines:
            problems.append(f"{self.checks.wrong_lines} wrong answers")
        if self.writes.lost:
            problems.append(f"{len(self.writes.lost)} acknowledged writes lost: {self.writes.lost[:3]}")
        if self.writes.twice:
            problems.append(f"{len(self.writes.twice)} writes applied twice: {self.writes.twice[:3]}")
        if self.acked_without_replica:
            problems.append(f"{self.acked_without_replica} writes acknowledged with no replica (WAIT 1)")
        if not self.digest.equal:
            problems.append(f"replica digest differs: {self.digest}")
        return problems


def _common_rows(result: Result, seconds: float) -> list[tuple[str, str]]:
    checks, writes, digest = result.checks, result.writes, result.digest
    rate = checks.checks / seconds if seconds else 0.0
    return [
        ("checks answered (1-line and 20-line)", f"{checks.checks:,} ({rate:,.0f}/s), {checks.lines:,} lines"),
        ("failed checks (any RPC error)", f"{checks.failed_checks:,} {dict(checks.failed) or ''}".strip()),
        ("STALE_DATA lines", f"{checks.stale_lines:,}"),
        ("wrong answers (not STALE)", f"{checks.wrong_lines:,}"),
        ("admin writes attempted / acknowledged", f"{writes.attempted:,} / {writes.acknowledged:,}"),
        ("writes given up (not acknowledged)", f"{writes.given_up:,} ({writes.given_up_applied} of them applied once)"),
        ("acknowledged writes lost", f"{len(writes.lost):,}"),
        ("writes applied twice", f"{len(writes.twice):,}"),
        (
            "replica digest equals Redis'",
            f"{digest.equal} ({digest.people:,} people, {digest.lines:,} lines at v{digest.version}, "
            f"{digest.mismatched} differ, {digest.wrong_version} at another version)",
        ),
        ("health at the end", "SERVING" if result.health_at_end else "NOT SERVING"),
    ]


def _finish(name: str, load: MixedLoad, client: redis.Redis, gk: Gatekeeper, extra: list[tuple[str, str]]) -> Result:
    load.stop()
    writes = audit_writes(client, load.writes)
    digest = replica_digest(client, gk.check_port)
    result = Result(name, load.check_stats(), writes, digest)
    result.health_at_end = serving(gk.check_port)
    result.rows = [("load", f"{load.elapsed:.0f} s, {len(load.claim_sets)} check clients + 1 writer, closed loop")]
    result.rows += _common_rows(result, load.elapsed) + extra
    result.notes += load.check_stats().examples + digest.examples + writes.lost[:5] + writes.twice[:5]
    result.notes += [f"given up: {w.key}: {w.final_error}" for w in load.writes if w.final_error][:5]
    return result


def _errors_between(load: MixedLoad, begin: float, end: float) -> int:
    return sum(1 for t in list(load.write_error_times) if begin <= t <= end)


def run_kill(
    workdir: pathlib.Path, *, people: int = 20_000, seconds: float = 30.0, kills: int = 2, outage: float = 2.0
) -> Result:
    """``kill -9`` the redis-server under mixed load ``kills`` times, restarting it on the same port and
    directory after ``outage`` seconds; then check the invariants."""
    population = Population.of(people)
    with stack(workdir) as running:
        server = running.redis("redis")
        port = server.port
        running.load_dataset(server.url, population.people)
        gk = running.gatekeeper(server.url)
        client = redis.Redis(port=port, socket_timeout=30)
        load = MixedLoad(gk.check_port, gk.admin_port, population, max_seconds=seconds + kills * 120).start()
        phase = seconds / (kills + 1)
        extra: list[tuple[str, str]] = []
        result_resumed: list[float] = []
        refused = 0
        try:
            for n in range(kills):
                load.pause(phase)
                before = max((w.version for w in load.writes if w.acknowledged), default=0)
                killed_at = time.monotonic()
                running.kill9(server)
                load.pause(outage)
                server = running.redis("redis", port=port)
                after = int(client.get(KEYS.version) or 0)
                resumed = wait_for(partial(load.acks_after, killed_at), RESUME_TIMEOUT, "writes resuming", 0.1)[0]
                resumed -= killed_at
                result_resumed.append(resumed)
                errors = _errors_between(load, killed_at, killed_at + resumed)
                refused += errors
                extra.append(
                    (
                        f"kill {n + 1}: redis-server kill -9, down {outage:.0f} s, restarted",
                        f"v{after} after restart (highest acknowledged before: v{before}); writes resumed "
                        f"{resumed:.1f} s after the kill; {errors} write attempts refused meanwhile",
                    )
                )
            load.pause(phase)
        except BaseException:
            load.stop()
            raise
        result = _finish("kill", load, client, gk, extra)
        result.resumed_after, result.refused_during_faults = result_resumed, refused
        result.rows.append(("write errors by code (all retried)", str(dict(load.write_errors)) or "none"))
        return result


def _replication(port: int) -> dict[str, Any]:
    return dict(redis.Redis(port=port, socket_timeout=5).info("replication"))


def run_failover(
    workdir: pathlib.Path, *, people: int = 20_000, seconds: float = 30.0, how: str = "kill", replica_down: float = 3.0
) -> Result:
    """Primary + replica + three Sentinels (quorum 2), gatekeeper on Sentinel with WAIT for one replica;
    fail the primary over under mixed load (``kill -9`` it, or ``SENTINEL FAILOVER``).

    A killed primary stays down ``replica_down`` seconds after the promotion, so the new primary runs
    alone for a while: no write may be acknowledged then (WAIT 1), each is refused and retried."""
    if how not in ("kill", "sentinel"):
        raise ValueError("how: kill or sentinel")
    population = Population.of(people)
    with stack(workdir) as running:
        primary = running.redis("primary")
        replica = running.redis("replica")
        redis.Redis(port=replica.port).replicaof("127.0.0.1", primary.port)
        running.load_dataset(primary.url, population.people)

        def in_sync() -> bool:
            ours, theirs = _replication(primary.port), _replication(replica.port)
            return theirs.get("master_link_status") == "up" and ours["master_repl_offset"] == theirs.get(
                "slave_repl_offset"
            )

        wait_for(in_sync, 60, "the replica in sync")
        sentinel_ports = running.sentinels(primary.port)
        sentinels = [redis.Redis(port=p, decode_responses=True, socket_timeout=5) for p in sentinel_ports]

        def sentinels_ready() -> bool:
            return all(
                len(s.sentinel_sentinels(SERVICE)) == len(sentinels) - 1  # type: ignore[arg-type]
                and s.sentinel_slaves(SERVICE)
                for s in sentinels
            )

        wait_for(sentinels_ready, 60, "three Sentinels that know each other and the replica", interval=0.2)
        url = f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in sentinel_ports)}/{SERVICE}"
        gk = running.gatekeeper(url, GATEKEEPER_WRITE_REPLICAS="1")
        load = MixedLoad(gk.check_port, gk.admin_port, population, max_seconds=seconds + 300).start()
        extra: list[tuple[str, str]] = []
        try:
            load.pause(seconds / 2)
            before = max((w.version for w in load.writes if w.acknowledged), default=0)
            failed_at = time.monotonic()
            if how == "kill":
                running.kill9(primary)
            else:
                sentinels[0].execute_command("SENTINEL", "FAILOVER", SERVICE)  # type: ignore[no-untyped-call]

            def promoted() -> bool:
                addresses = [s.sentinel_get_master_addr_by_name(SERVICE) for s in sentinels]
                return all(int(a[1]) == replica.port for a in addresses)  # type: ignore[index]

            wait_for(promoted, RESUME_TIMEOUT, "the Sentinels to promote the replica", interval=0.1)
            promoted_after = time.monotonic() - failed_at
            restarted_at = time.monotonic()
            attached = 0  # the most replicas the new primary had while the old one was down
            if how == "kill":  # back on its port and directory: Sentinel makes it the new primary's replica
                until = time.monotonic() + replica_down  # the new primary alone meanwhile
                while (left := until - time.monotonic()) > 0:
                    attached = max(attached, int(_replication(replica.port)["connected_slaves"]))
                    load.pause(min(0.2, left))
                restarted_at = time.monotonic()
                primary = running.redis("primary", port=primary.port)
            # Sent after the promotion and answered before the old primary was back: WAIT 1 had no replica.
            alone = [a for a in list(load.acked_attempts) if a[0] > failed_at + promoted_after and a[1] < restarted_at]

            def demoted() -> bool:
                info = _replication(primary.port)
                return info["role"] == "slave" and info.get("master_link_status") == "up"

            wait_for(demoted, RESUME_TIMEOUT, "the old primary replicating the new one", interval=0.1)
            wait_for(lambda: load.acks_after(failed_at), RESUME_TIMEOUT, "writes resuming", interval=0.1)
            resumed = load.acks_after(failed_at)[0] - failed_at
            refused = _errors_between(load, failed_at, failed_at + resumed)
            load.pause(seconds / 2)
        except BaseException:
            load.stop()
            raise
        client = redis.Redis(port=replica.port, socket_timeout=30)  # the new primary
        action = "kill -9 of the primary, restarted after promotion" if how == "kill" else "SENTINEL FAILOVER"
        extra += [
            (f"failover ({action})", f"at v{before} (highest acknowledged); 3 Sentinels, quorum 2, WAIT 1 replica"),
            ("  replica promoted after", f"{promoted_after:.1f} s"),
            ("  writes resumed after", f"{resumed:.1f} s"),
            (
                "  writes acknowledged while the new primary had no replica",
                f"{len(alone)} (old primary down {restarted_at - failed_at:.1f} s; new primary's connected_slaves "
                f"meanwhile at most {attached})"
                if how == "kill"
                else "n/a",
            ),
            ("  write attempts refused (then retried) meanwhile", f"{refused} {dict(load.write_errors) or ''}".strip()),
        ]
        result = _finish("failover", load, client, gk, extra)
        result.resumed_after, result.refused_during_faults = [resumed], refused
        result.acked_without_replica = len(alone)
        follower = redis.Redis(port=primary.port, socket_timeout=10)
        wait_for(lambda: follower.get(KEYS.version) == client.get(KEYS.version), 30, "the new replica caught up")
        result.rows.append(("new replica (old primary) at the new primary's version", "True"))
        return result


def run_soak(workdir: pathlib.Path, *, people: int = 20_000, seconds: float = 600.0, writes: str = "mixed") -> Result:
    """The mixed load for ``seconds`` on one Redis, the server's RSS sampled every ``RSS_EVERY`` s.

    With ``writes="points"`` every write is a RecordPoints on a known person, so the population stays
    the same and a growing RSS is not explained by new people (each registration adds one)."""
    population = Population.of(people)
    with stack(workdir) as running:
        server = running.redis("redis")
        running.load_dataset(server.url, population.people)
        gk = running.gatekeeper(server.url)
        client = redis.Redis(port=server.port, socket_timeout=30)
        samples = [(0.0, gk.rss_bytes())]
        load = MixedLoad(gk.check_port, gk.admin_port, population, max_seconds=seconds + 60, writes=writes)
        load.start()
        try:
            while (elapsed := time.monotonic() - load.started) < seconds:
                load.pause(min(RSS_EVERY, seconds - elapsed))
                samples.append((time.monotonic() - load.started, gk.rss_bytes()))
        except BaseException:
            load.stop()
            raise
        result = _finish("soak", load, client, gk, [])
        result.samples = samples
        rss = [b for _, b in samples]
        mb = 2**20
        result.rows += [
            ("gatekeeper RSS first / last / max", f"{rss[0] / mb:.1f} / {rss[-1] / mb:.1f} / {max(rss) / mb:.1f} MB"),
            ("RSS samples (every 10 s)", str(len(samples))),
            ("people in Redis first / last", f"{people:,} / {result.digest.people:,} (writes: {writes})"),
        ]
        per_second = result.checks.per_second
        for minute in range(int(-(-seconds // 60))):
            span = min(60.0, seconds - minute * 60)
            count = sum(per_second[s] for s in range(minute * 60, minute * 60 + 60))
            at = [b for t, b in samples if minute * 60 < t <= minute * 60 + 60]
            result.rows.append(
                (
                    f"  minute {minute + 1}",
                    f"{count / span:,.0f} checks/s, RSS {max(at, default=rss[-1]) / mb:.1f} MB",
                )
            )
        return result


# --- the command ---------------------------------------------------------------------------------------


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout
    return out.strip()


def report(result: Result, argv: Sequence[str]) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"# {shlex.join(['python', '-m', 'loadtest.faults', *argv])}",
        f"# {platform.node()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {_redis_version()}",
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; digest: {result.digest.method}",
        "",
        "| measure | value |",
        "| --- | --- |",
    ]
    lines += [f"| {name} | {value} |" for name, value in result.rows]
    problems = result.violations()
    lines.append("")
    lines.append("invariants: " + ("hold" if not problems else "VIOLATED: " + "; ".join(problems)))
    lines += [f"  note: {note}" for note in result.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("kill", "failover", "soak"), default="kill")
    parser.add_argument("--seconds", type=float, help="seconds of load [kill 30, failover 30, soak 600]")
    parser.add_argument("--people", type=int, default=20_000, help="people in the dataset")
    parser.add_argument("--kills", type=int, default=2, help="kill: how many times redis-server is killed")
    parser.add_argument("--how", choices=("kill", "sentinel"), default="kill", help="failover: how the primary fails")
    parser.add_argument(
        "--writes", choices=("mixed", "points"), default="mixed", help="soak: mixed writes, or RecordPoints only"
    )
    parser.add_argument("--keep", type=pathlib.Path, help="keep logs and data in this directory")
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    seconds = args.seconds or (600.0 if args.scenario == "soak" else 30.0)
    with contextlib.ExitStack() as exits:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            workdir = args.keep
        else:
            workdir = pathlib.Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="gk-faults-")))
        try:
            if args.scenario == "kill":
                result = run_kill(workdir, people=args.people, seconds=seconds, kills=args.kills)
            elif args.scenario == "failover":
                result = run_failover(workdir, people=args.people, seconds=seconds, how=args.how)
            else:
                result = run_soak(workdir, people=args.people, seconds=seconds, writes=args.writes)
        except (KeyboardInterrupt, Interrupted):
            print("faults: interrupted; every child process was stopped", file=sys.stderr)
            return 130
        except FaultError as error:
            print(f"faults: {error}", file=sys.stderr)
            return 2
    print(report(result, argv), flush=True)
    return 0 if result.invariants_hold else 1


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "Digest",
    "MixedLoad",
    "Population",
    "Result",
    "WriteAudit",
    "audit_writes",
    "main",
    "replica_digest",
    "run_failover",
    "run_kill",
    "run_soak",
]
