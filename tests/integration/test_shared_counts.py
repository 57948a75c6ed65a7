"""Rate limits shared through the machine's Redis by several processes' limiters (each a
Limiter with its own memory, as each worker has): exact with local share 0, and within
the documented tolerance (limit + (P - 1) x slack) with the default share. A burst is
400 requests at once, more than a pool's connections, as a storm from one address is."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import signal
import time

import pytest

from common.limits.ratelimit import Limit, Limiter, RateLimited, parse_limit
from common.redis import REDIS_TIMEOUT_SECONDS, new_redis
from tests.support.redis_server import SHARED_REDIS, RedisServer


async def admitted(limiters: list[Limiter], limit: Limit, tries: int) -> int:
    async def one(n: int) -> bool:
        try:
            await limiters[n % len(limiters)].hit(limit, "198.51.100.7")
        except RateLimited:
            return False
        return True

    return sum(await asyncio.gather(*(one(n) for n in range(tries))))


@pytest.mark.parametrize(("share", "most"), [(0.0, 60), (0.1, 60 + 3 * 6)])
async def test_four_processes_share_one_allowance(share, most, caplog):
    caplog.set_level(logging.WARNING, logger="seckill.ratelimit")
    redis = new_redis(SHARED_REDIS)
    prefix = "sktest_" + secrets.token_hex(4)
    limiters = [Limiter(redis, prefix=prefix, local_share=share) for _ in range(4)]
    limit = Limit("seckill_per_ip", parse_limit("60/hour"))
    try:
        passed = await admitted(limiters, limit, 400)
        # Past the tolerance, the limiters counted alone: say why (Redis taken for away).
        assert 60 <= passed <= most, (passed, caplog.messages)
    finally:
        for limiter in limiters:
            await limiter.close()
        await redis.aclose()


async def test_counts_left_in_one_process_reach_the_others():
    """What one process let through locally is flushed to Redis, so another process that
    has let nothing through sees the allowance used once its own slack (2 of 20) is spent."""
    redis = new_redis(SHARED_REDIS)
    prefix = "sktest_" + secrets.token_hex(4)
    first, second = (Limiter(redis, prefix=prefix) for _ in range(2))
    limit = Limit("seckill_per_user", parse_limit("20/hour"))
    try:
        assert await admitted([first], limit, 20) == 20
        await first.close()  # flushes what it holds, as the flusher does every 20 ms
        assert await admitted([second], limit, 5) == 2
    finally:
        await second.close()
        await redis.aclose()


async def test_a_burst_of_exact_requests_holds_one_connection_per_process():
    """With slack 0 the requests for one key that wait for Redis go in one send, so a burst
    of 400 neither queues for the pool (whose timeout would count Redis as away under CPU
    load) nor opens its 32 connections: one per process. Counted on a Redis of its own."""
    server = RedisServer()
    server.start()
    redis = new_redis(server.url)
    limiters = [Limiter(redis, prefix="sktest_burst", local_share=0.0) for _ in range(2)]
    limit = Limit("seckill_per_ip", parse_limit("60/hour"))
    try:
        before = (await redis.info("stats"))["total_connections_received"]
        assert await admitted(limiters, limit, 400) == 60
        opened = (await redis.info("stats"))["total_connections_received"] - before
        assert opened <= len(limiters), opened
    finally:
        for limiter in limiters:
            await limiter.close()
        await redis.aclose()
        server.stop()


@pytest.mark.parametrize("share", [0.0, 0.1])
async def test_a_hung_redis_holds_a_burst_up_to_one_timeout_not_one_each(share):
    """A Redis that takes connections but never answers (stopped with SIGSTOP) holds the
    requests waiting for a key's send up to one timeout: the ones behind a failed send
    count in memory at once instead of each waiting out the timeout in turn."""
    server = RedisServer()
    server.start()
    redis = new_redis(server.url)
    limiter = Limiter(redis, prefix="sktest_hung", local_share=share)
    limit = Limit("seckill_per_ip", parse_limit("60/hour"))
    waits = []

    async def one() -> None:
        started = time.monotonic()
        with contextlib.suppress(RateLimited):
            await limiter.hit(limit, "198.51.100.7")
        waits.append(time.monotonic() - started)

    try:
        await redis.ping()  # a connection open before Redis hangs
        server.proc.send_signal(signal.SIGSTOP)
        await asyncio.gather(*(one() for _ in range(100)))
        assert max(waits) < 2 * REDIS_TIMEOUT_SECONDS, max(waits)
    finally:
        server.proc.send_signal(signal.SIGCONT)
        await limiter.close()
        await redis.aclose()
        server.stop()


async def test_a_count_per_buyer_leaves_one_tracked_object_for_the_garbage_collector():
    """A sale holds a count per buyer and window; everything kept per count is walked by each
    full pass of the cyclic garbage collector (docs/seckill.md). One object each: the
    count itself, with no lock or waiting list kept beside it."""
    redis = new_redis(SHARED_REDIS)
    limiter = Limiter(redis, prefix="sktest_" + secrets.token_hex(4))
    limit = Limit("seckill_per_user", parse_limit("20/hour"))
    buyers = 2000
    try:
        await limiter.hit(limit, "0")
        await limiter.close()  # flushed: what a count keeps after its send
        gc.collect()
        before = len(gc.get_objects())
        for user in range(1, buyers + 1):
            await limiter.hit(limit, str(user))
        await limiter.close()
        gc.collect()
        per_buyer = (len(gc.get_objects()) - before) / buyers
        assert per_buyer < 1.2, per_buyer
    finally:
        await redis.aclose()
