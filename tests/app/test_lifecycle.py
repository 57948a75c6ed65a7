"""After the purchase: pay, cancel and expire through the API, and units back on sale once.

order_service sweeps every 0.2 s here (ORDER_SWEEP_INTERVAL_SECONDS in tests/support/apps.py).
Deadlines shorter than the 10 s an activity allows are made by moving an order's
expires_at in order_service's database: the sweeper and payments read only that.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest

from common.formats import utcnow
from testkit.invariants import books_from_databases, violations
from testkit.poll import eventually
from tests.support.expect import assert_field_error, assert_problem


async def buy(api, activity_id, account) -> dict:
    reply = await api.seckill(activity_id, account.token)
    assert reply.status == 201, reply
    return reply.body


async def order_call(api, action: str, order: dict, token: str):
    return await api.call("POST", "order_service", f"/orders/{order['order_no']}/{action}", token)


def remaining(stack, activity_id: int) -> int:
    rows = stack.query(
        "activity_service", "SELECT remaining FROM activities WHERE id = %s", (activity_id,)
    )
    return rows[0]["remaining"]


def due_now(stack, *orders: dict, at=None) -> None:
    """Move these orders' deadline to `at` (default: now) in order_service."""
    for order in orders:
        stack.query(
            "order_service",
            "UPDATE orders SET expires_at = %s WHERE order_no = %s",
            (at or utcnow(), order["order_no"]),
        )


async def balanced(stack, activity_id: int) -> list[str]:
    """Wait for the books to balance (relays drained); the violations left, if any."""
    last: list = []

    def check() -> bool:
        last[:] = violations(books_from_databases(stack.query, activity_id))
        return not last

    try:
        await eventually(check, timeout=10, what="the books to balance")
    except TimeoutError:
        pass
    return last


