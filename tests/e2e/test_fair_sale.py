"""The gate with real worker processes: rate limits shared by two workers through Redis
(per process without it), a challenge solution used up across workers, a storm with
the challenge on. Each request here comes on a connection of its own, so the kernel
spreads them over the workers."""

from __future__ import annotations

import asyncio

import aiohttp

from testkit.altcha_solver import solve
from tests.support.factories import PASSWORD, Api, window
from tests.support.redis_server import SHARED_REDIS
from tests.support.seckill_checks import check_invariants, records, storm


async def fresh(stack, method: str, service: str, path: str, **kwargs):
    """One request on a connection of its own."""
    async with aiohttp.ClientSession() as session:
        return await Api(stack, session).call(method, service, path, **kwargs)


async def test_two_workers_share_a_limit_through_redis(own_stack):
    """Per process without Redis is shown in-process with two instances
    (tests/app/test_limits_shared.py): which worker accepts a connection is the kernel's
    choice, so two workers cannot be made to split the requests."""
    stack = own_stack(
        SECKILL_WORKERS="2", RATE_LIMITS="on", LIMIT_SIGNUPS_PER_IP="5/hour", REDIS_URL=SHARED_REDIS
    )

    async def signup(n: int) -> int:
        body = {"username": f"fair_{stack.prefix}_{n}", "password": PASSWORD}
        return (await fresh(stack, "POST", "user_service", "/users", json=body)).status

    statuses = await asyncio.gather(*(signup(n) for n in range(40)))
    assert statuses.count(201) == 5 and statuses.count(429) == 35, statuses


async def test_a_solution_used_in_one_process_is_refused_in_another(own_stack):
    """Two activity_service processes on one Redis (a second instance: which of a service's
    own workers takes a connection is the kernel's choice, and it keeps to one here). The
    solution is used up on a sale not yet started (409), then sent to the other process
    once the sale is open, where the try could buy."""
    stack = own_stack(REDIS_URL=SHARED_REDIS)
    other = stack.add_instance("activity_service", "activity_service_2")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        buyer = await api.new_user()
        sale = await api.create_activity(
            stock=5, challenge=True, challenge_difficulty=1000, **window(start_in=1.5)
        )
        path = f"/activities/{sale['id']}/challenge"
        issued = (await api.call("GET", "activity_service", path, token=buyer.token)).body
        solution = solve(issued)
        seckill = f"/activities/{sale['id']}/seckill"
        headers = {"X-Altcha": solution, "Authorization": f"Bearer {buyer.token}"}
        first = await api.call("POST", "activity_service", seckill, headers=headers)
        assert first.status == 409 and first.code == "not_started", first
        await asyncio.sleep(2.1)  # past the start, and past what memory trusts
        replay = await api.call("POST", other, seckill, headers=headers)
    assert replay.status == 403 and replay.code == "challenge_failed", replay
    assert len(records(stack, sale["id"])) == 0


async def test_a_storm_with_the_challenge_on_sells_exactly_the_stock(own_stack):
    stack = own_stack(SECKILL_WORKERS="2", REDIS_URL=SHARED_REDIS)
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        sale = await api.create_activity(stock=50, challenge=True, challenge_difficulty=1000)
        buyers = await api.new_users(80)
        path = f"/activities/{sale['id']}/challenge"
        solutions = {}
        for buyer in buyers:
            issued = await api.call("GET", "activity_service", path, token=buyer.token)
            solutions[buyer.id] = solve(issued.body)
        unsolved = await api.seckill(sale["id"], buyers[0].token)
        assert unsolved.status == 403 and unsolved.code == "challenge_failed"
        result = await storm(api, sale["id"], buyers, per_user=1, solutions=solutions)
        assert result.statuses[201] == 50 and result.codes == {"sold_out": 30}, result.statuses
        await check_invariants(stack, sale["id"], 50, result)
