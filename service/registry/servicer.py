"""RegistryService: the handling agency's writes, on the admin port.

Each method: validate -> build the write items -> Writer (idempotent, one atomic commit).
Domain errors become gRPC statuses in one place (service/errors.abort).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from cache.store import Store
from domain.errors import GatekeeperError, InvalidRequest, NotFound, Refused
from domain.values import Derivation, Ledger
from domain.violations import Violations
from gatekeeper.v1 import registry_pb2, registry_pb2_grpc
from service.admin_guard import CALLER
from service.check.validation import Codes
from service.convert import today_in_china
from service.errors import abort
from service.registry import ledger_ops, report_messages
from service.registry import validation as validate
from service.registry.files import practitioner_file
from service.registry.idempotency import (
    end_key,
    fingerprint,
    points_key,
    registration_key,
    repair_key,
    sanction_key,
    withdraw_key,
)
from service.registry.writer import Caller, Item, Seen, Writer, nothing_seen
from service.rules.profile import Profile

T = TypeVar("T")
R = TypeVar("R", bound=Message)


MAX_OPERATOR_NOTE = 64


def caller_identity(context: grpc.ServicerContext) -> str:
    """Who is writing, for the audit: the identity the admin guard verified (token or certificate
    name, or the peer address for the local operator of the embedded default).

    A self-declared ``x-operator`` metadata value is kept beside it as an unverified note, cut to
    ``MAX_OPERATOR_NOTE`` printable characters.
    """
    identity = CALLER.get()
    who = identity.audit() if identity is not None else f"peer:{context.peer()}"
    metadata = dict(context.invocation_metadata() or ())
    operator = metadata.get("x-operator")
    if not isinstance(operator, str) or not operator:
        return who
    note = "".join(ch for ch in operator if ch.isprintable())[:MAX_OPERATOR_NOTE]
    return f"{who} operator:{note} (unverified)"


def _valid(result: T | Violations, context: grpc.ServicerContext) -> T:
    if isinstance(result, Violations):
        abort(context, InvalidRequest(result.items))
    return result


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(
        self,
        store: Store,
        profile: Profile,
        *,
        clock: Callable[[], str],
        seen: Callable[[], Seen] = nothing_seen,
        replicas: int = 0,
    ) -> None:
        self.profile = profile
        self.codes = Codes.of(profile)
        self.writer = Writer(store, profile.points, clock, seen=seen, replicas=replicas)
        self.store = store  # reports read everyone at once

    def _write(
        self,
        context: grpc.ServicerContext,
        method: str,
        items: Sequence[Item],
        response_type: type[R],
        respond: Callable[[dict[str, tuple[Ledger, Derivation]], int], R],
        batch_key: str | None = None,
    ) -> R:
        caller = Caller(caller_identity(context), method)
        try:
            result = self.writer.write(caller, items, respond, response_type.FromString, batch_key=batch_key)
        except GatekeeperError as error:
            abort(context, error)
        assert isinstance(result, response_type)
        return result

    def _single(self, response_type: type[R]) -> Callable[[dict[str, tuple[Ledger, Derivation]], int], R]:
        def respond(results: dict[str, tuple[Ledger, Derivation]], version: int) -> R:
            ((ledger, derivation),) = results.values()
            return response_type(file=practitioner_file(ledger, derivation, version), data_version=version)

        return respond

    def RegisterPractitioner(
        self, request: registry_pb2.RegisterPractitionerRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RegisterPractitionerResponse:
        reg = _valid(validate.registration(request, self.codes), context)
        key = registration_key(reg.practitioner_code, reg.institution_code, reg.registered_on.isoformat())
        item = Item(
            key,
            fingerprint(request),
            reg.practitioner_code,
            lambda lg: ledger_ops.register(lg, reg, self.profile.points),
        )
        rt = registry_pb2.RegisterPractitionerResponse
        return self._write(context, "RegisterPractitioner", [item], rt, self._single(rt))

    def EndRegistration(
        self, request: registry_pb2.EndRegistrationRequest, context: grpc.ServicerContext
    ) -> registry_pb2.EndRegistrationResponse:
        code, institution, day = _valid(validate.end_registration(request, self.codes), context)
        key = end_key(code, institution, day.isoformat())
        item = Item(key, fingerprint(request), code, lambda lg: ledger_ops.end_registration(lg, institution, day))
        rt = registry_pb2.EndRegistrationResponse
        return self._write(context, "EndRegistration", [item], rt, self._single(rt))

    def RecordPoints(
        self, request: registry_pb2.RecordPointsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RecordPointsResponse:
        decision = _valid(validate.points(request, self.codes), context)
        # effective_on left out means decided_on: the same decision either way.
        normalized = registry_pb2.RecordPointsRequest()
        normalized.CopyFrom(request)
        if not normalized.HasField("effective_on"):
            normalized.effective_on.CopyFrom(request.decided_on)
        item = Item(
            points_key(decision.decision_no),
            fingerprint(normalized),
            decision.practitioner_code,
            lambda lg: ledger_ops.record_points(lg, decision),
        )
        rt = registry_pb2.RecordPointsResponse
        return self._write(context, "RecordPoints", [item], rt, self._single(rt))

    def WithdrawPoints(
        self, request: registry_pb2.WithdrawPointsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.WithdrawPointsResponse:
        decision_no, day, reason = _valid(validate.withdrawal(request), context)
        owner = self._owner_of(decision_no, context)
        item = Item(
            withdraw_key(decision_no),
            fingerprint(request),
            owner,
            lambda lg: ledger_ops.withdraw(lg, decision_no, day, reason),
        )
        rt = registry_pb2.WithdrawPointsResponse
        return self._write(context, "WithdrawPoints", [item], rt, self._single(rt))

    def ApplyRepair(
        self, request: registry_pb2.ApplyRepairRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ApplyRepairResponse:
        repair = _valid(validate.repair(request, self.codes), context)
        item = Item(
            repair_key(repair.repair_no),
            fingerprint(request),
            repair.practitioner_code,
            lambda lg: ledger_ops.apply_repair(lg, repair, self.profile.points),
        )
        rt = registry_pb2.ApplyRepairResponse
        return self._write(context, "ApplyRepair", [item], rt, self._single(rt))

    def ImportSanctions(
        self, request: registry_pb2.ImportSanctionsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ImportSanctionsResponse:
        sanctions = _valid(validate.sanctions(request, self.codes), context)
        items = [
            Item(sanction_key(s.source_decision_no), fingerprint(raw), s.practitioner_code, _adder(s))
            for s, raw in zip(sanctions, request.sanctions, strict=True)
        ]

        def respond(
            results: dict[str, tuple[Ledger, Derivation]], version: int
        ) -> registry_pb2.ImportSanctionsResponse:
            files = [practitioner_file(lg, d, version) for lg, d in results.values()]
            return registry_pb2.ImportSanctionsResponse(files=files, data_version=version)

        batch = f"import:{fingerprint(request)}"
        return self._write(context, "ImportSanctions", items, registry_pb2.ImportSanctionsResponse, respond, batch)

    def GetPractitionerFile(
        self, request: registry_pb2.GetPractitionerFileRequest, context: grpc.ServicerContext
    ) -> registry_pb2.GetPractitionerFileResponse:
        code = _valid(validate.practitioner(request.practitioner_code, self.codes), context)
        try:
            found = self.writer.read(code)
        except GatekeeperError as error:
            abort(context, error)
        if found is None:
            abort(context, NotFound(f"No file for {code}."))
        ledger, derivation, version = found
        return registry_pb2.GetPractitionerFileResponse(
            file=practitioner_file(ledger, derivation, version), data_version=version
        )

    def ListInstitutionReports(
        self, request: registry_pb2.ListInstitutionReportsRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListInstitutionReportsResponse:
        year, region = _valid(validate.report_request(request, today_in_china()), context)
        try:
            return report_messages.institution_reports(self.store, self.profile, year, region)
        except GatekeeperError as error:
            abort(context, error)

    def ListInstitutionStaff(
        self, request: registry_pb2.ListInstitutionStaffRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListInstitutionStaffResponse:
        institution, day = _valid(validate.staff_request(request, self.codes, today_in_china()), context)
        try:
            return report_messages.institution_staff(self.store, institution, day)
        except GatekeeperError as error:
            abort(context, error)

    def _owner_of(self, decision_no: str, context: grpc.ServicerContext) -> str:
        try:
            owner = self.writer.owner_of(points_key(decision_no))
        except GatekeeperError as error:
            abort(context, error)
        if owner is None:
            abort(context, Refused(f"No points decision {decision_no} is on file.", decision_no, "UNKNOWN_DECISION"))
        return owner


def _adder(sanction: Any) -> Callable[[Ledger], Ledger]:
    return lambda lg: ledger_ops.add_sanction(lg, sanction)
