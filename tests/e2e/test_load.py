"""`gatekeeper load FILE` against a running server: one atomic swap, picked up without a restart.

A load replaces the whole dataset, so this module has its own server and Redis (the shared
module fixtures); every test loads only the people it checks.
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

import grpc
import pytest

from cache.embedded import EmbeddedRedis
from service.cli import main as cli
from tests.conftest import Gatekeeper
from tests.e2e.builders import (
    HOSPITAL,
    dated_claim,
    file_request,
    new_code,
    new_doc,
    outcomes,
    points,
    register,
    rpc_error,
    timeline,
    withdraw,
)


def load(
    capsys: pytest.CaptureFixture[str], redis_server: EmbeddedRedis, path: pathlib.Path, people: list[dict[str, Any]]
) -> tuple[int, str, str]:
    path.write_text("".join(json.dumps(person, ensure_ascii=False) + "\n" for person in people), encoding="utf-8")
    # The module's Redis holds other tests' admin writes and more people: replacing them is the point here
    # (the guards against that are tested in tests/integration/test_data_loss.py).
    flags = ["--allow-shrink", "--discard-agency-writes"]
    status = cli.main(["load", str(path), "--redis-url", redis_server.url, "--profile", "xizang", *flags])
    out, err = capsys.readouterr()
    return status, out, err


def loaded_version(out: str) -> int:
    match = re.search(r"as data version (\d+) \(xizang@2025\.1\)", out)
    assert match, out
    return int(match.group(1))


def person(code: str, decision_no: str, **extra: Any) -> dict[str, Any]:
    return {
        "practitioner_code": code,
        "registrations": [{"institution_code": HOSPITAL, "category": "doctor", "registered_on": "2025-01-01"}],
        "points": [
            {"decision_no": decision_no, "institution_code": HOSPITAL, "points": 9, "responsibility": "main",
             "decided_on": "2025-03-10"}
        ],
        **extra,
    }  # fmt: skip


def test_load_replaces_the_data_of_a_running_server(
    shared_gatekeeper: Gatekeeper,
    module_redis: EmbeddedRedis,
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
) -> None:
    gk = shared_gatekeeper
    old = new_code()
    gk.admin.RegisterPractitioner(register(old), timeout=10)
    before = gk.admin.RecordPoints(points(old, 9, "2025-03-10"), timeout=10)

    code, external = new_code(), new_code()
    number = new_doc("LOAD")
    status, out, err = load(
        capsys,
        module_redis,
        tmp_path / "people.jsonl",
        [
            person(code, number),
            {"practitioner_code": external, "status_periods": [{"status": "suspended", "since": "2025-05-01", "until": "2025-06-01", "origin": "四川"}]},
        ],
    )  # fmt: skip
    assert status == 0, err
    assert "loaded 2 people" in out
    version = loaded_version(out)
    assert version == before.data_version + 1

    response = gk.check.CheckClaim(
        dated_claim(code, ["2025-03-09", "2025-03-10", "2025-05-10"], min_data_version=version), timeout=10
    )
    assert response.data_version >= version
    assert [x[:2] for x in outcomes(response).values()] == [
        ("ALLOW", "ELIGIBLE"),
        ("REJECT", "SUSPENDED"),
        ("ALLOW", "ELIGIBLE"),
    ]
    response = gk.check.CheckClaim(dated_claim(external, ["2025-05-15"], min_data_version=version), timeout=10)
    assert outcomes(response)["2025-05-15"][:2] == ("REJECT", "SUSPENDED")

    # The load is a full replacement: the person written before it is gone.
    response = gk.check.CheckClaim(dated_claim(old, ["2025-03-10"], min_data_version=version), timeout=10)
    assert outcomes(response)["2025-03-10"][:2] == ("REJECT", "UNKNOWN_PRACTITIONER")
    assert rpc_error(gk.admin.GetPractitionerFile, file_request(old)).code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]

    # Loaded decision numbers are indexed: withdrawing works, recording the number again does not.
    error = rpc_error(gk.admin.RecordPoints, points(code, 9, "2025-03-10", decision_no=number))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS  # type: ignore[attr-defined]
    withdrawn = gk.admin.WithdrawPoints(withdraw(number, "2025-04-01"), timeout=10)
    assert timeline(withdrawn.file) == []
    response = gk.check.CheckClaim(
        dated_claim(code, ["2025-03-10"], min_data_version=withdrawn.data_version), timeout=10
    )
    assert outcomes(response)["2025-03-10"][:2] == ("ALLOW", "ELIGIBLE")


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"practitioner_code": "bad code"}, "practitioner_code"),
        ({"practitioner_code": "D540102000009", "points": [{"decision_no": "N1", "institution_code": HOSPITAL, "points": 13, "decided_on": "2025-03-10"}]}, "points[0].points"),
        ({"practitioner_code": "D540102000009", "registrations": [{"institution_code": HOSPITAL, "registered_on": "2025-02-30"}]}, "registrations[0].registered_on"),
    ],
    ids=["code", "points", "date"],
)  # fmt: skip
def test_a_bad_line_loads_nothing(
    shared_gatekeeper: Gatekeeper,
    module_redis: EmbeddedRedis,
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
    bad: dict[str, Any],
    where: str,
) -> None:
    gk = shared_gatekeeper
    code = new_code()
    written = gk.admin.RegisterPractitioner(register(code), timeout=10)
    path = tmp_path / "bad.jsonl"
    status, out, err = load(capsys, module_redis, path, [person(new_code(), new_doc("LOAD")), bad])
    assert status == 2
    assert out == ""
    assert f"{path}:2" in err
    assert where in err
    file = gk.admin.GetPractitionerFile(file_request(code), timeout=10)
    assert file.data_version == written.data_version


@pytest.mark.parametrize(
    "effects",
    [{"reduce_points": 1, "shorten_suspension_days": 5}, {}, {"reduce_points": 0}],
    ids=["both", "none", "zero"],
)
def test_a_loaded_repair_has_exactly_one_positive_effect(
    shared_gatekeeper: Gatekeeper,
    module_redis: EmbeddedRedis,
    capsys: pytest.CaptureFixture[str],
    tmp_path: pathlib.Path,
    effects: dict[str, int],
) -> None:
    """docs/dataset.md: `repairs[]` carry exactly one of reduce_points and shorten_suspension_days (both, none or
    a zero amount would be a repair the API refuses)."""
    gk = shared_gatekeeper
    code = new_code()
    written = gk.admin.RegisterPractitioner(register(code), timeout=10)
    loaded = person(new_code(), new_doc("LOAD"), repairs=[{"repair_no": "R-1", "approved_on": "2025-04-01", **effects}])
    status, _, err = load(capsys, module_redis, tmp_path / "repair.jsonl", [loaded])
    assert status == 2, "a repair without exactly one positive effect was loaded"
    assert "repairs[0]" in err
    # Nothing loaded: the person written before is still there, at the same version.
    assert gk.admin.GetPractitionerFile(file_request(code), timeout=10).data_version == written.data_version
