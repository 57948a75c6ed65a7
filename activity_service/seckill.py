"""The seckill: concurrent requests for one activity are committed together (group commit).

Per worker and per activity, requests queue while a batch is in flight; the
next batch takes up to SECKILL_BATCH_MAX of them into ONE transaction:
existing holders get their order back, the conditional UPDATE takes exactly
the stock granted to the earliest new users, their records and outbox rows
are inserted, and only after COMMIT is anyone answered. The batch runs in a
task of its own, so a client that hangs up cannot cancel it. Correctness
rests on the transaction alone; the batching and the in-memory fast paths
only save work. SECKILL_BATCH_MAX=1 is one transaction per request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from opentelemetry.trace import Span, Tracer

from activity_service import repository
from activity_service.errors import ActivityNotFound, Ended, NotStarted, SoldOut
from common.db import DUPLICATE_KEY, Cursor, Database
from common.errors import AppError, ServiceUnavailable
from common.formats import iso, money, utcnow
from common.tracing import batch_span, current_span

logger = logging.getLogger("seckill.seckill")

# How long a worker trusts its own "sold out" before asking MySQL again: stock
# can come back through a PATCH on another worker or instance.
SOLD_OUT_TRUST_SECONDS = 1.0
MAX_ACTIVITIES_IN_MEMORY = 256


def new_order_no(now: datetime) -> str:
    """Sortable by time, unguessable: 17 digits of time and 12 random hex digits."""
    return now.strftime("%Y%m%d%H%M%S%f")[:17] + secrets.token_hex(6)


def present_order(record: dict) -> dict:
    return {
        "order_no": record["order_no"],
        "activity_id": record["activity_id"],
        "user_id": record["user_id"],
        "amount": money(record["amount"]),
        "status": "created",
        "created_at": iso(record["created_at"]),
    }


@dataclass(slots=True)
class Outcome:
    """What one seckill request gets: an order (new or existing) or an error."""

    order: dict | None = None
    created: bool = False
    error: AppError | None = None
    handoff: asyncio.Future | None = None  # the delivery of a new order to order_service


@dataclass
class ActivityState:
    """What a worker remembers of one activity: who holds orders, and whether it sold out."""

    holders: dict[int, dict] = field(default_factory=dict)
    sold_out_until: float = 0.0
    queue: list[tuple[int, asyncio.Future, Span]] = field(default_factory=list)
    running: bool = False


class Seckill:
    def __init__(
        self,
        db: Database,
        deliver,
        batch_max: int,
        batch_wait_ms: float,
        tracer: Tracer | None = None,
    ):
        self.db = db
        self.deliver = deliver  # (orders) -> Future done once order_service holds them
        self.batch_max = batch_max
        self.batch_wait = batch_wait_ms / 1000
        self.tracer = tracer
        self._states: OrderedDict[int, ActivityState] = OrderedDict()
        self._tasks: set[asyncio.Task] = set()

    def _state(self, activity_id: int) -> ActivityState:
        state = self._states.get(activity_id)
        if state is None:
            state = self._states[activity_id] = ActivityState()
            while len(self._states) > MAX_ACTIVITIES_IN_MEMORY:
                oldest_id, oldest = next(iter(self._states.items()))
                if oldest.running:
                    break
                del self._states[oldest_id]
        else:
            self._states.move_to_end(activity_id)
        return state

    def forget(self, activity_id: int) -> None:
        """Stock or window changed: drop what this worker remembers of the activity."""
        state = self._states.get(activity_id)
        if state is not None:
            state.sold_out_until = 0.0

    async def buy(self, activity_id: int, user_id: int) -> Outcome:
        state = self._state(activity_id)
        order = state.holders.get(user_id)
        if order is not None:
            return Outcome(order=order)
        if state.sold_out_until > time.monotonic():
            return Outcome(error=SoldOut(activity_id))
        future = asyncio.get_running_loop().create_future()
        state.queue.append((user_id, future, current_span()))
        if not state.running:
            state.running = True
            task = asyncio.create_task(self._drain(activity_id, state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # shield: a cancelled handler must not cancel the outcome others share.
        return await asyncio.shield(future)

    async def _drain(self, activity_id: int, state: ActivityState) -> None:
        try:
            while state.queue:
                if self.batch_wait and len(state.queue) < self.batch_max:
                    await asyncio.sleep(self.batch_wait)
                batch = state.queue[: self.batch_max]
                del state.queue[: self.batch_max]
                # The batch's SQL and hand-off belong to its first request's trace;
                # the batch span and every other request's server span link to each other.
                with batch_span(
                    self.tracer,
                    "seckill batch",
                    [span for _, _, span in batch],
                    {"seckill.activity_id": activity_id, "seckill.batch_size": len(batch)},
                ):
                    try:
                        users = [user_id for user_id, _, _ in batch]
                        outcomes = await self._commit_batch(activity_id, state, users)
                    except Exception:
                        logger.exception("seckill batch for activity %s failed", activity_id)
                        failure = ServiceUnavailable("the seckill could not be recorded; try again")
                        outcomes = {user_id: Outcome(error=failure) for user_id, _, _ in batch}
                answered: set[int] = set()
                for user_id, future, _ in batch:
                    outcome = outcomes[user_id]
                    if user_id in answered and outcome.created:
                        # Only one call placed the order; the user's repeats are told it exists.
                        outcome = Outcome(order=outcome.order)
                    answered.add(user_id)
                    if not future.done():
                        future.set_result(outcome)
        finally:
            state.running = False

    async def _commit_batch(
        self, activity_id: int, state: ActivityState, user_ids: list[int]
    ) -> dict[int, Outcome]:
        users = list(dict.fromkeys(user_ids))  # one outcome per user, in arrival order

        async def work(cur: Cursor) -> tuple[dict[int, Outcome], list[dict], int | None]:
            """Returns the outcomes, the records created, and the stock if now sold out."""
            now = utcnow()
            activity = await repository.activity_for_seckill(cur, activity_id)
            if activity is None:
                error = ActivityNotFound(activity_id)
                return {u: Outcome(error=error) for u in users}, [], None
            outcomes = {
                r["user_id"]: Outcome(order=present_order(r))
                for r in await repository.records_of_users(cur, activity_id, users)
            }
            newcomers = [u for u in users if u not in outcomes]
            created: list[dict] = []
            sold_out = activity["remaining"] <= 0
            if newcomers:
                if now < activity["starts_at"]:
                    rejection: AppError = NotStarted(activity_id)
                    granted = 0
                elif now >= activity["ends_at"]:
                    rejection = Ended(activity_id)
                    granted = 0
                else:
                    rejection = SoldOut(activity_id)
                    granted = await repository.take_stock(cur, activity_id, len(newcomers))
                    sold_out = granted < len(newcomers)
                for user_id in newcomers[granted:]:
                    outcomes[user_id] = Outcome(error=rejection)
                created = [
                    {
                        "activity_id": activity_id,
                        "user_id": user_id,
                        "order_no": new_order_no(now),
                        "amount": activity["price"],
                        "created_at": now,
                    }
                    for user_id in newcomers[:granted]
                ]
                if created:
                    await repository.insert_records(cur, created)
                for record in created:
                    outcomes[record["user_id"]] = Outcome(order=present_order(record), created=True)
            active = activity["starts_at"] <= now < activity["ends_at"]
            return outcomes, created, activity if sold_out and active else None

        # A duplicate key means another worker or instance committed this user's
        # record after our snapshot: a fresh attempt reads it as an existing order.
        outcomes, created, sold_out = await self.db.transaction(
            work, name="seckill_batch", retry_on=frozenset({DUPLICATE_KEY})
        )
        handoff = self.deliver([present_order(r) for r in created]) if created else None
        for user_id, outcome in outcomes.items():
            if outcome.order is not None:
                state.holders[user_id] = outcome.order
            if outcome.created:
                outcome.handoff = handoff
        if sold_out is not None:
            await self._remember_sold_out(activity_id, state, sold_out)
        return outcomes

    async def _remember_sold_out(
        self, activity_id: int, state: ActivityState, activity: dict
    ) -> None:
        """Know every holder (at most `stock` of them), then answer from memory for a while.

        Never past the activity's end: from then on newcomers must hear `ended`.
        """
        if len(state.holders) < activity["stock"]:
            for record in await repository.all_records(self.db, activity_id):
                state.holders.setdefault(record["user_id"], present_order(record))
        until_end = (activity["ends_at"] - utcnow()).total_seconds()
        state.sold_out_until = time.monotonic() + min(SOLD_OUT_TRUST_SECONDS, until_end)
