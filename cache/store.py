"""Redis I/O for the status cache: snapshots, the change feed, atomic commits and load swaps.

Nothing here knows the policy: callers hand in already-encoded ledgers and projections
(cache/codec.py). Every mutation is one Lua script, so no reader ever sees half of one.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.sentinel

from cache.schema import STREAM_MAXLEN, Keys
from domain.errors import Refused, StoreUnavailable

# Change feed entries as redis-py returns them with decode_responses=False.
StreamEntry = tuple[bytes, dict[bytes, bytes]]


def _via_sentinel(url: str, timeout: float) -> redis.Redis:
    parts = urllib.parse.urlsplit(url)
    auth, _, hosts = parts.netloc.rpartition("@")
    password = urllib.parse.unquote(auth.partition(":")[2]) or None
    nodes = [(host, int(port or 26379)) for host, _, port in (h.rpartition(":") if ":" in h else (h, "", "")
             for h in hosts.split(","))]  # fmt: skip
    service, _, db = parts.path.strip("/").partition("/")
    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    sentinel = redis.sentinel.Sentinel(nodes, sentinel_kwargs=options, **options)  # type: ignore[no-untyped-call]
    primary = sentinel.master_for(  # type: ignore[no-untyped-call]
        service or "gatekeeper", db=int(db or 0), password=password, health_check_interval=10, decode_responses=False
    )
    return cast(redis.Redis, primary)


@dataclass(frozen=True, slots=True)
class StoreState:
    """What a replica checks before it trusts the store: the data's identity and version.

    ``identity`` is created once with the data (a load or the first write) and kept with it;
    ``doubt`` is set by a process that saw the store lose data, until an operator recovers it
    (``Store.recover`` or a load); ``ancestors`` are identities a recovery accepted as replaced."""

    version: int
    identity: str = ""
    doubt: str = ""
    ancestors: frozenset[str] = frozenset()
    epoch: int = 0  # +1 per load or recovery: data an operator put there, not a loss
    kept: bool | None = None  # the feed still holds the asker's last entry (None: not asked, or trimmed)


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    people: dict[bytes, bytes]  # code -> projection JSON
    last_id: bytes  # change feed position the snapshot is consistent with
    policy_id: str
    rules: str = ""  # fingerprint of the points rules the projections were derived under ("" unknown)
    identity: str = ""
    doubt: str = ""
    ancestors: frozenset[str] = frozenset()
    epoch: int = 0
    kept: bool | None = None  # as in StoreState, for the ``after`` asked

    @property
    def state(self) -> StoreState:
        return StoreState(self.version, self.identity, self.doubt, self.ancestors, self.epoch, self.kept)


_META_STATE = ["identity", "doubt", "ancestors", "epoch"]


def _store_state(
    version: bytes | None, identity: bytes | None, doubt: bytes | None, ancestors: bytes | None, epoch: bytes | None
) -> StoreState:
    return StoreState(
        int(version or 0),
        (identity or b"").decode(),
        (doubt or b"").decode(),
        frozenset(a for a in (ancestors or b"").decode().split(",") if a),
        int(epoch or 0),
    )


def _kept(entry_id: bytes, found: list[Any], first: list[Any]) -> bool | None:
    """Whether the feed still holds ``entry_id``: None when it cannot tell (trimmed past it)."""
    if found:
        return True
    if first and _entry_key(first[0][0]) > _entry_key(entry_id):
        return None  # trimmed: every entry left is newer
    return False  # gone from a range the feed still covers, or the feed itself is gone


def _entry_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def new_identity() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class PersonWrite:
    code: str
    ledger: str
    projection: str


def _script(name: str) -> str:
    return importlib.resources.files("cache").joinpath(f"lua/{name}").read_text(encoding="utf-8")


SENTINEL_SCHEME = "redis+sentinel"
STAGING_TTL_SECONDS = 3600
REPLICA_WAIT_MS = 1500  # under the client's 2 s socket timeout, so a WAIT that times out says so


def connect(url: str, *, timeout: float = 2.0) -> redis.Redis:
    """A client with bounded timeouts: a slow Redis must never hang a caller for long.

    ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]`` asks the Sentinels
    for the current primary on every (re)connection, so a failover needs no restart.
    """
    if url.startswith(f"{SENTINEL_SCHEME}://"):
        return _via_sentinel(url, timeout)
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=10,
        decode_responses=False,
    )


class Store:
    """The gatekeeper's data in one Redis (or one primary, with Sentinel in front)."""

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        self.client = client
        self.keys = keys or Keys()
        self._commit = client.register_script(_script("commit.lua"))
        self._swap = client.register_script(_script("settle.lua") + _script("swap.lua"))
        self._doubt = client.register_script(_script("doubt.lua"))
        self._recover = client.register_script(_script("settle.lua") + _script("recover.lua"))
        self._unlock = client.register_script(_script("unlock.lua"))

    # --- reads -------------------------------------------------------------------------------

    def snapshot(self, after: bytes | None = None) -> Snapshot:
        """Everything a replica holds, at one version; with ``after`` also whether the feed still
        holds that entry (``Snapshot.kept``).

        One HGETALL in one MULTI, not HSCAN batches: measured with 1,000,000 people (75-byte
        projections) it takes 2.0 s end to end with hiredis, 0.6 s of it inside Redis (which serves
        nothing else meanwhile), and is consistent by construction. Batches would overlap only
        those 0.6 s with our parsing and need a feed replay to be consistent (docs/performance.md)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.version)
        pipe.hgetall(self.keys.people)
        pipe.xrevrange(self.keys.changes, count=1)
        pipe.hmget(self.keys.meta, ["policy_id", "rules_fingerprint", *_META_STATE])
        self._ask_kept(pipe, after)
        version, people, last, (policy_id, rules, *meta), *entries = pipe.execute()
        state = _store_state(version, *meta)
        return Snapshot(
            version=state.version,
            people=people,
            last_id=last[0][0] if last else b"0-0",
            policy_id=(policy_id or b"").decode(),
            rules=(rules or b"").decode(),
            identity=state.identity,
            doubt=state.doubt,
            ancestors=state.ancestors,
            epoch=state.epoch,
            kept=_kept(after, *entries) if after is not None and entries else None,
        )

    def state(self, after: bytes | None = None) -> StoreState:
        """Version and data identity, read together; with ``after`` (a feed entry id the asker applied
        last) also whether the feed still holds that entry."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.version)
        pipe.hmget(self.keys.meta, _META_STATE)
        self._ask_kept(pipe, after)
        version, meta, *entries = pipe.execute()
        state = _store_state(version, *meta)
        if after is None or not entries:
            return state
        return dataclasses.replace(state, kept=_kept(after, *entries))

    def _ask_kept(self, pipe: Any, after: bytes | None) -> None:
        """Queue what ``_kept`` needs: the entry itself and the feed's first entry."""
        if after is not None and after != b"0-0":
            pipe.xrange(self.keys.changes, after, after, count=1)
            pipe.xrange(self.keys.changes, "-", "+", count=1)

    def confirm_replicated(self, replicas: int) -> None:
        """``StoreUnavailable`` unless ``replicas`` replicas hold everything the primary holds now: a write
        on this connection (the replication stream is ordered) and a WAIT for it."""
        _probe, acknowledged = self._waited(lambda pipe: pipe.incr(self.keys.replication_probe), replicas)
        _require(acknowledged, replicas, "the write is on the primary")

    def _waited(self, write: Callable[[Any], object], replicas: int) -> tuple[Any, int]:
        """``write``'s reply and how many replicas acknowledged it: WAIT counts the writes of its own
        connection, so the write and the WAIT go out on one (a pipeline)."""
        pipe = self.client.pipeline(transaction=False)
        write(pipe)
        pipe.wait(replicas, REPLICA_WAIT_MS)
        reply, acknowledged = pipe.execute()
        return reply, int(acknowledged)

    def people_count(self) -> int:
        return int(self.client.hlen(self.keys.people))

    def changes(self, after: bytes, block_ms: int, count: int = 1000) -> list[StreamEntry]:
        reply: Any = self.client.xread({self.keys.changes: after}, count=count, block=block_ms)
        if not reply:
            return []
        return cast(list[StreamEntry], reply[0][1])  # RESP2: [[stream, entries]]

    def version(self) -> int:
        return int(cast(bytes | None, self.client.get(self.keys.version)) or 0)

    def read_person(self, code: str) -> tuple[int, bytes | None]:
        """The current version and the person's ledger, read together."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.version)
        pipe.hget(self.keys.ledgers, code)
        version, ledger = pipe.execute()
        return int(version or 0), ledger

    def read_for_write(
        self, codes: Sequence[str], doc_keys: Sequence[str]
    ) -> tuple[int, list[bytes | None], list[bytes | None]]:
        """Version, ledgers and idempotency documents, read together (one MULTI/EXEC)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.version)
        pipe.hmget(self.keys.ledgers, list(codes))
        pipe.hmget(self.keys.docs, list(doc_keys))
        version, ledgers, docs = pipe.execute()
        return int(version or 0), list(ledgers), list(docs)

    def scan_ledgers(self, batch: int = 2000) -> Iterator[tuple[bytes, bytes]]:
        """Every (code, ledger JSON), in batches (HSCAN: Redis is never blocked for the whole hash)."""
        yield from self.client.hscan_iter(self.keys.ledgers, count=batch)

    def read_ledgers(self, codes: Sequence[str], batch: int = 5000) -> dict[str, bytes]:
        """The ledgers of ``codes`` that exist, read in pipelined batches."""
        found: dict[str, bytes] = {}
        for i in range(0, len(codes), batch):
            chunk = list(codes[i : i + batch])
            raws: list[bytes | None] = cast(list[bytes | None], self.client.hmget(self.keys.ledgers, chunk))
            found.update({c: raw for c, raw in zip(chunk, raws, strict=True) if raw is not None})
        return found

    def read_everyone(self) -> tuple[int, dict[bytes, bytes], dict[bytes, bytes]]:
        """The version, every ledger and every projection, read together (one MULTI/EXEC).

        For reports over all people; the whole dataset crosses the wire, so not for hot paths."""
        pipe = self.client.pipeline(transaction=True)
        pipe.get(self.keys.version)
        pipe.hgetall(self.keys.ledgers)
        pipe.hgetall(self.keys.people)
        version, ledgers, people = pipe.execute()
        return int(version or 0), ledgers, people

    def read_doc(self, key: str) -> bytes | None:
        """An idempotency document (JSON), or None."""
        return cast(bytes | None, self.client.hget(self.keys.docs, key))

    # --- writes ------------------------------------------------------------------------------

    def commit(
        self,
        expected_version: int,
        people: Iterable[PersonWrite],
        docs: Mapping[str, str],
        *,
        rules: str = "",
        identity: str = "",
        floor: int = 0,
        replicas: int = 0,
    ) -> int | None:
        """Write everything at ``expected_version + 1``; None when another write came first.

        ``rules`` is the writer's points-rules fingerprint: when the stored data was derived under other
        rules the write is refused rather than mixing two derivations (empty: not checked).
        ``identity`` and ``floor`` are the data identity and the highest version the writer's process
        has seen: a store with another identity, a lower version, or in doubt refuses the write
        (``StoreUnavailable``), so no version another process may have seen is ever reused. With
        ``replicas``, a committed write is acknowledged only once that many replicas hold it (WAIT);
        else ``StoreUnavailable``, and the retry finds the write (idempotency)."""
        args: list[Any] = [expected_version, STREAM_MAXLEN]
        people = list(people)
        args.append(len(people))
        for person in people:
            args += [person.code, person.ledger, person.projection]
        args.append(len(docs))
        for key, value in docs.items():
            args += [key, value]
        args += [rules, identity, floor, new_identity()]
        if replicas:
            (ok, version), acknowledged = self._waited(
                lambda pipe: self._commit(keys=self.keys.commit_keys, args=args, client=pipe), replicas
            )
            if ok == 1:
                _require(acknowledged, replicas, f"the write is on the primary at data version {int(version)}")
        else:
            ok, version = self._commit(keys=self.keys.commit_keys, args=args)
        if ok == 3:
            raise StoreUnavailable(f"Writes are refused while the stored data is in doubt: {version.decode()}")
        if ok == 2:
            raise Refused(
                f"The stored timelines were derived under points rules {version.decode()}, this process's profile "
                f"under {rules}; writing would mix the two (start it with the profile the data was loaded with).",
                kind="PROFILE_MISMATCH",
            )
        return int(version) if ok == 1 else None

    def swap(
        self,
        ledgers: Mapping[str, str],
        projections: Mapping[str, str],
        docs: Mapping[str, str],
        policy_id: str,
        loaded_at: str,
        rules: str = "",
        *,
        owner: str | None = None,
        expected_version: int | None = None,
    ) -> int:
        """Replace the whole dataset in one step; returns the new version.

        Staging keys are the load's own (``owner``), so two loads never mix their data; with an
        ``owner`` the swap happens only while that owner holds the load lock. A load also settles
        a store in doubt: the new version is above every version any process reported seeing. With
        ``expected_version`` the swap happens only if no write came since (``DataChanged``)."""
        token = owner or new_identity()
        staging = [self.keys.staging(k, token) for k in (self.keys.people, self.keys.ledgers, self.keys.docs)]
        self.client.delete(*staging)
        try:
            for target, data in zip(staging, (projections, ledgers, docs), strict=True):
                items = list(data.items())
                for start in range(0, len(items), 5000):  # bounded command size
                    self.client.hset(target, mapping=dict(items[start : start + 5000]))
                self.client.expire(target, STAGING_TTL_SECONDS)  # a load killed midway leaves nothing for long
            expected = "" if expected_version is None else expected_version
            args: list[str | int] = [STREAM_MAXLEN, policy_id, loaded_at, rules, new_identity(), owner or "", expected]
            ok, version = self._swap(keys=[*self.keys.commit_keys, *staging, self.keys.load_lock], args=args)
        finally:
            self.client.delete(*staging)
        if ok == 0:
            raise LoadLockLost(f"the load lock is no longer held by {owner} (now: {version.decode() or 'nobody'})")
        if ok == 2:
            raise DataChanged(f"a write reached data version {int(version)} while the load was checked")
        return int(version)

    # --- loads and data loss -------------------------------------------------------------------

    def acquire_load_lock(self, owner: str, ttl_seconds: int) -> str | None:
        """Take the load lock for ``owner``; None when taken, else the current holder."""
        if self.client.set(self.keys.load_lock, owner, nx=True, ex=ttl_seconds):
            return None
        holder = cast(bytes | None, self.client.get(self.keys.load_lock))
        return (holder or b"(expired)").decode()

    def release_load_lock(self, owner: str) -> None:
        self._unlock(keys=[self.keys.load_lock], args=[owner])

    def report_doubt(self, reason: str, held_version: int, held_identity: str, held_epoch: int = 0) -> None:
        """Record that this process saw the store lose data: writes stop until a recovery, which
        then starts above ``held_version`` and ``held_epoch``."""
        self._doubt(keys=[self.keys.meta], args=[reason, held_version, held_identity, held_epoch])

    def recover(self, reason: str) -> int:
        """Accept the store's data as it is now (an operator's decision after data loss): clear the
        doubt, move the version above every version a process reported, tell replicas to re-snapshot."""
        version = self._recover(keys=self.keys.commit_keys, args=[STREAM_MAXLEN, reason, new_identity()])
        return int(version)


def _require(acknowledged: int, replicas: int, what: str) -> None:
    if acknowledged < replicas:
        raise StoreUnavailable(
            f"{what} but {acknowledged} of {replicas} replicas acknowledged it; retry (the retry returns it)"
        )


class LoadLockLost(RuntimeError):
    """The load's lock expired or was taken over before the swap: nothing was swapped in."""


class DataChanged(RuntimeError):
    """A write came between a load's checks and its swap: nothing was swapped in."""
