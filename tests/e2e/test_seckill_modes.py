"""The storm and a kill -9 mid-storm, in both seckill modes: group commit and one per request."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from testkit.poll import eventually
from tests.support.factories import Api
from tests.support.seckill_checks import SECKILL_MODES, StormResult, check_invariants, storm

MODES = pytest.mark.parametrize("mode", list(SECKILL_MODES), ids=list(SECKILL_MODES))


@MODES
async def test_storm_sells_exactly_the_stock(own_stack, mode):
    # Two workers: batches of different processes race on the row lock and the unique key.
    stack = own_stack(SECKILL_WORKERS="2", **SECKILL_MODES[mode])
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        stock = 100
        activity = await api.create_activity(stock=stock)
        accounts = await api.new_users(150)

        result = await storm(api, activity["id"], accounts, per_user=20)

        assert sum(result.statuses.values()) == 3000
        assert set(result.codes) == {"sold_out"}
        await check_invariants(stack, activity["id"], stock, result)
        # Repeats after the sale: holders get their order back, the rest sold_out.
        again = await storm(api, activity["id"], accounts, per_user=1)
        assert again.statuses[201] == 0 and again.statuses[200] == stock
        assert again.codes == {"sold_out": len(accounts) - stock}
        for user_id, order_nos in again.acknowledged.items():
            assert order_nos == result.acknowledged[user_id]


@MODES
async def test_kill_9_of_activity_service_while_batches_are_in_flight(own_stack, mode):
    stack = own_stack(SECKILL_WORKERS="2", **SECKILL_MODES[mode])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        api = Api(stack, session)
        stock = 400
        activity = await api.create_activity(stock=stock)
        accounts = await api.new_users(300)
        result = StormResult()

        running = asyncio.create_task(storm(api, activity["id"], accounts, 10, result=result))
        await eventually(lambda: sum(result.created.values()) >= 30, 60, "30 orders", interval=0.01)
        stack.kill("activity_service")
        await running

        # Some requests were in flight (no answer), some were acknowledged before.
        assert result.disconnected > 0 and result.acknowledged
        stack.start("activity_service")
        await check_invariants(stack, activity["id"], stock, result, sold_out=False, crashed=True)
        # The service goes on selling after the restart, with the same guarantees.
        after = await storm(api, activity["id"], accounts, per_user=2)
        for user_id, order_nos in after.acknowledged.items():
            assert order_nos == result.acknowledged.get(user_id, order_nos)
        merged = StormResult(
            acknowledged={**after.acknowledged, **result.acknowledged}, statuses=after.statuses
        )
        await check_invariants(stack, activity["id"], stock, merged, sold_out=False, crashed=True)
