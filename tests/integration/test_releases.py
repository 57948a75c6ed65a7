"""activity_service applies releases against real MySQL: each unit back exactly once,
whatever repeats and runs concurrently, and never above stock."""

from __future__ import annotations

import asyncio

from activity_service.seckill import CLOSED_TRUST_SECONDS, Seckill
from activity_service.service import ReleaseService
from testkit.poll import eventually
from tests.support.batch import new_activity, new_seckill, rows


async def sold(db, stock: int, buyers: int) -> tuple[int, Seckill, list[dict]]:
    seckill, _ = new_seckill(db)
    activity_id = await new_activity(db, stock=stock)
    outcomes = await asyncio.gather(*(seckill.buy(activity_id, u) for u in range(1, buyers + 1)))
    return activity_id, seckill, [o.order for o in outcomes if o.order]


async def test_repeated_and_concurrent_releases_give_each_unit_back_once(db):
    activity_id, seckill, orders = await sold(db, stock=20, buyers=20)
    forgotten: list[tuple[int, list[int]]] = []
    service = ReleaseService(db, on_release=lambda a, users: forgotten.append((a, users)))
    releases = {o["order_no"]: "expired" for o in orders[:12]}
    # Every release sent five times, in overlapping calls at once.
    calls = [dict(list(releases.items())[i : i + 6]) for i in range(0, 12, 3)] * 5
    await asyncio.gather(*(service.apply(call) for call in calls))

    activity = await rows(
        db, "SELECT remaining, released FROM activities WHERE id = %s", activity_id
    )
    assert activity == [{"remaining": 12, "released": 12}]
    records = await rows(
        db,
        "SELECT order_no FROM seckill_records WHERE activity_id = %s AND released_as = 'expired'",
        activity_id,
    )
    assert {r["order_no"] for r in records} == set(releases)
    assert sorted(u for _, users in forgotten for u in users) == sorted(
        o["user_id"] for o in orders[:12]
    )


async def test_a_release_that_would_lift_remaining_above_stock_changes_nothing(db):
    activity_id, _, orders = await sold(db, stock=3, buyers=3)
    # Books already wrong (someone put the unit back by hand): the release must not add one.
    await db.execute("UPDATE activities SET remaining = stock WHERE id = %s", (activity_id,))
    service = ReleaseService(db, on_release=lambda a, users: None)
    try:
        await service.apply({orders[0]["order_no"]: "cancelled"})
    except RuntimeError:
        pass
    else:
        raise AssertionError("a release above stock was applied")
    activity = await rows(
        db, "SELECT remaining, released FROM activities WHERE id = %s", activity_id
    )
    assert activity == [{"remaining": 3, "released": 0}]
    released = await rows(
        db,
        "SELECT 1 FROM seckill_records WHERE released_as IS NOT NULL AND activity_id = %s",
        activity_id,
    )
    assert released == []


async def test_a_released_unit_is_sold_to_a_newcomer_and_the_holder_sees_the_release(db):
    activity_id, seckill, orders = await sold(db, stock=2, buyers=3)
    holder = orders[0]
    service = ReleaseService(db, on_release=seckill.forget)
    await service.apply({holder["order_no"]: "cancelled"})
    # This worker forgot at once: no sold_out from memory, the holder sees the release.
    again = await seckill.buy(activity_id, holder["user_id"])
    assert again.order == holder | {"status": "cancelled"} and not again.created
    newcomer = await seckill.buy(activity_id, 99)
    assert newcomer.created
    activity = await rows(db, "SELECT remaining FROM activities WHERE id = %s", activity_id)
    assert activity == [{"remaining": 0}]


async def test_another_worker_sells_the_released_unit_and_shows_the_release_within_a_second(db):
    activity_id, other, orders = await sold(db, stock=2, buyers=3)
    holder = orders[0]
    assert (await other.buy(activity_id, 50)).error is not None  # sold out, from memory now
    await other.settle()
    applier, _ = new_seckill(db)
    await ReleaseService(db, on_release=applier.forget).apply({holder["order_no"]: "expired"})

    async def sold_again():
        return (await other.buy(activity_id, 51)).created

    # Its sold_out is trusted for a second at most, counted from before the read it came from.
    await eventually(sold_again, CLOSED_TRUST_SECONDS + 1, "the other worker to sell the unit")
    again = await other.buy(activity_id, holder["user_id"])
    assert again.order["status"] == "expired" and not again.created
