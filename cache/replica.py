"""The in-memory replica every server process answers checks from.

A follower thread loads a snapshot, then applies the change feed version by version. The
check path only reads ``Replica.state`` (one attribute: an immutable version + persistent map),
so a check never waits on Redis and never sees half a change. When Redis is slow or gone the
state simply grows older; ``age_seconds`` says by how much and policy decides what that means.

The people are held compactly (cache/people.py): each person's projection as the bytes Redis sent,
decoded into a ``PersonView`` on first lookup into a bounded cache. Nothing is decoded at start, so a
million people load in seconds and take a fraction of the memory an object graph per person took.
A snapshot stays one HGETALL in one MULTI (cache/store.py ``Store.snapshot``: why, there).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cache.codec import decode_view
from cache.people import People
from cache.store import Snapshot, StoreState, StreamEntry
from domain.projection import PersonView

log = logging.getLogger("gatekeeper.replica")


class ChangeFeed(Protocol):
    """Where a replica's data comes from (cache.store.Store, or a fake in unit tests)."""

    def snapshot(self, after: bytes | None = None) -> Snapshot: ...

    def changes(self, after: bytes, block_ms: int) -> list[StreamEntry]: ...

    def state(self, after: bytes | None = None) -> StoreState: ...

    def report_doubt(self, reason: str, held_version: int, held_identity: str, held_epoch: int = 0) -> None: ...


@dataclass(frozen=True, slots=True)
class ReplicaState:
    version: int
    people: People  # code -> PersonView (a Mapping), decoded lazily
    policy_id: str = ""
    rules: str = ""  # fingerprint of the points rules the data was derived under ("" unknown)
    identity: str = ""  # the data identity the state came from ("" unknown: data older than identities)
    epoch: int = 0  # the store's load/recovery count when the state was taken


EMPTY = ReplicaState(0, People())
Listener = Callable[[int, "frozenset[str] | None"], None]


def person_view(code: str, projection: bytes | str) -> PersonView:
    return decode_view(code, projection)


def doubt_about(held: ReplicaState, store: StoreState) -> str | None:
    """Why the store's data cannot be trusted after what this replica holds, or None.

    Pure. A replica that held nothing trusts anything but a store in doubt. One that held data
    distrusts a store that lost some: emptied, another identity, a version below the one held, or a
    feed without the change applied last (a restored older copy that has been written to since).
    Data an operator put there after the replica's (a load or a recovery: a newer epoch, a version
    above the held one, the held identity or one it replaced) is a successor, not a loss."""
    if store.doubt:
        return f"the store is in doubt: {store.doubt}"
    if held.version == 0:
        return None
    lineage = not held.identity or held.identity == store.identity or held.identity in store.ancestors
    if store.epoch > held.epoch and store.version > held.version and lineage:
        return None
    if held.identity and store.identity != held.identity:
        if not store.identity:
            return f"the store is empty (no data identity) while this replica held data version {held.version}"
        return f"the store's data identity changed from {held.identity} to {store.identity}"
    if store.version < held.version:
        return f"the store's data version fell from {held.version} to {store.version}: Redis lost acknowledged changes"
    if store.kept is False:
        return (
            f"the store's change feed no longer holds the change of data version {held.version} this replica "
            "applied: Redis lost acknowledged changes and has been written to since"
        )
    return None


