"""Crashes and outages across services: every acknowledged order survives, stock adds up."""

import asyncio

import aiohttp
import pytest

from testkit.poll import eventually
from tests.support.factories import Api
from tests.support.seckill_checks import StormResult, check_invariants, records, storm

pytestmark = pytest.mark.slow


async def test_kill_9_of_every_service_mid_storm_loses_no_acknowledged_order(own_stack):
    stack = own_stack(SECKILL_WORKERS="2")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        api = Api(stack, session)
        stock = 2000
        activity = await api.create_activity(stock=stock)
        accounts = await api.new_users(600)
        result = StormResult()

        running = asyncio.create_task(storm(api, activity["id"], accounts, 3, result=result))
        await eventually(lambda: sum(result.created.values()) >= 50, 60, "50 orders", interval=0.01)
        stack.kill()  # all three, workers included, with no chance to clean up
        await running

    assert result.disconnected > 0 and result.acknowledged
    stack.start()
    # Whatever was committed but not handed over reaches order_service with no new request.
    await check_invariants(stack, activity["id"], stock, result, sold_out=False, crashed=True)


async def test_seckill_succeeds_while_order_service_is_down(own_stack):
    stack = own_stack()
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        stock = 20
        activity = await api.create_activity(stock=stock)
        accounts = await api.new_users(30)
        stack.kill("order_service")

        result = await storm(api, activity["id"], accounts, per_user=2)

        assert result.statuses[201] == stock and set(result.codes) == {"sold_out"}
        assert len(records(stack, activity["id"])) == stock
        outbox = stack.query(
            "activity_service",
            "SELECT COUNT(*) AS n FROM seckill_records WHERE delivered_at IS NULL",
        )[0]["n"]
        assert outbox == stock  # nothing delivered while order_service is away

        stack.start("order_service")
        # The relay delivers within ten seconds of order_service coming back.
        await check_invariants(stack, activity["id"], stock, result, timeout=10)
        user_id, order_nos = next(iter(result.acknowledged.items()))
        token = next(account.token for account in accounts if account.id == user_id)
        reply = await api.call("GET", "order_service", f"/orders/{next(iter(order_nos))}", token)
        assert reply.status == 200 and reply.body["status"] == "created"