def utcnow_from(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


async def test_pay_within_seconds_defaults_bounds_and_applies_to_later_orders(api):
    activity = await api.create_activity()
    assert activity["pay_within_seconds"] == 900
    short = await api.create_activity(pay_within_seconds=60)
    first = await buy(api, short["id"], await api.new_user())
    assert first["expires_at"] == (
        (utcnow_from(first["created_at"]) + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    admin = await api.admin_token()
    path = f"/activities/{short['id']}"
    patched = await api.call(
        "PATCH", "activity_service", path, admin, json={"pay_within_seconds": 3600}
    )
    assert patched.status == 200 and patched.body["pay_within_seconds"] == 3600, patched
    later = await buy(api, short["id"], await api.new_user())
    assert utcnow_from(later["expires_at"]) - utcnow_from(later["created_at"]) >= timedelta(
        seconds=3599
    )
    kept = await api.call("GET", "order_service", f"/orders/{first['order_no']}", admin)
    assert kept.body["expires_at"] == first["expires_at"]  # earlier orders keep theirs
    for bad in (9, 86_401, "60", None, 1.5):
        reply = await api.call(
            "PATCH", "activity_service", path, admin, json={"pay_within_seconds": bad}
        )
        assert_field_error(reply, "pay_within_seconds")
        body = {
            "name": "x",
            "product_name": "y",
            "price": "1.00",
            "stock": 1,
            "starts_at": "2026-11-26T15:00:00Z",
            "ends_at": "2026-11-26T16:00:00Z",
            "pay_within_seconds": bad,
        }
        reply = await api.call("POST", "activity_service", "/activities", admin, json=body)
        assert_field_error(reply, "pay_within_seconds")


async def test_pay_is_idempotent_and_a_paid_order_cannot_be_cancelled(api, stack):
    activity = await api.create_activity(stock=2)
    buyer = await api.new_user()
    order = await buy(api, activity["id"], buyer)
    for _ in range(2):
        paid = await order_call(api, "pay", order, buyer.token)
        assert paid.status == 200 and paid.body == order | {"status": "paid"}, paid
    for token in (buyer.token, await api.admin_token()):
        assert_problem(await order_call(api, "cancel", order, token), 409, "not_cancellable")
    assert remaining(stack, activity["id"]) == 1
    assert await balanced(stack, activity["id"]) == []


async def test_cancel_gives_the_unit_back_once_and_the_buyer_keeps_that_order(api, stack):
    activity = await api.create_activity(stock=1)
    buyer, next_buyer = await api.new_users(2)
    order = await buy(api, activity["id"], buyer)
    assert_problem(await api.seckill(activity["id"], next_buyer.token), 409, "sold_out")

    replies = await asyncio.gather(
        *(order_call(api, "cancel", order, buyer.token) for _ in range(5))
    )
    assert all(r.status == 200 and r.body == order | {"status": "cancelled"} for r in replies)
    assert_problem(await order_call(api, "pay", order, buyer.token), 409, "not_payable")

    # Within the second the worker trusts its sold_out, the unit is on sale again.
    async def bought():
        reply = await api.seckill(activity["id"], next_buyer.token)
        return reply.status == 201 and reply

    await eventually(bought, timeout=3, what="the released unit to sell")
    # The first buyer still holds that one order, and the seckill says it was released.
    repeat = await api.seckill(activity["id"], buyer.token)
    assert repeat.status == 200 and repeat.body == order | {"status": "cancelled"}, repeat
    assert remaining(stack, activity["id"]) == 0
    assert await balanced(stack, activity["id"]) == []
    released = stack.query(
        "activity_service",
        "SELECT released_as FROM seckill_records WHERE order_no = %s",
        (order["order_no"],),
    )
    assert released == [{"released_as": "cancelled"}]


async def test_owner_rules_for_pay_and_cancel(api, stack):
    activity = await api.create_activity(stock=3)
    alice, bob = await api.new_users(2)
    order = await buy(api, activity["id"], alice)
    for action in ("pay", "cancel"):
        assert_problem(await order_call(api, action, order, bob.token), 404, "not_found")
        assert_problem(await order_call(api, action, order, None), 401, "unauthorized")
        missing = {"order_no": "2026113000000000000000000000"}
        assert_problem(await order_call(api, action, missing, alice.token), 404, "not_found")
    assert_problem(await order_call(api, "pay", order, await api.admin_token()), 403)
    cancelled = await order_call(api, "cancel", order, await api.admin_token())  # an admin may
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled", cancelled
    assert await balanced(stack, activity["id"]) == []


async def test_an_unpaid_order_expires_and_its_unit_sells_again(api, stack):
    activity = await api.create_activity(stock=3)
    payer, canceller, walker = await api.new_users(3)
    paid, cancelled, walked = [
        await buy(api, activity["id"], user) for user in (payer, canceller, walker)
    ]
    await order_call(api, "pay", paid, payer.token)
    await order_call(api, "cancel", cancelled, canceller.token)
    deadline = utcnow()
    due_now(stack, walked, at=deadline)

    # At or after expires_at it cannot be paid, whether or not it is marked expired yet.
    assert_problem(await order_call(api, "pay", walked, walker.token), 409, "not_payable")
    assert_problem(await order_call(api, "cancel", walked, walker.token), 409, "not_cancellable")

    def expired():
        rows = stack.query(
            "order_service",
            "SELECT status, closed_at FROM orders WHERE order_no = %s",
            (walked["order_no"],),
        )
        return rows[0]["status"] == "expired" and rows[0]

    row = await eventually(expired, timeout=5, what="the order to expire")
    assert row["closed_at"] - deadline < timedelta(seconds=5)
    mine = await api.call("GET", "order_service", "/orders?status=expired", walker.token)
    assert [o["order_no"] for o in mine.body["items"]] == [walked["order_no"]]
    assert mine.body["items"][0]["status"] == "expired"

    latecomers = await api.new_users(3)

    async def two_sold() -> bool:
        replies = [await api.seckill(activity["id"], user.token) for user in latecomers]
        return sum(r.status in (200, 201) for r in replies) == 2

    await eventually(two_sold, timeout=3, what="the two returned units to sell")
    assert remaining(stack, activity["id"]) == 0
    repeat = await api.seckill(activity["id"], walker.token)
    assert repeat.status == 200 and repeat.body["status"] == "expired", repeat
    assert await balanced(stack, activity["id"]) == []


@pytest.mark.parametrize("buyers", [40])
async def test_payments_racing_expiry_at_one_instant_end_paid_or_expired(api, stack, buyers):
    activity = await api.create_activity(stock=buyers)
    users = await api.new_users(buyers)
    placed = await asyncio.gather(*(buy(api, activity["id"], user) for user in users))
    instant = utcnow() + timedelta(seconds=0.5)
    due_now(stack, *placed, at=instant)
    # Every payment leaves at the deadline, some just before and some just after it.
    await asyncio.sleep((instant - utcnow()).total_seconds() - 0.01)
    replies = await asyncio.gather(
        *(
            order_call(api, "pay", order, user.token)
            for order, user in zip(placed, users, strict=True)
        )
    )
    assert {r.status for r in replies} <= {200, 409}
    paid = {o["order_no"] for o, r in zip(placed, replies, strict=True) if r.status == 200}

    def final() -> dict | None:
        rows = stack.query(
            "order_service",
            "SELECT order_no, status FROM orders WHERE activity_id = %s",
            (activity["id"],),
        )
        statuses = {row["order_no"]: row["status"] for row in rows}
        return statuses if "created" not in statuses.values() else None

    statuses = await eventually(final, timeout=5, what="every order to be paid or expired")
    assert set(statuses.values()) <= {"paid", "expired"}
    assert {no for no, status in statuses.items() if status == "paid"} == paid
    assert await balanced(stack, activity["id"]) == []
    assert remaining(stack, activity["id"]) == buyers - len(paid)  # units back for expired only


async def test_a_second_wave_buys_exactly_the_units_given_back(api, stack):
    stock = 12
    activity = await api.create_activity(stock=stock)
    first = await api.new_users(stock)
    placed = await asyncio.gather(*(buy(api, activity["id"], user) for user in first))
    pays, cancels, walks = placed[:4], placed[4:8], placed[8:]
    await asyncio.gather(
        *(order_call(api, "pay", o, u.token) for o, u in zip(pays, first[:4], strict=True)),
        *(order_call(api, "cancel", o, u.token) for o, u in zip(cancels, first[4:8], strict=True)),
    )
    due_now(stack, *walks)
    await eventually(lambda: remaining(stack, activity["id"]) == 8, timeout=6, what="8 back")
    started = time.monotonic()
    crowd = await api.new_users(30)

    async def storm() -> list:
        return await asyncio.gather(*(api.seckill(activity["id"], u.token) for u in crowd))

    won: set[int] = set()
    while time.monotonic() - started < 5 and len(won) < 8:
        for user, reply in zip(crowd, await storm(), strict=True):
            assert reply.status in (200, 201, 409), reply
            if reply.status in (200, 201):
                won.add(user.id)
    assert len(won) == 8
    assert remaining(stack, activity["id"]) == 0
    assert await balanced(stack, activity["id"]) == []
    # The first wave cannot buy again: each gets its one order back.
    for user, order in zip(first, placed, strict=True):
        reply = await api.seckill(activity["id"], user.token)
        assert reply.status == 200 and reply.body["order_no"] == order["order_no"], reply


async def test_the_internal_release_endpoint_takes_only_the_service_credential(api, stack):
    body = {"releases": [{"order_no": "abc", "status": "expired"}]}
    for headers in ({}, {"X-Service-Token": "guess"}):
        reply = await api.call(
            "POST", "activity_service", "/internal/releases", json=body, headers=headers
        )
        assert_problem(reply, 403, "forbidden")
    reply = await api.call(
        "POST",
        "activity_service",
        "/internal/releases",
        token=await api.admin_token(),
        json=body,
    )
    assert_problem(reply, 403, "forbidden")
    headers = {"X-Service-Token": stack.service_token}
    bad = {"releases": [{"order_no": "abc", "status": "paid"}]}
    reply = await api.call(
        "POST", "activity_service", "/internal/releases", json=bad, headers=headers
    )
    assert_field_error(reply, "releases.0.status")
