"""Raw bytes for every method: the method table, well-formed samples, and the ways to spoil them.

Shared by test_hostile_requests.py (fixed payloads) and test_request_fuzz.py (Hypothesis). The
bytes go out unserialized (``request_serializer=None``) so that nothing on the client side can
repair or refuse them; the server's tolerant deserializer is what is under test.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from gatekeeper.v1 import eligibility_pb2, registry_pb2

CHECK_SERVICE = eligibility_pb2.DESCRIPTOR.services_by_name["EligibilityService"]
REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
WRITES = frozenset(
    {"RegisterPractitioner", "EndRegistration", "RecordPoints", "WithdrawPoints", "ApplyRepair", "ImportSanctions"}
)
# Methods whose every request field is optional: bytes that parse (unknown fields are ignored, as
# proto3 says) may be a valid request and answered, so only the bytes that do not parse are refused.
ALL_OPTIONAL = frozenset({"WatchStatusChanges", "ListInstitutionReports"})
# Same length as every string marker below, so a splice never changes a length prefix.
MARKER_LENGTH = 6
# Each is invalid UTF-8 of MARKER_LENGTH bytes: stray bytes, an overlong NUL, a UTF-16 surrogate,
# a multi-byte sequence cut short, a 5-byte sequence, a lone continuation byte.
INVALID_UTF8 = (
    b"\xff\xfe\xff\xfe\xff\xfe",
    b"\xc0\x80abcd",
    b"abc\xed\xa0\x80",
    b"abcde\xe4",
    b"\xf8\x88\x80\x80\x80a",
    b"ab\x80cde",
)


@dataclass(frozen=True)
class Method:
    service: str  # full name, as in the metrics' grpc_service label
    name: str
    request: type[Message]
    response: type[Message]
    admin: bool  # served on the admin port (RegistryService) rather than the check port
    streaming: bool  # server-streaming (WatchStatusChanges, CheckClaims): the answer is the first message
    # Client-streaming too (CheckClaims): the bytes go out as a stream of one message, which the server
    # answers and ends; its BadRequest paths are those of a stream (requests[0]....).
    client_streaming: bool = False

    @property
    def grpc_type(self) -> str:
        """The ``grpc_type`` label of this method's metrics."""
        if self.client_streaming:
            return "bidi_stream" if self.streaming else "client_stream"
        return "server_stream" if self.streaming else "unary"

    @property
    def request_field(self) -> str:
        """The BadRequest field naming the whole request (bytes that are not a request at all)."""
        return "requests[0]" if self.client_streaming else "request"

    @property
    def ends_by_itself(self) -> bool:
        """Whether an answered call ends OK on its own (a watch is cancelled by the client instead)."""
        return self.client_streaming or not self.streaming

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def write(self) -> bool:
        return self.name in WRITES

    def raw(self, channel: grpc.Channel) -> Any:
        """A callable that sends bytes as they are and decodes the answer."""
        kinds = {
            (False, False): channel.unary_unary,
            (False, True): channel.unary_stream,
            (True, False): channel.stream_unary,
            (True, True): channel.stream_stream,
        }
        make = kinds[(self.client_streaming, self.streaming)]
        return make(self.path, request_serializer=None, response_deserializer=self.response.FromString)

    def may_answer(self, data: bytes) -> bool:
        """Whether these bytes can be a valid request, one the server answers rather than refuses."""
        return self.name in ALL_OPTIONAL and self.decodes(data)

    def decodes(self, data: bytes) -> bool:
        """Whether the server's parser (the same protobuf runtime as ours) accepts these bytes."""
        try:
            self.request.FromString(data)
        except DecodeError:
            return False
        return True


def _methods() -> list[Method]:
    found = []
    for service, admin in ((CHECK_SERVICE, False), (REGISTRY_SERVICE, True)):
        for m in service.methods:
            request = message_factory.GetMessageClass(m.input_type)
            response = message_factory.GetMessageClass(m.output_type)
            found.append(
                Method(service.full_name, m.name, request, response, admin, m.server_streaming, m.client_streaming)
            )
    return found


