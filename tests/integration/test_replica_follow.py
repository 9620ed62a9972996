"""cache.replica.Replica and Follower against a real redis-server and the real change feed."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterator
from datetime import date

import pytest

from cache.replica import Follower, Replica, ReplicaState, person_view
from cache.store import Snapshot, Store, connect
from domain.values import Status
from service.registry.dataset import Dataset, read_dataset
from tests.integration.helpers import (
    CLEAN,
    DATASET_A,
    DATASET_B,
    NEWCOMER,
    POLICY_ID,
    PROFILE,
    SUSPENDED,
    person_write,
    poll,
    suspended_person,
    write_dataset,
)

WAIT = 10.0  # generous bound for asynchronous effects


class RecordingReplica(Replica):
    """A real Replica that also records what it did: snapshots loaded and versions published."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots: list[int] = []
        self.published: list[int] = []

    def load(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot.version)
        super().load(snapshot)

    def _publish(self, state: ReplicaState, last_id: bytes) -> None:
        self.published.append(state.version)
        super()._publish(state, last_id)


@pytest.fixture
def follow(redis_url: str) -> Iterator[Callable[[], RecordingReplica]]:
    """Start a follower on its own connection; returns its replica once the first snapshot is in."""
    followers: list[Follower] = []

    def start() -> RecordingReplica:
        replica = RecordingReplica()
        follower = Follower(replica, Store(connect(redis_url)), block_ms=200)
        follower.start()
        followers.append(follower)
        assert replica.ready.wait(WAIT), "follower did not load a snapshot"
        return replica

    yield start
    for follower in followers:
        follower.stop()


def load_dataset(store: Store, tmp_path: pathlib.Path, people: list[dict[str, object]], name: str) -> Dataset:
    data = read_dataset(write_dataset(tmp_path / name, people), PROFILE)
    store.swap(data.ledgers, data.projections, data.docs, POLICY_ID, "now")
    return data


def last_entry_id(store: Store) -> bytes:
    ((entry_id, _),) = store.client.xrevrange(store.keys.changes, count=1)
    return bytes(entry_id)


def assert_matches_redis(replica: Replica, store: Store) -> None:
    snap = store.snapshot()
    state = replica.state
    assert state.version == snap.version
    assert state.policy_id == snap.policy_id
    assert dict(state.people.items()) == {
        code.decode(): person_view(code.decode(), projection) for code, projection in snap.people.items()
    }


def test_follower_starts_from_a_snapshot(
    store: Store, follow: Callable[[], RecordingReplica], tmp_path: pathlib.Path
) -> None:
    load_dataset(store, tmp_path, DATASET_A, "a.jsonl")
    assert store.commit(1, [person_write(suspended_person("D540102000055"))], {}) == 2

    replica = follow()

    assert replica.snapshots == [2]
    assert replica.last_id == last_entry_id(store)
    assert_matches_redis(replica, store)
    assert replica.state.policy_id == POLICY_ID
    assert replica.state.people[SUSPENDED].status_on(date(2025, 4, 1)).status is Status.SUSPENDED
    assert replica.state.people[CLEAN].status_on(date(2025, 4, 1)).status is Status.NORMAL


def test_empty_redis_gives_a_ready_empty_replica(follow: Callable[[], RecordingReplica]) -> None:
    replica = follow()
    assert replica.state.version == 0
    assert len(replica.state.people) == 0


def test_commits_are_applied_version_by_version(
    store: Store, follow: Callable[[], RecordingReplica], tmp_path: pathlib.Path
) -> None:
    load_dataset(store, tmp_path, DATASET_A, "a.jsonl")
    replica = follow()
    # Five commits in a row, the third one changes an existing person (CLEAN gets suspended).
    writes = [
        person_write(suspended_person("D540102000051")),
        person_write(suspended_person("D540102000052")),
        person_write(suspended_person(CLEAN, decided_on="2025-06-01")),
        person_write(suspended_person("D540102000053")),
        person_write(suspended_person("D540102000054")),
    ]
    for i, write in enumerate(writes):
        assert store.commit(1 + i, [write], {}) == 2 + i

    assert replica.wait_for(6, WAIT)
    assert replica.published == [1, 2, 3, 4, 5, 6]  # every version, in order, none skipped
    assert replica.snapshots == [1]  # applied from the feed, no re-snapshot
    for write in writes:
        assert replica.state.people[write.code] == person_view(write.code, write.projection)
    assert replica.state.people[CLEAN].status_on(date(2025, 6, 2)).status is Status.SUSPENDED
    assert replica.state.people[CLEAN].status_on(date(2025, 5, 31)).status is Status.NORMAL
    assert replica.last_id == last_entry_id(store)
    assert_matches_redis(replica, store)


def test_one_commit_of_two_people_is_one_version(store: Store, follow: Callable[[], RecordingReplica]) -> None:
    replica = follow()
    a, b = person_write(suspended_person("D540102000061")), person_write(suspended_person("D540102000062"))
    assert store.commit(0, [a, b], {}) == 1
    assert replica.wait_for(1, WAIT)
    assert replica.published == [0, 1]
    assert set(replica.state.people.keys()) == {a.code, b.code}


def test_wait_for_returns_true_when_the_version_arrives_and_false_on_timeout(
    store: Store, follow: Callable[[], RecordingReplica]
) -> None:
    replica = follow()
    assert replica.wait_for(0, 0.01)  # already there
    assert not replica.wait_for(1, 0.2)  # nothing written: times out

    # A caller learns a version from an acknowledged write: committed, then waited for.
    assert store.commit(0, [person_write(suspended_person("D540102000061"))], {}) == 1
    assert replica.wait_for(1, WAIT)
    assert replica.state.version == 1
    # A version the store does not have: the wait ends, False, once the follower has read the store's
    # version after the wait began (well within WAIT; no clock is asserted).
    assert not replica.wait_for(5, WAIT)


