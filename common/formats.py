"""Wire formats: timestamps are ISO 8601 UTC with a Z, money a two-place decimal string.

In MySQL, timestamps are naive UTC DATETIMEs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
)


def utcnow() -> datetime:
    """Naive UTC now, as stored in MySQL DATETIME columns."""
    return datetime.now(UTC).replace(tzinfo=None)


def to_db(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def iso(value: datetime) -> str:
    """A naive UTC datetime (or an aware one) as 2026-11-26T15:00:00Z (four-digit year,
    whole seconds)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.replace(microsecond=0).isoformat() + "Z"


def money(value: Decimal) -> str:
    return f"{value:.2f}"


# The same formats as pydantic field types: request models validate with them, and every
# model's OpenAPI schema documents them.

MONEY_IN_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"
MONEY_PATTERN = r"^[0-9]+\.[0-9]{2}$"
# An order number: 17 digits of time (to the 0.1 ms) and 12 random hex digits (seckill.py).
ORDER_NO_PATTERN = r"^[0-9]{17}[0-9a-f]{12}$"
TIMESTAMP_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def is_order_no(text: str) -> bool:
    return re.fullmatch(ORDER_NO_PATTERN, text) is not None


def _in_range(value: datetime) -> datetime:
    # Far-off offsets would overflow on the way to UTC, and MySQL keeps only years 1000-9999.
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be from {iso(EARLIEST)} and before {iso(LATEST)}")
    return value


def _money_text(value: object) -> object:
    # Only the documented form: a string, no exponent, NaN or sign. A JSON number is
    # refused: a binary float cannot hold most prices exactly.
    if not isinstance(value, str) or not re.fullmatch(MONEY_IN_PATTERN, value):
        raise ValueError("must be a decimal string like 19.90")
    return value


# In: a decimal string; Field() adds the bounds.
MoneyIn = Annotated[
    Decimal,
    BeforeValidator(_money_text),
    WithJsonSchema({"type": "string", "pattern": MONEY_IN_PATTERN, "examples": ["19.90"]}),
]
# In: an ISO 8601 string with an offset (Z or +hh:mm), never an epoch number, within the
# years MySQL keeps.
TimestampIn = Annotated[AwareDatetime, Field(strict=True), AfterValidator(_in_range)]
# Out: what the database holds (a Decimal, a naive UTC datetime), written by money() and
# iso() whenever a response model is dumped, in Python or JSON mode alike.
Money = Annotated[
    Decimal,
    PlainSerializer(money, return_type=str),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["19.90"]}),
]
Timestamp = Annotated[
    datetime,
    PlainSerializer(iso, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": TIMESTAMP_PATTERN,
            "examples": ["2026-11-26T15:00:00Z"],
        }
    ),
]
