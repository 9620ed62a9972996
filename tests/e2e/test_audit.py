"""The file's audit trail: every write with its method, document, data version and caller identity."""

from __future__ import annotations

from gatekeeper.v1 import registry_pb2
from tests.conftest import Gatekeeper
from tests.e2e.builders import (
    HOSPITAL,
    OTHER_HOSPITAL,
    d,
    file_request,
    new_code,
    points,
    precondition,
    register,
    repair,
    rpc_error,
    sanction,
    withdraw,
)


def test_every_write_is_audited_with_method_document_and_caller(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    admin = gk.admin
    code = new_code()
    alice = [("x-operator", "alice")]

    decision = points(code, 9, "2025-03-10")
    fix = repair(code, "2025-04-01", shorten_days=5)
    external = sanction(code, "2025-09-01", "2025-10-01")
    writes = [
        ("RegisterPractitioner", admin.RegisterPractitioner(register(code), timeout=10), f"{HOSPITAL}", None),
        ("RecordPoints", admin.RecordPoints(decision, timeout=10, metadata=alice), decision.decision_no, "alice"),
        ("ApplyRepair", admin.ApplyRepair(fix, timeout=10), fix.repair_no, None),
        (
            "WithdrawPoints",
            admin.WithdrawPoints(
                withdraw(decision.decision_no, "2025-04-10"), timeout=10, metadata=[("x-operator", "bob")]
            ),
            decision.decision_no,
            "bob",
        ),
        (
            "ImportSanctions",
            admin.ImportSanctions(registry_pb2.ImportSanctionsRequest(sanctions=[external]), timeout=10),
            external.source_decision_no,
            None,
        ),
        (
            "EndRegistration",
            admin.EndRegistration(
                registry_pb2.EndRegistrationRequest(
                    practitioner_code=code, institution_code=HOSPITAL, ended_on=d("2025-12-01")
                ),
                timeout=10,
                metadata=alice,
            ),
            HOSPITAL,
            "alice",
        ),
    ]
    file = admin.GetPractitionerFile(file_request(code), timeout=10).file
    assert [entry.method for entry in file.audit] == [method for method, *_ in writes]
    for entry, (method, response, document, operator) in zip(file.audit, writes, strict=True):
        assert document in entry.document, (method, entry.document)
        assert entry.data_version == response.data_version, method
        assert entry.at.seconds > 0, method
        assert entry.actor.startswith("peer:"), entry.actor
        assert "127.0.0.1" in entry.actor, entry.actor
        if operator is None:
            assert "operator" not in entry.actor, entry.actor
        else:
            assert f"operator:{operator}" in entry.actor, entry.actor
    versions = [entry.data_version for entry in file.audit]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


def test_replays_and_refusals_leave_no_audit_entry(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    code = new_code()
    gk.admin.RegisterPractitioner(register(code), timeout=10)
    decision = points(code, 12, "2025-07-01")
    gk.admin.RecordPoints(decision, timeout=10)
    gk.admin.RecordPoints(decision, timeout=10)  # replay
    precondition(
        rpc_error(gk.admin.RegisterPractitioner, register(code, "2026-01-01", institution_code=OTHER_HOSPITAL))
    )
    precondition(rpc_error(gk.admin.ApplyRepair, repair(code, "2025-08-01", reduce_points=1)))
    file = gk.admin.GetPractitionerFile(file_request(code), timeout=10).file
    assert [entry.method for entry in file.audit] == ["RegisterPractitioner", "RecordPoints"]


def test_audit_is_kept_per_person_for_a_batch(shared_gatekeeper: Gatekeeper) -> None:
    gk = shared_gatekeeper
    first, second = new_code(), new_code()
    batch = registry_pb2.ImportSanctionsRequest(
        sanctions=[
            sanction(first, "2025-01-05"),
            sanction(second, "2025-02-05"),
            sanction(first, "2025-03-05", "2025-04-05"),
        ]
    )
    written = gk.admin.ImportSanctions(batch, timeout=10, metadata=[("x-operator", "linkage-job")])
    assert [f.practitioner_code for f in written.files] == [first, second]
    for code, count in ((first, 2), (second, 1)):
        audit = gk.admin.GetPractitionerFile(file_request(code), timeout=10).file.audit
        assert len(audit) == count
        assert {a.method for a in audit} == {"ImportSanctions"}
        assert {a.data_version for a in audit} == {written.data_version}
        assert all("operator:linkage-job" in a.actor for a in audit)