def test_a_load_makes_the_follower_resnapshot(
    store: Store, follow: Callable[[], RecordingReplica], tmp_path: pathlib.Path
) -> None:
    load_dataset(store, tmp_path, DATASET_A, "a.jsonl")
    assert store.commit(1, [person_write(suspended_person("D540102000055"))], {}) == 2
    replica = follow()
    assert replica.snapshots == [2]

    b = load_dataset(store, tmp_path, DATASET_B, "b.jsonl")

    assert replica.wait_for(3, WAIT)
    assert replica.snapshots == [2, 3]
    assert set(replica.state.people.keys()) == set(b.projections) == {CLEAN, NEWCOMER}
    assert SUSPENDED not in replica.state.people
    assert replica.state.people[CLEAN].status_on(date(2025, 4, 1)).status is Status.SUSPENDED
    assert_matches_redis(replica, store)
    assert replica.last_id == last_entry_id(store)


def test_a_skipped_version_forces_a_resnapshot(
    store: Store, follow: Callable[[], RecordingReplica], tmp_path: pathlib.Path
) -> None:
    load_dataset(store, tmp_path, DATASET_A, "a.jsonl")
    replica = follow()
    lost, seen = person_write(suspended_person("D540102000071")), person_write(suspended_person("D540102000072"))

    # Version 2 changed `lost` but its event never reached the stream; version 3's did.
    pipe = store.client.pipeline(transaction=True)
    pipe.hset(store.keys.people, mapping={lost.code: lost.projection, seen.code: seen.projection})
    pipe.set(store.keys.version, 3)
    pipe.xadd(store.keys.changes, {"v": "3", "kind": "person", seen.code: seen.projection})
    pipe.execute()

    assert replica.wait_for(3, WAIT)
    assert replica.snapshots == [1, 3]
    assert replica.state.people[lost.code] == person_view(lost.code, lost.projection)  # known only from Redis
    assert_matches_redis(replica, store)


def test_a_trimmed_stream_forces_a_resnapshot(
    store: Store, follow: Callable[[], RecordingReplica], tmp_path: pathlib.Path
) -> None:
    """A follower that fell behind while the stream was trimmed converges on the snapshot."""
    load_dataset(store, tmp_path, DATASET_A, "a.jsonl")
    replica = follow()
    writes = [person_write(suspended_person(f"D54010200008{i}")) for i in range(3)]

    # Three commits and a trim to the newest entry, all before the follower's next read.
    pipe = store.client.pipeline(transaction=True)
    for i, write in enumerate(writes, start=2):
        pipe.hset(store.keys.people, write.code, write.projection)
        pipe.set(store.keys.version, i)
        pipe.xadd(store.keys.changes, {"v": str(i), "kind": "person", write.code: write.projection})
    pipe.xtrim(store.keys.changes, maxlen=1, approximate=False)
    pipe.execute()

    assert replica.wait_for(4, WAIT)
    assert replica.snapshots == [1, 4]
    assert {w.code for w in writes} <= set(replica.state.people.keys())
    assert_matches_redis(replica, store)


def test_replica_apply_reports_a_gap_in_the_real_stream(store: Store, tmp_path: pathlib.Path) -> None:
    """Without a follower: commits via the real script, the stream trimmed, apply says 'snapshot'."""
    load_dataset(store, tmp_path, DATASET_A, "a.jsonl")
    replica = Replica()
    replica.load(store.snapshot())
    for version in (1, 2, 3):
        assert store.commit(version, [person_write(suspended_person(f"D54010200009{version}"))], {}) == version + 1
    store.client.xtrim(store.keys.changes, maxlen=1, approximate=False)

    entries = store.changes(replica.last_id, block_ms=100)
    assert [int(fields[b"v"]) for _, fields in entries] == [4]
    assert replica.apply(entries) is False
    assert replica.state.version == 1  # nothing half-applied

    replica.load(store.snapshot())
    assert_matches_redis(replica, store)
    assert store.changes(replica.last_id, block_ms=50) == []


def test_follower_keeps_its_data_when_redis_lost_it_and_adopts_a_reload_above_it(
    store: Store, follow: Callable[[], RecordingReplica], tmp_path: pathlib.Path
) -> None:
    for name in ("a1.jsonl", "a2.jsonl", "a3.jsonl"):
        load_dataset(store, tmp_path, DATASET_A, name)
    replica = follow()
    assert replica.state.version == 3
    held = replica.state

    store.client.flushall()  # what a restart without persistence looks like to the follower
    load_dataset(store, tmp_path, DATASET_B, "b.jsonl")
    assert store.version() == 1  # a version this replica has seen, with other data

    poll(lambda: store.state().doubt != "", timeout=WAIT, what="the follower to report the loss")
    assert replica.state is held  # nothing of the new data, no version reused
    assert replica.doubt is not None

    b = load_dataset(store, tmp_path, DATASET_B, "b2.jsonl")  # the operator's reload settles it
    assert store.version() == 4  # above every version a process reported
    poll(lambda: replica.state.version == 4, timeout=WAIT, what="the follower to adopt the reload")
    assert replica.doubt is None
    assert set(replica.state.people.keys()) == set(b.projections)
    assert_matches_redis(replica, store)
