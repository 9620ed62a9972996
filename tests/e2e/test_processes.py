"""`gatekeeper serve --processes 2` as a real process against a real redis-server (issue 10, part 3).

What these tests prove, without anything in the service exposing which worker answered:

* Both workers answer on the one check port (port 0 asked: the supervisor picks one and logs it):
  the kernel spreads connections over them, seen in /proc as each worker's established sockets.
* An admin write is visible to checks in every worker: every one of many connections, which
  together reach both workers, answers from the written version.
* /metrics (the supervisor's) counts the checks of both workers: their sum.
* SIGTERM: every worker drains, the supervisor exits 0, no worker is left. SIGKILL of a worker: the
  supervisor logs it and forks a new one, which serves. SIGKILL of the supervisor: the workers follow.
* A taken check port is refused before any worker starts (exit 2), as for one process.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2, registry_pb2_grpc
from tests.conftest import ROOT, wait_serving
from tests.e2e.builders import dated_claim, new_code, register
from tests.integration.helpers import poll, scrape

EXIT = 20.0  # seconds a stopping process may take before the test gives up on it
CHANNELS = 16  # separate connections: with two workers, all on one is a 2 x 0.5^16 chance
ALLOW = (enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)


@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    log: pathlib.Path
    admin_port: int
    metrics_port: int
    check_port: int = 0

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def workers(self) -> set[int]:
        return children(self.process.pid)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("processes-redis"), appendonly=False).start()
    yield server.url
    server.stop()


@pytest.fixture
def supervise(redis_url: str, tmp_path: pathlib.Path) -> Iterator[Callable[..., Supervised]]:
    """``supervise(port=0)``: `gatekeeper serve --processes 2` on the test Redis; killed after the test."""
    started: list[Supervised] = []

    def start(port: int = 0) -> Supervised:
        admin_port, metrics_port = free_port(), free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
        environ |= {"GATEKEEPER_REDIS_URL": redis_url, "GATEKEEPER_PROFILE": "xizang", "GATEKEEPER_PORT": str(port),
                    "GATEKEEPER_ADMIN_PORT": str(admin_port), "GATEKEEPER_METRICS_PORT": str(metrics_port),
                    "GATEKEEPER_DECISION_LOG": "off", "GATEKEEPER_LOG_FORMAT": "json"}  # fmt: skip
        log = tmp_path / f"serve-{len(started)}.log"
        with log.open("wb") as out:
            argv = [sys.executable, "-m", "service.cli.main", "serve", "--processes", "2"]
            process = subprocess.Popen(argv, cwd=ROOT, env=environ, stdout=out, stderr=out)
        each = Supervised(process, log, admin_port, metrics_port)
        started.append(each)
        return each

    yield start
    for each in started:
        for pid in each.workers() if each.process.poll() is None else set():
            os.kill(pid, signal.SIGKILL)
        if each.process.poll() is None:
            each.process.kill()
        each.process.wait(EXIT)


def serving(supervised: Supervised) -> Supervised:
    """Wait for the supervisor's log line naming the port it chose, then for SERVING there."""

    def port() -> int | None:
        assert supervised.process.poll() is None, supervised.output()
        for line in supervised.output().splitlines():
            if '"gatekeeper supervising"' in line:
                return int(json.loads(line)["check_port"])
        return None

    supervised.check_port = poll(port, timeout=EXIT, what="the supervisor's port")
    wait_serving(supervised.check_port)
    return supervised


