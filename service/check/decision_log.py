"""The decision log: one JSON line per claim that auditors can search by code, claim or reason.

Billing under a suspended person's code is itself an offence, so the log names the people;
it goes to its own logger ("gatekeeper.decisions") so operators can route it separately, or to a
file of its own (``GATEKEEPER_DECISION_LOG_FILE``). Each entry carries what it takes to decide
the line again (every person on it, the date, care type and ``med_type``): ``gatekeeper recheck``
re-decides rejected lines after an upheld appeal, ``gatekeeper simulate`` under a draft profile.

Records are formatted and written by a thread of their own: the check path only enqueues a
tuple. If the writer falls behind by ``MAX_PENDING`` claims, further records are dropped and
counted (``dropped``) rather than slowing checks down.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Sequence

from pythonjsonlogger.json import JsonFormatter

from domain.values import CareType, Decision, Reason
from service.check.decision import Line, Outcome

log = logging.getLogger("gatekeeper.decisions")
MAX_PENDING = 100_000

# A logged line: (line id, anything, the line) as the check path holds it (service.check.validation.CheckedLine),
# so that logging costs the check path no copy of its lines.
Logged = tuple[str, object, Line]
_Record = tuple[str, str, Sequence[Logged], Sequence[Outcome], int, str]


# Enum names by member, one table per enum (an enum's ``.name`` is a slow property; IntEnum members of
# different enums with equal values are equal, so one table for all would mix them up).
_DECISION = {m: m.name for m in Decision}
_REASON = {m: m.name for m in Reason}
_CARE = {m: m.name for m in CareType}


def entry(line_id: str, line: Line, outcome: Outcome) -> dict[str, str]:
    """One line of a claim as logged: the decision, and everything needed to decide it again."""
    return {
        "line_id": line_id,
        "service_date": line.service_date.isoformat(),
        "practitioner_code": outcome.practitioner_code,  # the person the reason is about
        "decision": _DECISION[outcome.decision],
        "reason": _REASON[outcome.reason],
        "line_practitioner_code": line.practitioner_code,
        "dispenser_code": line.dispenser_code,
        "care_type": _CARE[line.care_type],
        "med_type": line.med_type,
    }


def file_handler(path: str) -> logging.Handler:
    """JSON lines in a file of their own; reopened when logrotate moves it."""
    from logging.handlers import WatchedFileHandler

    handler = WatchedFileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter("%(asctime)s %(name)s %(message)s"))
    return handler


class DecisionLog:
    def __init__(self, mode: str, path: str | None = None) -> None:
        self.mode = mode  # "all", "rejects" (claims with any non-eligible line) or "off"
        self.dropped = 0
        self._pending: queue.Queue[_Record] = queue.Queue(MAX_PENDING)
        self._writer: threading.Thread | None = None
        self._handler: logging.Handler | None = None
        if mode == "off":
            return
        if path:
            self._handler = file_handler(path)
            log.addHandler(self._handler)
            log.propagate = False
            log.setLevel(logging.INFO)  # an audit record in its own file, whatever the diagnostic log level
        self._writer = threading.Thread(target=self._write_all, name="decision-log", daemon=True)
        self._writer.start()

    def record(
        self,
        claim_id: str,
        institution_code: str,
        lines: Sequence[Logged],
        outcomes: Sequence[Outcome],
        data_version: int,
        policy_id: str,
    ) -> None:
        """Log the claim if the mode ``wants`` it."""
        if self.wants(o.reason for o in outcomes):
            self.enqueue(claim_id, institution_code, lines, outcomes, data_version, policy_id)

    def wants(self, reasons: Iterable[Reason]) -> bool:
        """Whether a claim whose lines have these reasons (each at least once) is logged. The check path
        asks with a claim's few distinct reasons, then ``enqueue``s, so it lists no outcomes in vain."""
        return self.mode == "all" or (self.mode == "rejects" and any(r is not Reason.ELIGIBLE for r in reasons))

    def enqueue(
        self,
        claim_id: str,
        institution_code: str,
        lines: Sequence[Logged],
        outcomes: Sequence[Outcome],
        data_version: int,
        policy_id: str,
    ) -> None:
        """Hand a claim the caller knows is wanted to the writer (dropped and counted when it lags)."""
        try:
            self._pending.put_nowait((claim_id, institution_code, lines, outcomes, data_version, policy_id))
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every record enqueued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._pending.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        if self._writer is not None:
            self.flush()
        if self._handler is not None:
            log.removeHandler(self._handler)
            log.propagate = True
            log.setLevel(logging.NOTSET)
            self._handler.close()
            self._handler = None

    def _write_all(self) -> None:
        while True:
            record = self._pending.get()
            try:
                self._write(*record)
            except Exception:  # a log line must never take the writer down
                logging.getLogger("gatekeeper").exception("decision log write failed")
            finally:
                self._pending.task_done()

    def _write(
        self,
        claim_id: str,
        institution_code: str,
        lines: Sequence[Logged],
        outcomes: Sequence[Outcome],
        data_version: int,
        policy_id: str,
    ) -> None:
        pairs = zip(lines, outcomes, strict=True)
        eligible = Reason.ELIGIBLE
        shown = list(pairs) if self.mode == "all" else [(ln, o) for ln, o in pairs if o.reason is not eligible]
        log.info(
            "claim decided",
            extra={
                "claim_id": claim_id,
                "institution_code": institution_code,
                "lines": len(lines),
                "data_version": data_version,
                "policy_id": policy_id,
                "decisions": [entry(line_id, line, o) for (line_id, _key, line), o in shown],
            },
        )
