"""The live sale dashboard's data (docs/dashboard.md): per-second counts of the seckill's
answers, shared by every worker and instance, and the snapshot a stream sends each second.

Each worker sums its answers per activity and second in memory, and once a second adds
them to the shared counts: Redis hashes when REDIS_URL is set, a MySQL table otherwise
(and while Redis does not answer). An activity's hashes share one hash tag, so on a Redis
Cluster a snapshot's minute is read from one node in one round trip.
A snapshot reads the last minute of them, the activity's row, the outbox, and the order
states from order_service; one per activity and second per worker, however many streams.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import hmac
import logging
import time
from contextlib import suppress
from datetime import datetime
from typing import Any

from activity_service import repository
from activity_service.metrics import SALE_OUTCOMES
from common.client import ServiceClient
from common.db import Database
from common.redis import REDIS_ERRORS, RedisClient, RedisStatus

logger = logging.getLogger("seckill.dashboard")

OUTCOMES = SALE_OUTCOMES
# Upper bounds of the answer-time buckets, in milliseconds; p50 and p99 are read from them.
LATENCY_MS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000, 2000)
# The shared counts' field names, made once: the seckill's hot path only looks them up.
OUTCOME_FIELDS = {outcome: f"o:{outcome}" for outcome in OUTCOMES}
LATENCY_FIELDS = tuple(f"l:{i}" for i in range(len(LATENCY_MS) + 1))
WINDOW_SECONDS = 60
# A worker adds a second's counts just after it ends (flushes follow the clock's seconds), so
# a snapshot shows the seconds up to SETTLE_SECONDS ago: complete on every worker.
SETTLE_SECONDS = 2
KEEP_SECONDS = 600  # shared counts older than this are dropped
TICKET_SECONDS = 60
STATES = ("created", "paid", "cancelled", "expired")


def ticket_key(service_token: str) -> bytes:
    """Derived from the service credential, which every instance shares already."""
    return hashlib.sha256(b"seckill dashboard\0" + service_token.encode()).digest()


def new_ticket(key: bytes, now: float | None = None) -> str:
    """A stream ticket: its expiry and an HMAC of it, good for TICKET_SECONDS."""
    expires = int((now if now is not None else time.time()) + TICKET_SECONDS)
    return f"{expires}.{hmac.new(key, str(expires).encode(), hashlib.sha256).hexdigest()}"


def ticket_valid(key: bytes, ticket: str | None, now: float | None = None) -> bool:
    expires, _, signature = (ticket or "").partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    expected = hmac.new(key, expires.encode(), hashlib.sha256).hexdigest()
    now = now if now is not None else time.time()
    return hmac.compare_digest(signature.encode(), expected.encode()) and int(expires) > now


def percentile(buckets: list[int], share: float) -> float | None:
    """The share-quantile in ms from bucket counts (the bucket's upper bound)."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = share * total, 0
    for bound, number in zip((*LATENCY_MS, LATENCY_MS[-1] * 2), buckets, strict=True):
        seen += number
        if seen >= rank:
            return bound
    return LATENCY_MS[-1] * 2


class AnswerCounts:
    """This worker's answers per (activity, second) since the last flush, then shared."""

    def __init__(
        self,
        db: Database,
        redis: RedisClient | None,
        prefix: str,
        status: RedisStatus | None = None,
    ):
        self.db, self.redis, self.prefix = db, redis, prefix
        self.status = status if redis is not None else None
        if self.status is not None:
            self.status.uses("dashboard_counts")
        self.pending: dict[tuple[int, int], dict[str, int]] = {}

    def record(self, activity_id: int, outcome: str, seconds: float) -> None:
        key = (activity_id, int(time.time()))
        fields = self.pending.get(key)
        if fields is None:
            fields = self.pending[key] = {}
        field = OUTCOME_FIELDS.get(outcome) or f"o:{outcome}"
        fields[field] = fields.get(field, 0) + 1
        bucket = LATENCY_FIELDS[bisect.bisect_left(LATENCY_MS, seconds * 1000)]
        fields[bucket] = fields.get(bucket, 0) + 1

    def _key(self, activity_id: int, second: int) -> str:
        return f"{{{self.prefix}:dashboard:{activity_id}}}:{second}"

    async def flush(self) -> None:
        pending, self.pending = self.pending, {}
        if not pending:
            return
        if self.redis is not None:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for (activity_id, second), fields in pending.items():
                        key = self._key(activity_id, second)
                        for field, number in fields.items():
                            pipe.hincrby(key, field, number)
                        pipe.expire(key, KEEP_SECONDS)
                    await pipe.execute()
                self._redis_ok()
                return
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
                logger.warning("dashboard counts to Redis failed, kept in MySQL: %s", exc)
        rows = [
            (activity_id, second, field, number)
            for (activity_id, second), fields in pending.items()
            for field, number in fields.items()
        ]
        await repository.add_answer_counts(self.db, rows)

    async def window(
        self, activity_id: int, last: int, first: int | None = None
    ) -> dict[int, dict[str, int]]:
        """second -> field -> count, for the WINDOW_SECONDS up to last (or from first)."""
        seconds = range(last - WINDOW_SECONDS + 1 if first is None else first, last + 1)
        if not seconds:
            return {}
        if self.redis is not None:
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for second in seconds:
                        pipe.hgetall(self._key(activity_id, second))
                    replies = await pipe.execute()
                self._redis_ok()
                return {
                    second: {k.decode(): int(v) for k, v in reply.items()}
                    for second, reply in zip(seconds, replies, strict=True)
                    if reply
                }
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
                logger.warning("dashboard counts from Redis failed, read from MySQL: %s", exc)
        return await repository.answer_counts(self.db, activity_id, seconds[0], last)

    def _redis_ok(self) -> None:
        if self.status is not None:
            self.status.back("dashboard_counts")

    def _redis_failed(self, exc: BaseException) -> None:
        if self.status is not None:
            self.status.away("dashboard_counts", exc)

    async def prune(self) -> None:
        if self.redis is None:
            await repository.drop_answer_counts(self.db, int(time.time()) - KEEP_SECONDS)

    async def run(self) -> None:
        pruned = 0.0
        while True:
            # Just after each second ends: a snapshot's last second is complete everywhere.
            await asyncio.sleep(1.02 - time.time() % 1)
            try:
                await self.flush()
                if time.monotonic() - pruned > 60:
                    pruned = time.monotonic()
                    await self.prune()
            except Exception as exc:  # MySQL away: these counts are lost, the sale is not
                logger.warning("dashboard counts failed: %s", exc)


def series(counts: dict[int, dict[str, int]], first: int, last: int) -> list[dict[str, Any]]:
    points = []
    for second in range(first, last + 1):
        fields = counts.get(second, {})
        buckets = [fields.get(f"l:{i}", 0) for i in range(len(LATENCY_MS) + 1)]
        points.append(
            {
                "t": second,
                "answers": {o: fields.get(f"o:{o}", 0) for o in OUTCOMES},
                "p50_ms": percentile(buckets, 0.5),
                "p99_ms": percentile(buckets, 0.99),
            }
        )
    return points


class SaleStory:
    """One activity's answers per second as seen so far (the counts kept, KEEP_SECONDS):
    the totals and the peak second stay on the page after the window has moved on."""

    def __init__(self) -> None:
        self.seconds: dict[int, tuple[dict[str, int], float | None]] = {}  # answers, p99
        self.orders: dict | None = None  # repository.sale_orders, with the row it was read at
        self.orders_of: tuple | None = None

    def add(self, points: list[dict[str, Any]], now: int) -> None:
        for point in points:  # a second's counts only grow: the latest reading is the best
            if any(point["answers"].values()):
                self.seconds[point["t"]] = (point["answers"], point["p99_ms"])
        for second in [t for t in self.seconds if t <= now - KEEP_SECONDS]:
            del self.seconds[second]

    def summary(self, activity: dict) -> dict[str, Any]:
        totals = dict.fromkeys(OUTCOMES, 0)
        peak: tuple[int, int, float | None] | None = None  # second, answers, p99
        for second, (answers, p99) in sorted(self.seconds.items()):
            number = sum(answers.values())
            for outcome, n in answers.items():
                totals[outcome] += n
            if peak is None or number > peak[1]:
                peak = (second, number, p99)
        orders = self.orders or {}
        sold_out = (
            orders["last"] - orders["first"]
            if activity["remaining"] == 0 and orders.get("first") is not None
            else None
        )
        return {
            "answers": sum(totals.values()),
            "by_outcome": totals,
            "peak_answers_per_second": peak[1] if peak else 0,
            "peak_answers_at": peak[0] if peak else None,
            "p99_at_peak_ms": peak[2] if peak else None,
            "orders": orders.get("orders", 0),
            "peak_orders_per_second": orders.get("peak_orders", 0),
            "peak_orders_at": orders.get("peak_second"),
            "first_order": orders.get("first"),
            "last_order": orders.get("last"),
            "first_order_to_sold_out_seconds": sold_out,
        }


class Snapshots:
    """What a stream sends: built once per activity and second in this worker.

    One frame tells one moment: the answers of the seconds up to `as_of` (complete on
    every worker) beside the activity's row as read at that moment (kept from the
    snapshot of the second before), so a sold-out stock never stands beside answers not
    yet counted. The sale's totals and peaks come from every second of it this worker has
    read (the first snapshot of an activity reads back as far as the counts are kept), and
    its orders from this service's own records.
    """

    def __init__(self, db: Database, counts: AnswerCounts, orders: ServiceClient):
        self.db, self.counts, self.orders = db, counts, orders
        self._cache: dict[int, tuple[int, asyncio.Task]] = {}
        self._rows: dict[int, tuple[int, dict | None]] = {}  # activity -> (read at, row)
        self._stories: dict[int, SaleStory] = {}

    async def get(self, activity_id: int) -> dict[str, Any]:
        now = int(time.time())
        cached = self._cache.get(activity_id)
        if cached is None or cached[0] != now:
            if len(self._cache) > 100:
                self._cache.clear()
                self._rows.clear()
                self._stories.clear()
            task = asyncio.ensure_future(self._build(activity_id, now))
            task.add_done_callback(_retrieve)
            cached = self._cache[activity_id] = (now, task)
        return await asyncio.shield(cached[1])

    async def _build(self, activity_id: int, now: int) -> dict[str, Any]:
        last = now - SETTLE_SECONDS  # the last second complete on every worker
        current, backlog, counts, states = await asyncio.gather(
            repository.sale_state(self.db, activity_id),
            repository.outbox_backlog(self.db),
            self.counts.window(activity_id, last),
            self._order_states(activity_id),
        )
        # The row as it was when the frame's last second ended: read a second ago.
        before = self._rows.get(activity_id)
        self._rows[activity_id] = (now, current)
        activity = before[1] if before and before[0] == now - 1 and before[1] else current
        points = series(counts, last - WINDOW_SECONDS + 1, last)
        story = await self._story(activity_id, activity, last, points, now)
        return {
            "at": now,
            "as_of": last + 1,
            "activity": activity,
            "sale": story.summary(activity) if activity else None,
            "series": points,
            "outbox": {
                "backlog": int(backlog["backlog"]),
                "oldest_seconds": (backlog["oldest_us"] or 0) / 1e6,
            },
            "orders": states,
        }

    async def _story(
        self, activity_id: int, activity: dict | None, last: int, points: list, now: int
    ) -> SaleStory:
        story = self._stories.get(activity_id)
        if story is None:
            story = self._stories[activity_id] = SaleStory()
            if activity is not None:  # what happened before this window, as far as kept
                starts = int(datetime.fromisoformat(activity["starts_at"]).timestamp())
                first = max(starts - WINDOW_SECONDS, now - KEEP_SECONDS + 1)
                earlier = await self.counts.window(activity_id, last - WINDOW_SECONDS, first=first)
                story.add(series(earlier, first, last - WINDOW_SECONDS), now)
        story.add(points, now)
        if activity is not None:
            # The records change only with the stock: read them again only then.
            of = (activity["remaining"], activity["released"])
            if story.orders_of != of:
                story.orders = await repository.sale_orders(self.db, activity_id)
                story.orders_of = of
        return story

    async def _order_states(self, activity_id: int) -> dict[str, int] | None:
        with suppress(Exception):  # order_service away: the page says so
            return await self.orders.request(
                "GET", f"/internal/activities/{activity_id}/order-states"
            )
        return None


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
