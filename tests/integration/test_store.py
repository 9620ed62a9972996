"""cache.store.Store against a real redis-server: snapshots, atomic commits, load swaps."""

from __future__ import annotations

import pathlib
import threading
from typing import Any

import pytest

from cache.store import PersonWrite, Store, connect
from service.registry.dataset import Dataset, read_dataset
from service.registry.idempotency import Doc, points_key
from tests.integration.helpers import (
    CLEAN,
    DATASET_A,
    DATASET_B,
    NEWCOMER,
    POLICY_ID,
    PROFILE,
    SUSPENDED,
    TERMINATED,
    person_write,
    suspended_person,
    write_dataset,
)

LOADED_AT = "2025-09-01T00:00:00.000+00:00"


def dataset(tmp_path: pathlib.Path, people: list[dict[str, Any]], name: str = "data.jsonl") -> Dataset:
    return read_dataset(write_dataset(tmp_path / name, people), PROFILE)


def swap(store: Store, data: Dataset) -> int:
    return store.swap(data.ledgers, data.projections, data.docs, POLICY_ID, LOADED_AT)


def stream(store: Store) -> Any:
    """The change feed's entries: [(id, {field: value})]."""
    return store.client.xrange(store.keys.changes)


def raw_hash(store: Store, key: str) -> Any:
    return store.client.hgetall(key)


def live_state(store: Store) -> dict[str, Any]:
    """Everything a load or a commit may change, to compare before and after."""
    keys = store.keys
    return {
        "version": store.client.get(keys.version),
        "people": raw_hash(store, keys.people),
        "ledgers": raw_hash(store, keys.ledgers),
        "docs": raw_hash(store, keys.docs),
        "meta": raw_hash(store, keys.meta),
        "stream": stream(store),
    }


def test_snapshot_of_an_empty_store(store: Store) -> None:
    snap = store.snapshot()
    assert (snap.version, snap.people, snap.last_id, snap.policy_id) == (0, {}, b"0-0", "")


def test_snapshot_matches_version_people_and_last_stream_entry(store: Store, tmp_path: pathlib.Path) -> None:
    data = dataset(tmp_path, DATASET_A)
    assert swap(store, data) == 1
    extra = person_write(suspended_person("D540102000077"))
    assert store.commit(1, [extra], {}) == 2

    snap = store.snapshot()
    assert snap.version == 2
    assert snap.policy_id == POLICY_ID
    expected = {code.encode(): p.encode() for code, p in data.projections.items()}
    expected[extra.code.encode()] = extra.projection.encode()
    assert snap.people == expected
    last_id, fields = stream(store)[-1]
    assert snap.last_id == last_id
    assert fields[b"v"] == b"2"


def test_snapshots_taken_during_commits_are_each_consistent(
    store: Store, redis_url: str, tmp_path: pathlib.Path
) -> None:
    """Every snapshot is one version: its people, its version and its stream position agree."""
    swap(store, dataset(tmp_path, DATASET_A))
    base_people = len(DATASET_A)
    commits = 40
    writes = [person_write(suspended_person(f"D5401021000{i:02d}")) for i in range(commits)]
    errors: list[BaseException] = []

    def writer() -> None:
        writing = Store(connect(redis_url))
        try:
            for i, write in enumerate(writes):
                assert writing.commit(1 + i, [write], {}) == 2 + i
        except BaseException as exc:
            errors.append(exc)
        finally:
            writing.client.close()

    thread = threading.Thread(target=writer)
    thread.start()
    seen: set[int] = set()
    while thread.is_alive() or not seen:
        snap = store.snapshot()
        seen.add(snap.version)
        # version 1 is the load; each later version added exactly one person.
        assert len(snap.people) == base_people + snap.version - 1
        ((_, fields),) = store.client.xrange(store.keys.changes, min=snap.last_id, max=snap.last_id)
        assert int(fields[b"v"]) == snap.version
    thread.join()
    assert not errors, errors
    assert store.snapshot().version == 1 + commits


@pytest.mark.parametrize("expected_version", [0, 2, 7])
def test_commit_with_a_stale_expected_version_changes_nothing(
    store: Store, tmp_path: pathlib.Path, expected_version: int
) -> None:
    swap(store, dataset(tmp_path, DATASET_A))
    before = live_state(store)
    write = person_write(suspended_person("D540102000055"))
    doc = Doc("fp", write.code, 2).encode()

    assert store.commit(expected_version, [write], {points_key("XZ-NEW"): doc}) is None

    assert live_state(store) == before
    assert store.version() == 1
    assert store.client.hget(store.keys.people, write.code) is None
    assert store.client.hget(store.keys.ledgers, write.code) is None
    assert store.read_doc(points_key("XZ-NEW")) is None
    assert len(stream(store)) == 1  # only the load's reset entry


def test_commit_writes_ledger_projection_doc_and_one_stream_entry(store: Store, tmp_path: pathlib.Path) -> None:
    swap(store, dataset(tmp_path, DATASET_A))
    entries_before = len(stream(store))
    first, second = person_write(suspended_person("D540102000055")), person_write(suspended_person(CLEAN))
    doc = Doc("fp", first.code, 2, b"response").encode()

    assert store.commit(1, [first, second], {points_key("XZ-NEW"): doc}) == 2

    assert store.version() == 2
    for write in (first, second):
        assert store.client.hget(store.keys.ledgers, write.code) == write.ledger.encode()
        assert store.client.hget(store.keys.people, write.code) == write.projection.encode()
        assert store.read_person(write.code) == (2, write.ledger.encode())
    assert store.read_doc(points_key("XZ-NEW")) == doc.encode()
    assert Doc.decode(store.read_doc(points_key("XZ-NEW")) or b"").response == b"response"
    entries = stream(store)
    assert len(entries) == entries_before + 1
    _, fields = entries[-1]
    assert fields == {
        b"v": b"2",
        b"kind": b"person",
        first.code.encode(): first.projection.encode(),
        second.code.encode(): second.projection.encode(),
    }
    # Untouched people keep their data.
    assert store.client.hget(store.keys.people, SUSPENDED) is not None

    # The next commit must name version 2; naming 1 again is refused.
    third = person_write(suspended_person("D540102000066"))
    assert store.commit(1, [third], {}) is None
    assert store.commit(2, [third], {}) == 3
    assert [int(f[b"v"]) for _, f in stream(store)] == [1, 2, 3]


