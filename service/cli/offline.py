"""`gatekeeper recheck` and `gatekeeper simulate`: read-only tools over the decision log and the ledgers.

Both read Redis (the configured one, or the embedded one `serve` started) and never write to it.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from cache.codec import decode_ledger
from cache.store import Store
from domain.projection import PersonView
from domain.values import Ledger
from service import config
from service.cli.store_target import store_from
from service.cli.tables import table
from service.convert import parse_day, today_in_china
from service.offline import simulate as sim
from service.offline.decision_records import LoggedLine, ReadCounts, read_lines
from service.offline.recheck import Payable, payable
from service.rules.engine import derive
from service.rules.profile import Profile, load_profile


def add_commands(commands: Any) -> None:
    p = commands.add_parser(
        "recheck",
        help="logged non-eligible lines the current data now allows (after an upheld appeal)",
        description="Re-decide every logged non-eligible claim line against the current data and list those "
        "now ALLOW, with the old and new reason and the documents that changed it. Read-only.",
    )
    p.add_argument("logs", nargs="+", type=pathlib.Path, help="decision log files (JSON lines)")
    p.add_argument("--since", type=parse_day, help="only lines served on or after this date")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    config.add_arguments(p, ("redis_url", "data_dir", "profile"))

    p = commands.add_parser(
        "simulate",
        help="what a draft profile would change, from the ledgers (read-only)",
        description="Derive every person's timeline under the draft and the active profile and report who "
        "changes status on a day, suspension days gained or lost in its year, and logged lines decided otherwise.",
    )
    p.add_argument("--profile", required=True, help="the draft: a TOML path (or a bundled profile name)")
    p.add_argument("--active", default=None, help="the profile to compare with [env GATEKEEPER_PROFILE; national]")
    p.add_argument("--on", type=parse_day, help="the day to compare statuses on (default today, China time)")
    p.add_argument("--log", nargs="+", type=pathlib.Path, default=[], help="decision logs to decide again")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--limit", type=int, default=50, help="rows of each list in the table (0: all)")
    config.add_arguments(p, ("redis_url", "data_dir"))


# --- recheck ---------------------------------------------------------------------------------------------------


def _ledgers(store: Store, codes: Sequence[str]) -> dict[str, Ledger]:
    return {code: decode_ledger(raw) for code, raw in store.read_ledgers(codes).items()}


def recheck(args: argparse.Namespace) -> int:
    settings = config.resolve(args)
    profile = load_profile(settings["profile"])
    store = store_from(settings)
    started = time.perf_counter()
    counts = ReadCounts()
    codes = sorted({c for item in read_lines(args.logs, counts) for c in _people_on(item)})
    ledgers = _ledgers(store, codes)
    people = {code: PersonView.of(code, derive(ledger, profile.points)) for code, ledger in ledgers.items()}
    rows = list(payable(read_lines(args.logs), people, lambda c: ledgers[c].audit if c in ledgers else (), profile,
                        since=args.since))  # fmt: skip
    seconds = time.perf_counter() - started
    _print_payable(rows, args.format)
    print(
        f"{counts.lines} logged lines in {counts.claims} claims re-decided in {seconds:.1f} s "
        f"({counts.lines / seconds if seconds else 0:,.0f} lines/s); {len(rows)} now payable"
        + (f"; {counts.unreadable} entries without the fields to decide again" if counts.unreadable else ""),
        file=sys.stderr,
    )
    return 0


def _people_on(item: LoggedLine) -> Iterable[str]:
    return [c for c in (item.line.practitioner_code, item.line.dispenser_code) if c]


def _payable_row(p: Payable) -> dict[str, str]:
    item = p.logged
    return {
        "claim_id": item.claim_id,
        "line_id": item.line.line_id,
        "institution_code": item.institution_code,
        "service_date": item.line.service_date.isoformat(),
        "practitioner_code": item.about,
        "was": f"{item.decision.name}/{item.reason.name}",
        "now": f"{p.now.decision.name}/{p.now.reason.name}",
        "decided_at_version": str(item.data_version),
        "changed_by": " ".join(p.documents),
    }


def _print_payable(rows: list[Payable], fmt: str) -> None:
    _emit([_payable_row(p) for p in rows], fmt)


# --- simulate --------------------------------------------------------------------------------------------------


def simulate(args: argparse.Namespace) -> int:
    settings = config.resolve(args)
    active = load_profile(args.active or settings_profile())
    draft = load_profile(args.profile)
    store = store_from(settings)
    day = args.on or today_in_china()
    report = sim.Report(day)
    started = time.perf_counter()
    for _code, raw in store.scan_ledgers():
        sim.compare(decode_ledger(raw), active, draft, day, report)
    if args.log:
        _compare_logged_lines(store, args.log, (active, draft), report)
    seconds = time.perf_counter() - started
    _print_report(report, active, draft, args.format, args.limit)
    print(f"{report.people:,} ledgers compared in {seconds:.1f} s", file=sys.stderr)
    return 0


def settings_profile() -> str:
    return str(config.resolve(None)["profile"])


def _compare_logged_lines(store: Store, logs: list[pathlib.Path], profiles: tuple[Profile, Profile],
                          report: sim.Report) -> None:  # fmt: skip
    codes = sorted({c for item in read_lines(logs) for c in _people_on(item)})
    ledgers = _ledgers(store, codes)
    people = tuple(
        {code: PersonView.of(code, derive(ledger, p.points)) for code, ledger in ledgers.items()} for p in profiles
    )
    sim.compare_lines(read_lines(logs), (people[0], people[1]), profiles, report)


def _print_report(report: sim.Report, active: Profile, draft: Profile, fmt: str, limit: int) -> None:
    people = [
        {"practitioner_code": c.code, "status_active": c.before.name, "status_draft": c.after.name,
         "suspended_days_active": str(c.suspended_days_before), "suspended_days_draft": str(c.suspended_days_after)}
        for c in report.changed
    ]  # fmt: skip
    lines = [
        {"claim_id": c.logged.claim_id, "line_id": c.logged.line.line_id, "practitioner_code": c.active.practitioner_code,
         "active": f"{c.active.decision.name}/{c.active.reason.name}",
         "draft": f"{c.draft.decision.name}/{c.draft.reason.name}"}
        for c in report.line_changes
    ]  # fmt: skip
    transitions = {f"{a.name} -> {b.name}": n for (a, b), n in sorted(report.transitions.items()) if a is not b}
    if fmt == "json":
        summary = {
            "active": active.policy_id, "draft": draft.policy_id, "day": report.day.isoformat(),
            "people": report.people, "transitions": transitions, "suspended_days_gained": report.days_gained,
            "suspended_days_lost": report.days_lost, "changed_people": people, "lines_decided": report.lines,
            "changed_lines": lines,
        }  # fmt: skip
        json.dump(summary, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return
    if fmt == "csv":
        _emit(people, "csv")
        return
    print(f"draft {draft.policy_id} against active {active.policy_id}, statuses on {report.day}, "
          f"suspension days in {report.day.year}")  # fmt: skip
    print(f"people compared: {report.people:,}; status differs on {report.day}: {sum(transitions.values()):,}")
    for name, n in transitions.items():
        print(f"  {name:<26} {n:>8,}")
    print(f"suspension days gained: {report.days_gained:,}; lost: {report.days_lost:,}")
    if people:
        print(f"\npeople whose status or suspension days differ ({len(people):,}):")
        _emit(people[: limit or None], "table")
    if report.lines:
        print(f"\nlogged lines decided: {report.lines:,}; decided otherwise under the draft: {len(lines):,}")
        _emit(lines[: limit or None], "table")


# --- output ----------------------------------------------------------------------------------------------------


def _emit(rows: list[dict[str, str]], fmt: str) -> None:
    if fmt == "json":
        json.dump(rows, sys.stdout, ensure_ascii=False, indent=2)
        print()
    elif fmt == "csv":
        if rows:
            writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif rows:
        print(table([k.upper() for k in rows[0]], [list(r.values()) for r in rows]))
    else:
        print("(none)")
