"""The hand-off to order_service: batches committed while one call is in flight go together."""

from __future__ import annotations

import asyncio

from activity_service.relay import OrderRelay
from common.errors import PeerUnavailable
from common.formats import utcnow


async def rows(db, sql: str) -> list[dict]:
    return await db.fetch_all(sql)


class OrderServiceDouble:
    """Test double for the ServiceClient to order_service: records each call and
    answers only when the test opens the gate (or fails the calls it is told to)."""

    def __init__(self, failing: int = 0):
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.failing = failing

    async def request(self, method: str, path: str, json=None, idempotent: bool = True):
        assert (method, path) == ("POST", "/internal/orders")
        self.calls.append([order["order_no"] for order in json["orders"]])
        await self.gate.wait()
        if len(self.calls) <= self.failing:
            raise PeerUnavailable("no healthy instance of order_service answered")
        return {"created": len(json["orders"])}


def orders(*numbers: str) -> list[dict]:
    return [{"order_no": n, "activity_id": 1, "user_id": 1} for n in numbers]


async def add_undelivered(db, *numbers: str) -> None:
    """Records not yet marked delivered: what a batch's COMMIT leaves for the hand-off."""
    for user_id, number in enumerate(numbers, start=1):
        now = utcnow()
        await db.execute(
            "INSERT INTO seckill_records (activity_id, user_id, order_no, amount, created_at, "
            "expires_at) VALUES (1, %s, %s, 1.00, %s, %s)",
            (user_id, number, now, now),
        )


UNDELIVERED = "SELECT order_no FROM seckill_records WHERE delivered_at IS NULL"


async def settled(predicate, timeout: float = 3.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def test_batches_committed_during_a_hand_off_go_together_in_the_next_call(db):
    await add_undelivered(db, "a", "b", "c", "d")
    peer = OrderServiceDouble()
    relay = OrderRelay(db, peer)

    first = relay.deliver(orders("a"))
    await asyncio.sleep(0)
    second, third = relay.deliver(orders("b", "c")), relay.deliver(orders("d"))
    await asyncio.sleep(0.05)
    assert peer.calls == [["a"]]  # one call in flight; the later batches wait for it
    assert not (first.done() or second.done() or third.done())

    peer.gate.set()
    await asyncio.wait_for(asyncio.gather(first, second, third), timeout=3)
    assert peer.calls == [["a"], ["b", "c", "d"]]  # two calls for three batches

    # Acknowledged: their records are marked delivered, together, a moment later.
    await relay.drain()
    assert await settled(lambda: not relay._delivered and not relay._flushing)
    assert await rows(db, UNDELIVERED) == []


async def test_a_failed_hand_off_leaves_its_orders_to_the_relay_and_the_next_call_goes(db):
    await add_undelivered(db, "a", "b")
    peer = OrderServiceDouble(failing=1)
    relay = OrderRelay(db, peer)
    peer.gate.set()

    first = relay.deliver(orders("a"))
    await asyncio.sleep(0)
    second = relay.deliver(orders("b"))
    await asyncio.wait_for(asyncio.gather(first, second), timeout=3)  # nobody is left waiting

    assert peer.calls == [["a"], ["b"]]
    await relay.drain()
    assert await settled(lambda: not relay._flushing)
    # "a" was not acknowledged: it stays undelivered for the relay loop to send again.
    assert await rows(db, UNDELIVERED) == [{"order_no": "a"}]
