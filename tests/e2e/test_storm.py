"""The seckill guarantees under load, crashes and outages, checked from the databases."""

import asyncio

import aiohttp
import pytest

from tests.factories import Api
from tests.seckill_checks import assert_conserved, stock_state, storm, wait_for

pytestmark = pytest.mark.slow

STOCK = 100
USERS = 400
REPEATS = 8  # 3,200 requests


@pytest.mark.parametrize("batch_max", ["200", "1"], ids=["group-commit", "one-per-request"])
async def test_storm_sells_exactly_the_stock(own_stack, batch_max):
    stack = own_stack(SECKILL_WORKERS="2", SECKILL_BATCH_MAX=batch_max)
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        activity = await api.create_activity(stock=STOCK)
        accounts = await api.new_users(USERS)

        result = await storm(api, activity["id"], accounts, repeats=REPEATS)

    result.assert_clean()
    statuses = result.statuses()
    assert statuses.get(201) == STOCK, statuses
    assert sum(statuses.values()) == USERS * REPEATS
    acknowledged = result.acknowledged()
    assert len(acknowledged) == STOCK
    state = assert_conserved(stack, activity["id"], acknowledged)
    assert state["remaining"] == 0
    assert len(state["orders"]) == STOCK


async def test_kill_9_everything_mid_storm_loses_no_acknowledged_order(own_stack):
    stack = own_stack(SECKILL_WORKERS="2")
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        activity = await api.create_activity(stock=2000)
        accounts = await api.new_users(600)

        async def kill_after_first_orders() -> None:
            await asyncio.to_thread(
                wait_for,
                lambda: len(stock_state(stack, activity["id"])["records"]) >= 50,
                30,
                0.01,
                "the first orders",
            )
            stack.kill()

        result, _ = await asyncio.gather(
            storm(api, activity["id"], accounts, repeats=3, tolerate_errors=True),
            kill_after_first_orders(),
        )

    acknowledged = result.acknowledged()
    assert acknowledged, "no order was acknowledged before the kill"
    assert result.errors, "the kill did not interrupt the storm"
    stack.start()
    # Delivery of whatever was committed but not handed over happens with no new request.
    state = assert_conserved(stack, activity["id"], acknowledged)
    assert len(state["records"]) >= len(acknowledged)


async def test_seckill_succeeds_while_order_service_is_down(own_stack):
    stack = own_stack()
    async with aiohttp.ClientSession() as session:
        api = Api(stack, session)
        activity = await api.create_activity(stock=20)
        accounts = await api.new_users(30)
        stack.kill("order_service")

        result = await storm(api, activity["id"], accounts, repeats=2)

        result.assert_clean()
        acknowledged = result.acknowledged()
        assert len(acknowledged) == 20
        assert stock_state(stack, activity["id"])["outbox"] == 20

        stack.start("order_service")
        assert_conserved(stack, activity["id"], acknowledged, delivery_timeout=10)
        first_no, first_user = next(iter(acknowledged.items()))
        token = next(a.token for a in accounts if a.id == first_user)
        reply = await api.call("GET", "order_service", f"/orders/{first_no}", token)
        assert reply.status == 200 and reply.body["status"] == "created"
