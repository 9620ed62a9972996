"""The Grafana dashboards of deploy/grafana/dashboards/, generated from the short lists below.

    python deploy/grafana/generate.py           # write the JSON files
    python deploy/grafana/generate.py --check   # exit 1 if the committed JSON differs (a test runs it)

Why code and not hand-kept JSON, and why no grafanalib: deploy/grafana/README.md.
Every expression is evaluated against a real Prometheus scraping a real gatekeeper in
tests/e2e/test_prometheus.py, with the template variables substituted.
"""

from __future__ import annotations

import json
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Any

OUT = pathlib.Path(__file__).parent / "dashboards"
SEL = 'job=~"$job", instance=~"$instance"'  # every query is scoped by the two template variables
CHECK = 'grpc_service="gatekeeper.v1.EligibilityService"'
ADMIN = 'grpc_service="gatekeeper.v1.RegistryService"'
RATE = "[$__rate_interval]"
EXCEPTIONS = 'reason=~"EMERGENCY_EXCEPTION|RESCUE_EXCEPTION"'
SERVER_ERRORS = 'grpc_code=~"Unknown|Internal|Unavailable|DataLoss|DeadlineExceeded|ResourceExhausted"'


@dataclass(frozen=True)
class Q:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Q, ...]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    description: str = ""
    width: int = 12
    extra: dict[str, Any] = field(default_factory=dict)


def p(title: str, *queries: Q, **kw: Any) -> Panel:
    return Panel(title, queries, **kw)


def quantiles(metric: str, selector: str, by: str, legend: str) -> tuple[Q, ...]:
    return tuple(
        Q(f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}{{{selector}}}{RATE})))", f"p{n} {legend}")
        for q, n in ((0.5, 50), (0.95, 95), (0.99, 99))
    )


def share(part: str, whole: str) -> str:
    """part / whole of gatekeeper_decisions_total, 0 (not "no data") when nothing matched ``part``."""
    total = f"sum(rate(gatekeeper_decisions_total{{{whole}}}{RATE}))"
    return f"(sum(rate(gatekeeper_decisions_total{{{whole}, {part}}}{RATE})) or {total} * 0) / {total}"


# fmt: off
OVERVIEW = [
    p("Requests per second by method", Q(f"sum by (grpc_method) (rate(grpc_server_started_total{{{SEL}}}{RATE}))",
      "{{grpc_method}}"), unit="reqps", description="Every RPC started, check and admin ports together."),
    p("Errors per second by method and code",
      Q(f'sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{SEL}, grpc_code!="OK"}}{RATE}))',
        "{{grpc_method}} {{grpc_code}}"), unit="reqps",
      description="InvalidArgument and AlreadyExists are the caller's; Internal, Unavailable and friends are ours."),
    p("Server-side error ratio",
      Q(f"(sum(rate(grpc_server_handled_total{{{SEL}, {SERVER_ERRORS}}}{RATE})) or sum(rate(grpc_server_handled_total{{{SEL}}}{RATE})) * 0)"
        f" / sum(rate(grpc_server_handled_total{{{SEL}}}{RATE}))", "errors"),
      unit="percentunit", kind="stat", width=6, description="Alert GatekeeperHighErrorRatio fires above 1%."),
    p("Claim lines decided per second", Q(f"sum(rate(gatekeeper_decisions_total{{{SEL}}}{RATE}))", "lines"),
      unit="short", kind="stat", width=6),
    p("Check latency p50 / p95 / p99 by method",
      *quantiles("grpc_server_handling_seconds_bucket", f"{SEL}, {CHECK}", "grpc_method", "{{grpc_method}}"),
      unit="s", width=24, description="Server-side handling time. Target: p99 under 100 ms (GatekeeperCheckLatencyHigh)."),
    p("Admin latency p50 / p95 / p99 by method",
      *quantiles("grpc_server_handling_seconds_bucket", f"{SEL}, {ADMIN}", "grpc_method", "{{grpc_method}}"), unit="s"),
    p("Lines per claim p50 / p99",
      Q(f"histogram_quantile(0.5, sum by (le) (rate(gatekeeper_claim_lines_bucket{{{SEL}}}{RATE})))", "p50"),
      Q(f"histogram_quantile(0.99, sum by (le) (rate(gatekeeper_claim_lines_bucket{{{SEL}}}{RATE})))", "p99")),
    p("Admin authentication failures by reason",
      Q(f"sum by (reason) (rate(gatekeeper_admin_auth_failures_total{{{SEL}}}{RATE}))", "{{reason}}"), unit="reqps",
      description="Calls to RegistryService refused for lack of valid credentials (GatekeeperAdminAuthFailures)."),
]

DECISIONS = [
    p("Claim lines by decision", Q(f"sum by (decision) (rate(gatekeeper_decisions_total{{{SEL}}}{RATE}))",
      "{{decision}}"), unit="short", description="Lines per second."),
    p("Rejections by reason", Q(f'sum by (reason) (rate(gatekeeper_decisions_total{{{SEL}, decision="REJECT"}}{RATE}))',
      "{{reason}}"), unit="short", description="Lines per second rejected: suspended, terminated, not registered, unknown."),
    p("Share of lines paid as emergency/rescue exceptions", Q(share(EXCEPTIONS, SEL), "exceptions"),
      unit="percentunit",
      description="What auditors look for: services of suspended or terminated staff paid because the care was "
      "excepted. A sudden rise (GatekeeperExceptionShareRising) may mean routine care billed as emergency."),
    p("Exceptions by kind", Q(f"sum by (reason) (rate(gatekeeper_decisions_total{{{SEL}, {EXCEPTIONS}}}{RATE}))",
      "{{reason}}"), unit="short"),
    p("Rejected share", Q(share('decision="REJECT"', SEL), "rejected"), unit="percentunit", kind="stat", width=6),
    p("Sent to review (stale data) by cause",
      Q(f"sum by (cause) (rate(gatekeeper_stale_answers_total{{{SEL}}}{RATE}))", "{{cause}}"), unit="short",
      width=18, description="Checks answered REVIEW/STALE_DATA: replica too old, not loaded, or min_data_version not reached."),
]

