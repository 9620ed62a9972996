"""Lines seen before: validated once, decided once per replica state (the check path's memory).

Claims repeat themselves: a pharmacy bills the same prescriber and dispenser all day, a hospital's
claims name the same doctors on the same days, a settlement run re-checks them all. What makes a
line valid, and what decides it, is a handful of its fields (``LineKey``: everything but the line
id). So the check path keeps two bounded maps:

- ``Recall.line(key)``: the validated ``Line`` of a key (its line id left empty). Validity does not
  depend on the data, so this map lives as long as the server; a hit is a line already validated.
- ``Recall.decided(state)``: per replica state, ``(institution, key) -> Decided`` (the outcome and its
  pre-encoded response fields). A new state (any change) starts an empty map, so an answer is
  never older than the state it is given under; the map is swapped together with its state in one
  assignment, so a thread still answering from an older state never fills the new state's map.

Both maps are cleared, not evicted entry by entry, when they reach their bound: a caller sending
ever new lines costs memory up to the bound and then one rebuild, never more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from domain.values import Decision, Reason
from service.check.decision import Line, Outcome

# (practitioner_code, dispenser_code, year, month, day, care_type, med_type), as the request carries them.
LineKey = tuple[str, str, int, int, int, int, str]
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Decided:
    outcome: Outcome
    fields: bytes  # service.check.encoding.outcome_fields(outcome)
    kind: int  # kind_of(outcome): a list index for counting decisions per claim

    @classmethod
    def of(cls, outcome: Outcome, fields: bytes) -> Decided:
        return cls(outcome, fields, kind_of(outcome.decision, outcome.reason))


KINDS = 64  # kind_of below is under this for every (Decision, Reason)


def kind_of(decision: Decision, reason: Reason) -> int:
    return int(decision) * 16 + int(reason)


def pair_of(kind: int) -> tuple[Decision, Reason]:
    return Decision(kind // 16), Reason(kind % 16)


class Bounded(Generic[K, V]):
    """A dict that starts over when full (no per-entry bookkeeping on the hot path)."""

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: dict[K, V] = {}

    def put(self, key: K, value: V) -> V:
        entries = self.entries
        if len(entries) >= self.limit:
            entries = self.entries = {}
        entries[key] = value
        return value


class Recall:
    # Bounds: every entry is a few objects the garbage collector walks in a full collection (at 65,536
    # each, pauses after 20,000 distinct lines grew from 14 to ~50 ms at 1M people; loadtest.scale).
    def __init__(self, lines: int = 16_384, decided: int = 16_384) -> None:
        self.lines: Bounded[LineKey, Line] = Bounded(lines)
        self._decided_limit = decided
        self._decided: tuple[object, Bounded[tuple[str, LineKey], Decided]] = (None, Bounded(decided))

    def decided(self, state: object) -> Bounded[tuple[str, LineKey], Decided]:
        """The decisions made under ``state`` (compared by identity: every change is a new state)."""
        held, decided = self._decided
        if held is not state:
            decided = Bounded(self._decided_limit)
            self._decided = (state, decided)
        return decided
