"""The seckill storm driver and the invariant checks, shared by every storm and crash test.

    result = await storm(api, activity_id, accounts, per_user=20)
    await check_invariants(stack, activity_id, stock, result)          # after a clean storm
    await check_invariants(stack, activity_id, stock, result, crashed=True)  # after a kill -9

The checks are testkit/invariants.py's, over the databases, not only the
replies: records, remaining, outbox, and order_service's orders (polled until
the outbox has drained).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from testkit.invariants import Answers, books_from_databases, settle
from testkit.stack import Stack
from tests.support.factories import Account, Api

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

    def answers(self, complete: bool) -> Answers:
        return Answers(
            placed=sum(self.created.values()),
            orders=self.acknowledged,
            placed_by=self.created,
            sold_out=self.codes["sold_out"],
            server_errors=sum(n for status, n in self.statuses.items() if status >= 500),
            unanswered=self.disconnected,
            complete=complete,
        )

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
    solutions: dict[int, str] | None = None,
) -> StormResult:
    """Every account asks per_user times, shuffled, concurrency requests at a time.

    Pass result to watch it fill while the storm runs (e.g. to crash a service
    once some orders are acknowledged). Unanswered requests count as disconnected.
    solutions: each user's solved challenge, for an activity that asks for one.
    """
    result = result if result is not None else StormResult()
    requests = [account for account in accounts for _ in range(per_user)]
    random.shuffle(requests)
    gate = asyncio.Semaphore(concurrency)

    async def one(account: Account) -> None:
        async with gate:
            try:
                solution = solutions.get(account.id) if solutions else None
                reply = await api.seckill(activity_id, account.token, solution)
            except (TimeoutError, aiohttp.ClientError):
                result.disconnected += 1
                return
            result.record(account.id, reply.status, reply.body)

    await asyncio.gather(*(one(account) for account in requests))
    return result


def records(stack: Stack, activity_id: int) -> dict[str, int]:
    """order_no -> user_id of every seckill record of the activity."""
    rows = stack.query(
        "activity_service",
        "SELECT order_no, user_id FROM seckill_records WHERE activity_id = %s",
        (activity_id,),
    )
    return {row["order_no"]: row["user_id"] for row in rows}


async def check_invariants(
    stack: Stack,
    activity_id: int,
    stock: int,
    result: StormResult,
    sold_out: bool = True,
    crashed: bool = False,
    timeout: float = 30.0,
) -> None:
    """Assert the seckill guarantees (testkit/invariants.py) from the databases, waiting
    up to timeout for order_service to hold every order.

    sold_out: the storm had more demand than stock, so all of it must be sold.
    crashed: a service was killed mid-storm, so some requests had no answer;
    every acknowledged order must exist all the same.
    """
    books, found = await asyncio.to_thread(
        settle,
        lambda: books_from_databases(stack.query, activity_id),
        result.answers(complete=not crashed),
        sold_out=sold_out,
        timeout=timeout,
    )
    assert books.stock == stock, f"stock is {books.stock}, not {stock}"
    assert not found, found