DATA = [
    p("Replica data version", Q(f"max by (instance) (gatekeeper_replica_data_version{{{SEL}}})", "{{instance}}"),
      unit="none", description="All instances should show the same version within a second of every write."),
    p("Replica age", Q(f"max by (instance) (gatekeeper_replica_age_seconds{{{SEL}}})", "{{instance}}"), unit="s",
      description="Seconds since the replica last confirmed it is current; about 0.25 s when healthy. "
      "At the profile's staleness bound checks turn REVIEW."),
    p("Change feed lag", Q(f"max by (instance) (gatekeeper_replica_feed_lag_seconds{{{SEL}}})", "{{instance}}"),
      unit="s", description="From a change's commit in Redis to its application in the replica (last change)."),
    p("Redis errors per second", Q(f"sum by (instance) (rate(gatekeeper_redis_errors_total{{{SEL}}}{RATE}))",
      "{{instance}}"), unit="short", description="Failed replica syncs: Redis down, slow or failing over."),
    p("Full snapshot reloads", Q(f"sum by (instance) (increase(gatekeeper_replica_snapshots_total{{{SEL}}}{RATE}))",
      "{{instance}}"), unit="short", description="A load, a gap in the feed, or Redis losing data after a failover."),
    p("Admin writes by method and code",
      Q(f"sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{SEL}, {ADMIN}}}{RATE}))",
        "{{grpc_method}} {{grpc_code}}"), unit="reqps", description="Unavailable here means Redis refused the write."),
    p("Processes up", Q('count(up{job=~"$job"} == 1)', "up"), kind="stat", width=4),
    p("Processes ready", Q(f"sum(gatekeeper_replica_ready{{{SEL}}})", "ready"), kind="stat", width=4),
    p("Processes distrusting the data", Q(f"sum(gatekeeper_replica_in_doubt{{{SEL}}})", "in doubt"), kind="stat",
      width=4, description="Redis lost data under them (GatekeeperDataInDoubt): NOT_SERVING, writes refused."),
    p("People in replica", Q(f"max(gatekeeper_replica_people{{{SEL}}})", "people"), kind="stat", width=4),
    p("Active profile", Q(f"count by (policy_id) (gatekeeper_profile_info{{{SEL}}})", "{{policy_id}}"),
      kind="stat", width=12, extra={"options": {"textMode": "name"}}),
    p("Resident memory", Q(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}"), unit="bytes"),
    p("CPU", Q(f"rate(process_cpu_seconds_total{{{SEL}}}{RATE})", "{{instance}}"), unit="percentunit"),
]

# fmt: on

DASHBOARDS = {
    "gatekeeper-overview": ("gatekeeper: service overview", OVERVIEW),
    "gatekeeper-decisions": ("gatekeeper: decisions", DECISIONS),
    "gatekeeper-data": ("gatekeeper: data health", DATA),
}


def _variables() -> list[dict[str, Any]]:
    ds = {"type": "prometheus", "uid": "${datasource}"}
    return [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus", "current": {}},
        {
            "name": "job",
            "label": "Job",
            "type": "query",
            "datasource": ds,
            "refresh": 2,
            "current": {},
            "query": {"query": "label_values(gatekeeper_replica_ready, job)", "refId": "job"},
            "definition": "label_values(gatekeeper_replica_ready, job)",
        },
        {
            "name": "instance",
            "label": "Instance",
            "type": "query",
            "datasource": ds,
            "refresh": 2,
            "current": {},
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "query": {"query": 'label_values(gatekeeper_replica_ready{job=~"$job"}, instance)', "refId": "instance"},
            "definition": 'label_values(gatekeeper_replica_ready{job=~"$job"}, instance)',
        },
    ]


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    height = 4 if panel.kind == "stat" else 8
    body: dict[str, Any] = {
        "id": pid,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": q.expr, "legendFormat": q.legend, "range": True}
            for i, q in enumerate(panel.queries)
        ],
    }
    body.update(panel.extra)
    return body


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    laid_out, x, y, row_height = [], 0, 0, 0
    for pid, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel(panel, pid, x, y))
        row_height = max(row_height, laid_out[-1]["gridPos"]["h"])
        x += panel.width
    return {
        "uid": uid,
        "title": title,
        "tags": ["gatekeeper"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "links": [{"title": "gatekeeper", "type": "dashboards", "tags": ["gatekeeper"], "asDropdown": False}],
        "panels": laid_out,
    }


def render() -> dict[pathlib.Path, str]:
    return {
        OUT / f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2, ensure_ascii=False) + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    files = render()
    if "--check" in argv:
        stale = [str(path) for path, text in files.items() if not path.exists() or path.read_text() != text]
        if stale:
            print(f"out of date (run python deploy/grafana/generate.py): {', '.join(stale)}", file=sys.stderr)
            return 1
        return 0
    OUT.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