class Replica:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.state = EMPTY
        self.ready = threading.Event()  # set once the first snapshot is in
        # Why the store's data is distrusted (None: trusted). While set, the replica keeps its last
        # good state and stops confirming freshness, so checks turn STALE_DATA past the bound.
        self.doubt: str | None = None
        self._closing = False
        self.last_id = b"0-0"
        self._clock = clock
        self._synced_at = float("-inf")
        self._applied = threading.Condition()
        # The store's version as last read while the feed was quiet, and when that read was sent:
        # proof that a higher version did not exist then (see ``wait_for``).
        self._store_version = 0
        self._store_read_at = float("-inf")
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(version, codes)`` after each change is published (codes None: a whole snapshot).

        Listeners run on the follower thread: they must only hand the event on (e.g. to a bounded queue).
        """
        self._listeners.append(listener)

    def _tell(self, version: int, codes: frozenset[str] | None) -> None:
        for listener in self._listeners:
            try:
                listener(version, codes)
            except Exception:  # a listener must never stop the replica
                log.exception("replica change listener failed")

    def age_seconds(self) -> float:
        """Seconds since the replica last confirmed it is up to date with Redis."""
        return self._clock() - self._synced_at

    def now(self) -> float:
        return self._clock()

    def mark_synced(self, at: float | None = None) -> None:
        """Record that the replica was current at ``at`` (when the read that proved it was sent)."""
        self._synced_at = self._clock() if at is None else at

    def load(self, snapshot: Snapshot) -> None:
        # Collect what earlier states left before the new map exists (then the collection is short), and
        # freeze after: the map's nodes are long-lived and a full collection need not walk them (nor
        # touch their pages, which a supervisor's forked workers share copy-on-write).
        gc.unfreeze()
        gc.collect()
        people = People.of_snapshot(snapshot.people)
        gc.freeze()
        state = ReplicaState(
            snapshot.version, people, snapshot.policy_id, snapshot.rules, snapshot.identity, snapshot.epoch
        )
        self._publish(state, snapshot.last_id)
        self.mark_synced()
        self.ready.set()
        self._tell(snapshot.version, None)

    def apply(self, entries: list[StreamEntry]) -> bool:
        """Apply change events in order; False when a snapshot is needed instead.

        Every entry read after ``last_id`` must carry exactly the next version. Anything else is
        a gap (trimmed stream), a load (``kind=reset``) or Redis having lost data and started
        counting again (version not above ours): all are answered by re-snapshotting.
        """
        for entry_id, fields in entries:
            version = int(fields[b"v"])
            state = self.state
            if version != state.version + 1 or fields.get(b"kind") != b"person":
                return False
            changed = [(key.decode(), value) for key, value in fields.items() if key not in (b"v", b"kind")]
            for code, value in changed:  # decoded now: a bad entry fails before anything is published,
                state.people.views.view(code, value)  # and the watchers' lookup of the changed finds it
            updated = state.people.changed(changed)
            self._publish(dataclasses.replace(state, version=version, people=updated), entry_id)
            self._tell(version, frozenset(code for code, _ in changed))
        return True

    def saw_store_version(self, version: int, read_at: float) -> None:
        """The follower read the store's version (sent at ``read_at``) while no change was pending."""
        with self._applied:
            self._store_version, self._store_read_at = version, read_at
            self._applied.notify_all()

    def wake(self) -> None:
        """Let every waiter look again (a waiting caller went away)."""
        with self._applied:
            self._applied.notify_all()

    def close_waits(self) -> None:
        """End every bounded wait now and refuse new ones (the process is shutting down)."""
        with self._applied:
            self._closing = True
            self._applied.notify_all()

    def adopt_identity(self, identity: str) -> None:
        """Data loaded before identities existed got one from the first write: remember it."""
        state = self.state
        if not state.identity and identity:
            with self._applied:
                self.state = dataclasses.replace(state, identity=identity)

    def wait_for(self, version: int, timeout: float, gone: Callable[[], bool] | None = None) -> bool:
        """Block up to ``timeout`` seconds until the replica holds ``version``.

        Returns early (False) once a read of the store sent after the wait began shows it has no
        such version: whoever asks for it cannot have been told of it, so waiting longer is futile.
        Also when ``gone()`` says the caller left (call ``wake`` when that happens).
        """
        began = self._clock()

        def settled() -> bool:
            if self.state.version >= version or self._closing or (gone is not None and gone()):
                return True
            return self._store_read_at >= began and self._store_version < version

        with self._applied:
            self._applied.wait_for(settled, timeout=timeout)
            return self.state.version >= version

    def _publish(self, state: ReplicaState, last_id: bytes) -> None:
        with self._applied:
            self.state = state
            self.last_id = last_id
            self._applied.notify_all()


@dataclass(slots=True)
class FollowerStats:
    """What the follower did so far, read by the metrics at scrape time (one writer: the follower)."""

    errors: int = 0  # failed syncs with the store (Redis down, timing out, failing over)
    snapshots: int = 0  # full snapshot loads: the first, then after loads, gaps and lost data
    bad_entries: int = 0  # change entries that could not be applied (each answered by a fresh snapshot)
    in_doubt: bool = False  # the replica distrusts the store (see ``doubt_about``)
    feed_lag_seconds: float = 0.0  # from the last applied change's commit in Redis to its application here


