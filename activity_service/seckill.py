"""The seckill: each worker commits the concurrent requests for one activity together.

Pure decisions (triage, grant, ActivityState) and the Seckill that queues
requests, runs each batch as one transaction and answers them. The design, and
why it keeps its guarantees: docs/seckill.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import NamedTuple, Protocol

from opentelemetry.trace import Span, Tracer, get_current_span

from activity_service import metrics, repository
from activity_service.errors import ActivityNotFound, Ended, NotStarted, SoldOut
from activity_service.repository import NewOrders
from common.db import DUPLICATE_KEY, Database, ScriptedTransaction
from common.errors import AppError, ServiceUnavailable
from common.formats import iso, money, utcnow
from common.telemetry.tracing import batch_span

logger = logging.getLogger("seckill.seckill")

# The longest a worker trusts its own "closed" before asking MySQL again: units given
# back through another worker or instance reopen a sold-out sale, and must be on sale
# everywhere within a second, the request that buys them included (docs/seckill.md).
CLOSED_TRUST_SECONDS = 0.5
MAX_ACTIVITIES_IN_MEMORY = 256
# Holders are loaded a page at a time, so the event loop never stalls on a big sale.
HOLDERS_PAGE = 500
# How long the answer to a new order waits for order_service to hold it; past
# this the outbox relay delivers it and the client is answered anyway.
HANDOFF_WAIT_SECONDS = 1.0


def new_order_nos(now: datetime, count: int) -> list[str]:
    """Sortable by time, unguessable: 17 digits of time and 12 random hex digits each.
    The time is formatted, and the randomness drawn, once for the whole batch."""
    prefix = now.strftime("%Y%m%d%H%M%S%f")[:17]
    random = secrets.token_hex(6 * count)
    return [prefix + random[i : i + 12] for i in range(0, 12 * count, 12)]


def new_order_no(now: datetime) -> str:
    return new_order_nos(now, 1)[0]


def present_order(record: dict) -> dict:
    """The order as the seckill answers it: `created`, or how order_service released it."""
    return {
        "order_no": record["order_no"],
        "activity_id": record["activity_id"],
        "user_id": record["user_id"],
        "amount": money(record["amount"]),
        "status": record.get("released_as") or "created",
        "created_at": iso(record["created_at"]),
        "expires_at": iso(record["expires_at"]),
    }


def new_orders(activity_id: int, activity: dict, user_ids: list[int], now: datetime) -> NewOrders:
    """The batch's new orders, built once as answered and handed to order_service (what
    present_order would make of their records); what they share is formatted once."""
    expires_at = now + timedelta(seconds=activity["pay_within_seconds"])
    amount, created, expires = money(activity["price"]), iso(now), iso(expires_at)
    orders = [
        {
            "order_no": order_no,
            "activity_id": activity_id,
            "user_id": user_id,
            "amount": amount,
            "status": "created",
            "created_at": created,
            "expires_at": expires,
        }
        for user_id, order_no in zip(user_ids, new_order_nos(now, len(user_ids)), strict=True)
    ]
    return NewOrders(orders, activity["price"], now, expires_at)


@dataclass(slots=True)
class Outcome:
    """What one seckill request gets: an order (new or existing) or an error; for a look
    (a request that may not buy), `open` when the activity would sell to this user."""

    order: dict | None = None
    created: bool = False
    error: AppError | None = None
    open: bool = False


# A look's answer when the user holds no order and the activity is open to newcomers.
OPEN = Outcome(open=True)


class Queued(NamedTuple):
    """A request waiting for a batch: who asks, where the answer goes, and its trace."""

    user_id: int
    future: asyncio.Future
    span: Span | None  # None while tracing is off
    buys: bool = True  # False: a look, which may be answered with an order or a refusal only


@dataclass(slots=True)
class Closed:
    """A batch found the activity closed to newcomers: what to tell them, and for how long."""

    rejection: AppError  # returned to every newcomer, never raised: one object serves all
    sold: int  # how many records (orders, released ones included) the activity holds
    trust_seconds: float


@dataclass(slots=True)
class Triage:
    """A batch as its read sorts it, before anything is written."""

    outcomes: dict[int, Outcome]  # the holders' orders; refusals if the activity is closed
    winners: list[int]  # the earliest newcomers, as many as the stock read covers
    losers: list[int]  # the newcomers after them
    closed: Closed | None
    lookers: list[int] = field(default_factory=list)  # newcomers who only look: OPEN


class Sold(NamedTuple):
    """What a batch's transaction stored and decided."""

    outcomes: dict[int, Outcome]
    created: list[dict]  # the new orders, as answered and handed to order_service
    closed: Closed | None  # whether the activity is now closed to newcomers
    released: int | None = None  # the activity's count of given-back units, as read