def children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid``."""
    found = set()
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def established_on(port: int) -> set[int]:
    """Socket inodes of established TCP connections whose local port is ``port`` (the server's side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in pathlib.Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def workers_connected(supervised: Supervised) -> set[int]:
    """The workers holding at least one client connection on the check port."""
    connections = established_on(supervised.check_port)
    return {pid for pid in supervised.workers() if socket_inodes(pid) & connections}


def open_channels(port: int) -> list[grpc.Channel]:
    # A channel option of its own per channel: grpc would otherwise share one connection among them.
    return [grpc.insecure_channel(f"127.0.0.1:{port}", options=[("test.channel", i)]) for i in range(CHANNELS)]


def check_on(channel: grpc.Channel, code: str) -> eligibility_pb2.CheckClaimResponse:
    stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
    return stub.CheckClaim(dated_claim(code, ["2025-03-01"]), timeout=10)


def checks_counted(supervised: Supervised) -> float:
    wanted = 'grpc_server_handled_total{grpc_code="OK",grpc_method="CheckClaim",'
    for line in scrape(supervised.metrics_port).splitlines():
        if line.startswith(wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def write(supervised: Supervised) -> tuple[str, int]:
    """Register a new person through the admin port; their code and the written data version."""
    code = new_code()
    with grpc.insecure_channel(f"127.0.0.1:{supervised.admin_port}") as channel:
        written = registry_pb2_grpc.RegistryServiceStub(channel).RegisterPractitioner(register(code), timeout=10)
    return code, written.data_version


def test_both_workers_answer_see_every_write_and_are_counted_together(supervise: Callable[..., Supervised]) -> None:
    supervised = serving(supervise())
    assert len(poll(lambda: len(supervised.workers()) == 2 and supervised.workers(), timeout=EXIT)) == 2
    code, version = write(supervised)
    channels = open_channels(supervised.check_port)
    try:
        before = checks_counted(supervised)
        answers = [check_on(channel, code) for channel in channels]  # one check on each connection
        assert workers_connected(supervised) == supervised.workers()  # the connections reach both workers

        def all_see_the_write() -> bool:
            return all(
                r.data_version >= version and [(d.decision, d.reason) for d in r.decisions] == [ALLOW]
                for r in (check_on(channel, code) for channel in channels)
            )

        poll(all_see_the_write, timeout=EXIT, what="the write on every connection")
        assert all(answer.data_version >= version for answer in answers)  # acknowledged before any check
        # Every channel checked at least twice across both workers; the scrape sums them all.
        counted = poll(lambda: (n := checks_counted(supervised) - before) >= 2 * CHANNELS and n, timeout=EXIT)
        assert counted >= 2 * CHANNELS
        text = scrape(supervised.metrics_port)
        for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "gatekeeper_profile_info{",
                     "gatekeeper_replica_data_version", "gatekeeper_replica_in_doubt 0.0"):  # fmt: skip
            assert name in text, name  # the dashboards' series, with their single-process label sets
        assert "pid=" not in text  # every gauge merges its workers (multiprocess_mode), none is per pid
    finally:
        for channel in channels:
            channel.close()


def test_sigterm_drains_every_worker_and_exits_zero(supervise: Callable[..., Supervised]) -> None:
    supervised = serving(supervise())
    workers = poll(lambda: len(supervised.workers()) == 2 and supervised.workers(), timeout=EXIT)

    supervised.process.send_signal(signal.SIGTERM)

    assert supervised.process.wait(EXIT) == 0, supervised.output()
    assert not any(running(pid) for pid in workers)
    assert supervised.output().count('"stopping"') == 2  # each worker drained through Running.stop


def test_a_killed_worker_is_replaced_and_the_new_one_serves(supervise: Callable[..., Supervised]) -> None:
    supervised = serving(supervise())
    workers = poll(lambda: len(supervised.workers()) == 2 and supervised.workers(), timeout=EXIT)
    victim = min(workers)

    os.kill(victim, signal.SIGKILL)

    replaced = poll(lambda: len(now := supervised.workers()) == 2 and victim not in now and now, timeout=EXIT)
    assert '"worker died"' in supervised.output()
    code, version = write(supervised)  # written after the new worker forked: it must follow the feed

    def new_worker_answers() -> bool:
        channels = open_channels(supervised.check_port)
        try:
            fresh = all(check_on(channel, code).data_version >= version for channel in channels)
            return fresh and workers_connected(supervised) == replaced
        finally:
            for channel in channels:
                channel.close()

    poll(new_worker_answers, timeout=EXIT, what="both workers, the new one too, answering the write")
    assert supervised.process.poll() is None


def test_workers_die_with_a_killed_supervisor(supervise: Callable[..., Supervised]) -> None:
    supervised = serving(supervise())
    workers = poll(lambda: len(supervised.workers()) == 2 and supervised.workers(), timeout=EXIT)

    supervised.process.kill()
    supervised.process.wait(EXIT)

    poll(lambda: not any(running(pid) for pid in workers), timeout=EXIT, what="the workers to exit")


def test_a_taken_check_port_is_refused_before_any_worker_starts(supervise: Callable[..., Supervised]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        supervised = supervise(port=taken.getsockname()[1])
        assert supervised.process.wait(EXIT) == 2, supervised.output()
    assert "in use" in supervised.output()
    assert "started worker" not in supervised.output()
