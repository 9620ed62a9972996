"""WatchStatusChanges over a real server and Redis: snapshot, changes as written, scope, resume, metrics.

"Today" is the real date in China, so the periods below are placed around it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import grpc
import pytest

from gatekeeper.v1 import eligibility_pb2, enums_pb2
from service.convert import today_in_china
from service.watch.hub import WatchHub
from tests.conftest import Gatekeeper
from tests.e2e.builders import HOSPITAL, OTHER_HOSPITAL, iso, new_code, points, register, withdraw

SNAPSHOT = eligibility_pb2.STATUS_CHANGE_KIND_SNAPSHOT
SNAPSHOT_END = eligibility_pb2.STATUS_CHANGE_KIND_SNAPSHOT_END
CHANGE = eligibility_pb2.STATUS_CHANGE_KIND_CHANGE
TODAY = today_in_china()
RECENT = (TODAY - timedelta(days=5)).isoformat()  # 9 points then: suspended today, for 2 months
WAIT = 20.0


class Watcher:
    """A stream read by a thread of its own into a queue; ``next_matching`` polls it with a deadline."""

    def __init__(self, gk: Gatekeeper, **request: object) -> None:
        self.call = gk.check.WatchStatusChanges(eligibility_pb2.WatchStatusChangesRequest(**request))  # type: ignore[arg-type]
        self.messages: queue.Queue[eligibility_pb2.StatusChange | grpc.RpcError] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.put(message)
        except grpc.RpcError as error:
            self.messages.put(error)

    def next_matching(self, match: Callable[[eligibility_pb2.StatusChange], bool]) -> eligibility_pb2.StatusChange:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                item = self.messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(item, grpc.RpcError):
                raise item
            if match(item):
                return item
        raise AssertionError("no matching StatusChange arrived")

    def snapshot(self) -> tuple[list[eligibility_pb2.StatusChange], int]:
        seen: list[eligibility_pb2.StatusChange] = []
        end = self.next_matching(lambda m: seen.append(m) or m.kind == SNAPSHOT_END)  # type: ignore[func-returns-value]
        return [m for m in seen if m.kind == SNAPSHOT], end.data_version

    def drain(self) -> list[eligibility_pb2.StatusChange]:
        items = []
        while True:
            try:
                item = self.messages.get_nowait()
            except queue.Empty:
                return items
            if not isinstance(item, grpc.RpcError):
                items.append(item)

    def close(self) -> None:
        self.call.cancel()


@pytest.fixture
def watchers(gatekeeper: Gatekeeper) -> Iterator[Callable[..., Watcher]]:
    opened: list[Watcher] = []

    def open_(**request: object) -> Watcher:
        watcher = Watcher(gatekeeper, **request)
        opened.append(watcher)
        return watcher

    yield open_
    for watcher in opened:
        watcher.close()


def suspend(gk: Gatekeeper, institution: str = HOSPITAL) -> tuple[str, str, int]:
    code = new_code()
    gk.admin.RegisterPractitioner(register(code, institution_code=institution), timeout=10)
    decision = points(code, 9, RECENT)
    written = gk.admin.RecordPoints(decision, timeout=10)
    return code, decision.decision_no, written.data_version


def test_snapshot_then_changes_as_they_are_written(gatekeeper: Gatekeeper, watchers: Callable[..., Watcher]) -> None:
    before, decision_no, _ = suspend(gatekeeper)
    watcher = watchers()
    snapshot, version = watcher.snapshot()
    assert before in {m.practitioner_code for m in snapshot}
    entry = next(m for m in snapshot if m.practitioner_code == before)
    assert entry.status == enums_pb2.PRACTITIONER_STATUS_SUSPENDED
    assert iso(entry.status_since) == RECENT

    after, _, written_at = suspend(gatekeeper)
    change = watcher.next_matching(lambda m: m.practitioner_code == after)
    assert change.kind == CHANGE
    assert change.data_version >= written_at > version
    assert iso(change.status_since) == RECENT

    withdrawn = gatekeeper.admin.WithdrawPoints(withdraw(decision_no, TODAY.isoformat()), timeout=10)
    back = watcher.next_matching(lambda m: m.practitioner_code == before)
    assert back.kind == CHANGE
    assert back.status == enums_pb2.PRACTITIONER_STATUS_NORMAL
    assert back.data_version >= withdrawn.data_version


def test_a_write_that_changes_no_status_says_nothing(gatekeeper: Gatekeeper, watchers: Callable[..., Watcher]) -> None:
    watcher = watchers()
    watcher.snapshot()
    quiet = new_code()
    gatekeeper.admin.RegisterPractitioner(register(quiet), timeout=10)
    marker, _, _ = suspend(gatekeeper)  # written after: once it arrives, the quiet write has been passed over
    watcher.next_matching(lambda m: m.practitioner_code == marker)
    assert quiet not in {m.practitioner_code for m in watcher.drain()}


def test_scope_by_institution_and_by_codes(gatekeeper: Gatekeeper, watchers: Callable[..., Watcher]) -> None:
    by_institution = watchers(institution_code=OTHER_HOSPITAL)
    here, _, _ = suspend(gatekeeper, OTHER_HOSPITAL)
    elsewhere, _, _ = suspend(gatekeeper, HOSPITAL)
    by_code = watchers(practitioner_codes=[elsewhere])
    snapshot, _ = by_code.snapshot()
    assert [m.practitioner_code for m in snapshot] == [elsewhere]
    by_institution.snapshot()
    seen = by_institution.next_matching(lambda m: m.practitioner_code in (here, elsewhere))
    assert seen.practitioner_code == here
    marker, _, _ = suspend(gatekeeper, OTHER_HOSPITAL)
    by_institution.next_matching(lambda m: m.practitioner_code == marker)
    assert elsewhere not in {m.practitioner_code for m in by_institution.drain()}


def test_an_institution_hears_of_its_staff_terminated(gatekeeper: Gatekeeper, watchers: Callable[..., Watcher]) -> None:
    """A termination ends the person's registrations on its first day: still news for that institution."""
    code = new_code()
    gatekeeper.admin.RegisterPractitioner(register(code, institution_code=OTHER_HOSPITAL), timeout=10)
    watcher = watchers(institution_code=OTHER_HOSPITAL)
    watcher.snapshot()
    gatekeeper.admin.RecordPoints(points(code, 12, RECENT, institution_code=OTHER_HOSPITAL), timeout=10)
    change = watcher.next_matching(lambda m: m.practitioner_code == code)
    assert change.status == enums_pb2.PRACTITIONER_STATUS_TERMINATED
    assert iso(change.status_since) == RECENT
    snapshot, _ = watchers(institution_code=OTHER_HOSPITAL).snapshot()  # and a new watcher's snapshot has it
    assert code in {m.practitioner_code for m in snapshot}


