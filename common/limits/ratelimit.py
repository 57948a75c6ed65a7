"""Rate limits: fixed windows shared through Redis, or per process in memory.

With Redis every worker and instance counts in the same key, each process sending its
counts in batches (common/limits/shared_counts.py); without it (or while Redis is away) each
process counts alone (common/limits/local_counts.py). A key that has been refused is answered
from memory until its window resets, so a client hammering past its allowance costs no
Redis round trip. The `limits` library parses the limits and keeps the
login throttling's exact counts in Redis (check and count, off the hot path).
The design and the tolerance: docs/seckill.md.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sanic import Sanic

from common.config import Settings
from common.errors import AppError
from common.limits.local_counts import LocalCounts
from common.limits.shared_counts import ASK_REDIS, SharedCounts

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


class Limiter:
    """One per worker. hit() counts a request and raises RateLimited past the allowance."""

    def __init__(
        self,
        redis: Redis | None,
        enabled: bool = True,
        prefix: str = "seckill",
        local_share: float = 0.1,
    ):
        self.enabled = enabled
        self.memory = LocalCounts()
        self.shared = None
        self.counts = None
        if redis is not None:
            # hit(): counts kept here and sent in batches (common/limits/shared_counts.py);
            # check() and count(), off the hot path: limits' Redis storage, exact.
            self.counts = SharedCounts(
                redis, f"{prefix}:counts", local_share, self._redis_failed, self._redis_ok
            )
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{prefix}:limits",
                connection_pool=redis.connection_pool,
            )
            self.shared = FixedWindowRateLimiter(storage)
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
                except (RedisError, OSError):  # reported by on_error; counted in memory
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
                allowed = await self.shared.test(limit.item, limit.name, *identifiers)
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
            else:
                self._redis_ok()
                if not allowed:
                    await self._refuse_shared(key, limit, identifiers)
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
                await self.shared.hit(limit.item, limit.name, *identifiers)
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
            else:
                self._redis_ok()
                return
        self.memory.count((limit.name, *identifiers), limit.period, time.time())

    def _shared(self) -> FixedWindowRateLimiter | None:
        """limits' Redis limiter, or None while Redis is away (tried again every second)."""
        if self.shared is None or time.monotonic() < self._retry_redis_at:
            return None
        return self.shared

    def _redis_ok(self) -> None:
        if self._redis_away:
            self._redis_away = False
            logger.warning("Redis answers again: rate limits are shared again")

    def _redis_failed(self, exc: BaseException) -> None:
        if not self._redis_away:
            self._redis_away = True
            logger.warning("Redis does not answer (%s): rate limits count per process", exc)
        self._retry_redis_at = time.monotonic() + REDIS_RETRY_SECONDS

    def _raise_if_refused(self, key: tuple) -> None:
        until = self._refused.get(key)
        if until is not None:
            left = until - time.time()
            if left > 0:
                raise RateLimited(math.ceil(left))
            del self._refused[key]

    async def _refuse_shared(self, key: tuple, limit: Limit, identifiers: tuple) -> None:
        try:
            stats = await self.shared.get_window_stats(limit.item, limit.name, *identifiers)
            resets = stats.reset_time
        except (RedisError, OSError):
            resets = time.time() + limit.period
        self._remember_refused(key, resets)

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
        )

    @app.before_server_stop
    async def close_limiter(app: Sanic) -> None:
        await app.ctx.limiter.close()
