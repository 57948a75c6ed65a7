"""The seckill: concurrent requests for one activity are committed together (group commit).

Per worker and per activity, requests queue while a batch is in flight; the
next batch takes up to SECKILL_BATCH_MAX of them into ONE transaction:
existing holders get their order back, the conditional UPDATE takes exactly
the stock granted to the earliest new users, their records and outbox rows
are inserted, and only after COMMIT is anyone answered. The batch runs in a
task of its own, so a client that hangs up cannot cancel it. Correctness
rests on the transaction alone; the batching and the in-memory fast paths
only save work. SECKILL_BATCH_MAX=1 is one transaction per request.

The fast path: a worker remembers every order it has seen (bounded by the
stock), and once an activity is closed to newcomers (sold out, ended, not
started yet, or missing) it answers everyone from memory for up to
CLOSED_TRUST_SECONDS, after loading all of the activity's holders once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from opentelemetry.trace import Span, Tracer

from activity_service import repository
from activity_service.errors import ActivityNotFound, Ended, NotStarted, SoldOut
from common.db import DUPLICATE_KEY, Cursor, Database
from common.errors import AppError, ServiceUnavailable
from common.formats import iso, money, utcnow
from common.tracing import batch_span, current_span

logger = logging.getLogger("seckill.seckill")

# How long a worker trusts its own "closed" before asking MySQL again: stock or
# the window can change through a PATCH on another worker or instance.
CLOSED_TRUST_SECONDS = 1.0
MAX_ACTIVITIES_IN_MEMORY = 256
# Holders are loaded a page at a time, so the event loop never stalls on a big sale.
HOLDERS_PAGE = 500
# How long the answer to a new order waits for order_service to hold it; past
# this the outbox relay delivers it and the client is answered anyway.
HANDOFF_WAIT_SECONDS = 1.0


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


class ShortOfStock(Exception):
    """The batch asks for more than is left: it must roll back and share out what remains."""


def new_records(activity_id: int, activity: dict, user_ids: list[int], now: datetime) -> list[dict]:
    return [
        {
            "activity_id": activity_id,
            "user_id": user_id,
            "order_no": new_order_no(now),
            "amount": activity["price"],
            "created_at": now,
        }
        for user_id in user_ids
    ]


@dataclass(slots=True)
class Outcome:
    """What one seckill request gets: an order (new or existing) or an error."""

    order: dict | None = None
    created: bool = False
    error: AppError | None = None


@dataclass(slots=True)
class Closed:
    """A batch found the activity closed to newcomers: what to tell them, and for how long."""

    rejection: Callable[[], AppError]  # a fresh error per request: raised errors keep tracebacks
    sold: int  # how many orders the activity holds
    trust_seconds: float


# What a batch's transaction returns: the outcomes, the records it created, and
# whether the activity is now closed to newcomers.
BatchResult = tuple[dict[int, "Outcome"], list[dict], Closed | None]


def sold_out(activity_id: int, activity: dict, now: datetime) -> Closed:
    # Never trusted past the end: from then on newcomers must hear `ended`.
    until_end = (activity["ends_at"] - now).total_seconds()
    return Closed(partial(SoldOut, activity_id), activity["stock"], min(until_end, 1.0))


def triage(
    activity_id: int,
    activity: dict | None,
    holders: list[dict],
    users: list[int],
    now: datetime,
) -> tuple[dict[int, Outcome], list[int], Closed | None]:
    """Holders get their order; the newcomers are returned, or rejected when the
    activity is closed to them (missing, not started, ended, sold out)."""
    if activity is None:
        error = partial(ActivityNotFound, activity_id)
        return {u: Outcome(error=error()) for u in users}, [], Closed(error, 0, 1.0)
    outcomes = {r["user_id"]: Outcome(order=present_order(r)) for r in holders}
    newcomers = [u for u in users if u not in outcomes]
    sold = activity["stock"] - activity["remaining"]
    closed: Closed | None = None
    if now < activity["starts_at"]:
        wait = (activity["starts_at"] - now).total_seconds()
        closed = Closed(partial(NotStarted, activity_id), sold, min(wait, 1.0))
    elif now >= activity["ends_at"]:
        closed = Closed(partial(Ended, activity_id), sold, 1.0)
    elif activity["remaining"] <= 0:
        closed = sold_out(activity_id, activity, now)
    if closed is not None:
        for user_id in newcomers:
            outcomes[user_id] = Outcome(error=closed.rejection())
        newcomers = []
    return outcomes, newcomers, closed


@dataclass
class ActivityState:
    """What a worker remembers of one activity: its holders, and whether it is closed."""

    holders: dict[int, dict] = field(default_factory=dict)
    rejection: Callable[[], AppError] | None = None
    closed_until: float = 0.0
    generation: int = 0  # bumped by forget(); a batch older than that must not re-close
    queue: deque[tuple[int, asyncio.Future, Span]] = field(default_factory=deque)
    running: int = 0  # batch runners in flight
    loading: bool = False  # a runner is loading every holder

    def answer(self, user_id: int) -> Outcome | None:
        """The outcome from memory alone, or None when only MySQL can tell."""
        order = self.holders.get(user_id)
        if order is not None:
            return Outcome(order=order)
        if self.rejection is not None and self.closed_until > time.monotonic():
            return Outcome(error=self.rejection())
        return None


class Seckill:
    def __init__(
        self,
        db: Database,
        deliver,
        batch_max: int,
        batch_wait_ms: float,
        in_flight: int = 0,
        tracer: Tracer | None = None,
        handoff_wait: float = HANDOFF_WAIT_SECONDS,
    ):
        self.db = db
        # deliver(orders) -> a future that is done once order_service holds them
        self.deliver = deliver
        self.batch_max = batch_max
        self.batch_wait = batch_wait_ms / 1000
        self.tracer = tracer
        self.handoff_wait = handoff_wait
        # Transactions in flight per activity in this worker. Batches: one, so that
        # requests gather while it commits (a second one in flight halves the batch
        # and doubles the per-batch work). One per request: as many as the pool
        # has connections, as plain handlers would.
        self.in_flight = in_flight or (db.settings.db_pool_size if batch_max == 1 else 1)
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
        """Stock or window changed: stop answering newcomers from memory."""
        state = self._states.get(activity_id)
        if state is not None:
            state.generation += 1
            state.rejection, state.closed_until = None, 0.0

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait for the batches in flight (at shutdown, so none is cut off mid-way)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def buy(self, activity_id: int, user_id: int) -> Outcome:
        state = self._state(activity_id)
        outcome = state.answer(user_id)
        if outcome is not None:
            return outcome
        future = asyncio.get_running_loop().create_future()
        state.queue.append((user_id, future, current_span()))
        if state.running < self.in_flight:
            state.running += 1
            task = asyncio.create_task(self._drain(activity_id, state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # This request's own future: a handler cancelled meanwhile cancels only it,
        # and the batch, which never sets a done future, goes on for everyone else.
        return await future

    async def _drain(self, activity_id: int, state: ActivityState) -> None:
        try:
            while state.queue:
                if self.batch_wait and len(state.queue) < self.batch_max:
                    await asyncio.sleep(self.batch_wait)
                batch = self._take_batch(state)
                if not batch:
                    continue
                generation = state.generation
                closed = None
                # The batch's SQL and hand-off belong to its first request's trace;
                # the batch span and every other request's server span link to each other.
                with batch_span(
                    self.tracer,
                    "seckill batch",
                    [span for _, _, span in batch],
                    {"seckill.activity_id": activity_id, "seckill.batch_size": len(batch)},
                ):
                    handoff = None
                    try:
                        outcomes, closed, handoff = await self._commit_batch(
                            activity_id, state, [user_id for user_id, _, _ in batch]
                        )
                    except Exception:
                        logger.exception("seckill batch for activity %s failed", activity_id)
                        failure = partial(
                            ServiceUnavailable, "the seckill may not have been recorded; try again"
                        )
                        outcomes = {user_id: Outcome(error=failure()) for user_id, _, _ in batch}
                # Answer first: nothing after COMMIT may delay or fail these requests.
                answered: set[int] = set()
                new_orders: list[tuple[asyncio.Future, Outcome]] = []
                for user_id, future, _ in batch:
                    outcome = outcomes[user_id]
                    if outcome.created and user_id in answered:
                        outcome = Outcome(order=outcome.order)  # the same user's other request
                    answered.add(user_id)
                    if outcome.created:
                        new_orders.append((future, outcome))
                    elif not future.done():
                        future.set_result(outcome)
                self._answer_after_handoff(new_orders, handoff)
                if closed is not None and not state.loading:
                    # In a task of its own: batches go on while the holders load.
                    state.loading = True
                    # Trusted from what this batch saw, not from when the load ends.
                    until = time.monotonic() + closed.trust_seconds
                    task = asyncio.create_task(
                        self._close(activity_id, state, closed, generation, until)
                    )
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            state.running -= 1

    def _answer_after_handoff(
        self, answers: list[tuple[asyncio.Future, Outcome]], handoff: asyncio.Future | None
    ) -> None:
        """New orders are answered once order_service holds them (read-your-writes),
        or after handoff_wait at the latest: they are committed, and the relay
        delivers them anyway. One timer per batch, not a wait per request."""

        def answer(_: object = None) -> None:
            if timer is not None:
                timer.cancel()
            for future, outcome in answers:
                if not future.done():
                    future.set_result(outcome)

        timer = None
        if handoff is None or handoff.done() or not answers:
            answer()
            return
        timer = asyncio.get_running_loop().call_later(self.handoff_wait, answer)
        handoff.add_done_callback(answer)

    def _take_batch(self, state: ActivityState) -> list[tuple[int, asyncio.Future, Span]]:
        """Up to batch_max queued requests that memory cannot answer; the rest are answered."""
        batch: list[tuple[int, asyncio.Future, Span]] = []
        while state.queue and len(batch) < self.batch_max:
            user_id, future, span = state.queue.popleft()
            outcome = state.answer(user_id)
            if outcome is None:
                batch.append((user_id, future, span))
            elif not future.done():
                future.set_result(outcome)
        return batch

    async def _commit_batch(
        self, activity_id: int, state: ActivityState, user_ids: list[int]
    ) -> tuple[dict[int, Outcome], Closed | None, asyncio.Future | None]:
        """The outcomes, whether newcomers are now shut out, and the hand-off of the new
        orders (a future done once order_service has answered), if any."""
        users = list(dict.fromkeys(user_ids))  # one outcome per user, in arrival order
        # A duplicate key means another worker or instance committed this user's
        # record after our snapshot: a fresh attempt reads it as an existing order.
        duplicate = frozenset({DUPLICATE_KEY})
        try:
            outcomes, created, closed = await self.db.transaction(
                partial(self._place, activity_id, users),
                name="seckill_batch",
                retry_on=duplicate,
                scripted=True,
            )
        except ShortOfStock:
            # Less is left than the batch asks for: share out what is, under the row lock.
            outcomes, created, closed = await self.db.transaction(
                partial(self._share_out, activity_id, users),
                name="seckill_batch_last_units",
                retry_on=duplicate,
            )
        handoff = None
        if created:
            handoff = self.deliver([o.order for o in outcomes.values() if o.created])
        for user_id, outcome in outcomes.items():
            if outcome.order is not None:
                state.holders[user_id] = outcome.order
        return outcomes, closed, handoff

    async def _place(self, activity_id: int, users: list[int], cur: Cursor) -> BatchResult:
        """While stock lasts, two round trips: START TRANSACTION and the read; then
        the conditional UPDATE, the records and outbox rows, and the COMMIT."""
        now = utcnow()
        activity, holders = await repository.begin_with_activity_and_holders(
            cur, activity_id, users
        )
        outcomes, newcomers, closed = triage(activity_id, activity, holders, users, now)
        if closed is not None or not newcomers:
            return outcomes, [], closed
        if activity["remaining"] < len(newcomers):
            raise ShortOfStock
        created = new_records(activity_id, activity, newcomers, now)
        left = await repository.place_orders(cur, activity_id, created)
        if left is None:  # taken by another worker or instance since our read; nothing stored
            raise ShortOfStock
        for record in created:
            outcomes[record["user_id"]] = Outcome(order=present_order(record), created=True)
        if left == 0:
            closed = sold_out(activity_id, activity, now)
        return outcomes, created, closed

    async def _share_out(self, activity_id: int, users: list[int], cur: Cursor) -> BatchResult:
        """The last units: take what is left under the row lock, earliest requests first."""
        now = utcnow()
        activity, holders = await repository.activity_and_holders(cur, activity_id, users)
        outcomes, newcomers, closed = triage(activity_id, activity, holders, users, now)
        if closed is not None or not newcomers:
            return outcomes, [], closed
        granted = await repository.take_stock(cur, activity_id, len(newcomers))
        created = new_records(activity_id, activity, newcomers[:granted], now)
        if created:
            await repository.insert_records(cur, created)
        for record in created:
            outcomes[record["user_id"]] = Outcome(order=present_order(record), created=True)
        if granted < len(newcomers):
            closed = sold_out(activity_id, activity, now)
            for user_id in newcomers[granted:]:
                outcomes[user_id] = Outcome(error=closed.rejection())
        return outcomes, created, closed

    async def _close(
        self,
        activity_id: int,
        state: ActivityState,
        closed: Closed,
        generation: int,
        until: float,
    ) -> None:
        """Know every holder (at most `stock` of them), then answer newcomers from memory."""
        try:
            if closed.trust_seconds <= 0:
                return
            after = 0
            while len(state.holders) < closed.sold:
                page = await repository.records_after(self.db, activity_id, after, HOLDERS_PAGE)
                for record in page:
                    state.holders.setdefault(record["user_id"], present_order(record))
                if len(page) < HOLDERS_PAGE:
                    break
                after = page[-1]["user_id"]
        except Exception as exc:
            logger.warning("could not load the holders of activity %s: %s", activity_id, exc)
            return
        finally:
            state.loading = False
        if state.generation == generation and until > time.monotonic():
            state.rejection = closed.rejection
            state.closed_until = until
