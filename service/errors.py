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

# C-core clients (Python, Java, C#) refuse trailers over 16 KB, and proxies often cap them at 8 KB. The
# details travel base64-encoded (x4/3) beside the message, so the BadRequest names the first
# violations that fit in this many bytes and ends with one entry saying how many more there were.
MAX_DETAIL_BYTES = 4 * 1024
MAX_MESSAGE_CHARS = 300

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
        detail = bad_request(error)
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


def bad_request(error: InvalidRequest) -> error_details_pb2.BadRequest:
    """Every violation that fits in ``MAX_DETAIL_BYTES``, then "N more" (field ``request``)."""
    detail = error_details_pb2.BadRequest()
    size, violations = 0, error.violations
    for i, v in enumerate(violations):
        entry = error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
        size += entry.ByteSize() + 3  # tag and length of the repeated field
        if size > MAX_DETAIL_BYTES:
            more = len(violations) - i
            detail.field_violations.add(field="request", description=f"{more} more invalid field(s) not listed")
            break
        detail.field_violations.append(entry)
    return detail


def to_status(error: GatekeeperError) -> grpc.Status:
    code = _CODES.get(type(error), code_pb2.INTERNAL)
    message = str(error)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=_details(error)))


def abort(context: grpc.ServicerContext, error: GatekeeperError) -> NoReturn:
    context.abort_with_status(to_status(error))
    raise AssertionError("abort_with_status returns only by raising")  # pragma: no cover
