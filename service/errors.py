"""Domain errors, and the one place they become gRPC statuses.

    GatekeeperError
     ├── InvalidRequest     INVALID_ARGUMENT     + google.rpc.BadRequest (every bad field by path)
     ├── Conflict           ALREADY_EXISTS       (document number reused with different content)
     ├── Refused            FAILED_PRECONDITION  + google.rpc.PreconditionFailure
     ├── NotFound           NOT_FOUND
     └── StoreUnavailable   UNAVAILABLE          (Redis unreachable for a write; retry later)

Servicers raise these; ``abort`` turns them into a status with rich details (grpcio-status).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.validation import Violation


class GatekeeperError(Exception):
    code = code_pb2.INTERNAL

    def details(self) -> list[any_pb2.Any]:
        return []


class InvalidRequest(GatekeeperError):
    code = code_pb2.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        fields = ", ".join(v.field for v in self.violations)
        super().__init__(f"request has {len(self.violations)} invalid field(s): {fields}")

    def details(self) -> list[any_pb2.Any]:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in self.violations
            ]
        )
        return [_pack(bad)]


class Conflict(GatekeeperError):
    code = code_pb2.ALREADY_EXISTS


class Refused(GatekeeperError):
    code = code_pb2.FAILED_PRECONDITION

    def __init__(self, message: str, subject: str = "", kind: str = "POLICY") -> None:
        super().__init__(message)
        self.subject = subject
        self.kind = kind

    def details(self) -> list[any_pb2.Any]:
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=self.kind, subject=self.subject, description=str(self)
                )
            ]
        )
        return [_pack(failure)]


class NotFound(GatekeeperError):
    code = code_pb2.NOT_FOUND


class StoreUnavailable(GatekeeperError):
    code = code_pb2.UNAVAILABLE


def _pack(message: error_details_pb2.BadRequest | error_details_pb2.PreconditionFailure) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: GatekeeperError) -> grpc.Status:
    return rpc_status.to_status(status_pb2.Status(code=error.code, message=str(error), details=error.details()))


def abort(context: grpc.ServicerContext, error: GatekeeperError) -> NoReturn:
    context.abort_with_status(to_status(error))
    raise AssertionError("abort_with_status returns only by raising")  # pragma: no cover
