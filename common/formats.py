"""Wire formats: timestamps are ISO 8601 UTC with a Z, money a two-place decimal string.

In MySQL, timestamps are naive UTC DATETIMEs.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal


def utcnow() -> datetime:
    """Naive UTC now, as stored in MySQL DATETIME columns."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def to_db(value: datetime) -> datetime:
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: Decimal) -> str:
    return f"{value:.2f}"
