"""The one Redis client per worker, on app.ctx.redis; None when REDIS_URL is empty.

Shared by the rate limits and the challenge's replay guard (docs/operations.md, Redis).
A Redis that does not answer must never hold a request up for long: short socket
timeouts, and every user falls back to memory on an error (common/limits/ratelimit.py).
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from sanic import Sanic

from common.config import Settings

# A local Redis answers in well under a millisecond, but the timeouts run on this worker's
# event loop, which a loaded host (several runnable processes per core) can leave late by
# a few hundred milliseconds: a timeout under that would take a busy worker for a Redis away.
# Past this, it counts as away.
REDIS_TIMEOUT_SECONDS = 1.0
# Per worker: batched counts need few; claims of challenge solutions one per request in flight.
MAX_CONNECTIONS = 32


def new_redis(url: str, password: str | None = None) -> Redis:
    """A client whose requests wait for one of its connections (rather than fail at once,
    as the default pool does when a storm asks for more than it holds)."""
    options = {"password": password} if password else {}
    pool = BlockingConnectionPool.from_url(
        url,
        **options,
        max_connections=MAX_CONNECTIONS,
        timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )
    return Redis(connection_pool=pool)


def setup_redis(app: Sanic, settings: Settings) -> None:
    """app.ctx.redis: a client from REDIS_URL, opened per worker, or None without one."""
    app.ctx.redis = None

    @app.before_server_start
    async def open_redis(app: Sanic) -> None:
        app.ctx.redis = (
            new_redis(settings.redis_url, settings.redis_password) if settings.redis_url else None
        )

    @app.after_server_stop
    async def close_redis(app: Sanic) -> None:
        if app.ctx.redis is not None:
            await app.ctx.redis.aclose()
