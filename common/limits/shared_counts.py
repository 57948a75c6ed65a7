"""Fixed-window counts shared through Redis without a round trip per request.

Windows are aligned to the clock (window = now // period), so every process names the
same Redis key for the same window. Each process admits up to `slack` requests per key
before Redis hears of them: a flusher sends every process's new counts in one script
call every FLUSH_SECONDS, and a key whose slack is used up is flushed before it admits
again. So across P processes at most limit + (P - 1) * slack requests pass a window;
slack 0 counts every request in Redis first (exact, one round trip each).
A limit's keys share one hash tag ({prefix:name}), so on a Redis Cluster they live in one
slot and a flush sends one script call per limit that has new counts (on one Redis, one
call in all): the tolerance stays the same.
The tolerance and why not `limits`' own Redis storage: docs/seckill.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from redis.asyncio import RedisCluster

from common.redis import REDIS_ERRORS, RedisClient

logger = logging.getLogger("seckill.ratelimit")

FLUSH_SECONDS = 0.02
# How often the counts of ended windows are dropped from memory.
SWEEP_SECONDS = 1.0


class AskRedis(Enum):
    """try_hit's answer when only Redis can tell: await hit()."""

    ASK = "ask"


ASK_REDIS: Final = AskRedis.ASK
# What try_hit answers from memory: None, admitted; a float, refused until that wall time;
# ASK_REDIS, only Redis can tell.
TryHit = float | AskRedis | None

# Adds each key's new count, gives a new key its expiry, and returns every key's total: one
# command for a whole flush. The counts and expiries come as one string of numbers
# ("count expiry count expiry ...") and the totals go back as one: far cheaper for redis-py
# to write and read than an argument or an array element each.
SEND = """
local numbers = string.gmatch(ARGV[1], '%d+')
local totals = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(numbers())
  local expiry = numbers()
  local total = redis.call('INCRBY', key, n)
  if total == n then redis.call('EXPIREAT', key, expiry) end
  totals[i] = total
end
return table.concat(totals, ' ')
"""


@dataclass(slots=True, eq=False)
class Ask:
    """Slack 0: requests for one key that go to Redis in one send (INCRBY size)."""

    size: int = 0
    total: int | None = None  # the window's total in Redis, once sent
    error: BaseException | None = None


@dataclass(slots=True, eq=False)
class Count:
    redis_key: str
    limit: int
    slack: int
    resets: float  # wall time the window ends
    synced: int = 0  # the window's total in Redis as last read (this process's flushed included)
    sending: int = 0  # admitted here, on the way to Redis
    unsynced: int = 0  # admitted here, not yet sent
    dirty: bool = False  # waiting in the flusher's list
    asking: Ask | None = None  # slack 0: the requests waiting for the next send, if any
    # One send per key at a time, so a total read back always includes what was sent
    # before: a future while a send is on its way, done when it ends. Made per send, not
    # kept: a sale holds a count per buyer, and every object kept per count (a lock, an
    # Ask) lengthens each full pass of the garbage collector (docs/seckill.md).
    busy: asyncio.Future | None = None


async def claim(count: Count) -> None:
    """Wait until no send of this key is on its way, then be the one (release: done())."""
    while count.busy is not None:
        await asyncio.wait((count.busy,))  # waiting never cancels the shared future
    count.busy = asyncio.get_running_loop().create_future()


def by_key(count: Count) -> str:
    return count.redis_key


def done(count: Count) -> None:
    busy, count.busy = count.busy, None
    if busy is not None:
        busy.set_result(None)


