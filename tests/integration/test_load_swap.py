"""`gatekeeper load FILE` against running in-process servers and the real Redis."""

from __future__ import annotations

import copy
import json
import pathlib
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.type.date_pb2 import Date

from cache.store import Store
from gatekeeper.v1 import eligibility_pb2, enums_pb2, registry_pb2
from tests.conftest import Gatekeeper
from tests.integration.helpers import (
    CLEAN,
    DATASET_A,
    DATASET_B,
    EXPECTED_A,
    EXPECTED_B,
    HOSPITAL,
    LINES,
    LINES_B,
    NEWCOMER,
    POLICY_ID,
    SUSPENDED,
    UNKNOWN,
    check,
    load,
    loaded_points_again,
    outcomes,
    poll,
    write_dataset,
)

UNKNOWN_REJECT = (enums_pb2.DECISION_REJECT, enums_pb2.REASON_UNKNOWN_PRACTITIONER)


def wait_version(gk: Gatekeeper, version: int, lines: Any = LINES) -> eligibility_pb2.CheckClaimResponse:
    def probe() -> eligibility_pb2.CheckClaimResponse | None:
        response = check(gk, lines)
        return response if response.data_version >= version else None

    return poll(probe, what=f"data_version >= {version}")


def test_running_servers_pick_up_a_load_without_restart(
    start_gatekeeper: Callable[..., Gatekeeper],
    redis_url: str,
    store: Store,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = start_gatekeeper(), start_gatekeeper()
    empty = check(first)
    assert empty.data_version == 0
    assert outcomes(empty) == [UNKNOWN_REJECT] * len(LINES)

    path_a = write_dataset(tmp_path / "a.jsonl", DATASET_A)
    assert load(redis_url, path_a) == 0
    assert f"loaded 3 people from {path_a} as data version 1 ({POLICY_ID})" in capsys.readouterr().out
    for gk in (first, second):
        response = wait_version(gk, 1)
        assert response.data_version == 1
        assert response.policy_id == POLICY_ID
        assert outcomes(response) == EXPECTED_A
        suspended = response.decisions[0]
        assert suspended.status == enums_pb2.PRACTITIONER_STATUS_SUSPENDED
        assert (suspended.status_since.year, suspended.status_since.month, suspended.status_since.day) == (2025, 3, 10)
        assert (suspended.status_until.year, suspended.status_until.month, suspended.status_until.day) == (2025, 5, 10)

    assert load(redis_url, write_dataset(tmp_path / "b.jsonl", DATASET_B)) == 0
    for gk in (first, second):
        response = wait_version(gk, 2, LINES_B)
        assert response.data_version == 2
        assert outcomes(response) == EXPECTED_B
        status = gk.check.GetPractitionerStatus(
            eligibility_pb2.GetPractitionerStatusRequest(practitioner_code=SUSPENDED), timeout=10
        )
        assert not status.known  # gone with dataset A
        assert status.data_version == 2
    assert store.version() == 2


def test_loaded_decision_numbers_are_indexed_for_admin_writes(
    gatekeeper: Gatekeeper, redis_url: str, tmp_path: pathlib.Path
) -> None:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    wait_version(gatekeeper, 1)

    # Recording a loaded number again is ALREADY_EXISTS: the load wrote it.
    with pytest.raises(grpc.RpcError) as error:
        gatekeeper.admin.RecordPoints(loaded_points_again(), timeout=10)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS

    # Withdrawing it finds the owner through the loaded index and lifts the suspension.
    written = gatekeeper.admin.WithdrawPoints(
        registry_pb2.WithdrawPointsRequest(
            decision_no="XZ-A-001", withdrawn_on=Date(year=2025, month=3, day=20), reason="appeal upheld"
        ),
        timeout=10,
    )
    assert written.data_version == 2
    response = check(gatekeeper, min_data_version=written.data_version)
    assert response.data_version >= 2
    assert outcomes(response)[0] == (enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)


def _bad_date(people: list[dict[str, Any]]) -> tuple[int, str]:
    people[0]["points"][0]["decided_on"] = "2025-02-30"
    return 1, "points[0].decided_on"


def _bad_registration_date(people: list[dict[str, Any]]) -> tuple[int, str]:
    people[1]["registrations"][0]["registered_on"] = "01/01/2024"
    return 2, "registrations[0].registered_on"


def _bad_practitioner_code(people: list[dict[str, Any]]) -> tuple[int, str]:
    people[2]["practitioner_code"] = "d54-0102"
    return 3, "practitioner_code"


def _bad_institution_code(people: list[dict[str, Any]]) -> tuple[int, str]:
    people[1]["registrations"][0]["institution_code"] = "X54010200001"
    return 2, "registrations[0].institution_code"


def _bad_points(people: list[dict[str, Any]]) -> tuple[int, str]:
    people[2]["points"][0]["points"] = 13
    return 3, "points[0].points"


def _duplicate_person(people: list[dict[str, Any]]) -> tuple[int, str]:
    people.append(copy.deepcopy(people[0]) | {"points": []})
    return 4, SUSPENDED


def _duplicate_decision_no(people: list[dict[str, Any]]) -> tuple[int, str]:
    people[2]["points"][0]["decision_no"] = people[0]["points"][0]["decision_no"]
    return 3, "XZ-A-001"


MALFORMED = {
    "bad-date": _bad_date,
    "bad-registration-date": _bad_registration_date,
    "bad-practitioner-code": _bad_practitioner_code,
    "bad-institution-code": _bad_institution_code,
    "points-out-of-range": _bad_points,
    "duplicate-person": _duplicate_person,
    "duplicate-decision-no": _duplicate_decision_no,
}


def live_state(store: Store) -> dict[str, Any]:
    keys = store.keys
    return {
        "snapshot": store.snapshot(),
        "ledgers": store.client.hgetall(keys.ledgers),
        "docs": store.client.hgetall(keys.docs),
        "meta": store.client.hgetall(keys.meta),
        "stream": store.client.xrange(keys.changes),
        "staging": sorted(store.client.keys(f"{keys.prefix}:*:staging:*")),
    }


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_dataset_is_refused_naming_line_and_field(
    case: str, redis_url: str, store: Store, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    before = live_state(store)
    capsys.readouterr()

    people = copy.deepcopy(DATASET_A)
    line, field = MALFORMED[case](people)
    bad = write_dataset(tmp_path / f"{case}.jsonl", people)

    assert load(redis_url, bad) != 0
    err = capsys.readouterr().err
    assert f"{bad}:{line}" in err, err
    assert field in err, err
    assert "Traceback" not in err
    assert live_state(store) == before


def test_a_line_that_is_not_json_is_refused(
    redis_url: str, store: Store, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.jsonl"
    bad.write_text(json.dumps(DATASET_A[0]) + "\n\n" + '{"practitioner_code": "D540102000002",\n', encoding="utf-8")
    assert load(redis_url, bad) != 0
    err = capsys.readouterr().err
    assert f"{bad}:3" in err
    assert "not JSON" in err
    assert store.version() == 0
    assert store.client.exists(store.keys.changes) == 0


def test_a_refused_load_leaves_the_running_server_on_the_old_data(
    gatekeeper: Gatekeeper, redis_url: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load(redis_url, write_dataset(tmp_path / "a.jsonl", DATASET_A)) == 0
    before = wait_version(gatekeeper, 1)

    # Dataset B with a bad date on its last line: the good lines before it must not be loaded either.
    people = copy.deepcopy(DATASET_B)
    people[-1]["registrations"][0]["registered_on"] = "2025-13-01"
    assert load(redis_url, write_dataset(tmp_path / "b.jsonl", people)) == 2
    assert "registrations[0].registered_on" in capsys.readouterr().err

    # A later good write proves the server is still following; it lands on top of dataset A.
    written = gatekeeper.admin.RegisterPractitioner(
        registry_pb2.RegisterPractitionerRequest(
            practitioner_code=UNKNOWN,
            institution_code=HOSPITAL,
            category=enums_pb2.PRACTITIONER_CATEGORY_DOCTOR,
            registered_on=Date(year=2024, month=1, day=1),
        ),
        timeout=10,
    )
    assert written.data_version == 2
    after = check(gatekeeper, [*LINES, (UNKNOWN, LINES[0][1])], min_data_version=2)
    assert after.data_version == 2
    assert outcomes(after) == [*outcomes(before), (enums_pb2.DECISION_ALLOW, enums_pb2.REASON_ELIGIBLE)]
    assert outcomes(check(gatekeeper, [(NEWCOMER, LINES[0][1])])) == [UNKNOWN_REJECT]
    assert outcomes(check(gatekeeper, [(CLEAN, LINES[0][1])])) == [EXPECTED_A[1]]


@pytest.mark.parametrize(
    "repair",
    [
        {"reduce_points": 2, "shorten_suspension_days": 10},
        {},
    ],
    ids=["both", "neither"],
)
def test_a_repair_must_give_exactly_one_of_reduce_and_shorten(
    repair: dict[str, int], redis_url: str, store: Store, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    people = copy.deepcopy(DATASET_A)
    people[0]["repairs"] = [{"repair_no": "R-1", "approved_on": "2025-04-01", "basis": "training", **repair}]
    bad = write_dataset(tmp_path / "repair.jsonl", people)

    assert load(redis_url, bad) != 0
    err = capsys.readouterr().err
    assert f"{bad}:1" in err
    assert "repairs[0]" in err
    assert store.version() == 0
