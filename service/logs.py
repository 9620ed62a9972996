"""Structured logs: JSON lines on stderr (or plain text for people at a terminal)."""

from __future__ import annotations

import logging
import sys
import threading
import time

from pythonjsonlogger.json import JsonFormatter


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class Throttled:
    """At most one log line per ``interval`` seconds for one kind of event, with the count passed over.

    Hostile or broken callers can cause an event thousands of times a second; the log must stay
    readable and cheap, while the metrics count every occurrence.
    """

    def __init__(self, logger: logging.Logger, interval: float = 1.0) -> None:
        self.logger = logger
        self.interval = interval
        self._next = 0.0
        self._skipped = 0
        self._lock = threading.Lock()

    def warning(self, message: str, **extra: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._skipped += 1
                return
            skipped, self._skipped, self._next = self._skipped, 0, now + self.interval
        self.logger.warning(message, extra={**extra, "similar_events_not_logged": skipped})
