"""The one Redis client per worker, on app.ctx.redis; None when REDIS_URL is empty.

Shared by the rate limits, the challenge's replay guard, the token revocation list and the
dashboard's counts (docs/operations.md, Redis). REDIS_URL may name one Redis, any node of
a Redis Cluster, or a Redis Sentinel: which one is asked of the server at start-up
(REDIS_MODE=auto) or set, and the client made to fit (redis-py's Redis, RedisCluster, or a
Redis whose connections Sentinel points at the primary). A Redis that does not answer must
never hold a request up for long: short socket timeouts, and every user falls back to
memory on an error, which /health and the metrics report (RedisStatus).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.connection import parse_url
from redis.exceptions import AuthenticationError, RedisClusterException, RedisError
from sanic import Sanic

from common.config import Settings

logger = logging.getLogger("seckill.redis")

# A local Redis answers in well under a millisecond, but the timeouts run on this worker's
# event loop, which a loaded host (several runnable processes per core) can leave late by
# a few hundred milliseconds: a timeout under that would take a busy worker for a Redis away.
# Past this, it counts as away.
REDIS_TIMEOUT_SECONDS = 1.0
# Per worker: batched counts need few; claims of challenge solutions one per request in flight.
MAX_CONNECTIONS = 32
# A cluster client keeps a pool per node that fails at once when used up, rather than
# waiting for a connection: room for a storm's claims in flight on one node.
MAX_CONNECTIONS_PER_NODE = 256
# Everything a Redis client raises when Redis is away or refuses: redis-py's cluster client
# raises RedisClusterException (not a RedisError) when no node answers for a slot.
REDIS_ERRORS = (RedisError, RedisClusterException, OSError)
MODES = ("single", "cluster", "sentinel")

RedisClient = Redis | RedisCluster


class RedisModeError(Exception):
    """Redis answers in a way the services cannot use: one line naming the fix."""


@dataclass(frozen=True)
class Found:
    """What REDIS_URL names: its mode and, under Sentinel, the primary's name and the
    Sentinels' addresses."""

    mode: str
    master: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def find_mode(
    url: str, password: str | None, forced: str, master: str | None
) -> Found | None:
    """Ask the server at url what it is; None if it does not answer (or refuses to say).
    RedisModeError when it answers in a mode these settings cannot use."""
    options = parse_url(url)
    db = options.pop("db", 0) or 0
    probe = Redis(
        **options,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )
    try:
        try:
            role = await probe.execute_command("ROLE")
        except AuthenticationError:  # the URL carries no password, REDIS_PASSWORD is this one's
            if not password or options.get("password"):
                raise
            await probe.aclose()
            probe = Redis(
                **options,
                password=password,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            role = await probe.execute_command("ROLE")
        kind = _text(role[0])
        cluster = False
        if kind != "sentinel":
            cluster = bool((await probe.info("cluster")).get("cluster_enabled"))
        found = await _found(probe, url, kind, cluster, role, db, master)
    except RedisModeError:
        raise
    except REDIS_ERRORS:
        return None
    finally:
        await probe.aclose()
    if forced != "auto" and forced != found.mode:
        raise RedisModeError(
            f"REDIS_MODE is {forced} but REDIS_URL ({_address(url)}) names a"
            f" {found.mode} Redis: set REDIS_MODE=auto (or {found.mode})"
        )
    return found


async def _found(probe: Redis, url, kind, cluster, role, db, master) -> Found:
    where = _address(url)
    if kind == "sentinel":
        names = [_text(name) for name in role[1]]
        if master is None:
            if len(names) != 1:
                watched = ", ".join(names) or "none"
                raise RedisModeError(
                    f"REDIS_URL ({where}) names a Redis Sentinel watching {watched}:"
                    " set REDIS_SENTINEL_MASTER to the primary's name"
                )
            master = names[0]
        elif master not in names:
            raise RedisModeError(
                f"the Redis Sentinel at {where} does not watch {master!r}"
                f" (it watches {', '.join(names) or 'none'}): fix REDIS_SENTINEL_MASTER"
            )
        parts = urlsplit(url)
        sentinels = [(parts.hostname, parts.port or 26379)]
        for peer in await probe.sentinel_sentinels(master):  # the others, found by this one
            sentinels.append((_text(peer["ip"]), int(peer["port"])))
        return Found("sentinel", master, tuple(sentinels))
    if cluster:
        if db:
            raise RedisModeError(
                f"REDIS_URL ({where}) names database {db} of a Redis Cluster, which has only"
                " database 0: end REDIS_URL with /0"
            )
        return Found("cluster")
    if kind != "master":
        raise RedisModeError(
            f"REDIS_URL ({where}) names a read-only replica: point it at the primary,"
            " or at a Redis Sentinel that watches it"
        )
    return Found("single")


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (connections to whichever server Sentinel names the primary) that
    waits for a free connection, as new_redis's does."""


def new_redis(url: str, password: str | None = None, found: Found | None = None) -> RedisClient:
    """A client for what url names (found; one Redis when not known). Requests wait for a
    connection of their own (rather than fail at once, as the default pool does when a
    storm asks for more than it holds), except on a cluster (MAX_CONNECTIONS_PER_NODE)."""
    options = {"password": password} if password else {}
    timeouts = {
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
    }
    mode = found.mode if found is not None else "single"
    if mode == "cluster":
        return RedisCluster.from_url(
            url, **options, **timeouts, max_connections=MAX_CONNECTIONS_PER_NODE
        )
    if mode == "sentinel":
        # The URL's credentials are the Sentinels'; the primary's are REDIS_PASSWORD's, or
        # else the same.
        parsed = parse_url(url)
        own = {k: parsed[k] for k in ("username", "password") if parsed.get(k)}
        sentinel = Sentinel(list(found.sentinels), sentinel_kwargs={**own, **timeouts})
        return sentinel.master_for(
            found.master,
            connection_pool_class=BlockingSentinelPool,
            db=parsed.get("db", 0),
            **({"password": password or parsed.get("password")} if own or password else {}),
            **timeouts,
            max_connections=MAX_CONNECTIONS,
            timeout=REDIS_TIMEOUT_SECONDS,
        )
    pool = BlockingConnectionPool.from_url(
        url, **options, **timeouts, max_connections=MAX_CONNECTIONS, timeout=REDIS_TIMEOUT_SECONDS
    )
    return Redis(connection_pool=pool)


def key_slot_tag(name: str) -> str:
    """A hash tag: keys that share one go to one cluster slot (and may be used together)."""
    return "{" + name + "}"


# What each shared guarantee becomes while Redis is away (GET /health, docs/operations.md).
LOCAL_MEANING = {
    "rate_limits": "each process counts alone",
    "revocations": "a revocation reaches only the worker that made it",
    "challenge_solutions": "a solution is single use per process only",
    "dashboard_counts": "kept in MySQL",
}


@dataclass
class RedisStatus:
    """This worker's view of its Redis: which shared guarantees it keeps there (uses()) and
    which are local now, each reported by its user: away() on an error, back() once Redis
    answers it again. The users log one line per change; GET /health and the metrics
    (redis_unavailable, redis_fallbacks) read it here."""

    mode: str | None  # None without REDIS_URL
    guarantees: set[str] = field(default_factory=set)
    local: dict[str, str] = field(default_factory=dict)  # guarantee -> the error

    def uses(self, guarantee: str) -> None:
        self.guarantees.add(guarantee)

    def away(self, guarantee: str, exc: BaseException) -> None:
        if guarantee not in self.local:
            # Imported here: the runner imports this module before it sets up the metrics'
            # directory, which prometheus-client reads when first imported.
            from common.telemetry import metrics

            metrics.redis_fallback(guarantee)
        self.local[guarantee] = f"{type(exc).__name__}: {exc}"[:200]

    def back(self, guarantee: str) -> None:
        self.local.pop(guarantee, None)

    def report(self) -> dict | None:
        """For GET /health: None without Redis."""
        if self.mode is None:
            return None
        return {
            "mode": self.mode,
            "shared": sorted(self.guarantees - self.local.keys()),
            "local": {
                guarantee: {"meaning": LOCAL_MEANING[guarantee], "error": error}
                for guarantee, error in sorted(self.local.items())
            },
        }


def unanswered(settings: Settings) -> Found:
    """What to take REDIS_URL for when it does not answer at start-up: REDIS_MODE's, or one
    Redis (said in a line: a cluster's node taken for one Redis answers MOVED, reported as
    Redis away until a restart, docs/operations.md)."""
    where = _address(settings.redis_url)
    if settings.redis_mode == "sentinel":
        if not settings.redis_sentinel_master:
            raise RedisModeError(
                f"the Redis Sentinel at {where} does not answer and REDIS_MODE=sentinel needs"
                " the primary's name: set REDIS_SENTINEL_MASTER"
            )
        parts = urlsplit(settings.redis_url)
        sentinels = ((parts.hostname, parts.port or 26379),)
        return Found("sentinel", settings.redis_sentinel_master, sentinels)
    if settings.redis_mode != "auto":
        return Found(settings.redis_mode)
    logger.warning(
        "Redis at %s does not answer: taken for one Redis until a restart (set REDIS_MODE"
        " if it is a cluster or a Sentinel)",
        where,
    )
    return Found("single")


async def redis_problem(settings: Settings) -> str | None:
    """The runner's check before the workers start: one line when REDIS_URL answers in a
    mode these settings cannot use, else None (also when nothing answers: the services
    start and count per process until it does, saying so in /health)."""
    if not settings.redis_url:
        return None
    try:
        await mode_of(settings)
    except RedisModeError as exc:
        return str(exc)
    return None


async def mode_of(settings: Settings) -> Found:
    """What REDIS_URL answers as, by these settings; when nothing answers, what they assume."""
    found = await find_mode(
        settings.redis_url,
        settings.redis_password,
        settings.redis_mode,
        settings.redis_sentinel_master,
    )
    return found if found is not None else unanswered(settings)


def setup_redis(app: Sanic, settings: Settings) -> None:
    """app.ctx.redis: a client from REDIS_URL, opened per worker, or None without one; and
    app.ctx.redis_status."""
    app.ctx.redis = None
    app.ctx.redis_status = RedisStatus(None)

    @app.before_server_start
    async def open_redis(app: Sanic) -> None:
        if not settings.redis_url:
            return
        found = await mode_of(settings)
        app.ctx.redis = new_redis(settings.redis_url, settings.redis_password, found)
        app.ctx.redis_status = RedisStatus(found.mode)

    @app.after_server_stop
    async def close_redis(app: Sanic) -> None:
        if app.ctx.redis is not None:
            await app.ctx.redis.aclose()