class SharedCounts:
    """One per worker, over the worker's Redis client. Keys are tuples (name, *identifiers)."""

    def __init__(
        self,
        redis: RedisClient,
        prefix: str,
        share: float,
        on_error: Callable[[BaseException], None] = lambda exc: None,
        on_ok: Callable[[], None] = lambda: None,
    ):
        self.on_error, self.on_ok = on_error, on_ok
        self.prefix = prefix
        self.share = share
        self._send_script = redis.register_script(SEND)
        # On a cluster, one script call per slot: the counts of each limit apart.
        self._per_limit = isinstance(redis, RedisCluster)
        self._counts: dict[tuple, Count] = {}
        self._dirty: list[Count] = []
        self._swept_at = 0.0
        self._flusher: asyncio.Task | None = None
        # Sends failed so far, and the last one's error: a request that waited for a key's
        # send while one failed gives up without sending (Redis is away), rather than
        # each waiting out the timeout again in turn.
        self._failures = 0
        self._failure: BaseException | None = None

    def try_hit(self, key: tuple, amount: int, period: int, now: float) -> TryHit:
        """From memory alone: None if admitted, the wall time the window resets if
        refused, or ASK_REDIS when only Redis can tell (then await hit())."""
        count = self._counts.get(key)
        if count is None or count.resets <= now:
            count = self._new(key, amount, period, now)
        pending = count.sending + count.unsynced
        if count.synced + pending >= count.limit:
            return count.resets
        if pending >= count.slack:  # slack 0 included: every request asks Redis
            return ASK_REDIS
        count.unsynced += 1
        if not count.dirty:
            count.dirty = True
            self._dirty.append(count)
        if self._flusher is None:  # also after a failed send, whose counts wait again
            self._flusher = asyncio.create_task(self._flush_soon())
        return None

    async def hit(self, key: tuple, amount: int, period: int) -> float | None:
        """try_hit, waiting for Redis where it must. Raises Redis errors."""
        failures = self._failures
        while True:
            result = self.try_hit(key, amount, period, time.time())
            if result is not ASK_REDIS:
                return result
            count = self._counts[key]
            if count.slack == 0:
                return await self._ask(count, failures)
            await self._flush([count], failures)

    def _raise_if_failed_since(self, failures: int | None) -> None:
        if failures is not None and self._failures != failures:
            raise self._failure.with_traceback(None)

    async def _ask(self, count: Count, failures: int) -> float | None:
        """Count this request in Redis first (slack 0). The requests that arrive while the
        key's send is on its way go together in the next one: INCRBY n tells each its place
        in the window (total - n + its place in the send), so a burst on one key costs one
        round trip and one connection at a time, not one each. Were it one each, a burst
        of hundreds would queue for the pool's connections, and under CPU load past its
        timeout, which would count as Redis away."""
        ask = count.asking
        if ask is None:
            ask = count.asking = Ask()
        ask.size += 1
        place = ask.size
        await claim(count)
        try:
            if ask.total is None and ask.error is None:  # the first of its send to get here
                if count.asking is ask:  # (else a sender was cancelled: send it again)
                    count.asking = None  # the next request starts the next send's Ask
                try:
                    self._raise_if_failed_since(failures)
                    (ask.total,) = await self._run(
                        [count.redis_key], f"{ask.size} {int(count.resets) + 1}"
                    )
                except REDIS_ERRORS as exc:
                    ask.error = exc
                    raise
                count.synced = max(count.synced, ask.total)
        finally:
            done(count)
        if ask.error is not None:
            raise ask.error.with_traceback(None)
        return None if ask.total - ask.size + place <= count.limit else count.resets

    def _new(self, key: tuple, amount: int, period: int, now: float) -> Count:
        window = int(now // period)
        name, identifiers = key[0], key[1:]
        redis_key = f"{{{self.prefix}:{name}}}:{period}:{window}:" + ":".join(identifiers)
        count = Count(redis_key, amount, int(amount * self.share), (window + 1) * period)
        self._counts[key] = count
        return count

    async def flush(self) -> None:
        """Send every count not yet sent (the flusher's round, and at close)."""
        now = time.time()
        if now - self._swept_at >= SWEEP_SECONDS:
            self._swept_at = now
            self._counts = {k: c for k, c in self._counts.items() if c.resets > now}
        waiting, self._dirty = self._dirty, []
        ready = []
        for count in waiting:
            if count.busy is not None:  # being sent now: it goes with the next round
                self._dirty.append(count)
                continue
            count.dirty = False
            if count.unsynced and count.resets > now:
                ready.append(count)
        if self._dirty and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_soon())
        if ready:
            await self._flush(ready)

    async def _flush(self, counts: list[Count], failures: int | None = None) -> None:
        """Send these counts' new requests and read back each window's total (unless a send
        has failed since `failures` was read)."""
        claimed = []
        try:
            # Always in one order: two flushes that share counts (a round still waiting for
            # Redis while the next begins) would otherwise each hold what the other waits for.
            for count in sorted(counts, key=by_key):
                await claim(count)
                claimed.append(count)
            self._raise_if_failed_since(failures)
            await self._send(counts)
        finally:
            for count in claimed:
                done(count)

    async def _send(self, counts: list[Count]) -> None:
        if not self._per_limit or len(counts) == 1:
            await self._send_slot(counts)
            return
        slots: dict[str, list[Count]] = {}
        for count in counts:
            slots.setdefault(count.redis_key.partition("}")[0], []).append(count)
        if len(slots) == 1:
            await self._send_slot(counts)
            return
        sends = await asyncio.gather(
            *(self._send_slot(some) for some in slots.values()), return_exceptions=True
        )
        for outcome in sends:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _send_slot(self, counts: list[Count]) -> None:
        """One script call: these counts' keys are all in one slot (or on one Redis)."""
        sent = [(count, count.unsynced) for count in counts]
        keys, numbers = [], []
        for count, n in sent:
            count.unsynced -= n
            count.sending += n
            keys.append(count.redis_key)
            numbers.append(f"{n} {int(count.resets) + 1}")  # n 0 only reads the total
        try:
            totals = await self._run(keys, " ".join(numbers))
        except BaseException:
            for count, n in sent:
                count.sending -= n
                count.unsynced += n
                if count.unsynced and not count.dirty:
                    count.dirty = True
                    self._dirty.append(count)
            raise
        for (count, n), total in zip(sent, totals, strict=True):
            count.sending -= n
            count.synced = total

    async def _run(self, keys: list[str], numbers: str) -> list[int]:
        try:
            reply = await self._send_script(keys=keys, args=[numbers])
        except REDIS_ERRORS as exc:
            self._failures += 1
            self._failure = exc
            self.on_error(exc)
            raise
        self.on_ok()
        return [int(total) for total in reply.split()]

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        self._flusher = None
        with contextlib.suppress(*REDIS_ERRORS):
            await self.flush()  # on_error has heard of it

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        with contextlib.suppress(*REDIS_ERRORS):
            await self.flush()
