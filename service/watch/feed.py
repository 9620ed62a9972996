"""One watcher's feed: a snapshot (or the changes since a resume point), then changes as they come.

Each watcher remembers what it has told its client (``sent``) and speaks only when a person's
window in scope differs from that: a write that leaves someone's status as it was says nothing.
The window is "the period now in force, or the next one to come" (a suspension starting next week
is news today). Dates passing change nothing here: the client holds since/until.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from cache.replica import Replica, ReplicaState
from domain.projection import PersonView
from domain.values import Status
from service.watch.hub import WAKE, Subscription, WatchHub

MAX_CODES = 10_000
# An idle watcher sleeps until a change or the end of its call wakes it; this is only a backstop.
IDLE_SECONDS = 30.0


class Behind(Exception):
    """The watcher's queue overflowed; it may resume from ``resume_from``."""

    def __init__(self, resume_from: int) -> None:
        super().__init__(f"the watcher fell behind; resume with after_data_version={resume_from}")
        self.resume_from = resume_from


@dataclass(frozen=True, slots=True)
class Window:
    status: Status
    since: date | None
    until: date | None


NOTHING = Window(Status.NORMAL, None, None)


@dataclass(frozen=True, slots=True)
class Scope:
    institution: str = ""
    codes: frozenset[str] = frozenset()

    def covers(self, code: str, view: PersonView | None, today: date) -> bool:
        if not self.institution and not self.codes:
            return True
        if code in self.codes:
            return True
        if not self.institution or view is None:
            return False
        # A termination ends every registration on its first day; the institution still needs to hear
        # of it while it lasts, so a registration ended by a termination in force stays in scope.
        ended_by = {
            p.since for p in view.periods if p.status is Status.TERMINATED and (p.until is None or p.until > today)
        }
        return any(
            s.until is None or s.until > today or s.until in ended_by
            for s in view.registrations.get(self.institution, ())
        )


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "snapshot", "snapshot_end", "change"
    code: str
    window: Window
    data_version: int


def window_of(view: PersonView | None, today: date) -> Window:
    """The period now in force, or the next one to come; normal with its bounds otherwise."""
    if view is None:
        return NOTHING
    now = view.status_on(today)
    if now.status is not Status.NORMAL:
        return Window(now.status, now.since, now.until)
    upcoming = next((p for p in view.periods if p.since > today), None)
    if upcoming is not None:
        return Window(upcoming.status, upcoming.since, upcoming.until)
    return Window(Status.NORMAL, now.since, now.until)


class Feed:
    def __init__(self, replica: Replica, hub: WatchHub, scope: Scope, today: Callable[[], date]) -> None:
        self.replica = replica
        self.hub = hub
        self.scope = scope
        self.today = today
        self.sent: dict[str, Window] = {}

    def run(
        self, after: int, active: Callable[[], bool], on_end: Callable[[Callable[[], None]], object] | None = None
    ) -> Iterator[Change]:
        """``on_end(wake)``: have the call's end wake the watcher (grpc's ``context.add_callback``)."""
        sub = self.hub.subscribe()  # before reading the state: nothing published meanwhile is missed
        if on_end is not None:
            on_end(sub.wake)
        try:
            state = self.replica.state
            changed = self.hub.changed_since(after, state.version) if after else None
            if changed is None:
                yield from self._snapshot(state, sub)
            else:
                yield from self._changes(changed, state, sub)
            yield from self._follow(sub, active)
        finally:
            self.hub.unsubscribe(sub)

    def _follow(self, sub: Subscription, active: Callable[[], bool]) -> Iterator[Change]:
        while active():
            if sub.behind:
                raise Behind(sub.delivered)
            try:
                event = sub.events.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                continue
            if event is WAKE:
                continue
            _version, codes = event
            state = self.replica.state  # may be newer than the event: ``sent`` keeps it from repeating
            if codes is None:
                self.sent.clear()
                yield from self._snapshot(state, sub)
            else:
                yield from self._changes(codes, state, sub)

    def _snapshot(self, state: ReplicaState, sub: Subscription) -> Iterator[Change]:
        today = self.today()
        for code, view in state.people.sanctioned():  # the rest are normal every day: nothing to send
            if not view.periods or not self.scope.covers(code, view, today):
                continue
            window = window_of(view, today)
            if window.status is not Status.NORMAL:
                self.sent[code] = window
                yield Change("snapshot", code, window, state.version)
        sub.delivered = max(sub.delivered, state.version)
        yield Change("snapshot_end", "", NOTHING, state.version)

    def _changes(self, codes: Iterable[str], state: ReplicaState, sub: Subscription) -> Iterator[Change]:
        today = self.today()
        for code in sorted(codes):
            view = state.people.get(code)
            if not self.scope.covers(code, view, today):
                continue
            window = window_of(view, today)
            before = self.sent.get(code)
            if window == before or (before is None and window.status is Status.NORMAL):
                continue  # nothing the client does not know (it assumes normal for the unseen)
            self.sent[code] = window
            yield Change("change", code, window, state.version)
        sub.delivered = max(sub.delivered, state.version)
