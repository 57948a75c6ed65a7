"""Hands committed orders to order_service, and re-sends whatever it has not acknowledged.

The record is written undelivered (`delivered_at` NULL) in the seckill's own
transaction, so an order is never lost: right after COMMIT the batch is sent at
once; if that fails, or the process dies first, the relay loop finds the record
still undelivered and sends it again.
order_service's internal create is idempotent, so a repeat is harmless.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import deque
from datetime import timedelta

from opentelemetry.trace import Tracer

from activity_service import metrics, repository
from activity_service.seckill import present_order
from common.client import ServiceClient
from common.db import Database
from common.formats import utcnow
from common.relay import relay_forever
from common.telemetry.metrics import count
from common.telemetry.tracing import span

logger = logging.getLogger("seckill.relay")

INTERNAL_ORDERS_PATH = "/internal/orders"
RELAY_BATCH = 500
# How long one hand-off call may take before its orders are left to the relay loop.
HANDOFF_TIMEOUT = 3.0
# Rows younger than this are still being sent by the request path itself.
RELAY_GRACE = timedelta(seconds=2)
# How long acknowledged records wait, to be marked delivered together with later ones: in a
# sale, a few hundred orders' marks in one statement rather than a statement per hand-off.
# Well inside RELAY_GRACE, so the relay does not send them again meanwhile.
FLUSH_DELAY = 0.5


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
        self._delivered: list[str] = []  # acknowledged by order_service, not yet marked
        self._flushing = False
        # Batches waiting for the hand-off in flight to finish: (orders, acknowledged, context).
        self._waiting: deque[tuple[list[dict], asyncio.Future, contextvars.Context]] = deque()
        self._sending = False

    async def send(self, orders: list[dict]) -> None:
        """One internal call for many orders, marked delivered once it is acknowledged."""
        await self.orders.request("POST", INTERNAL_ORDERS_PATH, json={"orders": orders})
        count(metrics.RELAY_DELIVERED, (), len(orders))
        await repository.mark_delivered(self.db, [order["order_no"] for order in orders])

    def deliver(self, orders: list[dict]) -> asyncio.Future:
        """Send in the background; the relay loop retries if this attempt fails.

        Returns a future that is done once order_service has answered. One
        hand-off is in flight per worker: batches committed meanwhile wait and
        then go together, in one call (group commit, for the hand-off). The
        records of acknowledged orders are marked delivered together a moment later,
        in one statement for many batches (a crash before that only means the
        relay sends them once more).
        """
        acknowledged = asyncio.get_running_loop().create_future()
        self._waiting.append((orders, acknowledged, contextvars.copy_context()))
        if not self._sending:
            self._send_next()
        return acknowledged

    def _send_next(self) -> None:
        """Start one call carrying every waiting batch (up to RELAY_BATCH orders)."""
        if not self._waiting:
            self._sending = False
            return
        self._sending = True
        orders, acknowledged = [], []
        context = self._waiting[0][2]  # the call belongs to the first batch's trace
        while self._waiting and (
            not orders or len(orders) + len(self._waiting[0][0]) <= RELAY_BATCH
        ):
            batch, future, _ = self._waiting.popleft()
            orders.extend(batch)
            acknowledged.append(future)
        self._spawn(self._hand_off(orders, acknowledged), context)

    async def _hand_off(self, orders: list[dict], acknowledged: list[asyncio.Future]) -> None:
        started = time.perf_counter()
        try:
            # Bounded: the batches waiting behind this call must not wait on a hung peer.
            await asyncio.wait_for(
                self.orders.request("POST", INTERNAL_ORDERS_PATH, json={"orders": orders}),
                HANDOFF_TIMEOUT,
            )
        finally:
            for future in acknowledged:
                if not future.done():
                    future.set_result(None)  # whatever the outcome: nobody waits for the relay
            if not asyncio.current_task().cancelling():  # at shutdown the relay has the rest
                self._send_next()
        metrics.handed_off(len(orders), time.perf_counter() - started)
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

    def _spawn(self, coro, context: contextvars.Context | None = None) -> None:
        task = asyncio.create_task(coro, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._settle)

    def _settle(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            count(metrics.RELAY_FAILURES)
            logger.warning("order hand-off failed, the relay will retry: %s", task.exception())

    async def resend_pending(self) -> int:
        """Send every undelivered record older than the grace period; returns how many went."""
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
        await relay_forever(self.resend_pending, self.interval, "order_service", logger)

    async def drain(self, timeout: float = 5.0) -> None:
        """At shutdown, give in-flight hand-offs (and those they start) a moment to finish."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.wait(list(self._tasks), timeout=left)
