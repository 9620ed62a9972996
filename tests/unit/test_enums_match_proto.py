"""The domain IntEnums carry exactly the numbers and names of the gatekeeper.v1 proto enums.

Converting at the gRPC edge is a plain ``int()``, so any drift here would silently mislabel decisions.
Only the proto ``*_UNSPECIFIED`` zero values are absent on the Python side, except for ``CareType``, whose
``UNSPECIFIED`` is a real request value (treated as routine, see med_type).
"""

from __future__ import annotations

import enum

import pytest

from domain.values import CareType, Decision, Reason, Status
from gatekeeper.v1 import enums_pb2

# domain enum, proto enum name, proto value prefix, whether the Python enum keeps UNSPECIFIED = 0
PAIRS = [
    pytest.param(Status, "PractitionerStatus", "PRACTITIONER_STATUS_", False, id="Status"),
    pytest.param(Decision, "Decision", "DECISION_", False, id="Decision"),
    pytest.param(Reason, "Reason", "REASON_", False, id="Reason"),
    pytest.param(CareType, "CareType", "CARE_TYPE_", True, id="CareType"),
]


def proto_values(proto_name: str) -> dict[str, int]:
    descriptor = enums_pb2.DESCRIPTOR.enum_types_by_name[proto_name]
    return {value.name: value.number for value in descriptor.values}


@pytest.mark.parametrize(("py_enum", "proto_name", "prefix", "keeps_unspecified"), PAIRS)
def test_names_and_numbers_match(
    py_enum: type[enum.IntEnum], proto_name: str, prefix: str, keeps_unspecified: bool
) -> None:
    proto = proto_values(proto_name)
    expected = {name.removeprefix(prefix): number for name, number in proto.items()}
    if not keeps_unspecified:
        assert expected.pop("UNSPECIFIED") == 0
    assert {member.name: member.value for member in py_enum} == expected


@pytest.mark.parametrize(("py_enum", "proto_name", "prefix", "keeps_unspecified"), PAIRS)
def test_every_proto_value_name_has_the_prefix_and_zero_is_unspecified(
    py_enum: type[enum.IntEnum], proto_name: str, prefix: str, keeps_unspecified: bool
) -> None:
    proto = proto_values(proto_name)
    assert all(name.startswith(prefix) for name in proto)
    assert proto[f"{prefix}UNSPECIFIED"] == 0
    assert (0 in {m.value for m in py_enum}) is keeps_unspecified


@pytest.mark.parametrize(("py_enum", "proto_name", "prefix", "keeps_unspecified"), PAIRS)
def test_python_enum_has_no_aliases(
    py_enum: type[enum.IntEnum], proto_name: str, prefix: str, keeps_unspecified: bool
) -> None:
    # an alias (two names, one number) would hide from iteration and from the comparison above
    assert len(py_enum.__members__) == len(list(py_enum))


@pytest.mark.parametrize(("py_enum", "proto_name", "prefix", "keeps_unspecified"), PAIRS)
def test_round_trip_through_the_generated_enum_wrapper(
    py_enum: type[enum.IntEnum], proto_name: str, prefix: str, keeps_unspecified: bool
) -> None:
    wrapper = getattr(enums_pb2, proto_name)
    for member in py_enum:
        assert wrapper.Name(int(member)) == prefix + member.name
        assert py_enum(wrapper.Value(prefix + member.name)) is member


def test_contract_names_exist() -> None:
    """Names fixed by the API contract (vendors code against them)."""
    for name in [
        "DECISION_ALLOW",
        "DECISION_REJECT",
        "DECISION_REVIEW",
        "REASON_ELIGIBLE",
        "REASON_SUSPENDED",
        "REASON_TERMINATED",
        "REASON_NOT_REGISTERED",
        "REASON_UNKNOWN_PRACTITIONER",
        "REASON_EMERGENCY_EXCEPTION",
        "REASON_RESCUE_EXCEPTION",
        "REASON_STALE_DATA",
        "PRACTITIONER_STATUS_NORMAL",
        "PRACTITIONER_STATUS_SUSPENDED",
        "PRACTITIONER_STATUS_TERMINATED",
        "CARE_TYPE_UNSPECIFIED",
        "CARE_TYPE_ROUTINE",
        "CARE_TYPE_EMERGENCY",
        "CARE_TYPE_RESCUE",
    ]:
        assert hasattr(enums_pb2, name), name
