"""Responses are the documented models: same fields, same order, same formats, no database."""

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import jsonschema
import orjson

from activity_service.schemas import Activity
from activity_service.seckill import present_order
from activity_service.service import present
from common.schemas import Order
from user_service.schemas import User

NOW = datetime(2026, 11, 26, 15, 0, 0, 123456)
RECORD = {
    "order_no": "20261126150000123abcdefabcdef",
    "activity_id": 7,
    "user_id": 12345,
    "amount": Decimal("5"),
    "created_at": NOW,
    "expires_at": NOW + timedelta(seconds=900),
}


def test_the_seckill_answer_is_the_documented_order_field_for_field():
    # The seckill builds its answer as a plain dict (the hot path); it must stay the Order
    # that the OpenAPI documents and order_service serves.
    answer = present_order(RECORD)
    assert list(answer) == list(Order.model_fields)  # no field added, dropped or renamed
    jsonschema.validate(answer, Order.model_json_schema())  # the documented formats
    order = Order.model_validate(answer)
    assert orjson.dumps(order.model_dump(mode="json")) == orjson.dumps(answer)
    # ... and it is what order_service answers for the same row.
    served = Order.model_validate(RECORD | {"status": "created"}).model_dump(mode="json")
    assert orjson.dumps(served) == orjson.dumps(answer)


def test_an_order_dumps_money_as_a_decimal_string_and_times_as_utc_iso():
    order = Order.model_validate(RECORD | {"status": "paid"})
    assert (
        order.model_dump(mode="json")
        == order.model_dump()
        == {
            "order_no": "20261126150000123abcdefabcdef",
            "activity_id": 7,
            "user_id": 12345,
            "amount": "5.00",
            "status": "paid",
            "created_at": "2026-11-26T15:00:00Z",
            "expires_at": "2026-11-26T15:15:00Z",
        }
    )


def test_an_activity_row_is_presented_with_its_status_in_the_documented_formats():
    row = {
        "id": 3,
        "name": "Double 11",
        "product_name": "Keyboard",
        "price": Decimal("19.9"),
        "stock": 100,
        "remaining": 0,
        "starts_at": datetime(2026, 11, 26, 14, 0),
        "ends_at": datetime(2026, 11, 26, 16, 0),
        "pay_within_seconds": 600,
        "challenge": 1,  # MySQL's BOOLEAN is a TINYINT
        "challenge_difficulty": 50_000,
        "created_at": NOW,  # columns the API does not show are left out
    }
    body = present(row, NOW).model_dump(mode="json")
    assert body == {
        "id": 3,
        "name": "Double 11",
        "product_name": "Keyboard",
        "price": "19.90",
        "stock": 100,
        "remaining": 0,
        "starts_at": "2026-11-26T14:00:00Z",
        "ends_at": "2026-11-26T16:00:00Z",
        "pay_within_seconds": 600,
        "status": "sold_out",
        "challenge": True,
        "challenge_difficulty": 50_000,
    }
    jsonschema.validate(body, Activity.model_json_schema())


def test_a_user_row_shows_no_password_hash_and_a_boolean_admin_flag():
    row = {"id": 1, "username": "alice", "password_hash": "scrypt$x", "is_admin": 0, "disabled": 1}
    body = User.model_validate(row | {"created_at": NOW}).model_dump(mode="json")
    assert body == {
        "id": 1,
        "username": "alice",
        "is_admin": False,
        "disabled": True,
        "created_at": "2026-11-26T15:00:00Z",
    }


def test_an_aware_time_is_written_in_utc():
    beijing = timezone(timedelta(hours=8))
    order = Order.model_validate(
        RECORD | {"status": "created", "created_at": datetime(2026, 11, 26, 23, tzinfo=beijing)}
    )
    assert order.model_dump()["created_at"] == "2026-11-26T15:00:00Z"
