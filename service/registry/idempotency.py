"""Idempotency documents: one per document number (or registration key), stored in {gk}:docs.

The same number with the same content returns the first result; with different content it is
a conflict. A document written by a load has no fingerprint: the number is taken, by data we
never saw as a request.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from google.protobuf.message import Message


@dataclass(frozen=True, slots=True)
class Doc:
    fingerprint: str | None
    code: str  # the practitioner the document belongs to (first one, for a batch)
    version: int
    response: bytes = b""

    def encode(self) -> str:
        return json.dumps(
            {
                "fp": self.fingerprint,
                "code": self.code,
                "v": self.version,
                "resp": base64.b64encode(self.response).decode(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Doc:
        data = json.loads(raw)
        return cls(data["fp"], data["code"], data["v"], base64.b64decode(data.get("resp", "")))


def fingerprint(request: Message) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def points_key(decision_no: str) -> str:
    return f"points:{decision_no}"


def repair_key(repair_no: str) -> str:
    return f"repair:{repair_no}"


def withdraw_key(decision_no: str) -> str:
    return f"withdraw:{decision_no}"


def sanction_key(source_decision_no: str) -> str:
    return f"sanction:{source_decision_no}"


def registration_key(code: str, institution: str, day: str) -> str:
    return f"register:{code}:{institution}:{day}"


def end_key(code: str, institution: str, day: str) -> str:
    return f"end:{code}:{institution}:{day}"
