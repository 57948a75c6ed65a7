"""Hands committed orders to order_service, and re-sends whatever it has not acknowledged.

The outbox row is written in the seckill's own transaction, so an order is
never lost: right after COMMIT the batch is sent at once; if that fails, or
the process dies first, the relay loop finds the row and sends it again.
order_service's internal create is idempotent, so a repeat is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from opentelemetry.trace import Tracer

from activity_service import repository
from activity_service.seckill import present_order
from common.client import ServiceClient
from common.db import Database
from common.formats import utcnow
from common.tracing import span

logger = logging.getLogger("seckill.relay")

INTERNAL_ORDERS_PATH = "/internal/orders"
RELAY_BATCH = 500
# Rows younger than this are still being sent by the request path itself.
RELAY_GRACE = timedelta(seconds=2)
# How long acknowledged outbox rows wait, to be deleted together with later ones.
FLUSH_DELAY = 0.05


class OrderRelay:
    def __init__(
        self,
        db: Database,
        orders: ServiceClient,
        interval: float = 1.0,
        tracer: Tracer | None = None,
    ):
        self.db = db
        self.orders = orders
        self.interval = interval
        self.tracer = tracer
        self._tasks: set[asyncio.Task] = set()
        self._delivered: list[str] = []  # acknowledged by order_service, outbox rows not deleted
        self._flushing = False

    async def send(self, orders: list[dict]) -> None:
        """One internal call for many orders; their outbox rows go once it is acknowledged."""
        await self.orders.request("POST", INTERNAL_ORDERS_PATH, json={"orders": orders})
        await repository.mark_delivered(self.db, [order["order_no"] for order in orders])

    def deliver(self, orders: list[dict]) -> asyncio.Future:
        """Send in the background; the relay loop retries if this attempt fails.

        Returns a future that is done once order_service has answered. The
        outbox rows of acknowledged orders are deleted together a moment later,
        in one statement for many batches (a crash before that only means the
        relay sends them once more).
        """
        acknowledged = asyncio.get_running_loop().create_future()
        self._spawn(self._hand_off(orders, acknowledged))
        return acknowledged

    async def _hand_off(self, orders: list[dict], acknowledged: asyncio.Future) -> None:
        try:
            await self.orders.request("POST", INTERNAL_ORDERS_PATH, json={"orders": orders})
        finally:
            if not acknowledged.done():
                acknowledged.set_result(None)  # whatever the outcome: nobody waits for the relay
        self._delivered.extend(order["order_no"] for order in orders)
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(FLUSH_DELAY)
            while self._delivered:
                order_nos = self._delivered[:RELAY_BATCH]
                del self._delivered[:RELAY_BATCH]
                await repository.mark_delivered(self.db, order_nos)
        finally:
            self._flushing = False

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._settle)

    def _settle(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("order hand-off failed, the relay will retry: %s", task.exception())

    async def resend_pending(self) -> int:
        """Send every outbox row older than the grace period; returns how many went."""
        sent = 0
        while True:
            rows = await repository.undelivered(self.db, utcnow() - RELAY_GRACE, RELAY_BATCH)
            if not rows:
                return sent
            with span(self.tracer, "order_relay resend", {"seckill.orders": len(rows)}):
                await self.send([present_order(row) for row in rows])
            sent += len(rows)
            if len(rows) < RELAY_BATCH:
                return sent

    async def run(self) -> None:
        delay = self.interval
        while True:
            await asyncio.sleep(delay)
            try:
                sent = await self.resend_pending()
                if sent:
                    logger.info("relay re-sent %s orders", sent)
                delay = self.interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("relay could not reach order_service: %s", exc)
                delay = min(delay * 1.5, 2.0)

    async def drain(self, timeout: float = 5.0) -> None:
        """At shutdown, give in-flight hand-offs a moment to finish."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
