"""The `gatekeeper` CLI (service.cli.main) against a running server over real gRPC."""

from __future__ import annotations

import json
import pathlib

import pytest

from service.cli import main as cli
from tests.conftest import Gatekeeper
from tests.e2e.builders import HOSPITAL, dated_claim, file_request, new_code, new_doc, points, register


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def suspended(shared_gatekeeper: Gatekeeper) -> str:
    """Registered at HOSPITAL, suspended [2025-03-10, 2025-05-10); the check replica already has it."""
    gk = shared_gatekeeper
    code = new_code()
    gk.admin.RegisterPractitioner(register(code), timeout=10)
    written = gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
    gk.check.CheckClaim(dated_claim(code, ["2025-03-10"], min_data_version=written.data_version), timeout=10)
    return code


def test_check_prints_a_table_with_the_rejection(
    shared_gatekeeper: Gatekeeper, suspended: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{shared_gatekeeper.check_port}"
    status, out, err = run(capsys, "check", "--target", target, "-p", suspended, "-i", HOSPITAL, "-d", "2025-03-10")
    assert status == 0, err
    assert "REJECT" in out
    assert "SUSPENDED" in out
    assert suspended in out
    assert "2025-03-10" in out
    assert "2025-05-10" in out
    assert "xizang@2025.1" in out
    header = next(row for row in out.splitlines() if row.startswith("line"))
    assert header.split() == ["line", "decision", "reason", "person", "status", "since", "until"]


def test_check_emergency_and_json_output(
    shared_gatekeeper: Gatekeeper, suspended: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{shared_gatekeeper.check_port}"
    argv = ["check", "--target", target, "-p", suspended, "-i", HOSPITAL, "-d", "2025-04-01", "--care", "emergency"]
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    (decision,) = json.loads(out)["decisions"]
    assert decision["decision"] == "DECISION_ALLOW"
    assert decision["reason"] == "REASON_EMERGENCY_EXCEPTION"
    assert decision["status"] == "PRACTITIONER_STATUS_SUSPENDED"
    assert decision["status_until"] == {"year": 2025, "month": 5, "day": 10}


def test_check_from_a_claim_file(
    shared_gatekeeper: Gatekeeper, suspended: str, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    claim_file = tmp_path / "claim.json"
    claim_file.write_text(
        json.dumps(
            {
                "claimId": "from-file",
                "institutionCode": HOSPITAL,
                "lines": [
                    {"lineId": "a", "practitionerCode": suspended, "serviceDate": {"year": 2025, "month": 3, "day": 9}},
                    {"lineId": "b", "practitionerCode": suspended, "serviceDate": {"year": 2025, "month": 5, "day": 9}},
                ],
            }
        )
    )
    target = f"127.0.0.1:{shared_gatekeeper.check_port}"
    status, out, err = run(capsys, "check", "--target", target, "--file", str(claim_file))
    assert status == 0, err
    rows = {row.split()[0]: row.split() for row in out.splitlines() if row.split() and row.split()[0] in ("a", "b")}
    assert rows["a"][1:3] == ["ALLOW", "ELIGIBLE"]
    assert rows["b"][1:3] == ["REJECT", "SUSPENDED"]


def test_status_prints_a_readable_line(
    shared_gatekeeper: Gatekeeper, suspended: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{shared_gatekeeper.check_port}"
    status, out, err = run(capsys, "status", "--target", target, suspended, "-d", "2025-04-01", "-i", HOSPITAL)
    assert status == 0, err
    assert suspended in out
    assert "SUSPENDED" in out
    assert "2025-03-10" in out
    assert "2025-05-10" in out
    assert "registered=True" in out

    unknown = new_code()
    status, out, err = run(capsys, "status", "--target", target, unknown, "-d", "2025-04-01")
    assert status == 0, err
    assert unknown in out
    assert "no record" in out


def test_admin_file_prints_the_file(
    shared_gatekeeper: Gatekeeper, suspended: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{shared_gatekeeper.admin_port}"
    status, out, err = run(capsys, "admin", "--target", target, "file", suspended)
    assert status == 0, err
    assert f"file of {suspended}" in out
    assert "2025: 9" in out
    for section in ("timeline", "registrations", "points", "audit"):
        assert section in out.splitlines(), section
    assert "SUSPENDED" in out
    assert "RecordPoints" in out
    assert "RegisterPractitioner" in out
    assert HOSPITAL in out


def test_admin_writes_from_the_terminal_are_audited_with_the_operator(
    shared_gatekeeper: Gatekeeper, capsys: pytest.CaptureFixture[str]
) -> None:
    gk = shared_gatekeeper
    target = f"127.0.0.1:{gk.admin_port}"
    code = new_code()
    number = new_doc("XZ-CLI")
    admin = ["admin", "--target", target, "--operator", "zhang.san"]
    status, out, err = run(capsys, *admin, "register", code, HOSPITAL, "--on", "2025-01-01", "--category", "pharmacist")
    assert status == 0, err
    status, out, err = run(capsys, *admin, "points", number, code, HOSPITAL, "10", "--on", "2025-03-01")
    assert status == 0, err
    assert "data version" in out
    assert "2025-07-01" in out  # 10 points: 4 months
    file = gk.admin.GetPractitionerFile(file_request(code), timeout=10).file
    assert [a.method for a in file.audit] == ["RegisterPractitioner", "RecordPoints"]
    assert all("operator:zhang.san" in a.actor for a in file.audit)


def test_check_with_bad_input_exits_1_and_names_the_fields(
    shared_gatekeeper: Gatekeeper, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"127.0.0.1:{shared_gatekeeper.check_port}"
    status, out, err = run(capsys, "check", "--target", target, "-p", "d-1", "-i", "H1", "-d", "2025-03-10")
    assert status == 1
    assert out == ""
    assert "INVALID_ARGUMENT" in err
    assert "lines[0].practitioner_code" in err
    assert "institution_code" in err


def test_check_file_with_an_impossible_date_exits_1(
    shared_gatekeeper: Gatekeeper, capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    claim_file = tmp_path / "claim.json"
    claim_file.write_text(
        json.dumps(
            {
                "claimId": "c",
                "institutionCode": HOSPITAL,
                "lines": [
                    {"lineId": "a", "practitionerCode": "D540102", "serviceDate": {"year": 2025, "month": 3, "day": 9}},
                    {
                        "lineId": "a",
                        "practitionerCode": "D540102",
                        "serviceDate": {"year": 2025, "month": 2, "day": 30},
                    },
                ],
            }
        )
    )
    target = f"127.0.0.1:{shared_gatekeeper.check_port}"
    status, _, err = run(capsys, "check", "--target", target, "--file", str(claim_file))
    assert status == 1
    assert "lines[1].service_date" in err
    assert "lines[1].line_id" in err


def test_status_with_bad_input_exits_1(shared_gatekeeper: Gatekeeper, capsys: pytest.CaptureFixture[str]) -> None:
    target = f"127.0.0.1:{shared_gatekeeper.check_port}"
    status, _, err = run(capsys, "status", "--target", target, "bad-code", "-i", "X")
    assert status == 1
    assert "practitioner_code" in err
    assert "institution_code" in err


def test_admin_errors_exit_1_with_details(shared_gatekeeper: Gatekeeper, capsys: pytest.CaptureFixture[str]) -> None:
    gk = shared_gatekeeper
    target = f"127.0.0.1:{gk.admin_port}"
    code = new_code()
    status, _, err = run(
        capsys, "admin", "--target", target, "points", new_doc(), code, HOSPITAL, "13", "--on", "2025-03-01"
    )
    assert status == 1
    assert "INVALID_ARGUMENT" in err
    assert '"points"' in err

    gk.admin.RegisterPractitioner(register(code), timeout=10)
    gk.admin.RecordPoints(points(code, 12, "2025-07-01"), timeout=10)
    status, _, err = run(capsys, "admin", "--target", target, "register", code, HOSPITAL, "--on", "2026-01-01")
    assert status == 1
    assert "FAILED_PRECONDITION" in err
    assert "2028-07-01" in err

    status, _, err = run(capsys, "admin", "--target", target, "file", new_code())
    assert status == 1
    assert "NOT_FOUND" in err
