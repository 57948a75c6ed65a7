"""After the purchase: the sweeper that expires unpaid orders, and the relay that gives
their units back to activity_service (docs/seckill.md, "Units given back")."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from common.client import ServiceClient
from common.db import Database
from common.formats import utcnow
from common.relay import relay_forever
from common.telemetry.metrics import count
from order_service import repository
from order_service.metrics import ORDER_EXPIRATIONS

logger = logging.getLogger("seckill.lifecycle")

INTERNAL_RELEASES_PATH = "/internal/releases"
RELEASE_BATCH = 500
# Rows younger than this are still being sent by the code that wrote them.
RELAY_GRACE = timedelta(seconds=2)
# Orders one sweep expires per transaction: short transactions, short lock holds.
SWEEP_BATCH = 100


class ReleaseRelay:
    """Sends released units to activity_service: at once, and again until acknowledged."""

    def __init__(self, db: Database, activities: ServiceClient, interval: float = 1.0):
        self.db, self.activities, self.interval = db, activities, interval
        self._tasks: set[asyncio.Task] = set()

    async def send(self, releases: list[dict]) -> None:
        """One internal call; the outbox rows go once activity_service has applied them."""
        await self.activities.request("POST", INTERNAL_RELEASES_PATH, json={"releases": releases})
        await repository.mark_released(self.db, [release["order_no"] for release in releases])

    def deliver(self, releases: list[dict]) -> None:
        """Send in the background, just after the commit; the relay loop retries a failure."""
        task = asyncio.create_task(self.send(releases))
        self._tasks.add(task)
        task.add_done_callback(self._settle)

    def _settle(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("release hand-off failed, the relay will retry: %s", task.exception())

    async def resend_pending(self) -> int:
        """Send every outbox row older than the grace period; returns how many went."""
        sent = 0
        while True:
            rows = await repository.pending_releases(self.db, utcnow() - RELAY_GRACE, RELEASE_BATCH)
            if rows:
                await self.send(rows)
            sent += len(rows)
            if len(rows) < RELEASE_BATCH:
                return sent

    async def run(self) -> None:
        await relay_forever(self.resend_pending, self.interval, "activity_service", logger)

    async def drain(self, timeout: float = 5.0) -> None:
        """At shutdown, give the hand-offs in flight a moment; the relay has the rest."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)


class Sweeper:
    """Expires unpaid orders past their deadline. Safe in any number of workers and
    instances: each transaction takes rows nobody else holds (SKIP LOCKED)."""

    def __init__(self, db: Database, relay: ReleaseRelay, interval: float):
        self.db, self.relay, self.interval = db, relay, interval

    async def sweep(self) -> int:
        """Expire every order due now, SWEEP_BATCH per transaction; returns how many."""
        expired = 0
        while True:
            order_nos = await repository.expire_due(self.db, SWEEP_BATCH, utcnow())
            count(ORDER_EXPIRATIONS, (), len(order_nos))
            if order_nos:
                self.relay.deliver([{"order_no": n, "status": "expired"} for n in order_nos])
            expired += len(order_nos)
            # Not at a short batch: SKIP LOCKED may pass over rows it could have taken
            # while other sweepers' transactions end. Even an empty batch can come early
            # when rounds overlap; the next round takes what is left (docs/seckill.md).
            if not order_nos:
                return expired

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception as exc:  # MySQL away: the next round tries again
                logger.warning("sweeping expired orders failed: %s", exc)
