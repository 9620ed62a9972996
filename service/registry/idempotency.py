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
    response: bytes = b""  # the whole first answer: written by older versions only, still replayed
    codes: tuple[str, ...] = ()  # a batch's people, in first-seen order (their files make its answer)

    def encode(self) -> str:
        data: dict[str, object] = {"fp": self.fingerprint, "code": self.code, "v": self.version}
        if self.response:
            data["resp"] = base64.b64encode(self.response).decode()
        if self.codes:
            data["codes"] = list(self.codes)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> Doc:
        data = json.loads(raw)
        resp = base64.b64decode(data.get("resp", ""))
        return cls(data["fp"], data["code"], data["v"], resp, tuple(data.get("codes", ())))


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
