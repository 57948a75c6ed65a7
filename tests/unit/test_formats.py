"""Wire formats, order numbers and activity statuses: pure functions, no database."""

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from activity_service.seckill import new_order_no, present_order
from activity_service.service import status_of
from common.formats import iso, money, to_db

ORDER_NO = re.compile(r"^[0-9]{17}[0-9a-f]{12}$")
NOW = datetime(2026, 11, 26, 15, 0, 0, 123456)


def test_order_no_format():
    order_no = new_order_no(NOW)
    assert ORDER_NO.match(order_no), order_no
    assert len(order_no) == 29 <= 32  # fits the order_no columns
    assert order_no.startswith("20261126150000123")


def test_order_nos_are_unique_and_sort_by_time():
    same_instant = {new_order_no(NOW) for _ in range(10_000)}
    assert len(same_instant) == 10_000
    later = new_order_no(NOW + timedelta(milliseconds=1))
    assert later > max(same_instant)
    next_year = new_order_no(datetime(2027, 1, 1))
    assert next_year > later


def test_order_nos_pass_order_service_validation():
    from order_service.schemas import NewOrder

    order = present_order(
        {
            "order_no": new_order_no(NOW),
            "activity_id": 1,
            "user_id": 2,
            "amount": Decimal("19.9"),
            "created_at": NOW,
            "expires_at": NOW + timedelta(seconds=900),
        }
    )
    parsed = NewOrder.model_validate_json(orjson.dumps(order))  # as it travels
    assert parsed.order_no == order["order_no"] and parsed.amount == Decimal("19.90")


def test_present_order():
    order = present_order(
        {
            "order_no": "x",
            "activity_id": 1,
            "user_id": 2,
            "amount": Decimal("5"),
            "created_at": NOW,
            "expires_at": NOW + timedelta(seconds=900),
        }
    )
    assert order == {
        "order_no": "x",
        "activity_id": 1,
        "user_id": 2,
        "amount": "5.00",
        "status": "created",
        "created_at": "2026-11-26T15:00:00Z",
        "expires_at": "2026-11-26T15:15:00Z",
    }


@pytest.mark.parametrize(
    "value, text",
    [
        (Decimal("19.9"), "19.90"),
        (Decimal("0.01"), "0.01"),
        (Decimal("99999999.99"), "99999999.99"),
        (Decimal("5"), "5.00"),
    ],
)
def test_money(value, text):
    assert money(value) == text


def test_iso_is_utc_with_z():
    assert iso(NOW) == "2026-11-26T15:00:00Z"


def test_to_db_is_naive_utc():
    aware = datetime(2026, 11, 26, 23, 0, tzinfo=timezone(timedelta(hours=8)))
    assert to_db(aware) == datetime(2026, 11, 26, 15, 0)


def activity(remaining: int, starts: timedelta, ends: timedelta) -> dict:
    return {"remaining": remaining, "starts_at": NOW + starts, "ends_at": NOW + ends}


@pytest.mark.parametrize(
    "row, status",
    [
        (activity(5, timedelta(hours=1), timedelta(hours=2)), "upcoming"),
        (activity(0, timedelta(hours=1), timedelta(hours=2)), "upcoming"),
        (activity(5, timedelta(0), timedelta(hours=1)), "active"),
        (activity(0, -timedelta(hours=1), timedelta(hours=1)), "sold_out"),
        (activity(5, -timedelta(hours=2), -timedelta(hours=1)), "ended"),
        (activity(0, -timedelta(hours=2), -timedelta(hours=1)), "ended"),
        (activity(0, -timedelta(hours=2), timedelta(0)), "ended"),
    ],
    ids=["upcoming", "upcoming-empty", "starts-now", "sold-out", "ended", "ended-wins", "ends-now"],
)
def test_status(row, status):
    assert status_of(row, NOW) == status
