"""The revocation list of access tokens, shared through Redis (docs/operations.md).

user_service writes "the access tokens of user U issued before T are revoked" into one sorted
set, `<SECKILL_DB_PREFIX>:revoked_tokens` (member: the user id; score: T in milliseconds since
the epoch). Every worker of every service reloads the whole set every
REVOCATION_POLL_SECONDS into its TokenVerifier, which then refuses such tokens with one dict
lookup: no call to user_service, nor to Redis, per request. An entry is needed only as long as
a token issued before it can live (TOKEN_MAX_TTL_SECONDS); older ones are dropped.
One key, so a Redis Cluster takes it as one Redis does. While Redis does not answer, a
revocation reaches only the worker that made it: /health says so (common/redis.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress

from sanic import Sanic

from common.redis import REDIS_ERRORS, RedisClient

logger = logging.getLogger("seckill.revocations")


def revocation_key(prefix: str) -> str:
    return f"{prefix}:revoked_tokens"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def publish(redis: RedisClient, prefix: str, user_id: int, not_before_ms: int, max_ttl: int):
    """Revoke user_id's access tokens issued before not_before_ms, and drop stale entries."""
    key = revocation_key(prefix)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(key, {str(user_id): not_before_ms}, gt=True)  # never moves a mark back
        pipe.zremrangebyscore(key, "-inf", f"({now_ms() - max_ttl * 1000}")
        pipe.pexpire(key, max_ttl * 1000 + 60_000)
        await pipe.execute()


async def load(redis: RedisClient, prefix: str, max_ttl: int) -> dict[int, float]:
    """The marks still in force: user id -> not-before in seconds (the unit of `iat`)."""
    oldest = now_ms() - max_ttl * 1000
    entries = await redis.zrangebyscore(revocation_key(prefix), oldest, "+inf", withscores=True)
    return {int(member): score / 1000 for member, score in entries}


async def follow(app: Sanic, interval: float) -> None:
    """Reload the list into app.ctx.tokens for ever. While Redis is away the last list is kept
    and requests go on; one line when it goes, one when it is back."""
    settings = app.ctx.settings
    status = app.ctx.redis_status
    away = False
    while True:
        try:
            marks = await load(app.ctx.redis, settings.db_prefix, settings.token_max_ttl_seconds)
        except REDIS_ERRORS as exc:
            status.away("revocations", exc)
            if not away:
                logger.warning("cannot read the token revocation list, keeping the last: %s", exc)
                away = True
        else:
            app.ctx.tokens.set_revocations(marks)
            status.back("revocations")
            if away:
                logger.warning("the token revocation list is read again")
                away = False
        await asyncio.sleep(interval)


def setup_revocations(app: Sanic) -> None:
    """Each worker follows the list when REDIS_URL is set; without it tokens end at expiry."""

    @app.after_server_start
    async def start_following(app: Sanic) -> None:
        app.ctx.revocations_loop = None
        if app.ctx.redis is not None:
            app.ctx.redis_status.uses("revocations")
            interval = app.ctx.settings.revocation_poll_seconds
            # A plain task, stopped below: Sanic warns about every app task it has to cancel.
            app.ctx.revocations_loop = asyncio.create_task(
                follow(app, interval), name="follow_revocations"
            )

    @app.before_server_stop
    async def stop_following(app: Sanic) -> None:
        loop = getattr(app.ctx, "revocations_loop", None)
        if loop is not None:
            loop.cancel()
            with suppress(asyncio.CancelledError):
                await loop


def revoker(app: Sanic):
    """user_service's side: mark a user's tokens in this worker at once, and in Redis for every
    other worker and service. Without Redis (or while it is away) the other workers keep
    accepting those tokens until they expire."""

    async def revoke(user_id: int, not_before_ms: int) -> None:
        app.ctx.tokens.revoke(user_id, not_before_ms / 1000)
        if app.ctx.redis is None:
            return
        settings = app.ctx.settings
        try:
            await publish(
                app.ctx.redis,
                settings.db_prefix,
                user_id,
                not_before_ms,
                settings.token_max_ttl_seconds,
            )
        except REDIS_ERRORS as exc:
            app.ctx.redis_status.away("revocations", exc)
            logger.error(
                "cannot publish the revocation of user %s's access tokens: they stay valid"
                " elsewhere until they expire: %s",
                user_id,
                exc,
            )

    return revoke
