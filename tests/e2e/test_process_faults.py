"""Process faults of real `gatekeeper serve` processes (issue 8).

What these tests prove:

* SIGTERM does not wait out a check's min_data_version wait: the waiting check is answered
  REVIEW/STALE_DATA and the process exits 0 promptly, even with a 30 s wait and Redis down (so no
  store read can end the wait early).
* ``Running.begin_shutdown`` says NOT_SERVING first, while the servers still answer.
* The embedded Redis cannot be orphaned or shared: SIGKILL of its owner takes its redis-server
  along; a second owner of the data directory is refused, naming the holder; after the owner is
  gone a new `serve` on the directory starts and finds the data.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, enums_pb2
from service import app
from tests.conftest import ROOT, Gatekeeper, connect_gatekeeper, make_settings, wait_serving
from tests.e2e.builders import file_request, new_code, poll, register
from tests.integration.helpers import (
    DATASET_A,
    EXPECTED_A,
    LINES,
    STALE,
    check,
    claim,
    load,
    outcomes,
    scrape,
    write_dataset,
)

EXIT = 20.0  # seconds a stopping process may take before the test gives up on it


@dataclass
class Spawned:
    process: subprocess.Popen[bytes]
    gk: Gatekeeper
    log: pathlib.Path
    metrics_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn(tmp_path: pathlib.Path) -> Iterator[Callable[..., Spawned]]:
    """``spawn(env)``: `gatekeeper serve` as a subprocess on free ports; killed after the test."""
    spawned: list[Spawned] = []

    def start(env: dict[str, str]) -> Spawned:
        check_port, admin_port, metrics_port = free_port(), free_port(), free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
        environ |= {
            "GATEKEEPER_PORT": str(check_port),
            "GATEKEEPER_ADMIN_PORT": str(admin_port),
            "GATEKEEPER_METRICS_PORT": str(metrics_port),
            "GATEKEEPER_PROFILE": "xizang",
            **env,
        }
        log = tmp_path / f"serve-{check_port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "service.cli.main", "serve"], cwd=ROOT, env=environ, stdout=out, stderr=out
            )
        each = Spawned(process, connect_gatekeeper(check_port, admin_port), log, metrics_port)
        spawned.append(each)
        return each

    yield start
    for each in spawned:
        each.gk.close()
        if each.process.poll() is None:
            each.process.kill()
        each.process.wait(EXIT)


def health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status)


# --- 7. SIGTERM during a min_data_version wait ---------------------------------------------------


def test_sigterm_answers_a_waiting_check_and_exits_without_waiting_it_out(
    spawn: Callable[..., Spawned], tmp_path: pathlib.Path
) -> None:
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        assert load(redis_server.url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
        server = spawn({"GATEKEEPER_REDIS_URL": redis_server.url, "GATEKEEPER_MIN_VERSION_WAIT_MS": "30000"})
        wait_serving(server.gk.check_port)
    finally:
        redis_server.stop()  # down: no read of the store can end the wait early

    answers: list[object] = []

    def waiting_check() -> None:
        try:
            # A deadline beyond the wait: only the shutdown can end it (the server's drain would cancel it).
            answers.append(server.gk.check.CheckClaim(claim(LINES, min_data_version=100), timeout=60))
        except grpc.RpcError as error:
            answers.append(error)

    caller = threading.Thread(target=waiting_check)
    caller.start()
    poll(lambda: "gatekeeper_waiting_checks 1.0" in scrape(server.metrics_port), timeout=EXIT)

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(EXIT) == 0, server.output()
    caller.join(EXIT)
    assert not caller.is_alive()
    (answer,) = answers
    assert isinstance(answer, eligibility_pb2.CheckClaimResponse), answer
    assert outcomes(answer) == [STALE] * len(LINES)
    assert answer.data_version == 1


# --- 8. begin_shutdown: NOT_SERVING first ---------------------------------------------------------


def test_begin_shutdown_says_not_serving_while_the_servers_still_answer(redis_url: str, tmp_path: pathlib.Path) -> None:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    handle = app.start(make_settings(redis_url), registry=CollectorRegistry())
    gk = connect_gatekeeper(handle.check_port, handle.admin_port)
    try:
        wait_serving(handle.check_port)
        code = new_code()
        gk.admin.RegisterPractitioner(register(code), timeout=10)

        handle.begin_shutdown()

        assert health(handle.check_port) == health_pb2.HealthCheckResponse.NOT_SERVING
        with grpc.insecure_channel(f"127.0.0.1:{handle.check_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for service in ("gatekeeper.v1.EligibilityService", "gatekeeper.v1.RegistryService"):
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
                assert status == health_pb2.HealthCheckResponse.NOT_SERVING, service
        assert outcomes(check(gk)) == EXPECTED_A  # still answered, from fresh data
        assert gk.admin.GetPractitionerFile(file_request(code), timeout=10).file.practitioner_code == code
        # No new bounded wait either: a check for a version to come is answered STALE_DATA.
        assert outcomes(check(gk, LINES, min_data_version=10_000)) == [STALE] * len(LINES)
        assert health(handle.check_port) == health_pb2.HealthCheckResponse.NOT_SERVING  # not turned back
    finally:
        gk.close()
        handle.stop()


# --- 9. The embedded Redis is never orphaned nor shared -------------------------------------------


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper has exited)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_embedded_redis_dies_with_its_owner_and_serves_one_owner_at_a_time(
    spawn: Callable[..., Spawned], tmp_path: pathlib.Path
) -> None:
    data_dir = tmp_path / "data"
    env = {"GATEKEEPER_DATA_DIR": str(data_dir)}  # no GATEKEEPER_REDIS_URL: the embedded default
    first = spawn(env)
    wait_serving(first.gk.check_port)
    code = new_code()
    written = first.gk.admin.RegisterPractitioner(register(code), timeout=10).data_version
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text().strip())
    assert running(redis_pid)

    second = spawn(env)  # the same directory while the first runs
    assert second.process.wait(EXIT) != 0
    assert "in use" in second.output(), second.output()
    assert f"pid {first.process.pid}" in second.output()  # names the holder
    assert first.process.poll() is None
    assert running(redis_pid)  # the refused one left the first's Redis alone
    assert health(first.gk.check_port) == health_pb2.HealthCheckResponse.SERVING

    first.process.kill()  # SIGKILL: nothing of the owner's own cleanup runs
    first.process.wait(EXIT)
    poll(lambda: not running(redis_pid), timeout=EXIT)

    third = spawn(env)
    wait_serving(third.gk.check_port)
    found = third.gk.admin.GetPractitionerFile(file_request(code), timeout=10)
    assert found.file.practitioner_code == code
    assert found.data_version == written
    assert int((data_dir / "redis" / "redis.pid").read_text().strip()) != redis_pid
    response = third.gk.check.CheckClaim(claim([(code, date(2025, 1, 2))], min_data_version=written), timeout=10)
    assert outcomes(response) == [(enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)]


def test_a_redis_server_left_behind_without_setpriv_is_stopped_by_the_next_owner(
    spawn: Callable[..., Spawned], tmp_path: pathlib.Path
) -> None:
    # A PATH with redis-server but no setpriv: the child does not die with its parent.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    redis_binary = shutil.which("redis-server")
    assert redis_binary is not None
    (bin_dir / "redis-server").symlink_to(redis_binary)
    data_dir = tmp_path / "data"
    env = {"GATEKEEPER_DATA_DIR": str(data_dir), "PATH": str(bin_dir)}
    first = spawn(env)
    wait_serving(first.gk.check_port)
    code = new_code()
    written = first.gk.admin.RegisterPractitioner(register(code), timeout=10).data_version
    leftover = int((data_dir / "redis" / "redis.pid").read_text().strip())

    first.process.kill()
    first.process.wait(EXIT)
    second: Spawned | None = None
    try:
        assert running(leftover)  # orphaned, still holding the data directory's files

        second = spawn(env)
        wait_serving(second.gk.check_port)
        assert not running(leftover)
        found = second.gk.admin.GetPractitionerFile(file_request(code), timeout=10)
        assert found.data_version == written
    finally:
        # Without setpriv nothing ties these redis-servers to the test: stop every one it started.
        if second is not None:
            second.process.terminate()
            second.process.wait(EXIT)
        pid_file = data_dir / "redis" / "redis.pid"
        pids = {leftover, int(pid_file.read_text().strip())} if pid_file.exists() else {leftover}
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_stale_pid_file_never_stops_another_directorys_redis(tmp_path: pathlib.Path) -> None:
    victim = EmbeddedRedis(tmp_path / "other", appendonly=False).start()
    assert victim.process is not None
    reaper = threading.Thread(target=victim.process.wait, daemon=True)  # a dying victim is reaped at once
    reaper.start()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # What a redis-server SIGKILLed with its owner leaves behind, its pid since given to another redis-server.
    (data_dir / "redis.pid").write_text(f"{victim.process.pid}\n")
    owner = EmbeddedRedis(data_dir, appendonly=False)
    try:
        owner.start()
        assert victim.process.poll() is None, "the new owner stopped another directory's redis-server"
        assert redis.Redis(port=victim.port).ping()
    finally:
        owner.stop()
        victim.stop()