class Rerun(Enum):
    """A batch's transaction stored nothing: run it again, under the row lock."""

    UNDER_LOCK = "the stock read is short of the batch, or was taken since the read"


class Remembered(NamedTuple):
    """Whether memory took a batch's read, and the generation its closing must match."""

    current: bool  # False: memory has moved on since the read, so the batch closes nothing
    generation: int


STALE = Remembered(False, 0)


class Committed(NamedTuple):
    """A batch once committed: its outcomes, the hand-off of its new orders, and whether
    its read may still close the activity to newcomers."""

    outcomes: dict[int, Outcome]
    closed: Closed | None
    handoff: asyncio.Future | None  # done once order_service holds the new orders
    remembered: Remembered


class Deliver(Protocol):
    """The hand-off of new orders to order_service (OrderRelay.deliver)."""

    def __call__(self, orders: list[dict]) -> asyncio.Future:
        """Send in the background; the future is done once order_service has answered."""


def records_held(activity: dict) -> int:
    """Every record of the activity: units sold and not given back, and those given back."""
    return activity["stock"] - activity["remaining"] + activity.get("released", 0)


def sold_out(activity_id: int, activity: dict, now: datetime) -> Closed:
    # Never trusted past the end: from then on newcomers must hear `ended`.
    until_end = (activity["ends_at"] - now).total_seconds()
    trust = min(until_end, CLOSED_TRUST_SECONDS)
    return Closed(SoldOut(activity_id), activity["stock"] + activity.get("released", 0), trust)


def closed_to_newcomers(activity_id: int, activity: dict, now: datetime) -> Closed | None:
    """Whether the activity turns newcomers away now: not started, ended or sold out."""
    sold = records_held(activity)
    if now < activity["starts_at"]:
        # Never trusted past the start.
        wait = (activity["starts_at"] - now).total_seconds()
        return Closed(NotStarted(activity_id), sold, min(wait, CLOSED_TRUST_SECONDS))
    if now >= activity["ends_at"]:
        return Closed(Ended(activity_id), sold, CLOSED_TRUST_SECONDS)
    if activity["remaining"] <= 0:
        return sold_out(activity_id, activity, now)
    return None


def triage(
    activity_id: int,
    activity: dict | None,
    holders: list[dict],
    users: list[int],
    now: datetime,
    lookers: frozenset[int] = frozenset(),
) -> Triage:
    """Holders get their order; newcomers are refused if the activity is closed to
    them (missing, not started, ended, sold out), else split by the stock read.
    Lookers (users who only look) never buy: if open to them, they are told OPEN."""
    if activity is None:
        missing = Closed(ActivityNotFound(activity_id), 0, CLOSED_TRUST_SECONDS)
        return Triage({u: Outcome(error=missing.rejection) for u in users}, [], [], missing)
    outcomes = {r["user_id"]: Outcome(order=present_order(r)) for r in holders}
    newcomers = [u for u in users if u not in outcomes]
    closed = closed_to_newcomers(activity_id, activity, now)
    if closed is not None:
        for user_id in newcomers:
            outcomes[user_id] = Outcome(error=closed.rejection)
        return Triage(outcomes, [], [], closed)
    looking = [u for u in newcomers if u in lookers]
    for user_id in looking:
        outcomes[user_id] = OPEN
    buyers = [u for u in newcomers if u not in lookers] if looking else newcomers
    left = activity["remaining"]
    return Triage(outcomes, buyers[:left], buyers[left:], None, looking)


def grant(
    activity_id: int,
    activity: dict,
    sale: Triage,
    created: list[dict],
    left: int,
    now: datetime,
    released: int | None = None,
) -> Sold:
    """The batch's outcomes once the winners' orders are stored and `left` remain:
    a new order each; if that sold the activity out, everyone else is refused."""
    outcomes = sale.outcomes
    for order in created:
        outcomes[order["user_id"]] = Outcome(order=order, created=True)
    closed = None
    if left == 0:
        closed = sold_out(activity_id, activity, now)
        for user_id in (*sale.losers, *sale.lookers):
            outcomes[user_id] = Outcome(error=closed.rejection)
    return Sold(outcomes, created, closed, released)


