"""`gatekeeper recheck` and `gatekeeper simulate` end to end: a real server writes its decision log,
the agency writes over gRPC, and the tools read Redis and the log (read-only)."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable

import pytest

from gatekeeper.v1 import enums_pb2
from service.cli.main import main as cli_main
from service.rules.profile import PROFILE_DIR
from tests.conftest import Gatekeeper
from tests.e2e.builders import HOSPITAL, claim, line, new_code, points, register, withdraw


def _wait_for_lines(path: pathlib.Path, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and sum(1 for _ in path.open()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the decision log never had {count} claims")


def test_recheck_lists_a_line_an_upheld_appeal_makes_payable(
    start_gatekeeper: Callable[..., Gatekeeper], redis_url: str, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    log = tmp_path / "decisions.jsonl"
    gk = start_gatekeeper(decision_log="rejects", decision_log_file=str(log))
    code, other = new_code(), new_code()
    for person in (code, other):
        gk.admin.RegisterPractitioner(register(person, "2024-01-01"), timeout=10)
    decision = points(code, 9, "2025-03-10")
    gk.admin.RecordPoints(decision, timeout=10)
    gk.admin.RecordPoints(points(other, 9, "2025-03-10"), timeout=10)
    answer = gk.check.CheckClaim(
        claim(line("a", code, "2025-04-01"), line("b", other, "2025-04-01"), line("c", code, "2025-06-01")),
        timeout=10,
    )
    assert [d.decision for d in answer.decisions] == [enums_pb2.DECISION_REJECT, enums_pb2.DECISION_REJECT, enums_pb2.DECISION_ALLOW]  # fmt: skip
    _wait_for_lines(log, 1)
    withdrawn = gk.admin.WithdrawPoints(withdraw(decision.decision_no, "2025-09-01"), timeout=10)

    monkeypatch.setenv("GATEKEEPER_REDIS_URL", redis_url)
    monkeypatch.setenv("GATEKEEPER_PROFILE", "xizang")
    assert cli_main(["recheck", "--format", "json", str(log)]) == 0
    rows = json.loads(capsys.readouterr().out)
    mine = [r for r in rows if r["claim_id"] == answer.claim_id and r["practitioner_code"] in (code, other)]
    assert mine == [
        {
            "claim_id": answer.claim_id,
            "line_id": "a",
            "institution_code": HOSPITAL,
            "service_date": "2025-04-01",
            "practitioner_code": code,
            "was": "REJECT/SUSPENDED",
            "now": "ALLOW/ELIGIBLE",
            "decided_at_version": str(answer.data_version),
            "changed_by": f"withdraw:{decision.decision_no}",
        }
    ]
    assert withdrawn.data_version > answer.data_version
    # --since leaves out lines served before it.
    assert cli_main(["recheck", "--format", "csv", "--since", "2025-05-01", str(log)]) == 0
    assert code not in capsys.readouterr().out


def test_simulate_reports_a_known_person_a_draft_would_suspend(
    gatekeeper: Gatekeeper, redis_url: str, tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    code = new_code()
    gatekeeper.admin.RegisterPractitioner(register(code, "2024-01-01"), timeout=10)
    gatekeeper.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)  # 2 months: to 2025-05-10
    draft = tmp_path / "draft.toml"
    national = (PROFILE_DIR / "national.toml").read_text()
    draft.write_text(
        national.replace("{ 9 = 2, 10 = 4, 11 = 6 }", "{ 9 = 3, 10 = 4, 11 = 6 }")
        .replace('id = "national"', 'id = "draft"')
        .replace('version = "2025.1"', 'version = "2026.1"')
    )
    monkeypatch.setenv("GATEKEEPER_REDIS_URL", redis_url)
    args = ["simulate", "--profile", str(draft), "--active", "national", "--on", "2025-05-20", "--format", "json"]
    assert cli_main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["active"] == "national@2025.1"
    assert report["draft"] == "draft@2026.1"
    mine = [p for p in report["changed_people"] if p["practitioner_code"] == code]
    assert mine == [
        {
            "practitioner_code": code,
            "status_active": "NORMAL",
            "status_draft": "SUSPENDED",
            "suspended_days_active": "61",
            "suspended_days_draft": "92",
        }
    ]
    assert report["transitions"]["NORMAL -> SUSPENDED"] >= 1
    assert report["suspended_days_gained"] >= 31
