"""Domain errors: what can go wrong, without any transport.

    GatekeeperError
     ├── InvalidRequest     the request is malformed (every bad field by path)
     ├── Conflict           a document number reused with different content
     ├── Refused            the rules refuse the write (a precondition, named with its numbers)
     ├── NotFound           nothing on file
     └── StoreUnavailable   the status store cannot be reached for a write; retry later

``service.errors`` is the one place these become gRPC statuses.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.violations import Violation


class GatekeeperError(Exception):
    pass


class InvalidRequest(GatekeeperError):
    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(f"request has {len(self.violations)} invalid field(s): {fields}")


class Conflict(GatekeeperError):
    pass


class Refused(GatekeeperError):
    def __init__(self, message: str, subject: str = "", kind: str = "POLICY") -> None:
        super().__init__(message)
        self.subject = subject
        self.kind = kind


class NotFound(GatekeeperError):
    pass


class StoreUnavailable(GatekeeperError):
    pass
