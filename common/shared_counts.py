"""Fixed-window counts shared through Redis without a round trip per request.

Windows are aligned to the clock (window = now // period), so every process names the
same Redis key for the same window. Each process admits up to `slack` requests per key
before Redis hears of them: a flusher sends every process's new counts in one pipeline
every FLUSH_SECONDS, and a key whose slack is used up is flushed before it admits
again. So across P processes at most limit + (P - 1) * slack requests pass a window;
slack 0 counts every request in Redis first (exact, one round trip each).
The tolerance and why not `limits`' own Redis storage: docs/seckill.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

logger = logging.getLogger("seckill.ratelimit")

FLUSH_SECONDS = 0.02


@dataclass(slots=True)
class Count:
    limit: int
    slack: int
    resets: float  # wall time the window ends
    synced: int = 0  # the window's total in Redis as last read (this process's flushed included)
    sending: int = 0  # admitted here, on the way to Redis
    unsynced: int = 0  # admitted here, not yet sent
    # One send per key at a time: a total read back always includes what was sent before.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def seen(self) -> int:
        return self.synced + self.sending + self.unsynced


class SharedCounts:
    """One per worker, over the worker's Redis client."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        share: float,
        on_error: Callable[[BaseException], None] = lambda exc: None,
        on_ok: Callable[[], None] = lambda: None,
    ):
        self.redis = redis
        self.on_error, self.on_ok = on_error, on_ok
        self.prefix = prefix
        self.share = share
        self._counts: dict[str, Count] = {}
        self._flusher: asyncio.Task | None = None

    async def hit(self, name: str, identifiers: tuple[str, ...], amount: int, period: int):
        """None if admitted, else the wall time the window resets. Raises Redis errors."""
        now = time.time()
        window = int(now // period)
        key = f"{self.prefix}:{name}:{period}:{window}:" + ":".join(identifiers)
        count = self._counts.get(key)
        if count is None:
            slack = int(amount * self.share)
            count = self._counts[key] = Count(amount, slack, (window + 1) * period)
        if count.slack == 0:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expireat(key, int(count.resets) + 1)
            try:
                total, _ = await pipe.execute()
            except (RedisError, OSError) as exc:
                self.on_error(exc)
                raise
            self.on_ok()
            return None if total <= count.limit else count.resets
        # Admitted here with no round trip while this process's unsent part is under slack.
        while True:
            if count.seen >= count.limit:
                return count.resets
            if count.sending + count.unsynced < count.slack:
                break
            await self.flush([key])
        count.unsynced += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon())
        return None

    async def flush(self, keys: list[str] | None = None) -> None:
        """Send the new counts of keys (all by default) and read back each window's total."""
        now = time.time()
        background = keys is None
        if keys is None:
            for key in [k for k, c in self._counts.items() if c.resets <= now]:
                del self._counts[key]  # its window is over
            keys = [k for k, c in self._counts.items() if c.unsynced]
            if not keys:
                return
        counts = [(key, self._counts[key]) for key in keys if key in self._counts]
        if background:  # a key being sent now goes with the next round
            counts = [(key, count) for key, count in counts if not count.lock.locked()]
        for _, count in counts:
            await count.lock.acquire()
        try:
            await self._send(counts)
        finally:
            for _, count in counts:
                count.lock.release()

    async def _send(self, counts: list[tuple[str, Count]]) -> None:
        sent = [(key, count, count.unsynced) for key, count in counts]
        pipe = self.redis.pipeline(transaction=False)
        for key, count, n in sent:
            count.unsynced -= n
            count.sending += n
            pipe.incrby(key, n)  # 0 reads the total
            pipe.expireat(key, int(count.resets) + 1)
        try:
            results = await pipe.execute()
        except BaseException as exc:
            for _, count, n in sent:
                count.sending -= n
                count.unsynced += n
            if isinstance(exc, RedisError | OSError):
                self.on_error(exc)
            raise
        self.on_ok()
        for (_, count, n), total in zip(sent, results[::2], strict=True):
            count.sending -= n
            count.synced = total

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        with contextlib.suppress(RedisError, OSError):
            await self.flush()  # on_error has heard of it

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(RedisError, OSError):
            await self.flush()
