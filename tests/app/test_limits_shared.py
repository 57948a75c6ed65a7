"""Rate limits across instances and addresses, in-process: shared through Redis or per
process in memory; a bot from one address against honest buyers from others; forged
proxy headers from an untrusted peer; Redis going away and coming back mid-sale.

Clients at other addresses connect from other loopback addresses (127.0.0.2, ...): the
socket peer is what the services see, as no proxy is trusted here.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import asynccontextmanager

import aiohttp
import pytest

from testkit.poll import eventually
from tests.support.apps import InProcessStack
from tests.support.factories import PASSWORD, Api
from tests.support.metrics import scrape, value
from tests.support.redis_server import RedisServer, well_inside_a_window
from tests.support.seckill_checks import StormResult, check_invariants, storm

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@asynccontextmanager
async def running(databases, **env: str):
    stack = InProcessStack(databases, RATE_LIMITS="on", **env)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@asynccontextmanager
async def client(stack, address: str = "127.0.0.1"):
    """An Api whose connections come from address."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=100)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Api(stack, session)


async def signup(api: Api, headers: dict | None = None) -> int:
    body = {"username": "sh_" + secrets.token_hex(4), "password": PASSWORD}
    return (await api.call("POST", "user_service", "/users", json=body, headers=headers)).status


@pytest.mark.parametrize(
    ("redis_url", "allowed"),
    [("one", 3), ("cluster", 3), ("none", 6)],
    ids=["redis_shared", "cluster_shared", "memory_per_process"],
    indirect=["redis_url"],
)
async def test_two_instances_share_a_limit_through_redis_and_count_alone_in_memory(
    databases, redis_url, allowed
):
    env = {"LIMIT_SIGNUPS_PER_IP": "3/minute", "REDIS_URL": redis_url}
    async with running(databases, **env) as one, running(databases, **env) as two:
        async with client(one) as api_one, client(two) as api_two:
            if redis_url:
                await well_inside_a_window(60, 20)
            statuses = []
            for _ in range(4):
                statuses.append(await signup(api_one))
                statuses.append(await signup(api_two))
    assert statuses.count(201) == allowed, statuses
    assert set(statuses) == {201, 429}


async def test_forged_proxy_headers_from_an_untrusted_peer_change_nothing(databases):
    async with running(databases, LIMIT_SIGNUPS_PER_IP="2/minute") as stack:
        async with client(stack) as api:
            forged = [
                {"X-Forwarded-For": "203.0.113.7"},
                {"X-Real-IP": "203.0.113.8"},
                {"Forwarded": "for=203.0.113.9"},
                {"X-Forwarded-For": "203.0.113.10, 198.51.100.1"},
            ]
            statuses = [await signup(api, headers) for headers in forged]
        async with client(stack, "127.0.0.2") as other:
            assert await signup(other) == 201  # the peer's own address is what counts
    assert statuses == [201, 201, 429, 429]


@pytest.mark.parametrize(
    "redis_url", ["one", "cluster", "none"], ids=["redis", "cluster", "memory"], indirect=True
)
async def test_a_bot_with_many_accounts_gets_at_most_its_address_allowance(databases, redis_url):
    """200 accounts from one address against a stock of 100, with the default seckill limits
    (60 tries a minute per address); 30 honest buyers from addresses of their own all buy."""
    env = {
        "LIMIT_SIGNUPS_PER_IP": "0",
        "LIMIT_LOGINS_PER_IP": "0",
        "REDIS_URL": redis_url,
    }
    async with running(databases, **env) as stack:
        async with client(stack) as bot_api:
            bots = await bot_api.new_users(200)
            sale = await bot_api.create_activity(stock=100)
            honest = await bot_api.new_users(30)
            result = StormResult()
            if redis_url:
                await well_inside_a_window(60, 20)

            async def honest_buyer(n: int) -> None:
                async with client(stack, f"127.0.1.{n + 1}") as api:
                    reply = await api.seckill(sale["id"], honest[n].token)
                    result.record(honest[n].id, reply.status, reply.body)

            await asyncio.gather(
                storm(bot_api, sale["id"], bots, per_user=2, result=result),
                *(honest_buyer(n) for n in range(30)),
            )
        bot_ids = {bot.id for bot in bots}
        bot_orders = [user for user in result.created if user in bot_ids]
        assert len(bot_orders) <= 60, len(bot_orders)
        assert result.codes["rate_limited"] > 0
        assert all(result.created[account.id] == 1 for account in honest), result.created
        await check_invariants(stack, sale["id"], 100, result, sold_out=False)


async def redis_health(api: Api) -> tuple[int, str, set[str]]:
    """activity_service's /health: status code, status, the guarantees per process now."""
    reply = await api.call("GET", "activity_service", "/health")
    return reply.status, reply.body["status"], set(reply.body["redis"]["local"])


async def degraded(api: Api) -> bool:
    """Rate limits per process, and revocations (read every second) too; the dashboard's
    counts also, once a second's were sent."""
    status, word, local = await redis_health(api)
    return (status, word) == (200, "degraded") and {"rate_limits", "revocations"} <= local


async def shared_again(api: Api) -> bool:
    return await redis_health(api) == (200, "ok", set())


async def test_redis_away_mid_sale_falls_back_to_memory_and_recovers(databases, caplog):
    redis = RedisServer()
    redis.start()
    caplog.set_level(logging.WARNING, logger="seckill.ratelimit")
    try:
        env = {
            "REDIS_URL": redis.url,
            "LIMIT_SIGNUPS_PER_IP": "0",
            "LIMIT_LOGINS_PER_IP": "0",
            "LIMIT_SECKILL_PER_IP": "0",
        }
        async with running(databases, **env) as stack, client(stack) as api:
            accounts = await api.new_users(90)
            # Stock for all: a sold-out sale answers from memory before the limiter, and the
            # third storm must reach it to see Redis back.
            sale = await api.create_activity(stock=90)
            result = StormResult()
            thirds = [accounts[:30], accounts[30:60], accounts[60:]]
            await storm(api, sale["id"], thirds[0], per_user=2, result=result)
            assert (await redis_health(api)) == (200, "ok", set())
            redis.stop()
            await storm(api, sale["id"], thirds[1], per_user=2, result=result)
            # Never silent: /health says what is per process now, and a metric counts it.
            await eventually(lambda: degraded(api), 5, "/health saying so", 0.2)
            samples = await scrape(api, "activity_service")
            assert value(samples, "redis_unavailable", guarantee="rate_limits") == 1
            assert value(samples, "redis_unavailable", guarantee="challenge_solutions") == 0
            assert value(samples, "redis_fallbacks_total", guarantee="rate_limits") >= 1
            redis.start()

            await asyncio.sleep(1.1)  # past the limiter's pause before it tries Redis again
            await storm(api, sale["id"], thirds[2], per_user=2, result=result)
            assert result.statuses.keys() <= {200, 201, 409}, result.statuses
            await eventually(lambda: shared_again(api), 5, "/health back", 0.2)
            samples = await scrape(api, "activity_service")
            assert value(samples, "redis_unavailable", guarantee="rate_limits") == 0
            await check_invariants(stack, sale["id"], 90, result)
    finally:
        redis.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "seckill.ratelimit"]
    assert sum("does not answer" in m for m in messages) == 1, messages
    assert sum("answers again" in m for m in messages) == 1, messages
