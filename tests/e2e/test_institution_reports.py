"""Institution reports over gRPC and from the CLI, on the demo data (national profile)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import grpc
import pytest
from google.type.date_pb2 import Date

from cache.store import Store, connect
from gatekeeper.v1 import enums_pb2, registry_pb2
from service.app import load_demo
from service.rules.profile import load_profile
from tests.conftest import ROOT, Gatekeeper

FLAG = registry_pb2.InstitutionFlag


@pytest.fixture
def demo(redis_url: str, start_gatekeeper: Callable[..., Gatekeeper]) -> Gatekeeper:
    load_demo(Store(connect(redis_url)), load_profile("national"))
    return start_gatekeeper(profile="national")


def test_institution_report_of_a_year(demo: Gatekeeper) -> None:
    response = demo.admin.ListInstitutionReports(registry_pb2.ListInstitutionReportsRequest(year=2025), timeout=10)
    rows = [(r.institution_code, r.registered_staff, r.sanctioned_staff, r.sanctioned_share, r.flag)
            for r in response.reports]  # fmt: skip
    assert rows == [
        ("H51010500001", 6, 3, 0.5, FLAG.INSTITUTION_FLAG_SUSPENDED_AGREEMENT),
        ("H51010500002", 1, 0, 0.0, FLAG.INSTITUTION_FLAG_NONE),
        ("P51010500001", 2, 0, 0.0, FLAG.INSTITUTION_FLAG_NONE),
    ]
    assert (response.withheld_settlement_share, response.suspended_agreement_share) == (0.2, 0.5)
    assert response.policy_id == "national@2025.1"
    assert response.data_version == 1


def test_region_and_bad_requests(demo: Gatekeeper) -> None:
    request = registry_pb2.ListInstitutionReportsRequest(year=2026, region="5101")
    flags = {r.institution_code: r.flag for r in demo.admin.ListInstitutionReports(request, timeout=10).reports}
    assert flags == {
        "P51010500001": FLAG.INSTITUTION_FLAG_SUSPENDED_AGREEMENT,  # 1 of 2 (a cross-region suspension)
        "H51010500001": FLAG.INSTITUTION_FLAG_WITHHELD_SETTLEMENT,  # 1 of 4
        "H51010500002": FLAG.INSTITUTION_FLAG_NONE,
    }
    assert not demo.admin.ListInstitutionReports(
        registry_pb2.ListInstitutionReportsRequest(year=2025, region="44"), timeout=10
    ).reports
    with pytest.raises(grpc.RpcError) as error:
        demo.admin.ListInstitutionReports(registry_pb2.ListInstitutionReportsRequest(region="Sichuan"), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as error:
        demo.admin.ListInstitutionStaff(registry_pb2.ListInstitutionStaffRequest(institution_code="X1"), timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_an_institutions_staff(demo: Gatekeeper) -> None:
    request = registry_pb2.ListInstitutionStaffRequest(
        institution_code="H51010500001", date=Date(year=2025, month=8, day=1)
    )
    staff = {s.practitioner_code: s for s in demo.admin.ListInstitutionStaff(request, timeout=10).staff}
    assert len(staff) == 6
    terminated = staff["D510105000789"]
    assert terminated.status == enums_pb2.PRACTITIONER_STATUS_TERMINATED
    assert terminated.registered is False
    assert (terminated.reregistration_allowed_from.year, terminated.points_this_year) == (2028, 12)
    suspended = staff["D510105000999"]
    assert suspended.status == enums_pb2.PRACTITIONER_STATUS_SUSPENDED
    assert (suspended.status_since.month, suspended.status_until.month) == (6, 8)


def test_the_cli_prints_both_reports(demo: Gatekeeper) -> None:
    def admin(*args: str) -> str:
        command = [sys.executable, "-m", "service.cli.main", "admin", "--target", f"127.0.0.1:{demo.admin_port}", *args]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
        return result.stdout

    institutions = admin("institutions", "--year", "2025")
    assert "H51010500001  6      3           50.0%  SUSPENDED_AGREEMENT" in institutions
    staff = admin("staff", "H51010500001", "--date", "2025-08-01")
    assert (
        "D510105000789  DOCTOR    2024-01-01  -           no        TERMINATED  2025-07-01  -           12      2028-07-01"
        in staff
    )