def test_resume_from_a_version_gets_the_changes_since_without_a_snapshot(
    gatekeeper: Gatekeeper, watchers: Callable[..., Watcher]
) -> None:
    suspend(gatekeeper)  # a version above 0 (0 asks for a snapshot)
    first = watchers()
    _, version = first.snapshot()
    assert version > 0
    first.close()
    missed, _, _ = suspend(gatekeeper)
    resumed = watchers(after_data_version=version)
    change = resumed.next_matching(lambda m: m.practitioner_code == missed)
    assert change.kind == CHANGE
    assert SNAPSHOT_END not in {m.kind for m in resumed.drain()}


def test_a_resume_point_the_server_cannot_serve_restarts_with_a_snapshot(
    gatekeeper: Gatekeeper, watchers: Callable[..., Watcher]
) -> None:
    code, _, _ = suspend(gatekeeper)
    watcher = watchers(after_data_version=10**12)  # never announced: no silent gap, a snapshot
    snapshot, _ = watcher.snapshot()
    assert code in {m.practitioner_code for m in snapshot}


def test_bad_scope_is_invalid_argument(gatekeeper: Gatekeeper) -> None:
    request = eligibility_pb2.WatchStatusChangesRequest(institution_code="nope", practitioner_codes=["x y"])
    with pytest.raises(grpc.RpcError) as error:
        next(iter(gatekeeper.check.WatchStatusChanges(request, timeout=10)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_a_watcher_that_falls_behind_is_marked_and_told_where_to_resume() -> None:
    hub = WatchHub(queue_capacity=2)
    sub = hub.subscribe()
    for version in (1, 2, 3):
        hub.published(version, frozenset({"D540000000001"}))
    assert sub.behind
    assert hub.changed_since(0, 3) == frozenset({"D540000000001"})
    hub.published(4, None)  # a reload: resuming from before it needs a snapshot
    assert hub.changed_since(3, 4) is None
    assert hub.changed_since(4, 4) == frozenset()
