"""Regional rules are data: the same facts decided under other profiles (bundled or a TOML file)."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from cache.embedded import EmbeddedRedis
from gatekeeper.v1 import enums_pb2
from service import app
from service.rules.profile import resolve_path
from tests.conftest import Gatekeeper, connect_gatekeeper, make_settings, wait_serving
from tests.e2e.builders import (
    HOSPITAL,
    OTHER_HOSPITAL,
    claim,
    dated_claim,
    line,
    new_code,
    outcome,
    outcomes,
    points,
    poll,
    register,
)


def test_national_exception_covers_suspension_only(start_gatekeeper: Callable[..., Gatekeeper]) -> None:
    gk = start_gatekeeper(profile="national")
    suspended, terminated = new_code(), new_code()
    for code in (suspended, terminated):
        gk.admin.RegisterPractitioner(register(code), timeout=10)
    gk.admin.RecordPoints(points(suspended, 9, "2025-03-10"), timeout=10)
    written = gk.admin.RecordPoints(points(terminated, 12, "2025-03-10"), timeout=10)
    request = claim(
        line("s", suspended, "2025-03-10", care_type=enums_pb2.CARE_TYPE_EMERGENCY),
        line("t", terminated, "2025-03-10", care_type=enums_pb2.CARE_TYPE_EMERGENCY),
        line("t13", terminated, "2025-03-10", med_type="13"),
        min_data_version=written.data_version,
    )
    response = gk.check.CheckClaim(request, timeout=10)
    assert response.policy_id == "national@2025.1"
    assert outcomes(response) == {
        "s": ("ALLOW", "EMERGENCY_EXCEPTION", "SUSPENDED", "2025-03-10", "2025-05-10"),
        "t": ("REJECT", "TERMINATED", "TERMINATED", "2025-03-10", None),
        "t13": ("REJECT", "TERMINATED", "TERMINATED", "2025-03-10", None),
    }


def test_profile_file_decides_unknown_and_unregistered_people(
    start_gatekeeper: Callable[..., Gatekeeper], tmp_path: pathlib.Path
) -> None:
    text = resolve_path("xizang").read_text(encoding="utf-8")
    text = text.replace('id = "xizang"', 'id = "phase-in"')
    text = text.replace('unknown_practitioner = "reject"', 'unknown_practitioner = "review"')
    text = text.replace('not_registered = "reject"', 'not_registered = "allow"')
    profile = tmp_path / "phase-in.toml"
    profile.write_text(text, encoding="utf-8")
    gk = start_gatekeeper(profile=str(profile))

    known = new_code()
    written = gk.admin.RegisterPractitioner(register(known, institution_code=OTHER_HOSPITAL), timeout=10)
    stranger = new_code()
    request = claim(
        line("unregistered", known, "2025-03-10"),
        line("unknown", stranger, "2025-03-10"),
        line("both", known, "2025-03-10", dispenser_code=stranger),  # REVIEW is worse than ALLOW
        institution_code=HOSPITAL,
        min_data_version=written.data_version,
    )
    response = gk.check.CheckClaim(request, timeout=10)
    assert response.policy_id == "phase-in@2025.1"
    got = {d.line_id: (*outcome(d)[:2], d.practitioner_code) for d in response.decisions}
    assert got == {
        "unregistered": ("ALLOW", "NOT_REGISTERED", known),
        "unknown": ("REVIEW", "UNKNOWN_PRACTITIONER", stranger),
        "both": ("REVIEW", "UNKNOWN_PRACTITIONER", stranger),
    }


def test_redis_gone_longer_than_the_staleness_bound_means_review(tmp_path: pathlib.Path) -> None:
    """Redis going away never slows or breaks a check: the replica only grows older, and once it is older than
    the profile's bound (1 s here) lines go to REVIEW/STALE_DATA; when Redis is back, decisions come back."""
    text = (
        resolve_path("xizang").read_text(encoding="utf-8").replace("staleness_seconds = 300", "staleness_seconds = 1")
    )
    profile = tmp_path / "strict.toml"
    profile.write_text(text, encoding="utf-8")
    redis_server = EmbeddedRedis(tmp_path / "redis", appendonly=True).start()  # AOF: the data survives the restart
    handle = app.start(make_settings(redis_server.url, profile=str(profile)), registry=CollectorRegistry())
    gk = connect_gatekeeper(handle.check_port, handle.admin_port)
    try:
        wait_serving(handle.check_port)
        code = new_code()
        gk.admin.RegisterPractitioner(register(code), timeout=10)
        written = gk.admin.RecordPoints(points(code, 9, "2025-03-10"), timeout=10)
        fresh = ("REJECT", "SUSPENDED")
        assert first_line(gk, code, written.data_version) == fresh

        redis_server.stop()
        poll(lambda: first_line(gk, code) == ("REVIEW", "STALE_DATA"), timeout=30)

        redis_server.start()
        poll(lambda: first_line(gk, code) == fresh, timeout=30)
    finally:
        gk.close()
        handle.stop()
        redis_server.stop()


def first_line(gk: Gatekeeper, code: str, version: int = 0) -> tuple[str, str]:
    (decision,) = gk.check.CheckClaim(dated_claim(code, ["2025-03-10"], min_data_version=version), timeout=10).decisions
    got = outcome(decision)
    if got[:2] == ("REVIEW", "STALE_DATA"):
        assert got[2:] == ("UNSPECIFIED", None, None), "a stale answer must not show a status"
    return got[0], got[1]
