"""Rate limits: fixed windows shared through Redis, or per process in memory.

With Redis every worker and instance counts in the same key, each process sending its
counts in batches (common/limits/shared_counts.py); without it (or while Redis is away) each
process counts alone (common/limits/local_counts.py), and /health says so. A key that has
been refused is answered from memory until its window resets, so a client hammering past its
allowance costs no Redis round trip. The `limits` library parses the limits; the login
throttling's exact counts (check and count, off the hot path) are ExactCounts'. One Redis, a
Redis Cluster or Sentinel alike: each command names one key, or keys under one limit's hash
tag (common/redis.py). The design and the tolerance: docs/seckill.md.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from limits import RateLimitItem, parse
from sanic import Sanic

from common.config import Settings
from common.errors import AppError
from common.limits.local_counts import LocalCounts
from common.limits.shared_counts import ASK_REDIS, SharedCounts
from common.redis import REDIS_ERRORS, RedisClient, RedisStatus

logger = logging.getLogger("seckill.ratelimit")

# While Redis is away, how long to count in memory before trying it again.
REDIS_RETRY_SECONDS = 1.0
# Refused keys remembered at most; past it the expired ones are dropped.
MAX_REFUSED_IN_MEMORY = 100_000


class RateLimited(AppError):
    status, code = 429, "rate_limited"

    def __init__(self, retry_after: int):
        super().__init__(f"too many requests; try again in {retry_after} s")
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


def parse_limit(text: str) -> RateLimitItem | None:
    """'20/hour', '5 per 15 minutes', ...; '0' turns the limit off (None)."""
    if text.strip() == "0":
        return None
    try:
        item = parse(text)
    except ValueError:
        raise ValueError("must be 0 (off) or a rate such as 20/hour or 5/15 minutes") from None
    if item.amount < 1:
        raise ValueError("must be 0 (off) or a rate of at least 1")
    return item


def limit_setting(text: str) -> str:
    """A settings validator: the text must parse (see parse_limit)."""
    parse_limit(text)
    return text


@dataclass(frozen=True, slots=True)
class Limit:
    """One named limit; item None means it is off."""

    name: str
    item: RateLimitItem | None
    # From item, read once: amount per period (seconds); 0 when off.
    amount: int = field(init=False, default=0)
    period: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.item is not None:
            object.__setattr__(self, "amount", self.item.amount)
            object.__setattr__(self, "period", self.item.get_expiry())


NO_LIMIT = Limit("off", None)


# Counts one event of a window that starts with its key's first event; returns the count.
COUNT = """
local total = redis.call('INCR', KEYS[1])
if total == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return total
"""


class ExactCounts:
    """Every event counted in Redis at once, in a window that starts with the key's first
    event (the `limits` library's fixed window): the login throttling's, off the hot path.
    One key per command, so any Redis (cluster included) takes them."""

    def __init__(self, redis: RedisClient, prefix: str):
        self.redis = redis
        self.prefix = prefix
        self._count = redis.register_script(COUNT)

    def _key(self, limit: Limit, identifiers: tuple) -> str:
        return f"{self.prefix}:{limit.name}:{limit.amount}:{limit.period}:" + ":".join(identifiers)

    async def count(self, limit: Limit, identifiers: tuple) -> None:
        await self._count(keys=[self._key(limit, identifiers)], args=[limit.period])

    async def used_up(self, limit: Limit, identifiers: tuple) -> float | None:
        """The wall time the window resets if its allowance is used up, else None."""
        key = self._key(limit, identifiers)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.pttl(key)
            total, left_ms = await pipe.execute()
        if total is None or int(total) < limit.amount:
            return None
        return time.time() + max(left_ms, 0) / 1000


class Limiter:
    """One per worker. hit() counts a request and raises RateLimited past the allowance."""

    def __init__(
        self,
        redis: RedisClient | None,
        enabled: bool = True,
        prefix: str = "seckill",
        local_share: float = 0.1,
        status: RedisStatus | None = None,
    ):
        self.enabled = enabled
        self.memory = LocalCounts()
        self.shared = None
        self.counts = None
        self.status = status
        if redis is not None:
            # hit(): counts kept here and sent in batches (common/limits/shared_counts.py);
            # check() and count(), off the hot path: exact, one command each.
            self.counts = SharedCounts(
                redis, f"{prefix}:counts", local_share, self._redis_failed, self._redis_ok
            )
            self.shared = ExactCounts(redis, f"{prefix}:limits")
            if status is not None:
                status.uses("rate_limits")
        self._refused: dict[tuple, float] = {}  # key -> wall time its window resets
        self._redis_away = False
        self._retry_redis_at = 0.0

    def active(self, limit: Limit) -> bool:
        return self.enabled and limit.item is not None

    async def hit(self, limit: Limit, *identifiers: str) -> None:
        """Count one request against limit for these identifiers; RateLimited past it.
        Answered from memory, without awaiting anything, unless Redis must be asked."""
        if not self.enabled or limit.item is None:
            return
        key = (limit.name, *identifiers)
        now = time.time()
        refused_until = self._refused.get(key)
        if refused_until is not None:
            if refused_until > now:
                raise RateLimited(math.ceil(refused_until - now))
            del self._refused[key]
        resets = None
        if self.counts is not None and time.monotonic() >= self._retry_redis_at:
            resets = self.counts.try_hit(key, limit.amount, limit.period, now)
            if resets is ASK_REDIS:
                try:
                    resets = await self.counts.hit(key, limit.amount, limit.period)
                except REDIS_ERRORS:  # reported by on_error; counted in memory
                    resets = self.memory.hit(key, limit.amount, limit.period, now)
        else:
            resets = self.memory.hit(key, limit.amount, limit.period, now)
        if resets is not None:
            self._remember_refused(key, resets)

    async def check(self, limit: Limit, *identifiers: str) -> None:
        """RateLimited if the allowance is already used up; counts nothing."""
        if not self.active(limit):
            return
        key = (limit.name, *identifiers)
        self._raise_if_refused(key)
        if self._shared() is not None:
            try:
                resets = await self.shared.used_up(limit, identifiers)
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
            else:
                self._redis_ok()
                if resets is not None:
                    self._remember_refused(key, resets)
                return
        resets = self.memory.test(key, limit.amount, time.time())
        if resets is not None:
            self._remember_refused(key, resets)

    async def count(self, limit: Limit, *identifiers: str) -> None:
        """Count one event (e.g. a failed login) without refusing this request."""
        if not self.active(limit):
            return
        if self._shared() is not None:
            try:
                await self.shared.count(limit, identifiers)
            except REDIS_ERRORS as exc:
                self._redis_failed(exc)
            else:
                self._redis_ok()
                return
        self.memory.count((limit.name, *identifiers), limit.period, time.time())

    def _shared(self) -> ExactCounts | None:
        """The exact counts in Redis, or None while Redis is away (tried again every second)."""
        if self.shared is None or time.monotonic() < self._retry_redis_at:
            return None
        return self.shared

    def _redis_ok(self) -> None:
        if self._redis_away:
            self._redis_away = False
            if self.status is not None:
                self.status.back("rate_limits")
            logger.warning("Redis answers again: rate limits are shared again")

    def _redis_failed(self, exc: BaseException) -> None:
        if not self._redis_away:
            self._redis_away = True
            if self.status is not None:
                self.status.away("rate_limits", exc)
            logger.warning("Redis does not answer (%s): rate limits count per process", exc)
        self._retry_redis_at = time.monotonic() + REDIS_RETRY_SECONDS

    def _raise_if_refused(self, key: tuple) -> None:
        until = self._refused.get(key)
        if until is not None:
            left = until - time.time()
            if left > 0:
                raise RateLimited(math.ceil(left))
            del self._refused[key]

    def _remember_refused(self, key: tuple, resets: float) -> None:
        """Answer key from memory until its window resets; raise RateLimited now."""
        if len(self._refused) >= MAX_REFUSED_IN_MEMORY:
            now = time.time()
            self._refused = {k: t for k, t in self._refused.items() if t > now}
        self._refused[key] = resets
        raise RateLimited(max(1, math.ceil(resets - time.time())))

    async def close(self) -> None:
        if self.counts is not None:
            await self.counts.close()


def setup_limits(app: Sanic, settings: Settings) -> None:
    """app.ctx.limiter, on app.ctx.redis when there is one (call after setup_redis)."""

    @app.before_server_start
    async def open_limiter(app: Sanic) -> None:
        app.ctx.limiter = Limiter(
            app.ctx.redis,
            settings.rate_limits == "on",
            prefix=settings.db_prefix,
            local_share=settings.rate_limit_local_share,
            status=app.ctx.redis_status,
        )

    @app.before_server_stop
    async def close_limiter(app: Sanic) -> None:
        await app.ctx.limiter.close()
