"""One admin write, end to end: idempotency, ledger edit, derivation, one atomic commit.

Optimistic concurrency on the data version: read (version, ledgers), compute everything for
version + 1 (audit entries and the response carry it), commit only if the version is still the
one read, else start over. Agency writes are rare next to checks, so retries stay rare too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import redis
from google.protobuf.message import Message

from cache.codec import decode_ledger, encode_ledger, encode_projection
from cache.store import PersonWrite, Store
from domain.errors import Conflict, StoreUnavailable
from domain.values import AuditEntry, Derivation, Ledger
from service.registry import ledger_ops
from service.registry.idempotency import Doc
from service.registry.replay import ledger_as_of
from service.rules import engine
from service.rules.profile import PointsRules, rules_fingerprint

log = logging.getLogger("gatekeeper.writes")

Change = Callable[[Ledger], Ledger]
Seen = tuple[str, int]  # the data identity and the highest version this process has seen


def nothing_seen() -> Seen:
    return ("", 0)


Respond = Callable[[dict[str, tuple[Ledger, Derivation]], int], Message]


@dataclass(frozen=True, slots=True)
class Item:
    """One document of a write: its idempotency key and fingerprint, whom it changes, how."""

    doc_key: str
    fingerprint: str
    code: str
    change: Change


@dataclass(frozen=True, slots=True)
class Caller:
    actor: str
    method: str


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Redis failures become the one domain error callers are told to retry."""
    try:
        yield
    except redis.RedisError as exc:
        log.warning("status store call failed: %s", exc)
        raise StoreUnavailable(f"the status store is unavailable ({type(exc).__name__}); retry") from exc


class Writer:
    def __init__(
        self,
        store: Store,
        rules: PointsRules,
        clock: Callable[[], str],
        *,
        attempts: int = 50,
        seen: Callable[[], Seen] = nothing_seen,
        replicas: int = 0,
    ) -> None:
        self.store = store
        self.replicas = replicas  # Redis replicas that must hold a write before it is acknowledged
        self.seen = seen  # the commit refuses a store that has lost what this process saw
        self.rules = rules
        self.fingerprint = rules_fingerprint(rules)
        self.clock = clock
        self.attempts = attempts

    def write(
        self,
        caller: Caller,
        items: Sequence[Item],
        respond: Respond,
        parse: Callable[[bytes], Message],
        *,
        batch_key: str | None = None,
    ) -> Message:
        """Write ``items`` at once. The first response is stored under the single item's key, or
        under ``batch_key`` for a batch, and an identical request later gets it back unchanged."""
        replay_key = batch_key or (items[0].doc_key if len(items) == 1 else None)
        with store_errors():
            for attempt in range(self.attempts):
                result = self._attempt(caller, items, respond, parse, replay_key, batch_key)
                if result is not None:
                    return result
                time.sleep(min(0.001 * 2**attempt, 0.05))  # another write won; read again
        raise StoreUnavailable("too many concurrent writes; retry the write")

    def _confirm_replicated(self) -> None:
        """Before a replay is acknowledged, the replicas hold everything the primary has (so the write)."""
        if self.replicas:
            self.store.confirm_replicated(self.replicas)

    def read(self, code: str) -> tuple[Ledger, Derivation, int] | None:
        with store_errors():
            version, raw = self.store.read_person(code)
        if raw is None:
            return None
        ledger = decode_ledger(raw)
        return ledger, engine.derive(ledger, self.rules), version

    def owner_of(self, doc_key: str) -> str | None:
        """The practitioner a document number belongs to, or None when it is not on file."""
        with store_errors():
            raw = self.store.read_doc(doc_key)
        return None if raw is None else Doc.decode(raw).code

    def _attempt(
        self,
        caller: Caller,
        items: Sequence[Item],
        respond: Respond,
        parse: Callable[[bytes], Message],
        replay_key: str | None,
        batch_key: str | None,
    ) -> Message | None:
        # Documents, version and ledgers come from one consistent read: if a concurrent identical
        # request has committed, we see both its document and its effect, never one without the other.
        codes = list(dict.fromkeys(item.code for item in items))
        doc_keys = [item.doc_key for item in items] + ([replay_key] if replay_key else [])
        version, raws, found = self.store.read_for_write(codes, doc_keys)
        docs_seen = dict(zip(doc_keys, found, strict=True))
        ledgers = {code: decode_ledger(raw) if raw else Ledger(code) for code, raw in zip(codes, raws, strict=True)}
        first = _replay(replay_key, batch_key or items[0].fingerprint, docs_seen)
        if first is not None:
            self._confirm_replicated()  # the first attempt's WAIT may have failed: acknowledged means held
            if first.response:  # stored whole by an older version of this code
                return parse(first.response)
            # The first answer, rebuilt from the ledgers as of its version (service/registry/replay.py).
            then = {c: ledger_as_of(ledgers[c], first.version) for c in first.codes or (first.code,)}
            return respond({c: (lg, engine.derive(lg, self.rules)) for c, lg in then.items()}, first.version)
        pending = _pending(items, docs_seen)
        new_version = version + 1
        for item in pending:
            ledgers[item.code] = item.change(ledgers[item.code])
        if not pending:  # a batch wholly seen before: answer with the current files
            self._confirm_replicated()
            return respond({c: (ledger, engine.derive(ledger, self.rules)) for c, ledger in ledgers.items()}, version)
        at = self.clock()
        for item in pending:
            entry = AuditEntry(at, caller.actor, caller.method, item.doc_key, new_version)
            ledgers[item.code] = ledger_ops.audited(ledgers[item.code], entry)
        touched = list(dict.fromkeys(item.code for item in pending))
        results = {code: (ledgers[code], engine.derive(ledgers[code], self.rules)) for code in touched}
        response = respond(results, new_version)
        # What each document needs to replay, no more: its fingerprint, owner and version.
        docs = {item.doc_key: Doc(item.fingerprint, item.code, new_version).encode() for item in pending}
        if batch_key is not None:
            docs[batch_key] = Doc(batch_key, items[0].code, new_version, codes=tuple(touched)).encode()
        writes = [PersonWrite(c, encode_ledger(lg), encode_projection(d)) for c, (lg, d) in results.items()]
        identity, floor = self.seen()
        committed = self.store.commit(
            version, writes, docs, rules=self.fingerprint, identity=identity, floor=floor, replicas=self.replicas
        )
        return response if committed is not None else None


def _replay(key: str | None, fingerprint: str, docs: dict[str, bytes | None]) -> Doc | None:
    """The document of the first write when this exact request was written before."""
    raw = docs.get(key) if key is not None else None
    if raw is None:
        return None
    doc = Doc.decode(raw)
    return doc if doc.fingerprint == fingerprint else None


def _pending(items: Sequence[Item], docs: dict[str, bytes | None]) -> list[Item]:
    """Items not yet written; a document number reused with other content is a conflict."""
    pending = []
    for item in items:
        raw = docs[item.doc_key]
        if raw is None:
            pending.append(item)
            continue
        doc = Doc.decode(raw)
        if doc.fingerprint != item.fingerprint:
            raise Conflict(_conflict_message(item.doc_key, doc))
    return pending


def _conflict_message(key: str, doc: Doc) -> str:
    kind, _, number = key.partition(":")
    if doc.fingerprint is None:
        return f"{kind} {number} was imported by a load and cannot be written again."
    return f"{kind} {number} was already written (data version {doc.version}) with different content."