def test_swap_replaces_people_ledgers_and_docs_wholesale(store: Store, tmp_path: pathlib.Path) -> None:
    a = dataset(tmp_path, DATASET_A, "a.jsonl")
    b = dataset(tmp_path, DATASET_B, "b.jsonl")
    assert swap(store, a) == 1
    admin_doc = Doc("fp", CLEAN, 2).encode()
    assert store.commit(1, [person_write(suspended_person("D540102000055"))], {"register:x": admin_doc}) == 2

    version = store.swap(b.ledgers, b.projections, b.docs, POLICY_ID, "later")

    assert version == 3
    assert store.version() == 3
    assert set(raw_hash(store, store.keys.people)) == {CLEAN.encode(), NEWCOMER.encode()}
    assert {k.decode(): v.decode() for k, v in raw_hash(store, store.keys.people).items()} == b.projections
    assert {k.decode(): v.decode() for k, v in raw_hash(store, store.keys.ledgers).items()} == b.ledgers
    # Dataset B has no points: every document of A and of the admin write is gone.
    assert raw_hash(store, store.keys.docs) == {}
    assert store.read_person(SUSPENDED) == (3, None)
    assert store.read_person(TERMINATED) == (3, None)
    meta = raw_hash(store, store.keys.meta)
    assert len(meta.pop(b"identity")) == 32  # created with the first load, kept by the next
    assert meta.pop(b"epoch") == b"2"  # one per load
    assert meta == {
        b"policy_id": POLICY_ID.encode(),
        b"loaded_at": b"later",
        b"rules_fingerprint": b"",  # a load that does not say under which rules (this test) stores ""
    }
    last_id, fields = stream(store)[-1]
    assert fields == {b"v": b"3", b"kind": b"reset"}
    assert len(stream(store)) == 3
    assert store.snapshot().last_id == last_id
    assert staged(store) == []

    # Swapping A back brings A's documents back and drops B's people.
    assert swap(store, a) == 4
    assert {k.decode() for k in raw_hash(store, store.keys.docs)} == set(a.docs)
    assert {k.decode() for k in raw_hash(store, store.keys.people)} == set(a.projections)


def staged(store: Store) -> list[bytes]:
    return sorted(store.client.keys(f"{store.keys.prefix}:*:staging:*"))


class _BrokenMapping(dict[str, str]):
    """A dataset part whose reading fails: the load stops after staging what came before it."""

    def items(self) -> Any:
        raise RuntimeError("load interrupted")


def test_interrupted_load_leaves_live_data_untouched(store: Store, tmp_path: pathlib.Path) -> None:
    a = dataset(tmp_path, DATASET_A, "a.jsonl")
    b = dataset(tmp_path, DATASET_B, "b.jsonl")
    swap(store, a)
    assert store.commit(1, [person_write(suspended_person("D540102000055"))], {"register:x": "{}"}) == 2
    before = live_state(store)
    snap_before = store.snapshot()

    # Projections are staged, then reading the ledgers fails: the swap script never runs.
    with pytest.raises(RuntimeError, match="load interrupted"):
        store.swap(_BrokenMapping(b.ledgers), b.projections, b.docs, POLICY_ID, LOADED_AT)
    assert staged(store) == []  # an interrupted load removes what it staged
    # A load killed midway leaves its own staging behind (expiring), never another load's.
    store.client.hset(store.keys.staging(store.keys.docs, "killed-load"), "points:LEFTOVER", "{}")

    assert live_state(store) == before
    assert store.snapshot() == snap_before

    # Writes go on normally on the live data.
    assert store.commit(2, [person_write(suspended_person("D540102000066"))], {}) == 3

    # The next complete load starts from clean staging: nothing of the interrupted one leaks in.
    only_clean = dataset(tmp_path, [DATASET_A[1]], "c.jsonl")
    assert swap(store, only_clean) == 4
    assert set(raw_hash(store, store.keys.people)) == {CLEAN.encode()}
    assert set(raw_hash(store, store.keys.ledgers)) == {CLEAN.encode()}
    assert raw_hash(store, store.keys.docs) == {}
    assert staged(store) == [store.keys.staging(store.keys.docs, "killed-load").encode()]


def test_commit_is_refused_after_a_concurrent_load(store: Store, tmp_path: pathlib.Path) -> None:
    """A write computed on the version before a load must not land on top of the loaded data."""
    swap(store, dataset(tmp_path, DATASET_A))
    read_version, _ = store.read_person(SUSPENDED)
    swap(store, dataset(tmp_path, DATASET_B, "b.jsonl"))
    stale_write = PersonWrite(SUSPENDED, "{}", person_write(DATASET_A[0]).projection)
    assert store.commit(read_version, [stale_write], {}) is None
    assert store.client.hget(store.keys.people, SUSPENDED) is None
