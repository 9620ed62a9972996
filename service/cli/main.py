"""The `gatekeeper` command: serve, load data, and talk to a running service.

gatekeeper serve                       run the service (embedded Redis + demo data by default)
gatekeeper load FILE                   import a dataset (JSON lines) in one atomic swap
gatekeeper recover --reason TEXT       accept the stored data after Redis lost some (servers serve again)
gatekeeper check --file claim.json     send a claim, print a table of decisions
gatekeeper check -p CODE -d DATE ...   the same for one line given by flags
gatekeeper status CODE                 one person's status today (or --date)
gatekeeper health                      exit 0 when the service answers SERVING (container health checks)
gatekeeper admin register|end|points|withdraw|repair|import|file ...   the agency's writes
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2
from service import config
from service.access import AccessError
from service.cli import admin as admin_cli
from service.cli import offline as offline_cli
from service.cli import token as token_cli
from service.cli.channel import add_tls_arguments, open_channel
from service.cli.store_target import NoStore, store_from
from service.cli.tables import print_change, print_decisions, print_status
from service.convert import parse_day, to_proto_date, today_in_china
from service.registry.dataset import DatasetError, read_dataset
from service.registry.loading import LoadOptions, LoadRefused, guarded_load
from service.rules.profile import ProfileError, load_profile


def _target_arg(parser: argparse.ArgumentParser, default_port: int, env: str) -> None:
    parser.add_argument(
        "--target",
        default=None,
        help=f"host:port of the service [env {env}; default 127.0.0.1:{default_port}]",
    )


def resolve_target(args: argparse.Namespace, default_port: int, env: str) -> str:
    return str(args.target or os.environ.get(env) or f"127.0.0.1:{default_port}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gatekeeper", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the service",
        description="Run the gRPC service. Every setting: flag, else environment, else default.",
    )
    config.add_arguments(serve)

    load = commands.add_parser(
        "load",
        help="import a dataset in one atomic swap",
        description="Import a JSON-lines dataset (docs/dataset.md); a running server picks it up without a restart.",
    )
    load.add_argument("file", type=pathlib.Path)
    load.add_argument(
        "--allow-shrink", action="store_true", help="load an empty dataset, or one under half the live people"
    )
    load.add_argument(
        "--discard-agency-writes",
        action="store_true",
        help="load although it erases admin writes (ledger facts and audit trail) the file does not carry",
    )
    config.add_arguments(load, ("redis_url", "data_dir", "profile"))

    recover = commands.add_parser(
        "recover",
        help="accept the stored data after Redis lost some (ends the doubt; versions continue above all seen)",
        description="After a data loss the servers keep their last good data, answer NOT_SERVING and refuse "
        "writes. Once the data in Redis is what it should be (restored, or loaded again), this accepts it.",
    )
    recover.add_argument("--reason", required=True, help="recorded with the store (who decided, and why)")
    config.add_arguments(recover, ("redis_url", "data_dir"))

    check = commands.add_parser("check", help="send a claim and print its decisions")
    _target_arg(check, 50051, "GATEKEEPER_TARGET")
    add_tls_arguments(check)
    check.add_argument("--file", type=pathlib.Path, help="claim as JSON (CheckClaimRequest in protobuf JSON form)")
    check.add_argument("--claim-id", default="cli-claim")
    check.add_argument("-i", "--institution", default="H51010500001")
    check.add_argument("-p", "--practitioner", help="practitioner code of a single line")
    check.add_argument("--dispenser", default="")
    check.add_argument("-d", "--date", type=parse_day, help="service date of a single line (default today)")
    check.add_argument("--care", choices=["unspecified", "routine", "emergency", "rescue"], default="unspecified")
    check.add_argument("--med-type", default="")
    check.add_argument("--json", action="store_true", help="print the response as JSON")

    status = commands.add_parser("status", help="one person's status")
    _target_arg(status, 50051, "GATEKEEPER_TARGET")
    add_tls_arguments(status)
    status.add_argument("code")
    status.add_argument("-d", "--date", type=parse_day)
    status.add_argument("-i", "--institution", default="")

    watch = commands.add_parser("watch", help="print status changes as they happen (WatchStatusChanges)")
    _target_arg(watch, 50051, "GATEKEEPER_TARGET")
    add_tls_arguments(watch)
    watch.add_argument("-i", "--institution", default="", help="only people registered at this institution")
    watch.add_argument("-p", "--practitioner", action="append", default=[], help="only this person (repeatable)")
    watch.add_argument("--after", type=int, default=0, help="resume after this data version (0: snapshot first)")

    health = commands.add_parser("health", help="exit 0 when the service answers SERVING, else 1")
    _target_arg(health, 50051, "GATEKEEPER_TARGET")
    add_tls_arguments(health)
    health.add_argument("--service", default="", help="service name to ask about (default: the whole server)")
    health.add_argument("--timeout", type=float, default=3.0)

    admin_cli.add_commands(commands)
    token_cli.add_commands(commands)
    offline_cli.add_commands(commands)
    return parser


def _load(args: argparse.Namespace) -> int:
    settings = config.resolve(args)
    store = store_from(settings)
    profile = load_profile(settings["profile"])
    dataset = read_dataset(args.file, profile)
    options = LoadOptions(allow_shrink=args.allow_shrink, discard_agency_writes=args.discard_agency_writes)
    loaded_at = datetime.now(UTC).isoformat()
    try:
        version = guarded_load(store, dataset, profile.policy_id, loaded_at, profile.rules_fingerprint, options)
    except LoadRefused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    print(f"loaded {len(dataset)} people from {args.file} as data version {version} ({profile.policy_id})")
    return 0


def _recover(args: argparse.Namespace) -> int:
    store = store_from(config.resolve(args))
    before = store.state()
    version = store.recover(args.reason)
    doubt = before.doubt or "none recorded"
    print(f"recovered: data version {before.version} -> {version}; the doubt was: {doubt}")
    return 0


def _claim_from_args(args: argparse.Namespace) -> eligibility_pb2.CheckClaimRequest:
    if args.file:
        return json_format.Parse(args.file.read_text(encoding="utf-8"), eligibility_pb2.CheckClaimRequest())
    if not args.practitioner:
        raise SystemExit("check: give --file or --practitioner")
    line = eligibility_pb2.ClaimLine(
        line_id="1",
        practitioner_code=args.practitioner,
        dispenser_code=args.dispenser,
        service_date=to_proto_date(args.date or today_in_china()),
        care_type=enums_pb2.CareType.Value(f"CARE_TYPE_{args.care.upper()}"),
        med_type=args.med_type,
    )
    return eligibility_pb2.CheckClaimRequest(claim_id=args.claim_id, institution_code=args.institution, lines=[line])


def _check(args: argparse.Namespace) -> int:
    request = _claim_from_args(args)
    with open_channel(resolve_target(args, 50051, "GATEKEEPER_TARGET"), args) as channel:
        response = eligibility_pb2_grpc.EligibilityServiceStub(channel).CheckClaim(request, timeout=10)
    if args.json:
        print(json_format.MessageToJson(response, preserving_proto_field_name=True, ensure_ascii=False))
    else:
        print_decisions(response)
    return 0


def _status(args: argparse.Namespace) -> int:
    request = eligibility_pb2.GetPractitionerStatusRequest(
        practitioner_code=args.code, institution_code=args.institution
    )
    if args.date:
        request.date.CopyFrom(to_proto_date(args.date))
    with open_channel(resolve_target(args, 50051, "GATEKEEPER_TARGET"), args) as channel:
        response = eligibility_pb2_grpc.EligibilityServiceStub(channel).GetPractitionerStatus(request, timeout=10)
    print_status(response)
    return 0


def _watch(args: argparse.Namespace) -> int:
    request = eligibility_pb2.WatchStatusChangesRequest(
        institution_code=args.institution, practitioner_codes=args.practitioner, after_data_version=args.after
    )
    with open_channel(resolve_target(args, 50051, "GATEKEEPER_TARGET"), args) as channel:
        stream = eligibility_pb2_grpc.EligibilityServiceStub(channel).WatchStatusChanges(request)
        try:
            for change in stream:
                print_change(change, flush=True)
        except KeyboardInterrupt:
            stream.cancel()  # type: ignore[no-untyped-call]
    return 0


def _health(args: argparse.Namespace) -> int:
    with open_channel(resolve_target(args, 50051, "GATEKEEPER_TARGET"), args) as channel:
        request = health_pb2.HealthCheckRequest(service=args.service)
        status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=args.timeout).status
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(status))
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


def _serve(args: argparse.Namespace) -> int:
    from service import logs  # the server stack loads only for `serve`

    settings = config.Settings.from_args(args)
    logs.configure(settings.log_level, settings.log_format)
    if settings.effective_processes > 1:
        from service import processes  # before the server stack: it sets up multiprocess metrics first

        return processes.serve(settings)
    from service import app

    return app.serve(settings)


def report_rpc_error(error: grpc.RpcError) -> None:
    """Print a gRPC error with its rich details (field violations, preconditions)."""
    call: Any = error  # a failed unary call's RpcError is also a grpc.Call
    status = rpc_status.from_call(call)
    print(f"error: {call.code().name}: {call.details()}", file=sys.stderr)
    if status is None:
        return
    for detail in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.PreconditionFailure):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                for line in json.dumps(json_format.MessageToDict(message), ensure_ascii=False, indent=2).splitlines():
                    print(f"  {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": _serve,
        "load": _load,
        "recover": _recover,
        "check": _check,
        "status": _status,
        "health": _health,
        "watch": _watch,
        "admin": admin_cli.run,
        "token": token_cli.run,
        "recheck": offline_cli.recheck,
        "simulate": offline_cli.simulate,
    }
    try:
        return handlers[args.command](args)
    except grpc.RpcError as error:
        report_rpc_error(error)
        return 1
    except BrokenPipeError:  # output piped into `head` and friends: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (config.ConfigError, AccessError, ProfileError, DatasetError, NoStore) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
