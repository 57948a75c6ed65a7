"""The anti-bot challenge in-process: issued per user and activity, checked on the seckill,
single use within a process (memory) and across instances (Redis), PATCHable only
before the start; every refusal is 403 challenge_failed and writes nothing. Only a try
that could buy needs a fresh solution: a holder gets their order and a closed sale its
409 with or without one, at any time (not only within memory's trust window)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
import pytest

from testkit.altcha_solver import solve
from tests.support.apps import InProcessStack
from tests.support.factories import Api, window
from tests.support.redis_server import RedisServer
from tests.support.seckill_checks import check_invariants, records, storm

EASY = 1_000  # the lowest difficulty: a solve takes about a millisecond
# Well past the half second a worker trusts what a batch read (seckill.CLOSED_TRUST_SECONDS).
PAST_THE_TRUST_WINDOW = 2.1


async def challenge_for(api: Api, activity_id: int, token: str, version: int = 2) -> dict:
    path = f"/activities/{activity_id}/challenge" + ("/v1" if version == 1 else "")
    reply = await api.call("GET", "activity_service", path, token=token)
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


def encoded(payload: dict) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def test_no_wrong_or_garbled_solution_buys_and_nothing_is_written(api):
    buyer = await api.new_user()
    sale = await guarded_sale(api)
    payload = json.loads(base64.b64decode(solve(await challenge_for(api, sale["id"], buyer.token))))
    solution, parameters = payload["solution"], payload["challenge"]["parameters"]
    wrong_key = payload | {"solution": solution | {"derivedKey": "00" * 32}}
    rebound = json.loads(json.dumps(payload))
    rebound["challenge"]["parameters"]["data"]["u"] = "0"  # the signature no longer matches
    longer = json.loads(json.dumps(payload))
    longer["challenge"]["parameters"]["expiresAt"] = parameters["expiresAt"] + 3600
    v1 = await challenge_for(api, sale["id"], buyer.token, version=1)
    v1_payload = json.loads(base64.b64decode(solve(v1)))
    v1_wrong = v1_payload | {"number": v1_payload["number"] + 1}
    garbled = (None, "", "not-base64!", encoded([1]), encoded({"challenge": {}}))
    tampered = (wrong_key, longer, v1_wrong, payload | {"challenge": "x"})
    for attempt in (*garbled, *map(encoded, tampered)):
        assert_refused(await seckill(api, sale["id"], buyer.token, attempt))
    reply = await seckill(api, sale["id"], buyer.token, encoded(rebound))
    assert_refused(reply)
    assert "another user" in reply.body["detail"], reply
    nothing_written(api, sale["id"])


async def test_the_current_protocol_and_v1_both_buy(api):
    """The challenge is ALTCHA v2 (the widget 3.x's default); v1 is still issued at
    /challenge/v1 and its payloads accepted, for clients that solve only v1."""
    current, legacy = await api.new_user(), await api.new_user()
    sale = await guarded_sale(api)
    issued = await challenge_for(api, sale["id"], current.token)
    assert issued["parameters"]["algorithm"] == "SHA-256" and issued["signature"], issued
    bound = {"a": str(sale["id"]), "u": str(current.id), "d": str(EASY)}
    assert issued["parameters"]["data"] == bound
    assert (await seckill(api, sale["id"], current.token, solve(issued))).status == 201
    issued_v1 = await challenge_for(api, sale["id"], legacy.token, version=1)
    assert issued_v1["maxNumber"] == EASY, issued_v1
    assert (await seckill(api, sale["id"], legacy.token, solve(issued_v1))).status == 201


async def test_a_solution_for_another_user_or_activity_is_refused(api):
    buyer, other = await api.new_user(), await api.new_user()
    sale, other_sale = await guarded_sale(api), await guarded_sale(api)
    others = solve(await challenge_for(api, sale["id"], other.token))
    assert_refused(await seckill(api, sale["id"], buyer.token, others))
    elsewhere = solve(await challenge_for(api, other_sale["id"], buyer.token))
    assert_refused(await seckill(api, sale["id"], buyer.token, elsewhere))
    nothing_written(api, sale["id"])


async def test_a_solution_sent_five_times_at_once_buys_once(api):
    """One use buys; the others get that order (or, if they looked before it was
    committed, are refused as used), and nothing more is written."""
    buyer = await api.new_user()
    sale = await guarded_sale(api)
    solution = solve(await challenge_for(api, sale["id"], buyer.token))
    tries = [seckill(api, sale["id"], buyer.token, solution) for _ in range(5)]
    statuses = sorted(reply.status for reply in await asyncio.gather(*tries))
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {200, 201, 403}, statuses
    assert len(records(api.stack, sale["id"])) == 1


async def test_a_used_solution_is_refused_on_a_try_that_could_buy(api):
    """Used on a sale that had not started (409, the solution is used up), then sent
    again once it has: the try could buy, so the used solution is refused."""
    buyer = await api.new_user()
    sale = await api.create_activity(
        stock=3, challenge=True, challenge_difficulty=EASY, **window(start_in=1.5)
    )
    solution = solve(await challenge_for(api, sale["id"], buyer.token))
    early = await seckill(api, sale["id"], buyer.token, solution)
    assert early.status == 409 and early.code == "not_started", early
    await asyncio.sleep(PAST_THE_TRUST_WINDOW)
    assert_refused(await seckill(api, sale["id"], buyer.token, solution))
    nothing_written(api, sale["id"])
    fresh = solve(await challenge_for(api, sale["id"], buyer.token))
    assert (await seckill(api, sale["id"], buyer.token, fresh)).status == 201


async def test_a_holder_gets_the_order_with_any_solution_or_none_long_after_buying(api):
    buyer = await api.new_user()
    sale = await guarded_sale(api)
    used = solve(await challenge_for(api, sale["id"], buyer.token))
    bought = await seckill(api, sale["id"], buyer.token, used)
    assert bought.status == 201, bought
    fresh = solve(await challenge_for(api, sale["id"], buyer.token))
    for solution in (None, "", "not-base64!", used, fresh):
        await asyncio.sleep(PAST_THE_TRUST_WINDOW)
        again = await seckill(api, sale["id"], buyer.token, solution)
        assert again.status == 200, (solution, again)
        assert again.body["order_no"] == bought.body["order_no"]
    assert len(records(api.stack, sale["id"])) == 1


async def test_a_closed_sale_answers_409_with_or_without_a_solution_long_after(api):
    """Sold out (1.5 s and more after the sell-out), not started, ended: each answers its
    409 to a newcomer with no solution, a wrong one, a used one or a fresh one."""
    first, newcomer = await api.new_user(), await api.new_user()
    sold_out = await guarded_sale(api, stock=1)
    won = solve(await challenge_for(api, sold_out["id"], first.token))
    assert (await seckill(api, sold_out["id"], first.token, won)).status == 201
    upcoming = await api.create_activity(
        challenge=True, challenge_difficulty=EASY, **window(start_in=3600)
    )
    ended = await api.create_activity(
        challenge=True, challenge_difficulty=EASY, **window(start_in=-2, length=1)
    )
    await asyncio.sleep(PAST_THE_TRUST_WINDOW)
    for sale, code in ((sold_out, "sold_out"), (upcoming, "not_started"), (ended, "ended")):
        fresh = solve(await challenge_for(api, sale["id"], newcomer.token))
        for solution in (None, "not-base64!", won, fresh):
            reply = await seckill(api, sale["id"], newcomer.token, solution)
            assert reply.status == 409 and reply.code == code, (code, solution, reply)
        await asyncio.sleep(PAST_THE_TRUST_WINDOW)  # and again, past what memory trusts
        reply = await seckill(api, sale["id"], newcomer.token, None)
        assert reply.status == 409 and reply.code == code, (code, reply)
    assert len(records(api.stack, sold_out["id"])) == 1
    assert records(api.stack, upcoming["id"]) == {} and records(api.stack, ended["id"]) == {}


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


async def test_a_change_of_difficulty_voids_the_challenges_issued_before_it(api):
    admin = await api.admin_token()
    buyer = await api.new_user()
    sale = await api.create_activity(
        stock=3, challenge=True, challenge_difficulty=EASY, **window(start_in=6)
    )
    path = f"/activities/{sale['id']}"

    async def v1_challenge() -> dict:
        reply = await api.call("GET", "activity_service", f"{path}/challenge/v1", token=buyer.token)
        assert reply.status == 200, reply
        return reply.body

    solved = [solve(await challenge_for(api, sale["id"], buyer.token)), solve(await v1_challenge())]
    harder = {"challenge_difficulty": 10_000_000}
    reply = await api.call("PATCH", "activity_service", path, token=admin, json=harder)
    assert reply.status == 200, reply
    assert (await v1_challenge())["maxNumber"] == 10_000_000
    starts = datetime.fromisoformat(sale["starts_at"].replace("Z", "+00:00"))
    await asyncio.sleep(max(0.0, (starts - datetime.now(UTC)).total_seconds()) + 0.2)
    # On sale now: solutions to the easier challenges, fetched before the change, buy nothing.
    for solution in solved:
        reply = await seckill(api, sale["id"], buyer.token, solution)
        assert_refused(reply)
        assert "changed" in reply.body["detail"]
    nothing_written(api, sale["id"])


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
    ("redis_url", "replays_pass"),
    [("one", False), ("cluster", False), ("none", True)],
    ids=["redis_shared", "cluster_shared", "memory_per_process"],
    indirect=["redis_url"],
)
async def test_a_solution_used_on_one_instance_is_refused_on_another_with_redis(
    databases, redis_url, replays_pass
):
    """Used on one instance before the start (409 not_started), then sent to the other
    once the sale is open, where it could buy."""
    env = {"REDIS_URL": redis_url}
    async with instance(databases, **env) as one, instance(databases, **env) as two:
        buyer = await one.new_user()
        sale = await one.create_activity(
            stock=3, challenge=True, challenge_difficulty=EASY, **window(start_in=1.5)
        )
        solution = solve(await challenge_for(one, sale["id"], buyer.token))
        assert (await seckill(one, sale["id"], buyer.token, solution)).status == 409
        await asyncio.sleep(PAST_THE_TRUST_WINDOW)
        replay = await seckill(two, sale["id"], buyer.token, solution)
        if replays_pass:
            assert replay.status == 201, replay  # per process: allowed
        else:
            assert_refused(replay)
            nothing_written(one, sale["id"])


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
