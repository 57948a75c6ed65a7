"""Units given back survive crashes: kill -9 of either service around the releases, and two
order_service instances sweeping one database; every unit back exactly once."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest

from testkit.invariants import books_from_databases, violations
from testkit.poll import eventually
from testkit.stack import Stack
from tests.support.factories import Api

pytestmark = pytest.mark.slow


def live_orders(stack: Stack, activity_id: int) -> int:
    rows = stack.query(
        "order_service",
        "SELECT COUNT(*) AS n FROM orders WHERE activity_id = %s AND status IN ('created', 'paid')",
        (activity_id,),
    )
    return rows[0]["n"]


def remaining(stack: Stack, activity_id: int) -> int:
    rows = stack.query(
        "activity_service", "SELECT remaining FROM activities WHERE id = %s", (activity_id,)
    )
    return rows[0]["remaining"]


class Sampler:
    """Samples remaining against what the orders allow (stock - orders created or paid)."""

    def __init__(self, stack: Stack, activity_id: int, stock: int):
        self.stack, self.activity_id, self.stock = stack, activity_id, stock
        self.samples = 0
        self.above: list[tuple[int, int]] = []

    def sample(self) -> None:
        try:
            # remaining first: what the orders allow only grows meanwhile.
            left = remaining(self.stack, self.activity_id)
            allowed = self.stock - live_orders(self.stack, self.activity_id)
        except Exception:  # a database briefly busy: the next sample counts
            return
        self.samples += 1
        if left > allowed:
            self.above.append((left, allowed))

    def __enter__(self) -> Sampler:
        """Sample in a thread of its own, whatever blocks the event loop meanwhile."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # and once at the end

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.sample()


async def sell(api: Api, stack: Stack, stock: int, paying: int) -> int:
    """An activity sold out to stock users, `paying` of whom pay."""
    activity = await api.create_activity(stock=stock)
    users = await api.new_users(stock)
    replies = await asyncio.gather(*(api.seckill(activity["id"], u.token) for u in users))
    assert all(r.status == 201 for r in replies), replies
    orders = [r.body for r in replies]
    await eventually(lambda: live_orders(stack, activity["id"]) == stock, 10, "orders delivered")
    for order, user in zip(orders[:paying], users[:paying], strict=True):
        reply = await api.call(
            "POST", "order_service", f"/orders/{order['order_no']}/pay", user.token
        )
        assert reply.status == 200, reply
    return activity["id"]


def make_due(stack: Stack, activity_id: int) -> None:
    """The unpaid orders' deadline is now (an activity allows no less than 10 s)."""
    stack.query(
        "order_service",
        "UPDATE orders SET expires_at = UTC_TIMESTAMP(6) "
        "WHERE activity_id = %s AND status = 'created'",
        (activity_id,),
    )


async def settled_books(stack: Stack, activity_id: int, stock: int, expired: int) -> None:
    def balanced() -> bool:
        books = books_from_databases(stack.query, activity_id)
        return not violations(books) and books.remaining == expired

    await eventually(balanced, 30, "every unit back exactly once")
    found = violations(books_from_databases(stack.query, activity_id))
    assert found == []


async def test_kill_9_of_order_service_after_expiries_before_their_delivery(own_stack):
    stack = own_stack(ORDER_SWEEP_INTERVAL_SECONDS="0.2")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        stock, paying = 60, 20
        activity_id = await sell(api, stack, stock, paying)
        stack.kill("activity_service")  # nothing can be delivered from now on
        make_due(stack, activity_id)

        def all_expired() -> bool:
            return live_orders(stack, activity_id) == paying

        await eventually(all_expired, 10, "the sweeper to expire the unpaid orders")
        pending = stack.query("order_service", "SELECT COUNT(*) AS n FROM release_outbox")
        assert pending[0]["n"] == stock - paying  # committed with the expiries, not delivered
        stack.kill("order_service")

        with Sampler(stack, activity_id, stock) as sampler:
            stack.start("activity_service", "order_service")
            await settled_books(stack, activity_id, stock, expired=stock - paying)
    assert sampler.samples > 0 and sampler.above == []


async def test_kill_9_of_activity_service_while_it_applies_releases(own_stack):
    stack = own_stack(ORDER_SWEEP_INTERVAL_SECONDS="0.2", SECKILL_WORKERS="2")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        stock, paying = 300, 50
        activity_id = await sell(api, stack, stock, paying)
        with Sampler(stack, activity_id, stock) as sampler:
            make_due(stack, activity_id)
            # The first units are back: releases are being applied right now.
            await eventually(lambda: remaining(stack, activity_id) > 0, 10, "releases", 0.002)
            stack.kill("activity_service")
            at_kill = remaining(stack, activity_id)
            stack.start("activity_service")
            await settled_books(stack, activity_id, stock, expired=stock - paying)
    assert 0 < at_kill and sampler.samples > 0 and sampler.above == []
    print(f"units back when activity_service was killed: {at_kill} of {stock - paying}")


async def test_two_order_service_instances_sweep_one_database_without_doubles(own_stack):
    stack = own_stack(ORDER_SWEEP_INTERVAL_SECONDS="0.1")
    stack.add_instance("order_service", "order_service_2", ORDER_SWEEP_INTERVAL_SECONDS="0.1")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        stock, paying = 200, 0
        activity_id = await sell(api, stack, stock, paying)
        make_due(stack, activity_id)
        await settled_books(stack, activity_id, stock, expired=stock)
    released = stack.query(
        "activity_service",
        "SELECT COUNT(*) AS n, COUNT(DISTINCT order_no) AS distinct_n FROM seckill_records "
        "WHERE activity_id = %s AND released_as = 'expired'",
        (activity_id,),
    )
    assert released == [{"n": stock, "distinct_n": stock}]
    assert remaining(stack, activity_id) == stock
