"""Issue 8, "never answer from lost data", against real redis-servers and in-process servers.

What these tests prove:

* Redis emptied under a serving process (FLUSHALL) or brought back from an older copy: the process
  keeps its last good data, says NOT_SERVING, turns checks to REVIEW/STALE_DATA past the staleness
  bound (never a definite answer from the older copy), reports the doubt into the store (so writes
  stop and a process started afterwards distrusts it too) and serves again only after an operator's
  `gatekeeper recover`, with versions above every version any process saw.
* One undecodable change entry makes the replica re-snapshot; it keeps serving and following.
* `gatekeeper load` refuses what would destroy (an empty or shrunken dataset, admin writes) unless
  a flag says it is meant, never overlaps another load, and writes nothing when it refuses.
* Idempotency documents stay small: a 1,000-sanction import costs Redis a few MB, its replay
  changes nothing, and 400 writes for one person keep each of that person's documents under 1 KB.
* Redis down past the bound: health NOT_SERVING, GetPractitionerStatus UNAVAILABLE, CheckClaim
  REVIEW/STALE_DATA; everything comes back once Redis does.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import grpc
import pytest
import redis
from google.type.date_pb2 import Date

from cache.embedded import EmbeddedRedis
from cache.replica import Follower, Replica
from cache.store import Store, connect
from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2
from service.cli import main as cli
from service.registry import loading
from tests.conftest import Gatekeeper
from tests.e2e.builders import new_code, sanction
from tests.integration.helpers import (
    CLEAN,
    DATASET_A,
    DATASET_B,
    EXPECTED_A,
    HOSPITAL,
    LINES,
    NOT_SERVING,
    SERVING,
    STALE,
    SUSPENDED,
    TERMINATED,
    Server,
    check,
    health_status,
    load,
    outcomes,
    person_write,
    poll,
    profile_file,
    suspended_person,
    write_dataset,
)

WAIT = 20.0  # generous bound for anything asynchronous (the follower backs off up to 5 s)
ALLOW = (enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)
TERMINATED_AFTER = (enums_pb2.DECISION_REJECT, enums_pb2.REASON_TERMINATED)


def register(gk: Gatekeeper, code: str, institution: str = HOSPITAL) -> registry_pb2.RegisterPractitionerResponse:
    return gk.admin.RegisterPractitioner(
        registry_pb2.RegisterPractitionerRequest(
            practitioner_code=code,
            institution_code=institution,
            category=enums_pb2.PRACTITIONER_CATEGORY_DOCTOR,
            registered_on=Date(year=2024, month=1, day=1),
        ),
        timeout=10,
    )


def record_points(gk: Gatekeeper, code: str, points: int, decided_on: date, no: str) -> int:
    request = registry_pb2.RecordPointsRequest(
        decision_no=no,
        practitioner_code=code,
        institution_code=HOSPITAL,
        points=points,
        responsibility=enums_pb2.RESPONSIBILITY_MAIN,
        violation="test",
        decided_on=Date(year=decided_on.year, month=decided_on.month, day=decided_on.day),
    )
    return int(gk.admin.RecordPoints(request, timeout=10).data_version)


def assert_write_unavailable(gk: Gatekeeper) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        register(gk, new_code())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value.details()


def meta(store: Store) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in store.client.hgetall(store.keys.meta).items()}


def recover(url: str, reason: str = "x") -> int:
    return cli.main(["recover", "--reason", reason, "--redis-url", url])


def gatekeeper_load(url: str, path: pathlib.Path, *flags: str) -> int:
    return cli.main(["load", str(path), "--redis-url", url, "--profile", "xizang", *flags])


def live(store: Store) -> dict[str, Any]:
    """Everything a load may change, to compare before and after a refused one."""
    keys = store.keys
    return {
        "version": store.client.get(keys.version),
        "people": store.client.hgetall(keys.people),
        "ledgers": store.client.hgetall(keys.ledgers),
        "docs": store.client.hgetall(keys.docs),
        "meta": store.client.hgetall(keys.meta),
        "stream": store.client.xrange(keys.changes),
        "staging": sorted(store.client.keys(f"{keys.prefix}:*:staging:*")),
    }


# --- 1. FLUSHALL under a serving process --------------------------------------------------------


def test_flushall_keeps_the_last_data_stops_writes_until_recover_and_versions_never_repeat(
    serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path
) -> None:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    server = serve(redis_url)
    store = Store(connect(redis_url))
    held = register(server.gk, new_code()).data_version
    assert held == 2
    assert server.replica.wait_for(held, 10)

    store.client.flushall()
    assert_write_unavailable(server.gk)  # at once: this process has seen version 2, the store says 0

    poll(lambda: server.replica.doubt is not None, timeout=WAIT, what="the replica to distrust the emptied store")
    assert server.replica.state.version == held
    assert outcomes(check(server.gk)) == EXPECTED_A  # the last good data, not UNKNOWN_PRACTITIONER
    poll(lambda: health_status(server.handle.check_port) == NOT_SERVING, timeout=WAIT, what="NOT_SERVING")
    poll(lambda: "doubt" in meta(store), timeout=WAIT, what="the doubt to reach the store")
    assert int(meta(store)["high_water"]) == held
    assert server.metric("gatekeeper_replica_in_doubt") == 1
    assert_write_unavailable(server.gk)
    assert store.version() == 0  # the refused write wrote nothing

    assert recover(redis_url, "x") == 0
    recovered = store.version()
    assert recovered > held
    assert "doubt" not in meta(store)
    assert meta(store)["recovered_reason"] == "x"

    poll(lambda: server.replica.state.version == recovered, timeout=WAIT, what="the replica to adopt the recovery")
    assert server.replica.doubt is None
    assert server.metric("gatekeeper_replica_in_doubt") == 0
    poll(lambda: health_status(server.handle.check_port) == SERVING, timeout=WAIT, what="SERVING again")
    code = new_code()
    written = register(server.gk, code).data_version
    assert written > recovered > held
    response = check(server.gk, [(code, date(2025, 1, 2))], min_data_version=written)
    assert outcomes(response) == [ALLOW]
    assert response.data_version == written


# --- 2. Redis back from an older copy -------------------------------------------------------------


def test_redis_back_from_an_older_copy_never_allows_the_terminated_doctor(
    serve: Callable[..., Server], dedicated_redis: Callable[..., EmbeddedRedis], tmp_path: pathlib.Path
) -> None:
    redis_server = dedicated_redis(appendonly=False)
    assert load(redis_server.url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    profile = str(profile_file(tmp_path, 2))
    server = serve(redis_server.url, profile=profile)
    n = register(server.gk, new_code()).data_version
    client = redis.Redis(port=redis_server.port)
    client.save()
    old_copy = tmp_path / "old-dump.rdb"
    shutil.copy(redis_server.data_dir / "dump.rdb", old_copy)

    assert register(server.gk, new_code()).data_version == n + 1
    assert record_points(server.gk, CLEAN, 12, date(2025, 7, 1), "XZ-OLD-COPY-1") == n + 2
    terminated_line = [(CLEAN, date(2025, 8, 1))]
    assert server.replica.wait_for(n + 2, 10)
    assert outcomes(check(server.gk, terminated_line)) == [TERMINATED_AFTER]

    redis_server.stop()
    shutil.copy(old_copy, redis_server.data_dir / "dump.rdb")
    restored = dedicated_redis(port=redis_server.port, appendonly=False)
    store = Store(connect(restored.url))
    assert store.version() == n  # it came back with the older data

    def stale_without_allowing() -> bool:
        answer = outcomes(check(server.gk, terminated_line, min_data_version=n + 2))
        assert answer != [ALLOW], "a definite ALLOW from the older copy for a terminated doctor"
        return answer == [STALE]

    poll(lambda: server.replica.doubt is not None, timeout=WAIT, what="the replica to distrust the older copy")
    poll(stale_without_allowing, timeout=WAIT, what="REVIEW/STALE_DATA past the 2 s bound")
    assert server.replica.state.version == n + 2
    poll(lambda: "doubt" in meta(store), timeout=WAIT, what="the doubt to reach the store")
    assert int(meta(store)["high_water"]) == n + 2
    assert_write_unavailable(server.gk)
    assert store.version() == n

    # A process started now (it held nothing) believes the store's doubt, not the older copy.
    late = serve(restored.url, wait=False, profile=profile)
    poll(lambda: health_status(late.handle.check_port) == NOT_SERVING, timeout=WAIT, what="the late server to answer")
    assert outcomes(check(late.gk, terminated_line, min_data_version=n + 2)) == [STALE]
    assert outcomes(check(late.gk, terminated_line)) == [STALE]
    assert_write_unavailable(late.gk)

    assert recover(restored.url) == 0
    assert store.version() == n + 3
    for each in (server, late):
        poll(lambda s=each: s.replica.state.version == n + 3, timeout=WAIT, what="the replicas to adopt the recovery")
        poll(lambda s=each: health_status(s.handle.check_port) == SERVING, timeout=WAIT, what="SERVING again")
    assert register(server.gk, new_code()).data_version == n + 4


# --- 3. One undecodable change entry -------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(lambda v: {"v": str(v), "kind": "person", CLEAN: b"\xff{not json"}, id="undecodable-projection"),
        pytest.param(lambda v: {"v": b"\xff", "kind": "person", CLEAN: b"{}"}, id="undecodable-version"),
    ],
)
def test_an_undecodable_change_entry_is_answered_by_a_fresh_snapshot(
    serve: Callable[..., Server],
    redis_url: str,
    tmp_path: pathlib.Path,
    garbage: Callable[[int], dict[str, str | bytes]],
) -> None:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    server = serve(redis_url)
    store = Store(connect(redis_url))
    replica = Replica()
    follower = Follower(replica, Store(connect(redis_url)), block_ms=200)
    follower.start()
    try:
        assert replica.ready.wait(WAIT)
        snapshots = server.metric("gatekeeper_replica_snapshots_total")
        version = store.version()

        store.client.xadd(store.keys.changes, garbage(version + 1))

        poll(lambda: follower.stats.bad_entries == 1, timeout=WAIT, what="the follower to meet the bad entry")
        poll(
            lambda: server.metric("gatekeeper_replica_bad_entries_total") == 1,
            timeout=WAIT,
            what="the server to count the bad entry",
        )
        poll(lambda: follower.stats.snapshots == 2, timeout=WAIT, what="the follower to re-snapshot")
        poll(
            lambda: server.metric("gatekeeper_replica_snapshots_total") == snapshots + 1,
            timeout=WAIT,
            what="the server's replica to re-snapshot",
        )
        assert server.replica.state.version == replica.state.version == version
        assert outcomes(check(server.gk)) == EXPECTED_A
        assert health_status(server.handle.check_port) == SERVING
        assert server.replica.doubt is None

        code = new_code()
        written = register(server.gk, code).data_version
        assert written == version + 1
        response = check(server.gk, [(code, date(2025, 1, 2))], min_data_version=written)
        assert outcomes(response) == [ALLOW]
        assert replica.wait_for(written, 10)
        assert code in replica.state.people
        assert follower.stats.bad_entries == 1
        assert server.metric("gatekeeper_replica_bad_entries_total") == 1
    finally:
        follower.stop()


# --- 4. Loads that would destroy ------------------------------------------------------------------


def test_loads_that_would_destroy_are_refused_unless_meant(
    serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(connect(redis_url))
    path_a = write_dataset(tmp_path / "a.jsonl", DATASET_A)
    assert gatekeeper_load(redis_url, path_a) == 0
    before = live(store)
    capsys.readouterr()

    assert gatekeeper_load(redis_url, write_dataset(tmp_path / "empty.jsonl", [])) == 2
    assert "empty" in capsys.readouterr().err
    assert live(store) == before

    one = write_dataset(tmp_path / "one.jsonl", [p for p in DATASET_A if p["practitioner_code"] == CLEAN])
    assert gatekeeper_load(redis_url, one) == 2  # 1 of 3 people: under half
    assert "--allow-shrink" in capsys.readouterr().err
    assert live(store) == before
    assert gatekeeper_load(redis_url, one, "--allow-shrink") == 0
    assert set(store.client.hkeys(store.keys.people)) == {CLEAN.encode()}

    assert gatekeeper_load(redis_url, path_a) == 0  # growing back is no shrink
    server = serve(redis_url)
    register(server.gk, SUSPENDED, institution="H54010200002")  # an admin write on a loaded person
    poll(lambda: health_status(server.handle.check_port) == SERVING, what="SERVING")
    before = live(store)
    capsys.readouterr()
    assert gatekeeper_load(redis_url, path_a) == 2
    refusal = capsys.readouterr().err
    assert SUSPENDED in refusal
    assert CLEAN not in refusal
    assert TERMINATED not in refusal
    assert live(store) == before
    assert gatekeeper_load(redis_url, path_a, "--discard-agency-writes") == 0
    assert b'"audit":[{' not in store.client.hget(store.keys.ledgers, SUSPENDED)

    assert store.acquire_load_lock("someone-else", 60) is None
    before = live(store)
    capsys.readouterr()
    assert gatekeeper_load(redis_url, path_a) == 2
    assert "someone-else" in capsys.readouterr().err
    assert live(store) == before
    assert store.client.get(store.keys.load_lock) == b"someone-else"  # the loser leaves the lock alone


def test_two_concurrent_loads_leave_exactly_one_dataset(
    redis_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(connect(redis_url))
    people_a = [*DATASET_A, *(suspended_person(f"D5401030{i:05d}") for i in range(500))]
    people_b = [*DATASET_B, *(suspended_person(f"D5401040{i:05d}") for i in range(500))]
    datasets = {
        "a": (write_dataset(tmp_path / "a.jsonl", people_a), people_a),
        "b": (write_dataset(tmp_path / "b.jsonl", people_b), people_b),
    }
    expected = {name: {w.code: w for w in map(person_write, people)} for name, (_path, people) in datasets.items()}

    def one_dataset() -> str:
        people = {k.decode(): v.decode() for k, v in store.client.hgetall(store.keys.people).items()}
        ledgers = store.client.hgetall(store.keys.ledgers)
        matching = [name for name, writes in expected.items() if set(people) == set(writes)]
        assert len(matching) == 1, sorted(people)[:5]
        writes = expected[matching[0]]
        assert {k.decode() for k in ledgers} == set(writes)
        assert people == {code: w.projection for code, w in writes.items()}
        assert store.client.keys(f"{store.keys.prefix}:*:staging:*") == []
        assert not store.client.exists(store.keys.load_lock)
        return matching[0]

    # Overlap for certain: the first load is held inside its swap (it holds the lock) until the second is over.
    real_swap = Store.swap
    inside, second_done = threading.Event(), threading.Event()

    def held_swap(self: Store, *args: Any, **kwargs: Any) -> int:
        if not inside.is_set():
            inside.set()
            second_done.wait(30)
        return real_swap(self, *args, **kwargs)

    monkeypatch.setattr(Store, "swap", held_swap)
    first: list[object] = []
    thread = threading.Thread(target=lambda: first.append(gatekeeper_load(redis_url, datasets["a"][0])))
    thread.start()
    try:
        assert inside.wait(30), "the first load never reached its swap"
        capsys.readouterr()
        assert gatekeeper_load(redis_url, datasets["b"][0]) == 2
        assert f":{os.getpid()}:" in capsys.readouterr().err  # names the holder (host:pid:token)
    finally:
        second_done.set()
        thread.join(60)
    assert first == [0]
    assert one_dataset() == "a"
    monkeypatch.undo()

    # Free races: whichever interleaving, one dataset whole, every refusal exit 2.
    for _round in range(3):
        start = threading.Barrier(2)
        results: dict[str, object] = {}

        def run(name: str, start: threading.Barrier, results: dict[str, object]) -> None:
            start.wait()
            try:
                results[name] = gatekeeper_load(redis_url, datasets[name][0])
            except BaseException as error:  # recorded: a crash is a failure, not a refusal
                results[name] = error

        threads = [threading.Thread(target=run, args=(name, start, results)) for name in datasets]
        for each in threads:
            each.start()
        for each in threads:
            each.join(60)
        assert all(rc in (0, 2) for rc in results.values()), results
        assert 0 in results.values(), results
        one_dataset()


# --- 5. Idempotency documents stay small ---------------------------------------------------------


def used_memory(port: int) -> int:
    return int(redis.Redis(port=port).info("memory")["used_memory"])


def test_a_large_import_and_many_writes_keep_idempotency_documents_small(
    serve: Callable[..., Server], dedicated_redis: Callable[..., EmbeddedRedis], tmp_path: pathlib.Path
) -> None:
    redis_server = dedicated_redis(appendonly=False)
    assert load(redis_server.url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    server = serve(redis_server.url)
    store = Store(connect(redis_server.url))
    before = used_memory(redis_server.port)

    batch = registry_pb2.ImportSanctionsRequest(
        sanctions=[sanction(new_code(), "2025-05-01", "2025-08-01") for _ in range(1000)]
    )
    first = server.gk.admin.ImportSanctions(batch, timeout=60)
    assert len(first.files) == 1000
    grown = used_memory(redis_server.port) - before
    assert grown < 8 * 1024 * 1024, f"Redis grew by {grown / 1e6:.1f} MB for 1,000 sanctions"

    version, docs, stream = (
        store.version(),
        store.client.hgetall(store.keys.docs),
        store.client.xlen(store.keys.changes),
    )
    again = server.gk.admin.ImportSanctions(batch, timeout=60)
    assert again.data_version == first.data_version == version
    assert again == first
    assert store.version() == version
    assert store.client.hgetall(store.keys.docs) == docs
    assert store.client.xlen(store.keys.changes) == stream

    code = new_code()
    register(server.gk, code)
    for i in range(400):
        record_points(server.gk, code, 1, date(2025, 1, 1 + i % 28), f"XZ-MANY-{i:04d}")
    own = [raw for raw in store.client.hvals(store.keys.docs) if json.loads(raw)["code"] == code]
    assert len(own) == 401
    assert max(map(len, own)) < 1024, max(map(len, own))


# --- 6. Redis down past the staleness bound -------------------------------------------------------


def status(gk: Gatekeeper, code: str) -> eligibility_pb2.GetPractitionerStatusResponse:
    request = eligibility_pb2.GetPractitionerStatusRequest(practitioner_code=code, date=Date(year=2025, month=4, day=1))
    return gk.check.GetPractitionerStatus(request, timeout=10)


def test_redis_down_past_the_bound_is_not_serving_and_comes_back(
    serve: Callable[..., Server], dedicated_redis: Callable[..., EmbeddedRedis], tmp_path: pathlib.Path
) -> None:
    redis_server = dedicated_redis()  # AOF: the data survives the kill
    assert load(redis_server.url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    server = serve(redis_server.url, profile=str(profile_file(tmp_path, 2)))
    assert outcomes(check(server.gk)) == EXPECTED_A
    assert status(server.gk, SUSPENDED).status == enums_pb2.PRACTITIONER_STATUS_SUSPENDED

    assert redis_server.process is not None
    os.kill(redis_server.process.pid, signal.SIGKILL)
    redis_server.stop()  # reaps it and frees its data directory

    poll(lambda: health_status(server.handle.check_port) == NOT_SERVING, timeout=WAIT, what="NOT_SERVING")
    # Liveness stays SERVING: a restart would only lose the last good data (deploy/kubernetes probes).
    assert health_status(server.handle.check_port, "liveness") == SERVING
    with pytest.raises(grpc.RpcError) as refused:
        status(server.gk, SUSPENDED)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "stale" in (refused.value.details() or "")
    assert outcomes(check(server.gk)) == [STALE] * len(LINES)

    dedicated_redis(port=redis_server.port)
    poll(lambda: health_status(server.handle.check_port) == SERVING, timeout=WAIT, what="SERVING again")
    assert server.replica.doubt is None  # the same data came back: nothing to doubt
    assert outcomes(check(server.gk)) == EXPECTED_A
    assert status(server.gk, SUSPENDED).status == enums_pb2.PRACTITIONER_STATUS_SUSPENDED


# --- Losses that look like nothing happened: a rollback written past, writes and locks during a load ---------


def test_an_older_copy_written_past_the_held_version_by_a_fresh_process_is_still_distrusted(
    serve: Callable[..., Server], dedicated_redis: Callable[..., EmbeddedRedis], tmp_path: pathlib.Path
) -> None:
    redis_server = dedicated_redis(appendonly=False)
    assert load(redis_server.url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    server = serve(redis_server.url)
    n = register(server.gk, new_code()).data_version
    redis.Redis(port=redis_server.port).save()
    old_copy = tmp_path / "old-dump.rdb"
    shutil.copy(redis_server.data_dir / "dump.rdb", old_copy)
    assert register(server.gk, new_code()).data_version == n + 1
    assert record_points(server.gk, CLEAN, 12, date(2025, 7, 1), "XZ-ROLLBACK-1") == n + 2
    terminated_line = [(CLEAN, date(2025, 8, 1))]
    assert server.replica.wait_for(n + 2, 10)
    assert outcomes(check(server.gk, terminated_line)) == [TERMINATED_AFTER]

    # Redis comes back from the older copy on another address first: the old server cannot reach it
    # (as when it is partitioned, or still backing off), a freshly started one can, and writes.
    redis_server.stop()
    shutil.copy(old_copy, redis_server.data_dir / "dump.rdb")
    elsewhere = dedicated_redis(appendonly=False)  # same directory (and dump.rdb), another port
    assert elsewhere.data_dir == redis_server.data_dir
    fresh = serve(elsewhere.url)
    assert fresh.replica.state.version == n  # it held nothing: it trusts the older copy
    for _ in range(3):
        register(fresh.gk, new_code())  # versions n+1, n+2 (again) and n+3
    redis.Redis(port=elsewhere.port).save()
    elsewhere.stop()
    dedicated_redis(port=redis_server.port, appendonly=False)  # back where the old server looks

    # The old server held n+2 with the termination; the store lost it. It must not adopt the store.
    poll(
        lambda: server.replica.doubt is not None or server.replica.state.version > n + 2,
        timeout=WAIT,
        what="the old server to reconnect",
    )
    assert outcomes(check(server.gk, terminated_line, min_data_version=n + 2)) != [ALLOW]
    assert server.replica.doubt is not None


def test_an_admin_write_during_a_load_is_not_silently_erased(
    serve: Callable[..., Server], redis_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path_a = write_dataset(tmp_path / "a.jsonl", DATASET_A)
    assert gatekeeper_load(redis_url, path_a) == 0
    server = serve(redis_url)
    store = Store(connect(redis_url))
    real_swap = Store.swap

    def swap_after_an_admin_write(self: Store, *args: Any, **kwargs: Any) -> int:
        register(server.gk, SUSPENDED, institution="H54010200002")  # lands after the load's checks passed
        return real_swap(self, *args, **kwargs)

    monkeypatch.setattr(Store, "swap", swap_after_an_admin_write)
    rc = gatekeeper_load(redis_url, path_a)
    survived = b'"audit":[{' in store.client.hget(store.keys.ledgers, SUSPENDED)
    assert (rc, survived) in ((2, True), (0, True)), f"exit {rc}, admin write survived: {survived}"


def test_a_load_that_lost_its_lock_exits_2_naming_the_holder_and_writes_nothing(
    redis_url: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(connect(redis_url))
    path_a = write_dataset(tmp_path / "a.jsonl", DATASET_A)
    assert gatekeeper_load(redis_url, path_a) == 0
    before = live(store)
    monkeypatch.setattr(loading, "LOCK_SECONDS", 1)
    real_swap = Store.swap

    def swap_after_the_lock_was_taken_over(self: Store, *args: Any, **kwargs: Any) -> int:
        poll(lambda: store.acquire_load_lock("the-next-load", 60) is None, timeout=WAIT, what="the lock to expire")
        return real_swap(self, *args, **kwargs)

    monkeypatch.setattr(Store, "swap", swap_after_the_lock_was_taken_over)
    capsys.readouterr()
    try:
        rc: object = gatekeeper_load(redis_url, write_dataset(tmp_path / "b.jsonl", DATASET_B))
    except Exception as error:
        rc = error
    assert store.client.get(store.keys.load_lock) == b"the-next-load"
    assert {k: v for k, v in live(store).items() if k != "staging"} == {
        k: v for k, v in before.items() if k != "staging"
    }
    assert store.client.keys(f"{store.keys.prefix}:*:staging:*") == []  # nothing written, nothing left
    assert rc == 2, rc
    assert "the-next-load" in capsys.readouterr().err
