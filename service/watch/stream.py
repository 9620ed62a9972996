"""WatchStatusChanges at the gRPC edge: validate the scope, give the watcher a slot, turn feed changes
into ``StatusChange`` messages, and end a watcher that fell behind with a resumable RESOURCE_EXHAUSTED.

Watchers are long calls: each holds a server thread while it waits, so the server runs as many
threads beyond its workers as it admits watchers (``max_watchers``); one more is turned away, and
checks never wait for a thread a watcher holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import date

import grpc

from cache.replica import Replica
from domain.errors import InvalidRequest
from domain.violations import Violations
from gatekeeper.v1 import eligibility_pb2
from service.check.validation import Codes, check_code
from service.convert import set_date, status_value
from service.errors import abort
from service.pool import Lend, no_lending
from service.watch.feed import MAX_CODES, Behind, Change, Feed, Scope
from service.watch.hub import WatchHub

_KINDS = {
    "snapshot": eligibility_pb2.STATUS_CHANGE_KIND_SNAPSHOT,
    "snapshot_end": eligibility_pb2.STATUS_CHANGE_KIND_SNAPSHOT_END,
    "change": eligibility_pb2.STATUS_CHANGE_KIND_CHANGE,
}


def scope_of(request: eligibility_pb2.WatchStatusChangesRequest, codes: Codes) -> Scope | Violations:
    out = Violations()
    check_code(request.institution_code, codes.institution, "institution_code", out, required=False)
    if len(request.practitioner_codes) > MAX_CODES:
        out.add("practitioner_codes", f"at most {MAX_CODES} codes, got {len(request.practitioner_codes)}")
    else:
        for i, code in enumerate(request.practitioner_codes):
            check_code(code, codes.practitioner, f"practitioner_codes[{i}]", out)
    if out:
        return out
    return Scope(request.institution_code, frozenset(request.practitioner_codes))


def to_message(change: Change) -> eligibility_pb2.StatusChange:
    message = eligibility_pb2.StatusChange(
        practitioner_code=change.code, data_version=change.data_version, kind=_KINDS[change.kind]
    )
    if change.kind != "snapshot_end":
        message.status = status_value(change.window.status)
        set_date(message.status_since, change.window.since)
        set_date(message.status_until, change.window.until)
    return message


class Watches:
    def __init__(self, replica: Replica, hub: WatchHub, codes: Codes, today: Callable[[], date], *,
                 max_watchers: int, lend: Lend = no_lending) -> None:  # fmt: skip
        self.replica = replica
        self.lend = lend
        self.hub = hub
        self.codes = codes
        self.today = today
        self._slots = threading.BoundedSemaphore(max_watchers)

    def stream(
        self, request: eligibility_pb2.WatchStatusChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[eligibility_pb2.StatusChange]:
        scope = scope_of(request, self.codes)
        if isinstance(scope, Violations):
            abort(context, InvalidRequest(scope.items))
        if not self.replica.ready.is_set():
            context.abort(grpc.StatusCode.UNAVAILABLE, "The status data is not loaded yet; retry shortly.")
        if not self._slots.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "Too many watchers on this server; retry later.")
        release = self.lend()  # a watcher holds its thread while it is open
        context.add_callback(release)
        try:
            feed = Feed(self.replica, self.hub, scope, self.today)
            for change in feed.run(request.after_data_version, context.is_active, context.add_callback):
                yield to_message(change)
        except Behind as behind:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(behind))
        finally:
            release()
            self._slots.release()
