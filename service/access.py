"""Who may call the admin service: an access file of bearer tokens (stored hashed) and client-certificate
subjects, each with a name and a role.

The file is TOML, so an operator can read and review it::

    [[token]]
    name = "clerk-lhasa"          # recorded in the audit trail as the verified identity
    role = "writer"               # writer: writes and reads; reader: files and reports only
    sha256 = "9f86d0…"            # `gatekeeper token new NAME` prints a token and this line

    [[certificate]]
    subject = "CN=agency-batch,O=Lhasa Medical Insurance Bureau"   # as the TLS layer reports it
    name = "agency-batch"
    role = "writer"

Tokens are random (``secrets.token_urlsafe(32)``), so one SHA-256 is a sufficient hash: there is no
password to guess. Pure: no gRPC here; ``service.admin_guard`` applies it at the edge.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import pathlib
import secrets
import tomllib
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Role(enum.IntEnum):
    """Ordered: a writer may do what a reader may."""

    READER = 1
    WRITER = 2


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller. ``via`` is how it was verified: token, certificate, or peer (loopback, no access file: the address)."""

    name: str
    role: Role
    via: str

    def audit(self) -> str:
        return f"{self.via}:{self.name}"


# The admin methods that only read; every other RegistryService method writes (deny by default).
READ_METHODS = frozenset({"GetPractitionerFile", "ListInstitutionReports", "ListInstitutionStaff"})


def required_role(method: str) -> Role:
    return Role.READER if method in READ_METHODS else Role.WRITER


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class AccessError(ValueError):
    """The access file cannot be used; the message names the file and the entry."""


class _Token(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=64)
    role: Literal["reader", "writer"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class _Certificate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    subject: str = Field(min_length=1, max_length=512)
    name: str = Field(min_length=1, max_length=64)
    role: Literal["reader", "writer"]


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    token: list[_Token] = []
    certificate: list[_Certificate] = []


@dataclass(frozen=True, slots=True)
class AccessList:
    tokens: dict[str, Identity]  # by SHA-256 of the token
    subjects: dict[str, Identity]  # by certificate subject

    def __bool__(self) -> bool:
        return bool(self.tokens or self.subjects)

    def by_token(self, token: str) -> Identity | None:
        digest = hash_token(token)
        # Compare every entry in constant time, so timing says nothing about which digest is close.
        found = None
        for stored, identity in self.tokens.items():
            if hmac.compare_digest(stored, digest):
                found = identity
        return found

    def by_subject(self, subject: str) -> Identity | None:
        return self.subjects.get(subject)


def load_access(path: str | pathlib.Path) -> AccessList:
    path = pathlib.Path(path)
    try:
        parsed = _File.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise AccessError(f"{path}: no such access file") from None
    except tomllib.TOMLDecodeError as exc:
        raise AccessError(f"{path}: not valid TOML ({exc})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AccessError(f"{path}: {where}: {first['msg']}") from None
    tokens = {t.sha256: Identity(t.name, Role[t.role.upper()], "token") for t in parsed.token}
    subjects = {c.subject: Identity(c.name, Role[c.role.upper()], "certificate") for c in parsed.certificate}
    if not tokens and not subjects:
        raise AccessError(f"{path}: lists no token and no certificate")
    return AccessList(tokens, subjects)
