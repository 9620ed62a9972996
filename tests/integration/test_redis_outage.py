"""Redis unreachable at start, killed while serving, restarted: checks degrade to REVIEW/STALE_DATA
(never a guess) only past the profile's staleness bound, and recover without a restart."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable, Sequence
from datetime import date

import grpc
import pytest
from google.type.date_pb2 import Date

from cache.embedded import EmbeddedRedis, free_port
from cache.store import Store, connect
from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2
from tests.conftest import Gatekeeper
from tests.integration.helpers import (
    DATASET_A,
    DATASET_B,
    EXPECTED_A,
    EXPECTED_B,
    HOSPITAL,
    LINES,
    LINES_B,
    NOT_SERVING,
    SERVING,
    STALE,
    UNKNOWN,
    Server,
    check,
    health_status,
    load,
    outcomes,
    poll,
    profile_file,
    write_dataset,
)

RECONNECT = 20.0  # the follower backs off up to 5 s between attempts; be generous
CHECK_SERVICE = "gatekeeper.v1.EligibilityService"


def register(gk: Gatekeeper, code: str = UNKNOWN) -> registry_pb2.RegisterPractitionerResponse:
    return gk.admin.RegisterPractitioner(
        registry_pb2.RegisterPractitionerRequest(
            practitioner_code=code,
            institution_code=HOSPITAL,
            category=enums_pb2.PRACTITIONER_CATEGORY_DOCTOR,
            registered_on=Date(year=2024, month=1, day=1),
        ),
        timeout=10,
    )


def decided_as(
    gk: Gatekeeper, expected: Sequence[tuple[int, int]], lines: Sequence[tuple[str, date]] = LINES
) -> Callable[[], eligibility_pb2.CheckClaimResponse | None]:
    """A poll probe: the response once the claim is decided as ``expected``."""

    def probe() -> eligibility_pb2.CheckClaimResponse | None:
        response = check(gk, lines)
        return response if outcomes(response) == list(expected) else None

    return probe


def test_serve_starts_without_redis_and_serves_once_it_comes(
    spawn_gatekeeper: Callable[..., Gatekeeper],
    dedicated_redis: Callable[..., EmbeddedRedis],
    tmp_path: pathlib.Path,
) -> None:
    port = free_port()  # nothing listens here yet
    gk = spawn_gatekeeper(env={"GATEKEEPER_REDIS_URL": f"redis://127.0.0.1:{port}/0"}, wait=False)

    # The process comes up and answers, but is not serving.
    poll(lambda: health_status(gk.check_port) == NOT_SERVING, timeout=30, what="the subprocess to answer health")
    assert health_status(gk.check_port, CHECK_SERVICE) == NOT_SERVING

    lines = [*LINES, (UNKNOWN, LINES[0][1])]
    response = check(gk, lines)
    assert outcomes(response) == [STALE] * len(lines)  # never a guess, not even for an unknown code
    assert response.data_version == 0
    for decision in response.decisions:
        assert decision.status == enums_pb2.PRACTITIONER_STATUS_UNSPECIFIED
        assert not decision.HasField("status_since")

    # Admin writes need Redis: UNAVAILABLE, retryable, not a crash.
    with pytest.raises(grpc.RpcError) as error:
        register(gk)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE

    # Still up, still not serving and still refusing to guess after those calls.
    assert health_status(gk.check_port) == NOT_SERVING
    assert outcomes(check(gk, lines)) == [STALE] * len(lines)

    # Redis arrives (on that port) and gets data: the server serves and decides, no restart.
    redis_server = dedicated_redis(port=port)
    assert load(redis_server.url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    poll(lambda: health_status(gk.check_port) == SERVING, timeout=RECONNECT, what="SERVING")
    assert health_status(gk.check_port, CHECK_SERVICE) == SERVING
    decided = poll(decided_as(gk, EXPECTED_A), timeout=RECONNECT, what="decisions from the loaded data")
    assert decided.data_version == 1
    assert register(gk).data_version == 2


def test_checks_survive_redis_being_killed_until_the_staleness_bound(
    serve: Callable[..., Server], dedicated_redis: Callable[..., EmbeddedRedis], tmp_path: pathlib.Path
) -> None:
    redis_server = dedicated_redis()  # AOF on: the data survives a kill
    assert load(redis_server.url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    # The bound must exceed the follower's blocking read (1 s), see test_healthy_replica_is_never_stale.
    server = serve(redis_server.url, profile=str(profile_file(tmp_path, 3)))
    assert server.replica.wait_for(1, 10)
    before = check(server.gk)
    assert outcomes(before) == EXPECTED_A

    assert redis_server.process is not None
    redis_server.process.kill()
    redis_server.stop()  # reaps it and frees its data directory

    # Once the follower has certainly lost the feed (older than any blocking read), checks are still
    # answered from the replica, the same as before.
    poll(lambda: server.replica.age_seconds() > 1.5, what="the replica to age")
    during = check(server.gk)
    assert outcomes(during) == EXPECTED_A
    assert during.data_version == before.data_version
    with pytest.raises(grpc.RpcError) as error:
        register(server.gk)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE

    # Past the profile's bound: REVIEW/STALE_DATA, with no status or window.
    stale = poll(decided_as(server.gk, [STALE] * len(LINES)), what="stale answers")
    assert stale.data_version == 1
    assert all(d.status == enums_pb2.PRACTITIONER_STATUS_UNSPECIFIED for d in stale.decisions)
    assert server.metric("gatekeeper_stale_answers_total", {"cause": "age"}) >= 1

    # Redis comes back with its data: decisions come back, and the feed is followed again.
    dedicated_redis(port=redis_server.port)
    poll(decided_as(server.gk, EXPECTED_A), timeout=RECONNECT, what="decisions after Redis restarted")
    written = register(server.gk)
    assert written.data_version == 2
    after = check(server.gk, [*LINES, (UNKNOWN, LINES[0][1])], min_data_version=2)
    assert outcomes(after) == [*EXPECTED_A, (enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)]


def test_healthy_replica_is_never_stale(serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path) -> None:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    server = serve(redis_url, profile=str(profile_file(tmp_path, 1)))
    assert server.replica.wait_for(1, 10)

    # Redis is up and idle the whole time; sample checks over several of the follower's read cycles.
    answers: list[list[tuple[int, int]]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answers.append(outcomes(check(server.gk)))
        if answers[-1] != EXPECTED_A:
            break
    assert all(a == EXPECTED_A for a in answers), f"{sum(a != EXPECTED_A for a in answers)} of {len(answers)} stale"


def test_after_redis_lost_its_data_a_reload_is_adopted_only_above_every_version_seen(
    serve: Callable[..., Server], dedicated_redis: Callable[..., EmbeddedRedis], tmp_path: pathlib.Path
) -> None:
    redis_server = dedicated_redis(appendonly=False)
    path_a = write_dataset(tmp_path / "a.jsonl", DATASET_A)
    for _ in range(3):
        assert load(redis_server.url, path_a) == 0
    server = serve(redis_server.url)
    assert server.replica.wait_for(3, 10)
    # One change applied from the feed: the follower is past its start-up snapshot.
    assert register(server.gk).data_version == 4
    assert server.replica.wait_for(4, 10)
    assert outcomes(check(server.gk)) == EXPECTED_A

    redis_server.stop()
    fresh = dedicated_redis(port=redis_server.port, appendonly=False)  # empty: the data is lost
    path_b = write_dataset(tmp_path / "b.jsonl", DATASET_B)
    assert load(fresh.url, path_b) == 0  # perhaps before the replica noticed: version 1 again
    store = Store(connect(fresh.url))

    # The replica keeps dataset A, says why it is not serving, and stops the writes.
    poll(lambda: server.replica.doubt is not None, timeout=RECONNECT, what="the replica to distrust the store")
    assert server.replica.state.version == 4
    poll(lambda: health_status(server.handle.check_port) == NOT_SERVING, timeout=RECONNECT, what="NOT_SERVING")
    assert outcomes(check(server.gk)) == EXPECTED_A  # last good state, until the staleness bound
    poll(lambda: store.state().doubt != "", timeout=RECONNECT, what="the doubt to reach the store")
    with pytest.raises(grpc.RpcError) as refused:
        register(server.gk, "D540102000077")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    # The operator loads again: the version starts above every version a process reported seeing.
    assert load(fresh.url, path_b) == 0
    assert store.version() == 5
    poll(lambda: server.replica.state.version == 5, timeout=RECONNECT, what="the replica to adopt the reload")
    assert server.replica.doubt is None
    poll(lambda: health_status(server.handle.check_port) == SERVING, timeout=RECONNECT, what="SERVING again")
    response = check(server.gk, LINES_B)
    assert outcomes(response) == EXPECTED_B
    assert response.data_version == 5