def split_answers(
    batch: list[Queued], outcomes: dict[int, Outcome]
) -> tuple[list[tuple[asyncio.Future, Outcome]], list[tuple[asyncio.Future, Outcome]]]:
    """The answers to give now, and the new orders, given once order_service holds
    them. A user's other requests in the batch get the same order, not as new."""
    now: list[tuple[asyncio.Future, Outcome]] = []
    new_orders: list[tuple[asyncio.Future, Outcome]] = []
    seen: set[int] = set()
    for user_id, future, *_ in batch:
        outcome = outcomes[user_id]
        if outcome.created and user_id in seen:
            outcome = Outcome(order=outcome.order)
        seen.add(user_id)
        (new_orders if outcome.created else now).append((future, outcome))
    return now, new_orders


def answer(answers: list[tuple[asyncio.Future, Outcome]]) -> None:
    for future, outcome in answers:
        if not future.done():  # its handler may have been cancelled
            future.set_result(outcome)


@dataclass
class ActivityState:
    """What a worker remembers of one activity: its holders, and whether it is closed."""

    holders: dict[int, dict] = field(default_factory=dict)
    # Holders are answered from memory only until then: a unit given back may have
    # changed an order's status, and MySQL is asked again every CLOSED_TRUST_SECONDS.
    confirmed_until: float = 0.0
    released_seen: int = -1  # the activity's count of given-back units, as last read
    rejection: AppError | None = None
    closed_until: float = 0.0
    generation: int = 0  # bumped by forget(); a batch older than that must not re-close
    queue: deque[Queued] = field(default_factory=deque)
    running: int = 0  # batch runners in flight
    loading: bool = False  # a task is loading every holder before closing

    def answer(self, user_id: int, now: float | None = None) -> Outcome | None:
        """The outcome from memory alone, or None when only MySQL can tell."""
        if now is None:
            now = time.monotonic()
        if self.confirmed_until <= now:
            return None
        order = self.holders.get(user_id)
        if order is not None:
            return Outcome(order=order)
        if self.rejection is not None and self.closed_until > now:
            return Outcome(error=self.rejection)
        return None

    def forget(self, users: tuple[int, ...] | list[int] = ()) -> None:
        """Stop answering newcomers, and these holders, from memory."""
        self.generation += 1
        self.rejection, self.closed_until = None, 0.0
        for user_id in users:
            self.holders.pop(user_id, None)

    def remember(
        self, outcomes: dict[int, Outcome], released: int | None, generation: int, read_at: float
    ) -> Remembered:
        """Keep the orders a batch read at read_at, unless memory has moved on since."""
        if released is not None and released != self.released_seen:
            if released < self.released_seen:
                return STALE  # an older snapshot than one already remembered
            if self.released_seen >= 0:
                # Units came back since this worker last looked: any holder's status may differ.
                self.holders.clear()
                self.forget()
            self.released_seen = released
            generation = self.generation  # this batch's read already counts those units
        if self.generation != generation:
            return STALE
        for user_id, outcome in outcomes.items():
            if outcome.order is not None:
                self.holders[user_id] = outcome.order
        self.confirmed_until = read_at + CLOSED_TRUST_SECONDS
        return Remembered(True, generation)

    def take_batch(self, batch_max: int) -> list[Queued]:
        """Up to batch_max queued requests that memory cannot answer; those it can,
        it answers on the way."""
        batch: list[Queued] = []
        now = time.monotonic()  # one clock read for the batch: it is taken in one go
        while self.queue and len(batch) < batch_max:
            request = self.queue.popleft()
            outcome = self.answer(request.user_id, now) if self.confirmed_until > now else None
            if outcome is None:
                batch.append(request)
            elif not request.future.done():
                request.future.set_result(outcome)
        return batch