METHODS = _methods()
METHOD_IDS = [m.name for m in METHODS]


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def filled(descriptor: Descriptor, markers: Iterator[str], depth: int = 0) -> Message:
    """A message with every field set (one element per repeated field, the first member of each
    oneof), every string a distinct marker of MARKER_LENGTH ASCII characters."""
    message = message_factory.GetMessageClass(descriptor)()
    taken_oneofs: set[str] = set()
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in taken_oneofs:
                continue
            taken_oneofs.add(oneof.name)
        if _is_map(field) or (field.type == FieldDescriptor.TYPE_MESSAGE and depth >= 3):
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            value: Any = filled(field.message_type, markers, depth + 1)
        elif field.type == FieldDescriptor.TYPE_STRING:
            value = next(markers)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            value = b"x"
        elif field.type == FieldDescriptor.TYPE_BOOL:
            value = True
        elif field.type == FieldDescriptor.TYPE_ENUM:
            value = field.enum_type.values[-1].number
        elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            value = 1.5
        else:
            value = 7
        if field.is_repeated:  # type: ignore[attr-defined]
            container = getattr(message, field.name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                container.add().CopyFrom(value)
            else:
                container.append(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(value)
        else:
            setattr(message, field.name, value)
    return message


def full_sample(method: Method) -> tuple[bytes, list[bytes]]:
    """A message of ``method``'s request type with every field set, serialized, and the markers
    standing in for its string fields (each occurs exactly once in the bytes)."""
    used: list[bytes] = []

    def markers() -> Iterator[str]:
        while True:
            marker = f"~{len(used):04d}~"
            used.append(marker.encode())
            yield marker

    data = filled(method.request.DESCRIPTOR, markers()).SerializeToString()
    for marker in used:
        assert data.count(marker) == 1, (method.name, marker)
    return data, used


def with_invalid_utf8(data: bytes, marker: bytes, invalid: bytes) -> bytes:
    assert len(invalid) == len(marker) == MARKER_LENGTH
    return data.replace(marker, invalid)


def undecodable_prefixes(method: Method, data: bytes) -> list[bytes]:
    """Every strict prefix of ``data`` that does not parse (a message cut inside a field)."""
    return [data[:k] for k in range(1, len(data)) if not method.decodes(data[:k])]


# Shapes random bytes rarely take by chance: huge declared lengths, varints that never end, groups
# nested beyond the parser's recursion limit, a wire type that does not exist.
SPECIAL_PAYLOADS: tuple[tuple[str, bytes], ...] = (
    ("huge-length", b"\x0a\xff\xff\xff\xff\x0f" + b"a" * 20),
    ("unterminated-varint", b"\x20" + b"\xff" * 12),
    ("varint-overflow", b"\x20" + b"\xff" * 10 + b"\x01"),
    ("nested-groups", b"\x0b" * 5000),
    ("unbalanced-end-group", b"\x0c"),
    ("wire-type-7", b"\x0f\x00"),
    ("field-zero", b"\x00\x01"),
    ("length-past-end", b"\x1a\x05\x0a\x01"),
)


def random_payloads(rng: random.Random, count: int, max_length: int = 300) -> list[bytes]:
    return [rng.randbytes(rng.randint(1, max_length)) for _ in range(count)]


def bit_flips(rng: random.Random, data: bytes, count: int) -> list[bytes]:
    """``data`` with one to three random bytes replaced: near-misses of a well-formed message."""
    out = []
    for _ in range(count):
        spoiled = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            spoiled[rng.randrange(len(spoiled))] = rng.randrange(256)
        out.append(bytes(spoiled))
    return out


def call_raw(method: Method, channel: grpc.Channel, data: bytes, timeout: float = 10) -> Message | grpc.RpcError:
    """The answer or the RpcError; anything else (a client-side failure) propagates."""
    call: Callable[..., Any] = method.raw(channel)
    try:
        if method.client_streaming:  # a stream of one message: its answer, or the error that ended the stream
            answers = list(call(iter([data]), timeout=timeout))
            return answers[0] if answers else method.response()  # type: ignore[no-any-return]
        if not method.streaming:
            return call(data, timeout=timeout)  # type: ignore[no-any-return]
        stream = call(data, timeout=timeout)
        try:
            first = next(stream, None)
            return method.response() if first is None else first  # type: ignore[no-any-return]
        finally:
            stream.cancel()  # a watch never ends by itself: its first message is the answer
    except grpc.RpcError as error:
        if method.streaming and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and _resumes(method, data):  # type: ignore[attr-defined]
            return method.response()  # a resumed watch with nothing new since is silent: open, answered
        return error


def _resumes(method: Method, data: bytes) -> bool:
    """Whether these bytes are a watch resuming from a data version (after_data_version > 0)."""
    if not method.decodes(data):
        return False
    return bool(getattr(method.request.FromString(data), "after_data_version", 0))
