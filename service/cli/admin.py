"""`gatekeeper admin ...`: the handling agency's writes from a terminal, printing the file."""

from __future__ import annotations

import argparse
import getpass
import os
import pathlib
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from gatekeeper.v1 import enums_pb2, registry_pb2, registry_pb2_grpc
from service.cli.channel import add_tls_arguments, admin_metadata, open_channel
from service.cli.tables import print_file, print_institution_reports, print_staff
from service.convert import parse_day, to_proto_date

TARGET_ENV = "GATEKEEPER_ADMIN_TARGET"
REPORTS: dict[str, Callable[[Any], None]] = {
    "ListInstitutionReports": print_institution_reports,
    "ListInstitutionStaff": print_staff,
}


def add_commands(commands: Any) -> None:
    admin = commands.add_parser("admin", help="the agency's writes (admin port)")
    admin.add_argument("--target", default=None, help=f"admin host:port [env {TARGET_ENV}; default 127.0.0.1:50052]")
    admin.add_argument(
        "--operator", default=None, help="a note beside your verified identity in the audit trail (default: $USER)"
    )
    add_tls_arguments(admin, admin=True)
    sub = admin.add_subparsers(dest="admin_command", required=True)

    p = sub.add_parser("register", help="register a person at an institution")
    p.add_argument("code")
    p.add_argument("institution")
    p.add_argument(
        "--category",
        default="doctor",
        choices=[c.lower() for c in _names(enums_pb2.PractitionerCategory, "PRACTITIONER_CATEGORY_")],
    )
    p.add_argument("--on", type=parse_day, required=True, help="registered_on")

    p = sub.add_parser("end", help="end a registration")
    p.add_argument("code")
    p.add_argument("institution")
    p.add_argument("--on", type=parse_day, required=True, help="ended_on")

    p = sub.add_parser("points", help="record a points decision")
    p.add_argument("decision_no")
    p.add_argument("code")
    p.add_argument("institution")
    p.add_argument("points", type=int)
    p.add_argument("--on", type=parse_day, required=True, help="decided_on")
    p.add_argument("--effective", type=parse_day, help="effective_on (default: decided_on)")
    p.add_argument("--responsibility", default="general", choices=["general", "important", "main"])
    p.add_argument("--violation", default="")

    p = sub.add_parser("withdraw", help="withdraw a points decision (appeal upheld)")
    p.add_argument("decision_no")
    p.add_argument("--on", type=parse_day, required=True, help="withdrawn_on")
    p.add_argument("--reason", required=True)

    p = sub.add_parser("repair", help="apply a repair")
    p.add_argument("repair_no")
    p.add_argument("code")
    p.add_argument("--on", type=parse_day, required=True, help="approved_on")
    effect = p.add_mutually_exclusive_group(required=True)
    effect.add_argument("--reduce", type=int, help="reduce points")
    effect.add_argument("--shorten-days", type=int, help="shorten the running suspension by days")
    p.add_argument("--basis", default="")

    p = sub.add_parser("import", help="import external sanctions from a JSON file (list of ExternalSanction)")
    p.add_argument("file", type=pathlib.Path)

    p = sub.add_parser("file", help="print a person's file")
    p.add_argument("code")

    p = sub.add_parser("institutions", help="institutions by share of staff suspended or terminated in a year")
    p.add_argument("--year", type=int, default=0, help="natural year (default: this year)")
    p.add_argument("--region", default="", help="administrative-division prefix of institution codes, e.g. 51")

    p = sub.add_parser("staff", help="an institution's staff: status today, points this year, re-registration")
    p.add_argument("institution")
    p.add_argument("--date", type=parse_day, help="the day to report on (default today)")


def _names(enum: Any, prefix: str) -> list[str]:
    return [n.removeprefix(prefix) for n in enum.keys() if not n.endswith("UNSPECIFIED")]  # noqa: SIM118 (proto enum wrapper)


def _request(args: argparse.Namespace) -> tuple[str, Any]:
    """The RPC method name and request for an admin subcommand."""
    cmd = args.admin_command
    if cmd == "register":
        category = enums_pb2.PractitionerCategory.Value(f"PRACTITIONER_CATEGORY_{args.category.upper()}")
        return "RegisterPractitioner", registry_pb2.RegisterPractitionerRequest(
            practitioner_code=args.code, institution_code=args.institution, category=category,
            registered_on=to_proto_date(args.on),
        )  # fmt: skip
    if cmd == "end":
        return "EndRegistration", registry_pb2.EndRegistrationRequest(
            practitioner_code=args.code, institution_code=args.institution, ended_on=to_proto_date(args.on)
        )
    if cmd == "points":
        request = registry_pb2.RecordPointsRequest(
            decision_no=args.decision_no, practitioner_code=args.code, institution_code=args.institution,
            points=args.points, violation=args.violation, decided_on=to_proto_date(args.on),
            responsibility=enums_pb2.Responsibility.Value(f"RESPONSIBILITY_{args.responsibility.upper()}"),
        )  # fmt: skip
        if args.effective:
            request.effective_on.CopyFrom(to_proto_date(args.effective))
        return "RecordPoints", request
    if cmd == "withdraw":
        return "WithdrawPoints", registry_pb2.WithdrawPointsRequest(
            decision_no=args.decision_no, withdrawn_on=to_proto_date(args.on), reason=args.reason
        )
    if cmd == "repair":
        repair = registry_pb2.ApplyRepairRequest(
            repair_no=args.repair_no, practitioner_code=args.code, approved_on=to_proto_date(args.on), basis=args.basis
        )
        if args.reduce is not None:
            repair.reduce_points = args.reduce
        else:
            repair.shorten_suspension_days = args.shorten_days
        return "ApplyRepair", repair
    if cmd == "import":
        batch = registry_pb2.ImportSanctionsRequest()
        json_format.Parse('{"sanctions": ' + args.file.read_text(encoding="utf-8") + "}", batch)
        return "ImportSanctions", batch
    if cmd == "institutions":
        return "ListInstitutionReports", registry_pb2.ListInstitutionReportsRequest(year=args.year, region=args.region)
    if cmd == "staff":
        staff = registry_pb2.ListInstitutionStaffRequest(institution_code=args.institution)
        if args.date:
            staff.date.CopyFrom(to_proto_date(args.date))
        return "ListInstitutionStaff", staff
    return "GetPractitionerFile", registry_pb2.GetPractitionerFileRequest(practitioner_code=args.code)


def run(args: argparse.Namespace) -> int:
    method, request = _request(args)
    target = args.target or os.environ.get(TARGET_ENV) or "127.0.0.1:50052"
    operator = args.operator or os.environ.get("USER") or getpass.getuser()
    with open_channel(target, args) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        call: Callable[..., Any] = getattr(stub, method)
        response = call(request, timeout=30, metadata=admin_metadata(args, operator))
    if method in REPORTS:
        REPORTS[method](response)
        return 0
    files = list(response.files) if method == "ImportSanctions" else [response.file]
    for file in files:
        print_file(file)
    print(f"\ndata version {response.data_version}")
    return 0
