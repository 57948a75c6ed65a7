"""A flood of logins meets a bounded hashing pool: 503 at once past it, /health unhurt."""

import asyncio

import pytest_asyncio

from testkit.poll import eventually
from tests.support.apps import InProcessStack
from tests.support.expect import assert_problem

THREADS, QUEUE = 1, 2


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(databases):
    """This module's apps: one hashing thread, two waiting places, and a costly hash (each
    login takes a while), so that a flood fills the pool."""
    stack = InProcessStack(
        databases,
        PASSWORD_HASH_THREADS=str(THREADS),
        PASSWORD_HASH_QUEUE=str(QUEUE),
        PASSWORD_HASH_COST="15",
    )
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


def wrong_login(api, username: str):
    body = {"username": username, "password": "not-the-password-at-all"}
    return api.call("POST", "user_service", "/tokens", json=body)


async def test_a_full_pool_answers_503_with_retry_after_and_health_still_answers(api, stack):
    pool = stack.apps["user_service"].ctx.users.pool
    flood = [asyncio.create_task(wrong_login(api, f"victim{n}")) for n in range(40)]
    try:
        # The pool fills: one hash running, two waiting.
        await eventually(lambda: pool.pending == THREADS + QUEUE, 10, "a full pool", 0.005)
        busy = await wrong_login(api, "one_more")
        assert busy.status == 503 or pool.pending < THREADS + QUEUE, busy
        health = await asyncio.wait_for(api.call("GET", "user_service", "/health"), timeout=10)
        assert health.status == 200, health
    finally:
        replies = await asyncio.gather(*flood)
    statuses = sorted(reply.status for reply in replies)
    assert set(statuses) == {401, 503}, statuses
    assert statuses.count(401) >= THREADS + QUEUE
    for reply in replies:
        if reply.status == 503:
            body = assert_problem(reply, 503, "busy")
            assert reply.headers["Retry-After"] == "1", reply.headers
            assert "try again" in body["detail"]
    assert pool.pending == 0  # every slot came back


async def test_registration_meets_the_same_bound(api, stack):
    pool = stack.apps["user_service"].ctx.users.pool
    flood = [asyncio.create_task(api.register()) for _ in range(30)]
    replies = await asyncio.gather(*flood)
    statuses = {reply.status for reply in replies}
    assert statuses == {201, 503}, statuses
    assert pool.pending == 0
