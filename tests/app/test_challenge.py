"""The anti-bot challenge in-process: issued per user and activity, checked on the seckill,
single use within a process (memory) and across instances (Redis), PATCHable only
before the start; every refusal is 403 challenge_failed and writes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from contextlib import asynccontextmanager

import aiohttp
import pytest

from testkit.altcha_solver import solve
from tests.support.apps import InProcessStack
from tests.support.factories import Api, window
from tests.support.redis_server import SHARED_REDIS, RedisServer
from tests.support.seckill_checks import check_invariants, records, storm

EASY = 1_000  # the lowest difficulty: a solve takes about a millisecond


async def challenge_for(api: Api, activity_id: int, token: str) -> dict:
    reply = await api.call(
        "GET", "activity_service", f"/activities/{activity_id}/challenge", token=token
    )
    assert reply.status == 200, reply
    return reply.body


async def seckill(api: Api, activity_id: int, token: str, solution: str | None):
    headers = {"X-Altcha": solution} if solution is not None else None
    path = f"/activities/{activity_id}/seckill"
    return await api.call("POST", "activity_service", path, token=token, headers=headers)


async def guarded_sale(api: Api, stock: int = 10) -> dict:
    return await api.create_activity(stock=stock, challenge=True, challenge_difficulty=EASY)


def assert_refused(reply) -> None:
    assert reply.status == 403, reply
    assert reply.code == "challenge_failed"


def nothing_written(api: Api, activity_id: int) -> None:
    assert records(api.stack, activity_id) == {}


async def test_a_solved_challenge_buys(api):
    buyer = await api.new_user()
    sale = await guarded_sale(api)
    assert sale["challenge"] is True and sale["challenge_difficulty"] == EASY
    solution = solve(await challenge_for(api, sale["id"], buyer.token))
    assert (await seckill(api, sale["id"], buyer.token, solution)).status == 201


async def test_no_wrong_or_garbled_solution_buys_and_nothing_is_written(api):
    buyer = await api.new_user()
    sale = await guarded_sale(api)
    issued = await challenge_for(api, sale["id"], buyer.token)
    payload = json.loads(base64.b64decode(solve(issued)))
    wrong = base64.b64encode(json.dumps(payload | {"number": payload["number"] + 1}).encode())
    for solution in (None, "", "not-base64!", wrong.decode()):
        assert_refused(await seckill(api, sale["id"], buyer.token, solution))
    nothing_written(api, sale["id"])


async def test_a_solution_for_another_user_or_activity_is_refused(api):
    buyer, other = await api.new_user(), await api.new_user()
    sale, other_sale = await guarded_sale(api), await guarded_sale(api)
    others = solve(await challenge_for(api, sale["id"], other.token))
    assert_refused(await seckill(api, sale["id"], buyer.token, others))
    elsewhere = solve(await challenge_for(api, other_sale["id"], buyer.token))
    assert_refused(await seckill(api, sale["id"], buyer.token, elsewhere))
    nothing_written(api, sale["id"])


async def test_a_used_solution_is_refused(api):
    """Sent five times at once: one use buys, the others are refused (or, if they came
    after the order, answered with it from memory, which costs and writes nothing)."""
    buyer = await api.new_user()
    sale = await guarded_sale(api)
    solution = solve(await challenge_for(api, sale["id"], buyer.token))
    tries = [seckill(api, sale["id"], buyer.token, solution) for _ in range(5)]
    statuses = sorted(reply.status for reply in await asyncio.gather(*tries))
    assert statuses.count(201) == 1 and 403 in statuses, statuses
    assert set(statuses) <= {200, 201, 403}, statuses
    assert len(records(api.stack, sale["id"])) == 1


async def test_without_a_challenge_the_header_is_not_needed(api):
    buyer = await api.new_user()
    sale = await api.create_activity(stock=3)
    assert sale["challenge"] is False
    assert (await seckill(api, sale["id"], buyer.token, None)).status == 201


async def test_challenge_changes_only_before_the_start(api):
    admin = await api.admin_token()
    upcoming = await api.create_activity(**window(start_in=3600))
    path = f"/activities/{upcoming['id']}"
    patch = {"challenge": True, "challenge_difficulty": 20_000}
    reply = await api.call("PATCH", "activity_service", path, token=admin, json=patch)
    assert reply.status == 200 and reply.body["challenge"] is True, reply
    started = await api.create_activity()
    path = f"/activities/{started['id']}"
    reply = await api.call("PATCH", "activity_service", path, token=admin, json=patch)
    assert reply.status == 409 and reply.code == "activity_started", reply
    for bad in ({"challenge": "yes"}, {"challenge_difficulty": 10}, {"challenge": None}):
        reply = await api.call(
            "PATCH", "activity_service", f"/activities/{upcoming['id']}", token=admin, json=bad
        )
        assert reply.status == 422, (bad, reply)


async def test_a_storm_with_the_challenge_on_keeps_the_invariants(api):
    buyers = await api.new_users(60)
    sale = await guarded_sale(api, stock=20)
    solutions = {}
    for buyer in buyers:
        solutions[buyer.id] = solve(await challenge_for(api, sale["id"], buyer.token))
    result = await storm(api, sale["id"], buyers, per_user=1, solutions=solutions)
    assert result.statuses[201] == 20 and result.codes["sold_out"] == 40, result.statuses
    await check_invariants(api.stack, sale["id"], 20, result)


@asynccontextmanager
async def instance(databases, **env: str):
    stack = InProcessStack(databases, **env)
    await stack.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(stack, session)
    finally:
        await stack.stop()


@pytest.mark.parametrize(
    ("redis", "replays_pass"),
    [(True, False), (False, True)],
    ids=["redis_shared", "memory_per_process"],
)
async def test_a_solution_used_on_one_instance_is_refused_on_another_with_redis(
    databases, redis, replays_pass
):
    env = {"REDIS_URL": SHARED_REDIS if redis else ""}
    async with instance(databases, **env) as one, instance(databases, **env) as two:
        buyer = await one.new_user()
        # The two sales: the first try of each is the only one memory cannot answer.
        sale = await guarded_sale(one)
        solution = solve(await challenge_for(one, sale["id"], buyer.token))
        assert (await seckill(one, sale["id"], buyer.token, solution)).status == 201
        before = records(one.stack, sale["id"])
        # The same solution on the other instance, for the same sale (its memory knows
        # nothing of the order yet, so the request reaches the challenge check).
        replay = await seckill(two, sale["id"], buyer.token, solution)
        if replays_pass:
            assert replay.status == 200, replay  # per process: allowed, and still one order
        else:
            assert_refused(replay)
        assert records(one.stack, sale["id"]) == before


async def test_an_expired_solution_is_refused(databases):
    async with instance(databases, CHALLENGE_TTL_SECONDS="1") as api:
        buyer = await api.new_user()
        sale = await guarded_sale(api)
        solution = solve(await challenge_for(api, sale["id"], buyer.token))
        await asyncio.sleep(2.1)  # expiry is in whole seconds
        assert_refused(await seckill(api, sale["id"], buyer.token, solution))
        nothing_written(api, sale["id"])


async def test_with_redis_away_solutions_are_claimed_per_process_and_nothing_fails(
    databases, caplog
):
    redis = RedisServer()
    redis.start()
    caplog.set_level(logging.WARNING, logger="seckill.challenge")
    try:
        async with instance(databases, REDIS_URL=redis.url) as api:
            buyers = [await api.new_user() for _ in range(3)]
            sale = await guarded_sale(api)
            solutions = [solve(await challenge_for(api, sale["id"], b.token)) for b in buyers]
            assert (await seckill(api, sale["id"], buyers[0].token, solutions[0])).status == 201
            redis.stop()
            assert (await seckill(api, sale["id"], buyers[1].token, solutions[1])).status == 201
            redis.start()
            await asyncio.sleep(1.1)  # past the pause before Redis is tried again
            assert (await seckill(api, sale["id"], buyers[2].token, solutions[2])).status == 201
            assert len(records(api.stack, sale["id"])) == 3
    finally:
        redis.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "seckill.challenge"]
    assert sum("does not answer" in m for m in messages) == 1, messages
    assert sum("answers again" in m for m in messages) == 1, messages