def stream_entry_seconds(entry_id: bytes) -> float:
    """When Redis wrote a stream entry: its id is ``<unix ms>-<sequence>``."""
    return int(entry_id.split(b"-", 1)[0]) / 1000


class Follower:
    """Keeps a replica current from a change feed, reconnecting forever with backoff."""

    # A short blocking read: an idle but healthy replica re-confirms it is current 4 times a second.
    def __init__(
        self, replica: Replica, feed: ChangeFeed, *, block_ms: int = 250, wall: Callable[[], float] = time.time
    ) -> None:
        self.replica = replica
        self.feed = feed
        self.block_ms = block_ms
        self.stats = FollowerStats()
        self._wall = wall
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def prime(self) -> bool:
        """Load the first snapshot now, on the caller's thread (a supervisor does this before it forks
        its workers, so they share the replica copy-on-write); False when the store is in doubt."""
        return self._load_snapshot()

    def _run(self) -> None:
        backoff = 0.1
        need_snapshot = not self.replica.ready.is_set()  # a primed replica follows on from its snapshot
        while not self._stop.is_set():
            try:
                if self.replica.doubt is not None:
                    if not self._settle_doubt():
                        continue
                    need_snapshot = True  # the doubt ends once the new data is in (_load_snapshot)
                if need_snapshot and not self._load_snapshot():
                    continue
                need_snapshot = self._follow()
                backoff = 0.1
            except Exception as exc:  # any failure: keep serving the old state, retry
                self.stats.errors += 1
                log.warning("replica sync failed; retrying in %.1fs: %s", backoff, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                need_snapshot = need_snapshot or not self.replica.ready.is_set()

    def _load_snapshot(self) -> bool:
        """Adopt a fresh snapshot if the store can be trusted; False (in doubt) otherwise."""
        snapshot = self.feed.snapshot(self.replica.last_id if self.replica.ready.is_set() else None)
        if self._distrust(snapshot.state):
            return False
        self.replica.load(snapshot)
        if self.replica.doubt is not None:
            log.warning("replica trusts the store again at data version %d", snapshot.version)
            self._set_doubt(None)
        self.stats.snapshots += 1
        log.info("replica loaded snapshot", extra={"data_version": self.replica.state.version})
        return True

    def _follow(self) -> bool:
        """One read of the feed; True when a snapshot is needed next."""
        replica = self.replica
        sent = replica.now()
        entries = self.feed.changes(replica.last_id, self.block_ms)
        if entries:
            try:
                applied = replica.apply(entries)
            except Exception:  # an entry we cannot decode must not wedge the replica: start over
                self.stats.bad_entries += 1
                log.exception("replica could not apply a change entry; taking a fresh snapshot")
                return True
            lag = self._wall() - stream_entry_seconds(replica.last_id)
            self.stats.feed_lag_seconds = max(0.0, lag)  # clocks of two hosts may disagree a little
            need_snapshot = not applied
        else:  # quiet feed: make sure Redis has not lost its data meanwhile
            read_at = replica.now()
            store = self.feed.state(replica.last_id)
            replica.saw_store_version(store.version, read_at)
            if self._distrust(store):
                return False
            replica.adopt_identity(store.identity)
            need_snapshot = False  # a version above ours is a change the next read brings
        replica.mark_synced(sent)
        return need_snapshot

    def _distrust(self, store: StoreState) -> bool:
        held = self.replica.state if self.replica.ready.is_set() else EMPTY
        why = doubt_about(held, store)
        if why is None:
            return False
        self._set_doubt(why)
        log.error("replica distrusts the store and keeps data version %d: %s", held.version, why)
        self._report(why, held)
        return True

    def _set_doubt(self, why: str | None) -> None:
        self.replica.doubt = why
        self.stats.in_doubt = why is not None

    def _report(self, why: str, held: ReplicaState) -> None:
        if held.version:
            self.feed.report_doubt(why, held.version, held.identity, held.epoch)

    def _settle_doubt(self) -> bool:
        """While in doubt: look again; True once the store is trustworthy (re-snapshot then)."""
        held = self.replica.state
        store = self.feed.state(self.replica.last_id)
        why = doubt_about(held, store)
        if why is None:
            return True
        if not store.doubt:
            self._report(why, held)  # recovered without hearing of us: say it again
        self._stop.wait(self.block_ms / 1000)
        return False
