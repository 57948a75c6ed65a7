"""The rate limiter's cost per seckill request, alone: `python -m bench.limiter_bench`.

What the seckill route pays for its two limits (per user, then per client address) on
an admitted request, in memory mode and in Redis mode (--redis-url: one Redis, or any node
of a Redis Cluster, found as the services find it; counts flushed in batches by
common/limits/shared_counts.py, whose work is counted too: CPU time of this process, the
Redis servers' own excluded). Buyers as in `make bench`'s sell-out: each user a
few tries, shuffled, all from one address whose limit never refuses (as `make bench`
sets it).
Prints microseconds per request (both hits); asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import time

from common.limits.ratelimit import Limit, Limiter, parse_limit
from common.redis import find_mode, new_redis

PER_USER = Limit("seckill_per_user", parse_limit("20/10seconds"))
PER_IP = Limit("seckill_per_ip", parse_limit("100000000/minute"))
# Requests between two yields to the event loop (so the flusher runs, as in a server).
BURST = 64


async def run(limiter: Limiter, requests: int, tries_per_user: int) -> float:
    """CPU microseconds per request for `requests` admitted requests."""
    ip = "198.51.100.7"
    users = [str(n // tries_per_user) for n in range(requests)]
    random.Random(1).shuffle(users)
    started = time.process_time()
    for n, user in enumerate(users):
        await limiter.hit(PER_USER, user)
        await limiter.hit(PER_IP, ip)
        if n % BURST == BURST - 1:
            await asyncio.sleep(0)
    await limiter.close()  # the last flush belongs to the run
    return (time.process_time() - started) / requests * 1e6


async def measure(mode: str, redis_url: str, requests: int, tries: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        redis = None
        if mode == "redis":
            redis = new_redis(redis_url, found=await find_mode(redis_url, None, "auto", None))
        prefix = "sktest_bench_" + secrets.token_hex(4)
        try:
            best = min(best, await run(Limiter(redis, prefix=prefix), requests, tries))
        finally:
            if redis is not None:
                await redis.aclose()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--tries-per-user", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3, help="the best of this many runs")
    args = parser.parse_args()
    for mode in ("memory", "redis"):
        micros = asyncio.run(
            measure(mode, args.redis_url, args.requests, args.tries_per_user, args.rounds)
        )
        if mode == "redis":
            found = asyncio.run(find_mode(args.redis_url, None, "auto", None))
            mode = found.mode if found is not None else "redis (not answering)"
        print(f"{mode:7}: {micros:6.2f} µs per request (per-user + per-IP hit)")


if __name__ == "__main__":
    main()
