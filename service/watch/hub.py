"""The watch hub: what changed at each data version, handed on to every watcher without waiting.

The replica's follower thread calls ``published`` after each change; the hub appends (version,
codes) to a bounded history (for resume points) and to each watcher's bounded queue. A watcher
whose queue is full is marked behind and ended by its own thread with RESOURCE_EXHAUSTED: the
follower never blocks on a slow client, and no client is buffered without bound. A whole new
snapshot (a load, a re-snapshot) clears the history: resuming from before it needs a snapshot.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import deque
from collections.abc import Iterable

Event = tuple[int, frozenset[str] | None]
WAKE: Event = (-1, None)  # not a change: the watcher's call ended, look at it


class Subscription:
    def __init__(self, capacity: int) -> None:
        self.events: queue.Queue[Event] = queue.Queue(capacity)
        self.behind = False
        self.delivered = 0  # data version of the last StatusChange sent (for the lag metric)

    def wake(self) -> None:
        """Wake the watcher's thread (its call ended): idle watchers sleep instead of polling."""
        with contextlib.suppress(queue.Full):  # a full queue wakes it anyway
            self.events.put_nowait(WAKE)

    def offer(self, event: Event) -> None:
        if self.behind:
            return
        try:
            self.events.put_nowait(event)
        except queue.Full:
            self.behind = True


class WatchHub:
    def __init__(self, *, history: int = 100_000, queue_capacity: int = 10_000) -> None:
        self._history: deque[tuple[int, frozenset[str]]] = deque(maxlen=history)
        self._floor = 0  # resume points below this need a snapshot
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.queue_capacity = queue_capacity
        self.version = 0

    # --- fed by the replica (follower thread) ---------------------------------------------------

    def published(self, version: int, codes: frozenset[str] | None) -> None:
        with self._lock:
            if codes is None:
                self._history.clear()
                self._floor = version
            else:
                self._history.append((version, codes))
            self.version = version
            subs = list(self._subs)
        for sub in subs:
            sub.offer((version, codes))

    # --- used by watchers -------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        sub = Subscription(self.queue_capacity)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    def changed_since(self, after: int, upto: int) -> frozenset[str] | None:
        """Codes changed in (after, upto], or None when the history no longer covers that range."""
        with self._lock:
            if after < self._floor or after > upto:
                return None
            oldest = self._history[0][0] if self._history else upto + 1
            if after + 1 < oldest and after != upto:
                return None  # trimmed: a silent gap otherwise
            return frozenset(c for v, codes in self._history if after < v <= upto for c in codes)

    def watchers(self) -> int:
        with self._lock:
            return len(self._subs)

    def max_lag(self) -> int:
        """Versions the slowest watcher is behind the replica."""
        with self._lock:
            lags: Iterable[int] = (self.version - s.delivered for s in self._subs)
            return max(lags, default=0)