class Seckill:
    """One per worker: queues each activity's requests and sells to them in batches."""

    def __init__(
        self,
        db: Database,
        deliver: Deliver,
        batch_max: int,
        batch_wait_ms: float,
        in_flight: int = 0,
        tracer: Tracer | None = None,
        handoff_wait: float = HANDOFF_WAIT_SECONDS,
    ):
        self.db = db
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

    def forget(self, activity_id: int, users: tuple[int, ...] | list[int] = ()) -> None:
        """Stock or window changed, or these users' units came back: stop answering
        newcomers, and these holders, from memory."""
        state = self._states.get(activity_id)
        if state is not None:
            state.forget(users)

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait for the batches in flight (at shutdown, so none is cut off mid-way)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def _spawn(self, coro) -> None:
        """A task of its own, kept until done: a client that hangs up cannot cancel it."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def known(self, activity_id: int, user_id: int) -> Outcome | None:
        """What memory alone answers (the user's order, or closed), without queueing."""
        state = self._states.get(activity_id)
        return state.answer(user_id) if state is not None else None

    async def buy(self, activity_id: int, user_id: int) -> Outcome:
        return await self._queue(activity_id, user_id, buys=True)

    async def look(self, activity_id: int, user_id: int) -> Outcome:
        """What a request that may not buy (its challenge failed) gets: the user's order, the
        activity's refusal (sold out, not started, ended), or OPEN. Read in the batches, as
        a buy is, but never sold to."""
        return await self._queue(activity_id, user_id, buys=False)

    async def _queue(self, activity_id: int, user_id: int, buys: bool) -> Outcome:
        state = self._state(activity_id)
        outcome = state.answer(user_id)
        if outcome is not None:
            return outcome
        future = asyncio.get_running_loop().create_future()
        # The request's span only matters to the batch's links while tracing is on.
        span = get_current_span() if self.tracer is not None else None
        state.queue.append(Queued(user_id, future, span, buys))
        if state.running < self.in_flight:
            state.running += 1
            self._spawn(self._drain(activity_id, state))
        # This request's own future: a handler cancelled meanwhile cancels only it,
        # and the batch, which never sets a done future, goes on for everyone else.
        return await future

    async def _drain(self, activity_id: int, state: ActivityState) -> None:
        """Run the activity's batches, one after another, until nobody is waiting."""
        try:
            while state.queue:
                await self._let_batch_fill(state)
                batch = state.take_batch(self.batch_max)
                if batch:
                    await self._run_batch(activity_id, state, batch)
        finally:
            state.running -= 1

    async def _let_batch_fill(self, state: ActivityState) -> None:
        if self.batch_wait and len(state.queue) < self.batch_max:
            await asyncio.sleep(self.batch_wait)

    async def _run_batch(self, activity_id: int, state: ActivityState, batch: list[Queued]) -> None:
        """Commit the batch, answer it, and shut newcomers out if it found the activity closed."""
        generation, read_at = state.generation, time.monotonic()
        # The batch's SQL and hand-off belong to its first request's trace;
        # the batch span and every other request's server span link to each other.
        with batch_span(
            self.tracer,
            "seckill batch",
            [request.span for request in batch] if self.tracer is not None else (),
            {"seckill.activity_id": activity_id, "seckill.batch_size": len(batch)},
        ):
            committed = await self._commit_or_fail(activity_id, state, batch, generation, read_at)
        metrics.seckill_batch(len(batch), time.monotonic() - read_at)
        # Answer first: nothing after COMMIT may delay or fail these requests.
        now, new_orders = split_answers(batch, committed.outcomes)
        answer(now)
        self._answer_after_handoff(new_orders, committed.handoff)
        if committed.closed is not None and committed.remembered.current:
            self._start_closing(
                activity_id, state, committed.closed, committed.remembered.generation, read_at
            )

    async def _commit_or_fail(
        self,
        activity_id: int,
        state: ActivityState,
        batch: list[Queued],
        generation: int,
        read_at: float,
    ) -> Committed:
        """_commit_batch's result; if it failed, a 503 for each of the batch's requests."""
        try:
            users = [r.user_id for r in batch]
            lookers = frozenset(r.user_id for r in batch if not r.buys) - {
                r.user_id for r in batch if r.buys
            }
            return await self._commit_batch(activity_id, state, users, lookers, generation, read_at)
        except Exception:
            logger.exception("seckill batch for activity %s failed", activity_id)
            failure = ServiceUnavailable("the seckill may not have been recorded; try again")
            return Committed({r.user_id: Outcome(error=failure) for r in batch}, None, None, STALE)

    def _start_closing(
        self,
        activity_id: int,
        state: ActivityState,
        closed: Closed,
        generation: int,
        read_at: float,
    ) -> None:
        """Load the holders in a task of its own (batches go on meanwhile), then shut
        newcomers out until the trust this batch saw runs out, counted from before its
        read: a unit given back after the read is offered again within that trust."""
        if state.loading:
            return
        state.loading = True
        until = read_at + closed.trust_seconds
        self._spawn(self._load_holders_and_close(activity_id, state, closed, generation, until))

    def _answer_after_handoff(
        self, answers: list[tuple[asyncio.Future, Outcome]], handoff: asyncio.Future | None
    ) -> None:
        """New orders are answered once order_service holds them (read-your-writes),
        or after handoff_wait at the latest: they are committed, and the relay
        delivers them anyway. One timer per batch, not a wait per request."""

        def answer_all(_: object = None) -> None:
            if timer is not None:
                timer.cancel()
            answer(answers)

        timer = None
        if handoff is None or handoff.done() or not answers:
            answer_all()
            return
        timer = asyncio.get_running_loop().call_later(self.handoff_wait, answer_all)
        handoff.add_done_callback(answer_all)

    async def _commit_batch(
        self,
        activity_id: int,
        state: ActivityState,
        user_ids: list[int],
        lookers: frozenset[int],
        generation: int,
        read_at: float,
    ) -> Committed:
        """The batch's transaction, the hand-off of its new orders, and what memory keeps."""
        users = list(dict.fromkeys(user_ids))  # one outcome per user, in arrival order
        sold = await self._transaction(activity_id, users, lookers, under_lock=False)
        if sold is Rerun.UNDER_LOCK:
            # Less is left than the batch asks for: share out what is, under the row lock.
            sold = await self._transaction(activity_id, users, lookers, under_lock=True)
        handoff = self.deliver(sold.created) if sold.created else None
        remembered = state.remember(sold.outcomes, sold.released, generation, read_at)
        return Committed(sold.outcomes, sold.closed, handoff, remembered)

    async def _transaction(
        self, activity_id: int, users: list[int], lookers: frozenset[int], under_lock: bool
    ) -> Sold | Rerun:
        """The batch's result, or Rerun.UNDER_LOCK when it stored nothing."""

        async def sell(tx: ScriptedTransaction) -> Sold | Rerun:
            return await self._sell(activity_id, users, lookers, under_lock, tx)

        return await self.db.scripted_transaction(
            sell,
            name="seckill_batch_last_units" if under_lock else "seckill_batch",
            # Another worker or instance committed this user's record after our
            # snapshot: a fresh attempt reads it as an existing order.
            retry_on=frozenset({DUPLICATE_KEY}),
        )

    async def _sell(
        self,
        activity_id: int,
        users: list[int],
        lookers: frozenset[int],
        under_lock: bool,
        tx: ScriptedTransaction,
    ) -> Sold | Rerun:
        """One batch's transaction, begun with the read and committed with the write:
        two round trips. While stock lasts the hot row is locked only inside the
        second one, from the conditional UPDATE to the COMMIT.

        Rerun.UNDER_LOCK (nothing stored) when the stock is short of the batch: the
        caller then runs it again under_lock, where the read locks the row until the
        COMMIT and exactly what is left is shared out, earliest newcomers first.
        """
        now = utcnow()
        read = repository.activity_and_holders(activity_id, users, lock_stock=under_lock)
        activity, holders = await tx.begin(read)
        sale = triage(activity_id, activity, holders, users, now, lookers)
        released = activity["released"] if activity is not None else None
        if not sale.winners:  # closed, or nobody new who buys
            await tx.commit()
            return Sold(sale.outcomes, [], sale.closed, released)
        if sale.losers and not under_lock:  # the read says too little is left
            await tx.rollback()
            return Rerun.UNDER_LOCK
        batch = new_orders(activity_id, activity, sale.winners, now)
        left = await tx.commit(repository.place_orders(activity_id, batch))
        if left is None:  # taken by another worker or instance since our read; nothing stored
            if under_lock:
                raise RuntimeError("conditional stock update failed under a row lock")
            return Rerun.UNDER_LOCK
        return grant(activity_id, activity, sale, batch.orders, left, now, released)

    async def _load_holders_and_close(
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
