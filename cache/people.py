"""The replica's people: raw projection bytes per person, decoded into a ``PersonView`` on first lookup.

Why this form (measured with 1,000,000 people, docs/performance.md "Start and memory at 1M"): decoding
every projection into a ``PersonView`` object graph at start took most of the start and ~500 MB. Kept as
the bytes Redis returned, a person costs one ``str`` key, one ``bytes`` value and a share of the
persistent map's nodes: neither ``str`` nor ``bytes`` is tracked by the garbage collector, so the
collector never walks a million people, and few large objects share well copy-on-write after a fork.

The persistent map (``immutables.Map``) stays the unit of publication: a change builds a new map that
shares all unchanged nodes, so a reader sees one whole state or the next, never half a change.

Decoded views live in a ``ViewCache`` shared by successive states: bounded (oldest decoded first out),
and an entry counts only for the very bytes object it was decoded from (``is``), so a changed person,
whose new projection is a new bytes object, is never answered from the view of the old one.
"""

from __future__ import annotations

import collections
import gc
import threading
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from typing import TypeVar, overload

import immutables

from cache.codec import decode_view, has_timeline, skim_view
from domain.projection import PersonView

T = TypeVar("T")

# ~0.5 KB a view: about 16 MB and a short full gc collection at most, while a hot set of this many
# people (a region's active staff) is decoded once.
DEFAULT_CAPACITY = 32_768


class ViewCache:
    """Views decoded recently, at most ``capacity``, each with the raw bytes it was decoded from.

    Lookups take no lock (a dict read is atomic under the GIL); inserts and evictions take one, so
    two decoders of the same miss at worst both decode it."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("a view cache holds at least one view")
        self.capacity = capacity
        self._entries: collections.OrderedDict[str, tuple[bytes, PersonView]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def cached(self, code: str, raw: bytes) -> PersonView | None:
        """The view decoded from this very ``raw`` object, if still cached."""
        entry = self._entries.get(code)
        return entry[1] if entry is not None and entry[0] is raw else None

    def view(self, code: str, raw: bytes) -> PersonView:
        """The person's view: cached, or decoded now and cached."""
        view = self.cached(code, raw)
        if view is not None:
            return view
        view = decode_view(code, raw)
        with self._lock:
            entries = self._entries
            entries.pop(code, None)  # a stale view of an older projection goes; the new one queues last
            while len(entries) >= self.capacity:
                entries.popitem(last=False)
            entries[code] = (raw, view)
        return view


def raw_map(people: Mapping[bytes, bytes]) -> immutables.Map[str, bytes]:
    """The persistent map of a snapshot's people (code -> projection bytes, kept as they came).

    The garbage collector is paused meanwhile: the map's ~10^5 new nodes would otherwise trigger
    collections that each walk all nodes built so far (5.5 s instead of 1 s for 1M people)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        with immutables.Map[str, bytes]().mutate() as building:
            for code, raw in people.items():
                building[code.decode()] = raw
            built = building.finish()
        return built
    finally:
        if paused:
            gc.enable()


class People(Mapping[str, PersonView]):
    """Who the replica knows, as ``code -> PersonView``; immutable (a change returns a new ``People``)."""

    __slots__ = ("_raw", "_views")

    def __init__(self, raw: immutables.Map[str, bytes] | None = None, views: ViewCache | None = None) -> None:
        self._raw: immutables.Map[str, bytes] = immutables.Map() if raw is None else raw
        self._views = ViewCache() if views is None else views

    @classmethod
    def of_snapshot(cls, people: Mapping[bytes, bytes], views: ViewCache | None = None) -> People:
        return cls(raw_map(people), views)

    def changed(self, projections: Iterable[tuple[str, bytes]]) -> People:
        """A new ``People`` with these people's projections replaced; the view cache is shared (its
        entries of the replaced people no longer match their new bytes)."""
        with self._raw.mutate() as raw:
            for code, projection in projections:
                raw[code] = projection
            updated = raw.finish()
        return People(updated, self._views)

    def raw(self, code: str) -> bytes | None:
        """The person's projection bytes as stored in Redis, or None."""
        return self._raw.get(code)

    @property
    def views(self) -> ViewCache:
        return self._views

    @overload
    def get(self, code: str, /) -> PersonView | None: ...

    @overload
    def get(self, code: str, /, default: PersonView | T) -> PersonView | T: ...

    def get(self, code: str, /, default: PersonView | T | None = None) -> PersonView | T | None:
        raw = self._raw.get(code)
        return default if raw is None else self._views.view(code, raw)

    def __getitem__(self, code: str) -> PersonView:
        return self._views.view(code, self._raw[code])

    def __contains__(self, code: object) -> bool:
        return code in self._raw

    def __len__(self) -> int:
        return len(self._raw)

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def items(self) -> ItemsView[str, PersonView]:
        return _Items(self)

    def values(self) -> ValuesView[PersonView]:
        return _Values(self)

    def _walk(self) -> Iterator[tuple[str, PersonView]]:
        """Everyone, decoded as it goes: cached views are reused but none is added, so one walk of a
        million people (a watch snapshot) neither grows the cache nor pushes the hot set out of it;
        the never-sanctioned are only skimmed (``skim_view``: 1 s instead of 13 s for 1M people)."""
        cached = self._views.cached
        for code, raw in self._raw.items():
            yield code, cached(code, raw) or skim_view(code, raw)

    def sanctioned(self) -> Iterator[tuple[str, PersonView]]:
        """Everyone with a status period at all, decoded as they come (not cached): the others are
        normal on every day, so a watch snapshot need not look at them. Their projections are told
        apart by their bytes (``has_timeline``), without parsing."""
        cached = self._views.cached
        for code, raw in self._raw.items():
            if has_timeline(raw):
                yield code, cached(code, raw) or decode_view(code, raw)

    def __repr__(self) -> str:
        return f"People({len(self)} people, {len(self._views)} views decoded)"


class _Items(ItemsView[str, PersonView]):
    _mapping: People

    def __iter__(self) -> Iterator[tuple[str, PersonView]]:
        return self._mapping._walk()


class _Values(ValuesView[PersonView]):
    _mapping: People

    def __iter__(self) -> Iterator[PersonView]:
        return (view for _code, view in self._mapping._walk())
