"""An admin is always left: the last enabled admin may be neither demoted nor disabled.

Databases of this module's own, so that it alone decides who is an admin.
"""

import asyncio

import aiohttp
import pytest_asyncio

from testkit.stack import ADMIN
from tests.support.apps import Databases, InProcessStack
from tests.support.expect import assert_problem
from tests.support.factories import Api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory):
    databases = Databases(tmp_path_factory.mktemp("last_admin"))
    databases.migrate()
    try:
        async with InProcessStack(databases) as stack:
            yield stack
    finally:
        databases.drop()


def enabled_admins(stack) -> list[int]:
    rows = stack.query("user_service", "SELECT id FROM users WHERE is_admin = 1 AND disabled = 0")
    return [row["id"] for row in rows]


async def patch(api: Api, user_id: int, body: dict, token: str):
    return await api.call("PATCH", "user_service", f"/users/{user_id}", json=body, token=token)


async def test_the_last_admin_can_neither_demote_nor_disable_itself(api, stack):
    token = await api.admin_token()
    (admin_id,) = enabled_admins(stack)
    for body in ({"is_admin": False}, {"disabled": True}, {"is_admin": False, "disabled": True}):
        body_seen = assert_problem(await patch(api, admin_id, body, token), 409, "last_admin")
        assert "last" in body_seen["detail"]
    assert enabled_admins(stack) == [admin_id]
    # Changing nothing that matters is not refused.
    assert (await patch(api, admin_id, {"is_admin": True, "disabled": False}, token)).status == 200
    assert (await api.call("GET", "user_service", "/users/me", token=token)).status == 200


async def test_two_admins_taking_each_others_flag_at_once_leave_one(api, stack):
    (first_id,) = enabled_admins(stack)
    second = await api.new_user()
    admin = await api.login(*ADMIN)
    for _ in range(5):
        reply = await patch(api, second.id, {"is_admin": True}, admin)
        assert reply.status == 200, reply
        second_token = await api.login(second.username)
        # Each demotes the other, at the same moment.
        replies = await asyncio.gather(
            patch(api, second.id, {"is_admin": False}, admin),
            patch(api, first_id, {"is_admin": False}, second_token),
        )
        assert sorted(r.status for r in replies) == [200, 409], replies
        assert [r.code for r in replies if r.status == 409] == ["last_admin"]
        (left,) = enabled_admins(stack)
        if left == second.id:  # the first admin was demoted: the second makes it one again
            reply = await patch(api, first_id, {"is_admin": True}, second_token)
            assert reply.status == 200
            await patch(api, second.id, {"is_admin": False}, await api.login(*ADMIN))
        admin = await api.login(*ADMIN)
        assert enabled_admins(stack) == [first_id]


async def test_an_admin_may_demote_or_disable_itself_while_another_is_left(api, stack):
    (first_id,) = enabled_admins(stack)
    second = await api.new_user()
    admin = await api.login(*ADMIN)
    assert (await patch(api, second.id, {"is_admin": True}, admin)).status == 200
    second_token = await api.login(second.username)
    reply = await patch(api, second.id, {"disabled": True}, second_token)
    assert reply.status == 200 and reply.body["disabled"] is True
    assert enabled_admins(stack) == [first_id]


@pytest_asyncio.fixture(loop_scope="module")
async def api(stack):
    async with aiohttp.ClientSession() as session:
        yield Api(stack, session)
