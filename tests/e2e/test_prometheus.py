"""Dashboards and alert rules against a real Prometheus scraping real `gatekeeper serve` processes.

Every expression of every dashboard panel and every rule is sent to Prometheus's HTTP API: it must
parse, and (template variables substituted) return at least one series once the traffic has run a
few scrapes. An alert's expression returns nothing while all is well, so its operands are asked
instead (tests/promql.py). Nothing sleeps a fixed time: each condition is polled to a deadline.
"""

from __future__ import annotations

import pathlib
import re
import time
from collections.abc import Iterator

import pytest

from loadtest.dashboard_png import render
from loadtest.stack import JOB, Prometheus, Running, dashboards, observed_stack, panel_queries, rules, wait_until
from tests.promql import operands

DEADLINE = 90.0  # seconds for every expression to have shown a series; a healthy run needs about 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with observed_stack(tmp_path_factory.mktemp("observed"), traffic_seconds=240) as running:
        yield running


def _series_count(prometheus: Prometheus, expr: str) -> int:
    answer = prometheus.query(expr)
    assert answer["status"] == "success", f"{expr}\n-> {answer.get('errorType')}: {answer.get('error')}"
    result = answer["data"]["result"]
    return len(result) if isinstance(result, list) else 1  # a scalar counts as one


def _all_return_series(prometheus: Prometheus, exprs: dict[str, str]) -> None:
    """Poll until every expression has returned a series at least once; fail naming the others."""
    waiting = dict(exprs)
    deadline = time.monotonic() + DEADLINE
    while waiting and time.monotonic() < deadline:
        waiting = {name: e for name, e in waiting.items() if _series_count(prometheus, e) == 0}
        if waiting:
            time.sleep(0.5)  # a poll interval, not a wait for something to happen
    assert not waiting, "no series within the deadline:\n" + "\n".join(f"{n}: {e}" for n, e in waiting.items())


def test_the_scraped_processes_are_up(stack: Running) -> None:
    # Every process is scraped in its own time: wait for all of them, not just the first.
    expr = f'up{{job="{JOB}"}} == 1'
    wait_until(lambda: _series_count(stack.prometheus, expr) == len(stack.gatekeepers), 60, "every process up")


def test_every_dashboard_query_returns_series(stack: Running) -> None:
    exprs = {
        f"{uid} / {title} / {legend}": expr
        for uid, dashboard in dashboards().items()
        for title, legend, expr in panel_queries(dashboard)
    }
    assert len(exprs) >= 30
    _all_return_series(stack.prometheus, exprs)


def test_template_variables_find_the_job_and_its_instances(stack: Running) -> None:
    for dashboard in dashboards().values():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
            assert match, variable
            selector, label = match.group(1).replace("$job", JOB), match.group(2)
            answer = stack.prometheus.api("series", **{"match[]": selector})
            values = {s[label] for s in answer["data"]}
            expected = {JOB} if label == "job" else {g.metrics_target for g in stack.gatekeepers}
            assert values == expected, (variable["name"], values)


def test_every_rule_expression_parses_and_its_operands_return_series(stack: Running) -> None:
    exprs: dict[str, str] = {}
    for rule in rules():
        name = rule.get("alert") or rule["record"]
        _series_count(stack.prometheus, rule["expr"])  # parses and runs
        if "record" in rule:
            exprs[name] = rule["expr"]
            exprs[f"{name} (recorded)"] = rule["record"]
        else:
            for i, operand in enumerate(operands(rule["expr"])):
                exprs[f"{name} operand {i}"] = operand
    assert sum(1 for r in rules() if "alert" in r) >= 7
    _all_return_series(stack.prometheus, exprs)


def test_prometheus_evaluates_the_rules_without_errors(stack: Running) -> None:
    def evaluated() -> list[dict[str, object]]:
        groups = stack.prometheus.api("rules")["data"]["groups"]
        return [rule for group in groups for rule in group["rules"]]

    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and any(r.get("lastEvaluation", "").startswith("0001") for r in evaluated()):
        time.sleep(0.5)
    loaded = evaluated()
    assert {r["name"] for r in loaded} == {r.get("alert") or r["record"] for r in rules()}
    assert all(r["health"] == "ok" for r in loaded), [(r["name"], r.get("lastError")) for r in loaded]
    firing = {r["name"] for r in loaded if r.get("state") == "firing"}
    assert not firing & {"GatekeeperDown", "GatekeeperHighErrorRatio", "GatekeeperRedisDown", "GatekeeperNotReady"}


def test_overview_picture_is_drawn_from_the_results(stack: Running, tmp_path: pathlib.Path) -> None:
    test_every_dashboard_query_returns_series(stack)  # data is there to draw
    out = tmp_path / "overview.png"
    end = time.time()
    drawn = render(stack.prometheus, dashboards()["gatekeeper-overview"], out, end - 30, end)
    assert drawn >= 10
    assert out.read_bytes().startswith(b"\x89PNG")
