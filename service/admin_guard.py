"""Admin authentication and authorisation at the gRPC edge.

Every RegistryService method is wrapped once, before registration (as the metrics are): the caller
is identified from a bearer token (``authorization: Bearer …``) or the TLS client-certificate
subject, looked up in the access list, and held against the role the method needs.

    no credentials, unknown token or subject  -> UNAUTHENTICATED
    known caller without the role              -> PERMISSION_DENIED

Both are counted (``gatekeeper_admin_auth_failures_total{reason}``) and logged at most once a
second, never with the secret. The verified identity reaches the write path through ``CALLER``
(the handler runs in the thread that called the wrapper). Without an access file the guard admits
every caller as the local operator: the app allows that only on loopback (the embedded default).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from prometheus_client import Counter

from service.access import AccessList, Identity, Role, required_role
from service.logs import Throttled

T = TypeVar("T")
CALLER: contextvars.ContextVar[Identity | None] = contextvars.ContextVar("gatekeeper_admin_caller", default=None)
_log = Throttled(logging.getLogger("gatekeeper.auth"))


def certificate_subject(context: grpc.ServicerContext) -> str:
    auth: dict[str, Any] = dict(context.auth_context() or {})
    names = auth.get("x509_subject") or []
    return b",".join(names).decode(errors="replace")


class AdminGuard:
    def __init__(self, access: AccessList | None, failures: Counter) -> None:
        self.access = access
        self.failures = failures

    def identify(self, context: grpc.ServicerContext) -> tuple[Identity | None, str]:
        """The verified caller, or None and why not (a metric label)."""
        if self.access is None:
            return Identity(context.peer(), Role.WRITER, "peer"), ""
        metadata = dict(context.invocation_metadata() or ())
        header = metadata.get("authorization")
        if isinstance(header, str) and header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None, "malformed_credentials"
            found = self.access.by_token(token.strip())
            return found, "" if found else "unknown_token"
        subject = certificate_subject(context)
        if subject:
            found = self.access.by_subject(subject)
            return found, "" if found else "unknown_certificate"
        return None, "no_credentials"

    def protect(self, servicer: T, service: ServiceDescriptor) -> T:
        for method in service.methods:
            behavior = getattr(servicer, method.name)
            setattr(servicer, method.name, self._wrap(behavior, method.name))
        return servicer

    def _wrap(self, behavior: Callable[[Any, Any], Any], method: str) -> Callable[[Any, Any], Any]:
        needed = required_role(method)

        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            identity, why = self.identify(context)
            if identity is None:
                self._refuse(context, method, why, grpc.StatusCode.UNAUTHENTICATED, "credentials required")
            elif identity.role < needed:
                self._refuse(
                    context, method, "role", grpc.StatusCode.PERMISSION_DENIED,
                    f"{identity.name} has the role {identity.role.name.lower()}; {method} needs "
                    f"{needed.name.lower()}",
                )  # fmt: skip
            token = CALLER.set(identity)
            try:
                return behavior(request, context)
            finally:
                CALLER.reset(token)

        return wrapped

    def _refuse(
        self, context: grpc.ServicerContext, method: str, reason: str, code: grpc.StatusCode, message: str
    ) -> None:
        self.failures.labels(reason).inc()
        _log.warning("admin call refused", method=method, reason=reason, peer=context.peer())
        context.abort(code, message)
