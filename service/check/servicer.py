"""EligibilityService: the check path. Validate, read the replica, decide, explain.

No I/O per request: the replica is in memory; the only wait is the bounded one a caller asks
for with min_data_version. ``decide`` is the check of one claim, shared by ``CheckClaim`` and the
bulk stream ``CheckClaims`` (what the stream adds is in service/check/stream.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date

import grpc

from cache.replica import Replica, ReplicaState
from domain.errors import InvalidRequest, StoreUnavailable
from domain.values import Decision, Reason, Status
from domain.violations import Violations
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc
from service.check.decision import decide_line
from service.check.decision_log import DecisionLog
from service.check.encoding import entry_parts, outcome_fields, response_bytes
from service.check.recall import KINDS, Decided, Recall, pair_of
from service.check.stream import Patience, StreamSlots, at_position
from service.check.validation import CheckedLine, Codes, checked_lines, status_query
from service.convert import set_date, status_value
from service.errors import abort
from service.metrics import Metrics
from service.pool import Lend, no_lending
from service.rules.profile import Profile, rules_match
from service.watch.stream import Watches


@dataclass(frozen=True, slots=True)
class CheckLimits:
    max_lines: int = 1000
    min_version_wait_s: float = 0.5
    max_waiting: int = 64  # checks waiting for min_data_version at once (each lends its thread's place)
    max_streams: int = 8  # CheckClaims streams open at once (each lends its thread's place)


class Waits:
    """Bounded waits for ``min_data_version`` that never take the threads everyone else is answered on.

    At most ``limits.max_waiting`` checks wait at once, each lending its thread's place to another
    while it waits (service/pool.py); one more is answered STALE_DATA at once. A wait ends early when the follower proves
    the store has no such version, and never outlives the caller's deadline.
    """

    def __init__(self, replica: Replica, limits: CheckLimits, lend: Lend = no_lending) -> None:
        self.replica = replica
        self.lend = lend
        self.limit = limits.min_version_wait_s
        self._slots = threading.BoundedSemaphore(limits.max_waiting)
        self._lock = threading.Lock()
        self.waiting = 0

    def reached(self, version: int, context: grpc.ServicerContext) -> bool:
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            self.waiting += 1
        release = self.lend()
        try:
            remaining = context.time_remaining()
            timeout = self.limit if remaining is None else max(0.0, min(self.limit, remaining - 0.005))
            # A caller that cancels or disconnects gives its slot back at once, not when the wait ends.
            context.add_callback(self.replica.wake)
            return self.replica.wait_for(version, timeout, gone=lambda: not context.is_active())
        finally:
            release()
            with self._lock:
                self.waiting -= 1
            self._slots.release()


class EligibilityServicer(eligibility_pb2_grpc.EligibilityServiceServicer):
    def __init__(
        self,
        replica: Replica,
        profile: Profile,
        metrics: Metrics,
        *,
        limits: CheckLimits = CheckLimits(),
        decision_log: DecisionLog | None = None,
        today: Callable[[], date],
        watches: Watches | None = None,
        lend: Lend = no_lending,
    ) -> None:
        self.replica = replica
        self.profile = profile
        self.metrics = metrics
        self.limits = limits
        self.decision_log = decision_log or DecisionLog("off")
        self.today = today
        self.codes = Codes.of(profile)
        self.watches = watches
        self.waits = Waits(replica, limits, lend)
        self.lend = lend
        self.streams = StreamSlots(limits.max_streams)
        self.recall = Recall()
        self._observe_lines = metrics.claim_lines_observer()
        self._rules_checked: tuple[str, bool] | None = None  # (the data's rules fingerprint, whether it matches)
        metrics.waiting_checks.set_function(lambda: self.waits.waiting)
        metrics.bulk_streams.set_function(lambda: self.streams.open)

    # Both answer pre-encoded bytes (service/check/encoding.py), which service.tolerant passes on.
    def CheckClaim(  # type: ignore[override]
        self, request: eligibility_pb2.CheckClaimRequest, context: grpc.ServicerContext
    ) -> bytes:
        answer = self.decide(request, context)
        if isinstance(answer, Violations):
            abort(context, InvalidRequest(answer.items))
        return answer

    def CheckClaims(  # type: ignore[override]
        self, requests: Iterator[eligibility_pb2.CheckClaimRequest], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        """One answer per request, in order, each yielded (and sent) before the next request is read."""
        leave = self.streams.enter(context)
        release = self.lend()  # a stream holds its thread while it is open
        context.add_callback(release)
        try:
            patience = Patience()
            for position, request in enumerate(requests):
                answer = self.decide(request, context, patience)
                if isinstance(answer, Violations):
                    abort(context, InvalidRequest(at_position(position, answer.items)))
                yield answer
        finally:
            release()
            leave()

    def decide(
        self,
        request: eligibility_pb2.CheckClaimRequest,
        context: grpc.ServicerContext,
        patience: Patience | None = None,
    ) -> bytes | Violations:
        """Validate and decide one claim: its response's bytes (decisions counted and logged), or every
        violation (nothing decided). ``patience``: a stream's memory of versions waited for in vain."""
        lines = checked_lines(request, self.codes, self.limits.max_lines, self.recall.lines)
        if isinstance(lines, Violations):
            return lines
        state, stale = self._state_for(request.min_data_version, context, patience)
        institution = request.institution_code
        parts, decided = self._answer(lines, institution, state, stale)
        response = response_bytes(request.claim_id, parts, state.version, self.profile.policy_id)
        self._observe_lines(len(lines))
        occurring = self._count(decided)
        if self.decision_log.wants(reason for _decision, reason in occurring):
            outcomes = [d.outcome for d in decided]
            self.decision_log.enqueue(
                request.claim_id, institution, lines, outcomes, state.version, self.profile.policy_id
            )
        return response

    def _answer(
        self, lines: list[CheckedLine], institution: str, state: ReplicaState, stale: bool
    ) -> tuple[list[bytes], list[Decided]]:
        """Each line's response pieces and decision, in order; a line decided before under this state
        is recalled, not decided again (service/check/recall.py)."""
        people, profile = state.people, self.profile
        memory = self.recall.decided(state)
        recalled = memory.entries.get
        parts: list[bytes] = []
        decided = []
        for line_id, key, line in lines:
            found = None if stale else recalled((institution, key))
            if found is None:
                outcome = decide_line(line, institution, people, profile, stale=stale)
                found = Decided.of(outcome, outcome_fields(outcome))
                if not stale:
                    memory.put((institution, key), found)
            parts.extend(entry_parts(line_id, found.fields))
            decided.append(found)
        return parts, decided

    def _count(self, decided: list[Decided]) -> list[tuple[Decision, Reason]]:
        """Count the claim's decisions by (decision, reason), one list index per line; returns the
        pairs that occur."""
        times = [0] * KINDS
        for d in decided:
            times[d.kind] += 1
        counted = [(pair_of(kind), n) for kind, n in enumerate(times) if n]
        self.metrics.count_decisions(counted)
        return [pair for pair, _n in counted]

    def GetPractitionerStatus(
        self, request: eligibility_pb2.GetPractitionerStatusRequest, context: grpc.ServicerContext
    ) -> eligibility_pb2.GetPractitionerStatusResponse:
        query = status_query(request, self.codes)
        if isinstance(query, Violations):
            abort(context, InvalidRequest(query.items))
        cause = self._stale_cause()
        if cause is not None:  # a definite answer ("no record", or a status) would be a guess
            self.metrics.stale_answers.labels(cause).inc()
            abort(context, StoreUnavailable(_STALE_STATUS[cause]))
        state = self.replica.state
        day = query.day or self.today()
        response = eligibility_pb2.GetPractitionerStatusResponse(
            practitioner_code=query.practitioner_code, data_version=state.version, policy_id=self.profile.policy_id
        )
        person = state.people.get(query.practitioner_code)
        if person is None:
            return response  # status UNSPECIFIED, known false: no record at all
        window = person.status_on(day)
        response.known = True
        response.status = status_value(window.status)
        set_date(response.status_since, window.since)
        set_date(response.status_until, window.until)
        if query.institution_code:
            response.registered = person.registered_at(query.institution_code, day)
        if window.status is Status.TERMINATED:
            set_date(response.reregistration_allowed_from, person.reregistration_allowed_from)
        return response

    def WatchStatusChanges(
        self, request: eligibility_pb2.WatchStatusChangesRequest, context: grpc.ServicerContext
    ) -> Iterator[eligibility_pb2.StatusChange]:
        if self.watches is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "This server does not offer the status feed.")
        return self.watches.stream(request, context)

    def _state_for(
        self, min_version: int, context: grpc.ServicerContext, patience: Patience | None = None
    ) -> tuple[ReplicaState, bool]:
        """The replica state to answer from, and whether it is too stale to decide with."""
        replica = self.replica
        if min_version > replica.state.version and not self._reached(min_version, context, patience):
            self.metrics.stale_answers.labels("min_data_version").inc()
            return replica.state, True
        cause = self._stale_cause()
        if cause is not None:
            self.metrics.stale_answers.labels(cause).inc()
            return replica.state, True
        return replica.state, False

    def _stale_cause(self) -> str | None:
        """Why the replica's data may not be answered from (a ``stale_answers`` cause), or None."""
        replica = self.replica
        if not replica.ready.is_set():
            return "not_loaded"
        if not self._rules_match(replica.state):
            return "profile_mismatch"
        if replica.age_seconds() > self.profile.staleness_seconds:
            return "age"
        return None

    def _rules_match(self, state: ReplicaState) -> bool:
        """``rules_match`` once per fingerprint the data carries, not per check (it digests the profile's
        rules as JSON: about 5% of a 10-line check). Keyed by the string, so no old state is kept alive."""
        checked = self._rules_checked
        if checked is not None and checked[0] == state.rules:
            return checked[1]
        match = rules_match(state, self.profile)
        self._rules_checked = (state.rules, match)
        return match

    def _reached(self, version: int, context: grpc.ServicerContext, patience: Patience | None) -> bool:
        """Whether the replica holds ``version`` after the bounded wait (on a stream: unless it
        already waited for that version in vain and the replica is still behind it)."""
        if patience is None:
            return self.waits.reached(version, context)
        if not patience.worth_waiting(version, self.replica.state.version):
            return False
        if self.waits.reached(version, context):
            return True
        patience.gave_up(version)
        return False


_STALE_STATUS = {
    "not_loaded": "The status data is not loaded yet; retry shortly.",
    "profile_mismatch": "The stored data was derived under other rules than this server's profile; retry later.",
    "age": "The status data is stale (older than the profile's bound); retry later.",
}
