"""Conversions between domain values and protobuf messages, in one place."""

from __future__ import annotations

import argparse
from datetime import date, datetime, timedelta, timezone
from typing import Any

from google.type.date_pb2 import Date

from domain.values import Status
from gatekeeper.v1 import enums_pb2

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")  # China keeps no daylight saving time


def today_in_china(now: datetime | None = None) -> date:
    return (now or datetime.now(tz=CHINA)).astimezone(CHINA).date()


def set_date(target: Any, day: date | None) -> None:
    """Fill a google.type.Date field in place; leave it unset for None."""
    if day is not None:
        target.year, target.month, target.day = day.year, day.month, day.day


def parse_day(text: str) -> date:
    """An ISO date for argparse (``type=parse_day``), with a message people understand."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def to_proto_date(day: date) -> Date:
    return Date(year=day.year, month=day.month, day=day.day)


# The domain enums share the proto numbers (tests/unit/test_enums_match_proto.py); these casts
# only tell the type checker so.
def status_value(status: Status) -> enums_pb2.PractitionerStatus.ValueType:
    return enums_pb2.PractitionerStatus.ValueType(int(status))
