"""The Redis key schema. All keys share one hash tag so they live in one cluster slot and
the commit script may touch them together.

    {gk}:version   string  data version: +1 per committed change (admin write or load)
    {gk}:meta      hash    policy_id (profile the projections were derived with), loaded_at,
                           rules_fingerprint (of that profile's [points] rules: every writer must match it),
                           identity (created once with the data), doubt (why a process distrusts the data,
                           until recovered), high_water (highest version a process reported seeing),
                           doubt_identities / ancestors (identities a recovery accepted as replaced),
                           recovered_at, recovered_reason
    {gk}:load-lock string  owner of the running `gatekeeper load` (SET NX EX): loads never overlap
    {gk}:replication-probe  counter a replayed write increments before its WAIT (replicas hold all before it)
    {gk}:people    hash    practitioner code -> projection JSON (what checks need; cache/codec.py)
    {gk}:ledgers   hash    practitioner code -> ledger JSON (every fact ever recorded)
    {gk}:docs      hash    idempotency key -> JSON {fp, code, v, resp} (cache/store.py Doc)
    {gk}:changes   stream  change feed; one entry per version:
                           v=<version> kind=person <code>=<projection JSON> ...
                           v=<version> kind=reset   (a load swapped everything: re-snapshot)

Readers never see half a change: every change is one Lua script (cache/lua/*.lua), and a
snapshot is one MULTI/EXEC of GET version + HGETALL people + the stream's last id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "{gk}"

    @property
    def version(self) -> str:
        return f"{self.prefix}:version"

    @property
    def meta(self) -> str:
        return f"{self.prefix}:meta"

    @property
    def people(self) -> str:
        return f"{self.prefix}:people"

    @property
    def ledgers(self) -> str:
        return f"{self.prefix}:ledgers"

    @property
    def docs(self) -> str:
        return f"{self.prefix}:docs"

    @property
    def changes(self) -> str:
        return f"{self.prefix}:changes"

    @property
    def replication_probe(self) -> str:
        return f"{self.prefix}:replication-probe"

    @property
    def load_lock(self) -> str:
        return f"{self.prefix}:load-lock"

    def staging(self, key: str, owner: str) -> str:
        """Where one load builds a hash before it is swapped in (its own: loads never share)."""
        return f"{key}:staging:{owner}"

    @property
    def commit_keys(self) -> list[str]:
        return [self.version, self.people, self.ledgers, self.docs, self.changes, self.meta]


# How many change events the stream keeps; a replica further behind re-snapshots.
STREAM_MAXLEN = 100_000
