"""The one place domain errors (``domain.errors``) become gRPC statuses, with rich details.

InvalidRequest     INVALID_ARGUMENT     + google.rpc.BadRequest (every bad field by path)
Conflict           ALREADY_EXISTS
Refused            FAILED_PRECONDITION  + google.rpc.PreconditionFailure
NotFound           NOT_FOUND
StoreUnavailable   UNAVAILABLE
"""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from domain.errors import Conflict, GatekeeperError, InvalidRequest, NotFound, Refused, StoreUnavailable

_CODES: dict[type[GatekeeperError], int] = {
    InvalidRequest: code_pb2.INVALID_ARGUMENT,
    Conflict: code_pb2.ALREADY_EXISTS,
    Refused: code_pb2.FAILED_PRECONDITION,
    NotFound: code_pb2.NOT_FOUND,
    StoreUnavailable: code_pb2.UNAVAILABLE,
}


def _details(error: GatekeeperError) -> list[any_pb2.Any]:
    detail: error_details_pb2.BadRequest | error_details_pb2.PreconditionFailure
    if isinstance(error, InvalidRequest):
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
    elif isinstance(error, Refused):
        detail = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=error.kind, subject=error.subject, description=str(error)
                )
            ]
        )
    else:
        return []
    packed = any_pb2.Any()
    packed.Pack(detail)
    return [packed]


def to_status(error: GatekeeperError) -> grpc.Status:
    code = _CODES.get(type(error), code_pb2.INTERNAL)
    return rpc_status.to_status(status_pb2.Status(code=code, message=str(error), details=_details(error)))


def abort(context: grpc.ServicerContext, error: GatekeeperError) -> NoReturn:
    context.abort_with_status(to_status(error))
    raise AssertionError("abort_with_status returns only by raising")  # pragma: no cover
