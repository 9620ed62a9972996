"""CheckClaimResponse bytes assembled from pre-encoded pieces (the check path's response, by hand).

Building a response message field by field and serializing it costs more per line than deciding
the line. Here each decided outcome is encoded once (``outcome_fields``: every LineDecision field
but the line id), kept with the outcome (``service.check.recall``), and a response is a join of
those pieces with the line ids and the header. The bytes are exactly what
``CheckClaimResponse.SerializeToString()`` gives for the same message (proto3: fields in number
order, zero values left out); tests/unit/test_encoding.py holds them to that, field by field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from service.check.decision import Outcome

# Wire tags: (field number << 3) | wire type (0 varint, 2 length-delimited).
_LINE_ID, _DECISION, _REASON, _CODE, _STATUS, _SINCE, _UNTIL, _MESSAGE = 0x0A, 0x10, 0x18, 0x22, 0x28, 0x32, 0x3A, 0x42
_CLAIM_ID, _DECISIONS, _DATA_VERSION, _POLICY_ID = b"\x0a", b"\x12", 0x18, 0x22
_LINE_ID_TAG = bytes((_LINE_ID,))
_YEAR, _MONTH, _DAY = 0x08, 0x10, 0x18


def varint(value: int) -> bytes:
    """A protobuf base-128 varint of a non-negative integer."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [varint(n) for n in range(1 << 14)]  # lengths of lines and messages: a list index, not a loop


def _length(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else varint(n)


def _text(tag: int, value: str) -> bytes:
    if not value:
        return b""
    data = value.encode()
    return bytes((tag,)) + _length(len(data)) + data


def _number(tag: int, value: int) -> bytes:
    return bytes((tag,)) + varint(value) if value else b""


def _date(tag: int, day: date | None) -> bytes:
    if day is None:
        return b""
    body = _number(_YEAR, day.year) + _number(_MONTH, day.month) + _number(_DAY, day.day)
    return bytes((tag,)) + _length(len(body)) + body


def outcome_fields(outcome: Outcome) -> bytes:
    """LineDecision fields 2-8 of ``outcome``: everything but the line id, which comes first."""
    window = outcome.window
    return b"".join(
        (
            _number(_DECISION, outcome.decision),
            _number(_REASON, outcome.reason),
            _text(_CODE, outcome.practitioner_code),
            _number(_STATUS, window.status) if window else b"",
            _date(_SINCE, window.since) if window else b"",
            _date(_UNTIL, window.until) if window else b"",
            _text(_MESSAGE, outcome.message),
        )
    )


def decision_entry(line_id: str, fields: bytes) -> bytes:
    """One ``decisions`` entry of a response: the line id, then the outcome's pre-encoded fields."""
    return b"".join(entry_parts(line_id, fields))


def entry_parts(line_id: str, fields: bytes) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
    """``decision_entry`` as the pieces to join: a response joins all its lines' pieces at once."""
    data = line_id.encode()
    size = _length(len(data))
    return _DECISIONS, _length(1 + len(size) + len(data) + len(fields)), _LINE_ID_TAG, size, data, fields


def response_bytes(claim_id: str, entries: Sequence[bytes], data_version: int, policy_id: str) -> bytes:
    """A whole CheckClaimResponse: claim id, the decision entries (or their pieces) in line order,
    version, policy."""
    claim = claim_id.encode()
    head = _CLAIM_ID + _length(len(claim)) + claim if claim else b""
    return b"".join([head, *entries, _number(_DATA_VERSION, data_version), _text(_POLICY_ID, policy_id)])
