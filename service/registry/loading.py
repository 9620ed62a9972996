"""`gatekeeper load` as a guarded operation: one load at a time, and none that silently destroys.

A load replaces the whole dataset. Two things it must never do by accident: leave almost nobody
(an empty or truncated file), and erase what the agency wrote through the admin API (ledger facts
and their audit trail), which no dataset file carries. Both are refused unless a named flag says
the operator means it. Loads are serialised by a lock in Redis with an owner and an expiry; the
one that does not get it fails at once, naming the holder.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cache.codec import records_agency_writes
from cache.store import DataChanged, LoadLockLost, Store
from service.registry.dataset import Dataset

# A load keeping less than this share of the people live now is a shrink and needs --allow-shrink.
SHRINK_SHARE = 0.5
LOCK_SECONDS = 15 * 60  # longer than any load takes; a crashed load frees it by itself


class LoadRefused(Exception):
    """The load would destroy data, or another load is running: nothing was written."""


@dataclass(frozen=True, slots=True)
class LoadOptions:
    allow_shrink: bool = False  # --allow-shrink: an empty or much smaller dataset is meant
    discard_agency_writes: bool = False  # --discard-agency-writes: admin writes not in the file may go


def shrink_refusal(live: int, incoming: int, options: LoadOptions) -> str | None:
    """Pure: why a load of ``incoming`` people over ``live`` ones is refused as a shrink, or None."""
    if options.allow_shrink:
        return None
    if incoming == 0:
        return "the dataset is empty: every person would become unknown (pass --allow-shrink if that is meant)"
    if live and incoming < live * SHRINK_SHARE:
        return (
            f"the dataset has {incoming} people, the live data {live}: less than {SHRINK_SHARE:.0%} of it "
            "(pass --allow-shrink if that is meant)"
        )
    return None


def agency_refusal(erased: list[str], options: LoadOptions) -> str | None:
    """Pure: why a load that would erase these people's admin writes is refused, or None."""
    if not erased or options.discard_agency_writes:
        return None
    sample = ", ".join(erased[:5]) + (", ..." if len(erased) > 5 else "")
    return (
        f"the load would erase the admin writes (ledger facts and audit trail, which no dataset file carries) "
        f"of {len(erased)} people: {sample} (pass --discard-agency-writes if that is meant)"
    )


def people_with_agency_writes(ledgers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    return sorted(code.decode() for code, raw in ledgers if records_agency_writes(raw))


def load_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def guarded_load(store: Store, dataset: Dataset, policy_id: str, loaded_at: str, rules: str,
                 options: LoadOptions) -> int:  # fmt: skip
    """Take the load lock, refuse what would destroy, swap; returns the new data version."""
    owner = load_owner()
    holder = store.acquire_load_lock(owner, LOCK_SECONDS)
    if holder is not None:
        raise LoadRefused(f"another load is running (lock held by {holder}); nothing was written")
    try:
        checked_at = store.version()  # the swap happens only if no write came after the checks
        why = shrink_refusal(store.people_count(), len(dataset), options) or agency_refusal(
            people_with_agency_writes(store.scan_ledgers()), options
        )
        if why is not None:
            raise LoadRefused(f"load refused: {why}; nothing was written")
        parts = (dataset.ledgers, dataset.projections, dataset.docs)
        return store.swap(*parts, policy_id, loaded_at, rules, owner=owner, expected_version=checked_at)
    except (LoadLockLost, DataChanged) as moved:
        raise LoadRefused(f"load refused: {moved}; nothing was written (run it again)") from moved
    finally:
        store.release_load_lock(owner)
