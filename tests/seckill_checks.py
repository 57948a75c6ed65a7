"""The seckill storm driver and the invariant checks, shared by every storm and crash test.

    result = await storm(api, activity_id, accounts, per_user=20)
    await check_invariants(stack, activity_id, stock, result)          # after a clean storm
    await check_invariants(stack, activity_id, stock, result, crashed=True)  # after a kill -9

The checks read the databases, not only the replies: records, remaining,
outbox, and order_service's orders (polled until the outbox has drained).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from tests.factories import Account, Api
from tests.stack import Stack

SECKILL_MODES = {
    "batched": {},
    "one_per_request": {"SECKILL_BATCH_MAX": "1"},
}


@dataclass
class StormResult:
    statuses: Counter = field(default_factory=Counter)  # HTTP status -> count
    codes: Counter = field(default_factory=Counter)  # problem code -> count
    acknowledged: dict[int, set[str]] = field(default_factory=dict)  # user id -> order_nos seen
    created: Counter = field(default_factory=Counter)  # user id -> 201s received
    disconnected: int = 0  # requests that got no answer (connection refused or dropped)

    @property
    def order_nos(self) -> set[str]:
        return {no for nos in self.acknowledged.values() for no in nos}

    def record(self, user_id: int, status: int, body) -> None:
        self.statuses[status] += 1
        if status in (200, 201):
            self.acknowledged.setdefault(user_id, set()).add(body["order_no"])
            if status == 201:
                self.created[user_id] += 1
        elif isinstance(body, dict):
            self.codes[body.get("code")] += 1


async def storm(
    api: Api,
    activity_id: int,
    accounts: list[Account],
    per_user: int,
    concurrency: int = 64,
    result: StormResult | None = None,
) -> StormResult:
    """Every account asks per_user times, shuffled, concurrency requests at a time.

    Pass result to watch it fill while the storm runs (e.g. to crash a service
    once some orders are acknowledged). Unanswered requests count as disconnected.
    """
    result = result if result is not None else StormResult()
    requests = [account for account in accounts for _ in range(per_user)]
    random.shuffle(requests)
    gate = asyncio.Semaphore(concurrency)

    async def one(account: Account) -> None:
        async with gate:
            try:
                reply = await api.seckill(activity_id, account.token)
            except (TimeoutError, aiohttp.ClientError):
                result.disconnected += 1
                return
            result.record(account.id, reply.status, reply.body)

    await asyncio.gather(*(one(account) for account in requests))
    return result


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2) -> bool:
    """Poll predicate() until it is true or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


def records(stack: Stack, activity_id: int) -> dict[str, int]:
    """order_no -> user_id of every seckill record of the activity."""
    rows = stack.query(
        "activity_service",
        "SELECT order_no, user_id FROM seckill_records WHERE activity_id = %s",
        (activity_id,),
    )
    return {row["order_no"]: row["user_id"] for row in rows}


def orders(stack: Stack, activity_id: int) -> dict[str, int]:
    """order_no -> user_id of every order order_service holds for the activity."""
    rows = stack.query(
        "order_service",
        "SELECT order_no, user_id FROM orders WHERE activity_id = %s",
        (activity_id,),
    )
    return {row["order_no"]: row["user_id"] for row in rows}


def remaining(stack: Stack, activity_id: int) -> int:
    rows = stack.query(
        "activity_service", "SELECT remaining FROM activities WHERE id = %s", (activity_id,)
    )
    return rows[0]["remaining"]


async def check_invariants(
    stack: Stack,
    activity_id: int,
    stock: int,
    result: StormResult,
    sold_out: bool = True,
    crashed: bool = False,
    timeout: float = 30.0,
) -> None:
    """Assert the seckill guarantees from the databases.

    sold_out: the storm had more demand than stock, so all of it must be sold.
    crashed: a service was killed mid-storm, so some requests had no answer;
    every acknowledged order must exist all the same.
    """
    recorded = records(stack, activity_id)
    left = remaining(stack, activity_id)
    # Stock is conserved, never oversold, one record per user.
    assert left >= 0, f"remaining went negative: {left}"
    assert len(recorded) + left == stock, f"{len(recorded)} records + {left} remaining != {stock}"
    assert len(set(recorded.values())) == len(recorded), "a user holds two records"
    if sold_out:
        assert left == 0 and len(recorded) == stock
    # Clients: one order_no per user, every acknowledged one recorded under that user.
    for user_id, order_nos in result.acknowledged.items():
        assert len(order_nos) == 1, f"user {user_id} got different orders: {order_nos}"
        (order_no,) = order_nos
        assert recorded.get(order_no) == user_id, f"acknowledged {order_no} is not recorded"
        assert result.created[user_id] <= 1, f"user {user_id} got {result.created[user_id]} 201s"
    server_errors = {s: n for s, n in result.statuses.items() if s >= 500}
    assert not server_errors, f"5xx answers: {server_errors}"
    if not crashed:
        assert result.disconnected == 0
        assert sum(result.created.values()) == len(recorded), "201s != records"
        assert set(result.order_nos) == set(recorded), "a recorded order was never acknowledged"

    # order_service ends up holding exactly the records, with nothing left in the outbox.
    def delivered() -> bool:
        outbox = stack.query("activity_service", "SELECT COUNT(*) AS n FROM outbox")[0]["n"]
        return outbox == 0 and orders(stack, activity_id) == recorded

    assert await wait_for(delivered, timeout), (
        f"order_service holds {len(orders(stack, activity_id))} of {len(recorded)} orders"
    )
