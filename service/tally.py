"""Counts taken on the hot path without a lock, added into the prometheus metrics when read.

prometheus-client takes a lock for every increment (under ``serve --processes N`` it also writes a
file): a 1-line check made seven of them. A ``Tally`` keeps a plain dict per thread instead; only
its own thread writes a dict, so nothing is lost, and ``flush`` adds what accumulated since the
last flush into the metrics. ``Metrics`` flushes before every scrape (its registry's first
collector) and with a worker's periodic refresh, so a scrape is exact in one process and at most
one refresh period old across workers.

A sink is any ``amount -> None`` (a counter child's ``inc``), created once and used as the key.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

Sink = Callable[[float], None]
Row = dict[Sink, float]


class Tally:
    def __init__(self) -> None:
        self._local = threading.local()
        self._rows: list[tuple[threading.Thread, Row]] = []
        self._lock = threading.Lock()
        self._retired: Row = {}  # the counts of threads that have ended
        self._flushed: Row = {}

    def row(self) -> Row:
        """This thread's counts: add with ``row[sink] = row.get(sink, 0) + amount``."""
        try:
            return self._local.row  # type: ignore[no-any-return]
        except AttributeError:
            row: Row = {}
            with self._lock:
                self._rows.append((threading.current_thread(), row))
            self._local.row = row
            return row

    def flush(self) -> None:
        """Add every sink's count since the last flush to it."""
        with self._lock:
            totals = dict(self._retired)
            alive = []
            for thread, row in self._rows:
                ended = not thread.is_alive()  # read before the row: an ended thread adds nothing more
                counts = list(row.items())  # one call in C: a consistent copy while the thread goes on
                _add(totals, counts)
                if ended:
                    _add(self._retired, counts)
                else:
                    alive.append((thread, row))
            self._rows = alive
            for sink, total in totals.items():
                delta = total - self._flushed.get(sink, 0)
                if delta:
                    sink(delta)
                    self._flushed[sink] = total


def _add(totals: Row, counts: list[tuple[Sink, float]]) -> None:
    for sink, n in counts:
        totals[sink] = totals.get(sink, 0) + n


class TalliedHistogram:
    """A prometheus histogram child observed through a ``Tally``: a bucket's count and the sum.

    Uses the child's ``_upper_bounds``, ``_buckets`` and ``_sum`` (prometheus-client's own layout,
    non-cumulative buckets; tests/unit/test_tally.py holds the result equal to ``observe``)."""

    __slots__ = ("_bounds", "_buckets", "_sum")

    def __init__(self, child: Any) -> None:
        self._bounds: list[float] = list(child._upper_bounds)
        self._buckets: list[Sink] = [bucket.inc for bucket in child._buckets]
        self._sum: Sink = child._sum.inc

    def observe(self, row: Row, value: float) -> None:
        bucket = self._buckets[bisect_left(self._bounds, value)]
        row[bucket] = row.get(bucket, 0) + 1
        row[self._sum] = row.get(self._sum, 0) + value
