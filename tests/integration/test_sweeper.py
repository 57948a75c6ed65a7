"""order_service's sweeper against real MySQL: several at once, each on its own pool as
separate workers or instances would be, racing payments; no order expired twice, none
left for good, and each order ends paid or expired."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest

from common.db import Database
from common.formats import utcnow
from order_service import models, repository
from order_service.lifecycle import SWEEP_BATCH, Sweeper
from testkit.stack import scratch_database


@pytest.fixture
async def db():
    async with scratch_database("order_service", models.run_migrations) as database:
        yield database


class RelayDouble:
    """Records what the sweepers hand to the release relay (the outbox rows are real)."""

    def __init__(self):
        self.delivered: list[str] = []

    def deliver(self, releases: list[dict]) -> None:
        self.delivered.extend(release["order_no"] for release in releases)


async def place(db: Database, count: int, expires_at) -> list[dict]:
    orders = [
        {
            "order_no": secrets.token_hex(14),
            "activity_id": 1,
            "user_id": user_id,
            "amount": Decimal("1.00"),
            "created_at": utcnow(),
            "expires_at": expires_at,
        }
        for user_id in range(1, count + 1)
    ]
    for start in range(0, count, 1000):
        await repository.insert_orders(db, orders[start : start + 1000])
    return orders


async def test_sweepers_in_parallel_expire_each_due_order_exactly_once(db):
    orders = await place(db, 5 * SWEEP_BATCH + 7, utcnow() - timedelta(seconds=1))
    relay = RelayDouble()
    pools = [Database(db.settings) for _ in range(4)]
    for pool in pools:
        await pool.connect()
    try:
        swept = await asyncio.gather(*(Sweeper(p, relay, 0.01).sweep() for p in pools))
        # Overlapping rounds may leave rows to the next (SKIP LOCKED passes over rows another
        # round's transaction is scanning past); a next round, here alone, takes the rest.
        swept.append(await Sweeper(pools[0], relay, 0.01).sweep())
    finally:
        for pool in pools:
            await pool.close()

    assert sum(swept) == len(orders)
    assert sorted(relay.delivered) == sorted(o["order_no"] for o in orders)  # once each
    statuses = await db.fetch_all("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")
    assert statuses == [{"status": "expired", "n": len(orders)}]
    outbox = await db.fetch_all("SELECT order_no, status FROM release_outbox")
    assert Counter(row["status"] for row in outbox) == {"expired": len(orders)}


async def test_payments_and_sweepers_racing_at_the_deadline_leave_each_order_paid_or_expired(db):
    deadline = utcnow() + timedelta(seconds=0.3)
    orders = await place(db, 300, deadline)
    relay = RelayDouble()
    pools = [Database(db.settings) for _ in range(3)]
    for pool in pools:
        await pool.connect()

    async def sweep_until_done() -> None:
        sweeper = Sweeper(pools[0], relay, 0.0)
        others = [Sweeper(p, relay, 0.0) for p in pools[1:]]
        while utcnow() < deadline + timedelta(seconds=1):
            await asyncio.gather(sweeper.sweep(), *(o.sweep() for o in others))

    async def pay(order: dict) -> bool:
        await asyncio.sleep(max(0.0, (deadline - utcnow()).total_seconds() - 0.005))
        return await repository.mark_paid(pools[2], order["order_no"], order["user_id"])

    try:
        results = await asyncio.gather(sweep_until_done(), *(pay(o) for o in orders))
    finally:
        for pool in pools:
            await pool.close()
    paid = {o["order_no"] for o, ok in zip(orders, results[1:], strict=True) if ok}

    rows = await db.fetch_all("SELECT order_no, status, paid_at, expires_at FROM orders")
    statuses = {row["order_no"]: row["status"] for row in rows}
    assert {no for no, s in statuses.items() if s == "paid"} == paid
    assert all(row["paid_at"] < row["expires_at"] for row in rows if row["status"] == "paid")
    expired = {no for no, s in statuses.items() if s == "expired"}
    assert expired | paid == set(statuses) and not expired & paid
    assert sorted(relay.delivered) == sorted(expired)  # a release for the expired ones only
    outbox = await db.fetch_all("SELECT order_no FROM release_outbox")
    assert {row["order_no"] for row in outbox} == expired
