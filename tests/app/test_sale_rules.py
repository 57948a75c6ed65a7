"""Once a sale has started, PATCH cannot reopen, restock or reprice it (docs/api.md)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.expect import assert_problem
from tests.support.factories import iso, window

LATER = datetime.now(UTC) + timedelta(days=1)


async def patch(api, activity_id, changes):
    path = f"/activities/{activity_id}"
    return await api.call(
        "PATCH", "activity_service", path, token=await api.admin_token(), json=changes
    )


async def test_a_started_sale_with_orders_cannot_be_reopened_with_more_stock(api, stack):
    """The two-PATCH attack: move the start ahead, then restock and move it back."""
    activity = await api.create_activity(stock=1)
    buyer, late = await api.new_users(2)
    assert (await api.seckill(activity["id"], buyer.token)).status == 201
    reply = await patch(api, activity["id"], {"starts_at": iso(LATER)})
    assert_problem(reply, 409, "activity_started")
    reply = await patch(api, activity["id"], {"stock": 100})
    assert_problem(reply, 409, "activity_started")
    assert_problem(await api.seckill(activity["id"], late.token), 409, "sold_out")
    rows = stack.query(
        "activity_service",
        "SELECT stock, remaining, starts_at FROM activities WHERE id = %s",
        (activity["id"],),
    )
    assert rows[0]["stock"] == 1 and rows[0]["remaining"] == 0
    assert iso(rows[0]["starts_at"].replace(tzinfo=UTC)) == activity["starts_at"]


@pytest.mark.parametrize(
    "changes",
    [
        {"price": "0.01"},
        {"stock": 50},
        {"starts_at": iso(LATER)},
        {"starts_at": iso(datetime.now(UTC) - timedelta(days=1))},
        {"price": "1.00", "name": "also renamed"},
    ],
)
async def test_a_started_sale_keeps_its_terms(api, changes):
    activity = await api.create_activity(stock=5)
    reply = await patch(api, activity["id"], changes)
    body = assert_problem(reply, 409, "activity_started")
    assert next(iter(changes)) in body["detail"]
    after = await api.call("GET", "activity_service", f"/activities/{activity['id']}")
    assert after.body == activity


async def test_a_started_sale_may_be_renamed_extended_or_cut_short(api):
    activity = await api.create_activity(stock=5, **window(start_in=-60, length=600))
    same_terms = {k: activity[k] for k in ("price", "stock", "starts_at", "ends_at")}
    reply = await patch(api, activity["id"], {"name": "Renamed", **same_terms})
    assert reply.status == 200 and reply.body["name"] == "Renamed", reply
    extended = iso(datetime.now(UTC) + timedelta(hours=2))
    reply = await patch(api, activity["id"], {"ends_at": extended})
    assert reply.status == 200 and reply.body["ends_at"] == extended, reply
    ended = iso(datetime.now(UTC) - timedelta(seconds=1))
    reply = await patch(api, activity["id"], {"ends_at": ended})
    assert reply.status == 200 and reply.body["status"] == "ended", reply


async def test_an_ended_sale_stays_ended(api):
    activity = await api.create_activity(**window(start_in=-7200, length=60))
    reply = await patch(api, activity["id"], {"ends_at": iso(LATER)})
    assert_problem(reply, 409, "activity_ended")
    after = await api.call("GET", "activity_service", f"/activities/{activity['id']}")
    assert after.body["status"] == "ended" and after.body["ends_at"] == activity["ends_at"]


async def test_an_upcoming_sale_with_orders_keeps_its_terms(api, stack):
    """An activity sold and then moved back to upcoming (possible before these rules)."""
    activity = await api.create_activity(stock=5)
    buyer = await api.new_user()
    assert (await api.seckill(activity["id"], buyer.token)).status == 201
    stack.query(
        "activity_service",
        "UPDATE activities SET starts_at = %s, ends_at = %s WHERE id = %s",
        (
            LATER.replace(tzinfo=None),
            (LATER + timedelta(hours=1)).replace(tzinfo=None),
            activity["id"],
        ),
    )
    for changes in (
        {"stock": 50},
        {"price": "1.00"},
        {"starts_at": iso(LATER - timedelta(hours=1))},
    ):
        assert_problem(await patch(api, activity["id"], changes), 409, "has_orders")


async def test_an_upcoming_sale_without_orders_may_change_everything(api):
    activity = await api.create_activity(stock=5, **window(start_in=3600))
    changes = {"stock": 7, "price": "2.50", **window(start_in=7200)}
    reply = await patch(api, activity["id"], changes)
    assert reply.status == 200, reply
    assert reply.body["stock"] == 7 and reply.body["remaining"] == 7
    assert reply.body["price"] == "2.50" and reply.body["starts_at"] == changes["starts_at"]


async def test_concurrent_patches_at_the_start_never_restock_a_sale_with_orders(api, stack):
    """PATCHes racing the seckills across the start: the row lock orders them, so a stock
    change lands before the first order or not at all."""
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    activity = await api.create_activity(
        stock=3, starts_at=iso(starts), ends_at=iso(starts + timedelta(hours=1))
    )
    buyers = await api.new_users(6)
    results = []

    async def keep_patching() -> None:
        # Until past the start, however fast each PATCH is: a fixed count could all land
        # before it (the start is 1 to 2 s away), and the race would not be run at all.
        stock = 4
        while datetime.now(UTC) < starts + timedelta(seconds=1):
            results.append((await patch(api, activity["id"], {"stock": stock})).status)
            stock += 1
            await asyncio.sleep(0.05)

    async def keep_buying(buyer) -> None:
        while datetime.now(UTC) < starts + timedelta(seconds=1):
            reply = await api.seckill(activity["id"], buyer.token)
            if reply.status == 201:
                return
            await asyncio.sleep(0.02)

    await asyncio.gather(keep_patching(), *(keep_buying(b) for b in buyers))
    assert 200 in results and 409 in results, results
    row = stack.query(
        "activity_service",
        "SELECT stock, remaining FROM activities WHERE id = %s",
        (activity["id"],),
    )[0]
    sold = stack.query(
        "activity_service",
        "SELECT COUNT(*) AS n FROM seckill_records WHERE activity_id = %s",
        (activity["id"],),
    )[0]["n"]
    assert row["stock"] == row["remaining"] + sold and sold > 0
    # Every 200 came before the first 409, never after: the stock was fixed at the start.
    assert results == sorted(results), results
