"""The seckill storm driver and the invariant checks, shared by every storm-style test.

    result = await storm(api, activity_id, accounts, repeats=8)
    result.assert_clean()                       # only 200/201/409 sold_out, one order per user
    await assert_invariants(stack, activity_id, stock, result)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp

from tests.factories import Account, Api
from tests.stack import Stack


@dataclass
class StormResult:
    replies: list[tuple[int, int, dict | None]] = field(default_factory=list)  # user, status, body
    errors: list[tuple[int, str]] = field(default_factory=list)  # user, exception

    def acknowledged(self) -> dict[str, int]:
        """order_no -> user_id for every order a client was handed (201 or 200)."""
        return {
            body["order_no"]: user_id
            for user_id, status, body in self.replies
            if status in (200, 201)
        }

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = defaultdict(int)
        for _, status, _ in self.replies:
            counts[status] += 1
        return dict(counts)

    def assert_clean(self) -> None:
        """Every reply is an order or sold_out; no user sees two orders or two 201s."""
        assert not self.errors, self.errors[:5]
        unexpected = [
            (status, body) for _, status, body in self.replies
            if status not in (200, 201) and not (status == 409 and body["code"] == "sold_out")
        ]
        assert not unexpected, unexpected[:5]
        orders_per_user: dict[int, set[str]] = defaultdict(set)
        created_per_user: dict[int, int] = defaultdict(int)
        for user_id, status, body in self.replies:
            if status in (200, 201):
                assert body["user_id"] == user_id
                orders_per_user[user_id].add(body["order_no"])
                created_per_user[user_id] += status == 201
        assert all(len(nos) == 1 for nos in orders_per_user.values())
        assert all(count <= 1 for count in created_per_user.values())


async def storm(
    api: Api,
    activity_id: int,
    accounts: list[Account],
    repeats: int = 8,
    concurrency: int = 256,
    tolerate_errors: bool = False,
    stop: asyncio.Event | None = None,
) -> StormResult:
    """Every account sends `repeats` seckill requests, all interleaved and concurrent."""
    result = StormResult()
    calls = [account for account in accounts for _ in range(repeats)]
    random.shuffle(calls)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    url = f"{api.stack.activity_url}/activities/{activity_id}/seckill"
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(account: Account) -> None:
            if stop is not None and stop.is_set():
                return
            try:
                async with session.post(
                    url, headers={"Authorization": f"Bearer {account.token}"}
                ) as response:
                    body = await response.json(content_type=None)
                    result.replies.append((account.id, response.status, body))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                if not tolerate_errors:
                    raise
                result.errors.append((account.id, repr(exc)))

        await asyncio.gather(*(one(account) for account in calls))
    return result


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stock_state(stack: Stack, activity_id: int) -> dict:
    activity = stack.query(
        "activity_service", "SELECT stock, remaining FROM activities WHERE id = %s", (activity_id,)
    )[0]
    records = stack.query(
        "activity_service",
        "SELECT user_id, order_no FROM seckill_records WHERE activity_id = %s",
        (activity_id,),
    )
    orders = stack.query(
        "order_service",
        "SELECT user_id, order_no FROM orders WHERE activity_id = %s",
        (activity_id,),
    )
    outbox = stack.query("activity_service", "SELECT COUNT(*) AS n FROM outbox")[0]["n"]
    return {**activity, "records": records, "orders": orders, "outbox": outbox}


def assert_conserved(stack: Stack, activity_id: int, acknowledged: dict[str, int],
                     delivery_timeout: float = 20.0) -> dict:
    """Stock adds up, one record per user, and order_service holds exactly the records.

    Waits (polling) for the outbox to drain, so it also proves delivery happens
    without any new request.
    """
    state = wait_for(
        lambda: (s := stock_state(stack, activity_id))["outbox"] == 0
        and len(s["orders"]) == len(s["records"]) and s,
        timeout=delivery_timeout,
        what="order_service to hold every seckill record",
    )
    records = {r["order_no"]: r["user_id"] for r in state["records"]}
    orders = {o["order_no"]: o["user_id"] for o in state["orders"]}
    assert state["remaining"] >= 0
    assert state["stock"] == state["remaining"] + len(records), state
    assert len({r["user_id"] for r in state["records"]}) == len(records), "a user has two records"
    assert orders == records
    missing = {no: user for no, user in acknowledged.items() if records.get(no) != user}
    assert not missing, f"acknowledged orders missing: {list(missing.items())[:5]}"
    return state
