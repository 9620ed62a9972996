"""CheckClaims, the bulk stream: what it adds to CheckClaim's check.

A settlement centre re-checks a day's claims over one stream: each request is validated and decided
exactly as ``CheckClaim`` does it (``EligibilityServicer.decide``), and answered before the next is
read, so a stream of any length holds one request at a time. What a stream needs beyond that:

- positions: a malformed request is named by its place in the stream (``requests[17].lines[3]...``);
- patience (``Patience``): the bounded wait for ``min_data_version`` is taken per request, but a
  stream does not wait again for a version it already waited for in vain (docs/design.md);
- slots (``StreamSlots``): a stream holds a server thread while it is open, so the server runs as many
  threads beyond its workers as it admits streams; one more is turned away RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import Counter

from domain.errors import InvalidRequest
from domain.violations import Violation
from service.errors import abort
from service.logs import Throttled
from service.metrics import once_per_call
from service.tolerant import Undecodable

T = TypeVar("T")
_log = Throttled(logging.getLogger("gatekeeper.requests"))


def at_position(position: int, violations: list[Violation]) -> list[Violation]:
    """The violations of the request at ``position`` in a stream, as paths of the stream:
    ``lines[3].service_date`` -> ``requests[17].lines[3].service_date``."""
    prefix = f"requests[{position}]"
    return [Violation(f"{prefix}.{v.field}", v.description) for v in violations]


@dataclass(slots=True)
class Patience:
    """One stream's memory of the lowest ``min_data_version`` it waited for in vain.

    While the replica is still below that version, a request asking for it (or later) is answered
    STALE_DATA at once instead of waiting again: a stream of 100,000 requests for a version that
    does not arrive costs one bounded wait, not 100,000.
    """

    gave_up_at: int = 0  # 0: no wait of this stream has failed (or the replica has since caught up)

    def worth_waiting(self, version: int, held: int) -> bool:
        if self.gave_up_at and held >= self.gave_up_at:
            self.gave_up_at = 0
        return not self.gave_up_at or version < self.gave_up_at

    def gave_up(self, version: int) -> None:
        self.gave_up_at = min(self.gave_up_at, version) if self.gave_up_at else version


class StreamSlots:
    """At most ``limit`` CheckClaims streams at once; the server runs that many threads for them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.open = 0

    def enter(self, context: grpc.ServicerContext) -> Callable[[], None]:
        """Take a slot, or end the call RESOURCE_EXHAUSTED. Returns the slot's release, which runs once:
        when the stream ends or when the call does, whichever is first (``once_per_call``: a cancelled
        stream's generator may be finalized late, and its slot must not wait for that)."""
        if not self._slots.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.limit} CheckClaims streams are open on this server; retry later or use CheckClaim.",
            )
        with self._lock:
            self.open += 1
        release = once_per_call(context, lambda _code: self._leave())
        return lambda: release(grpc.StatusCode.OK)

    def _leave(self) -> None:
        with self._lock:
            self.open -= 1
        self._slots.release()


class NameStreamPositions:
    """Undecodable bytes in a client stream are answered INVALID_ARGUMENT naming their position.

    ``service.tolerant.RejectUndecodable`` refuses them as ``request``; in a stream the caller needs
    to know which message it was, so this wrapper, placed outside it, refuses them first as
    ``requests[N]`` (counted and logged the same way). Every message before them was answered.
    """

    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def protect(self, servicer: T, service: ServiceDescriptor) -> T:
        for method in service.methods:
            if method.client_streaming:
                behavior = getattr(servicer, method.name)
                setattr(servicer, method.name, self._wrap(behavior, service.full_name, method.name))
        return servicer

    def _wrap(self, behavior: Callable[[Any, Any], Any], service: str, method: str) -> Callable[[Any, Any], Any]:
        counted = self.counter.labels(service, method)

        def numbered(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            for position, item in enumerate(requests):
                if isinstance(item, Undecodable):
                    counted.inc()
                    _log.warning("undecodable request", method=method, position=position, error=item.error,
                                 peer=context.peer())  # fmt: skip
                    description = f"the bytes are not a valid {item.type_name} ({item.error})"
                    abort(context, InvalidRequest([Violation(f"requests[{position}]", description)]))
                yield item

        return lambda requests, context: behavior(numbered(requests, context), context)
