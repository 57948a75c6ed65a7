"""Password change, disabled accounts and a removed admin flag stop the user's access tokens on
every service within 5 s through the revocation list in Redis (the machine's, under this
session's prefix, and a Redis Cluster's: each test runs on both); without Redis they live until
they expire."""

import asyncio
import logging
import secrets

import aiohttp
import jwt
import pytest
import pytest_asyncio

from common.revocations import revocation_key
from testkit.poll import eventually
from tests.support.apps import InProcessStack
from tests.support.expect import assert_problem
from tests.support.factories import PASSWORD, Api
from tests.support.redis_server import RedisServer, sync_client, url_for

NEW_PASSWORD = "copper-Lantern-2291"
WITHIN = 5  # seconds: the bound the services promise
SERVICES = ("user_service", "activity_service", "order_service")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stacks(databases, request):
    """This module's apps per kind of Redis, started when first asked for and stopped at its
    end, following the list under the test prefix: the machine's Redis, a Redis Cluster."""
    started = {}

    async def of(kind: str) -> InProcessStack:
        if kind not in started:
            url = url_for(request, kind)
            stack = started[kind] = InProcessStack(databases, REDIS_URL=url)
            stack.redis_url = url
            await stack.start()
        return started[kind]

    try:
        yield of
    finally:
        for stack in started.values():
            await stack.stop()
            with sync_client(stack.redis_url) as client:
                client.delete(revocation_key(databases.prefix))


@pytest_asyncio.fixture(loop_scope="module", params=["one", "cluster"])
async def stack(stacks, request):
    return await stacks(request.param)


async def probe(api, service: str, token: str, activity_id: int | None = None):
    """One authenticated request to service: the seckill itself when an activity is given."""
    if service == "activity_service" and activity_id is not None:
        return await api.seckill(activity_id, token)
    path = {
        "user_service": "/users/me",
        "activity_service": "/activities/0/challenge",
        "order_service": "/orders",
    }[service]
    return await api.call("GET", service, path, token=token)


async def refused_everywhere(api, token: str, activity_id: int | None = None) -> None:
    """Every service answers 401 token_revoked within WITHIN seconds."""

    async def all_refuse() -> bool:
        replies = [await probe(api, s, token, activity_id) for s in SERVICES]
        return all(r.status == 401 and r.code == "token_revoked" for r in replies)

    await eventually(all_refuse, WITHIN, "the token refused by every service", 0.1)


async def accepted_everywhere(api, token: str) -> None:
    for service in SERVICES:
        reply = await probe(api, service, token)
        assert reply.status not in (401, 403), (service, reply)


async def login(api, username: str, password: str = PASSWORD):
    body = {"username": username, "password": password}
    return await api.call("POST", "user_service", "/tokens", json=body)


async def change_password(api, token: str, old: str, new: str):
    body = {"old_password": old, "new_password": new}
    return await api.call("PUT", "user_service", "/users/me/password", token=token, json=body)


async def patch_user(api, user_id: int, body, token: str):
    return await api.call("PATCH", "user_service", f"/users/{user_id}", token=token, json=body)


def user_row(stack, user_id: int) -> dict:
    return stack.query(
        "user_service",
        "SELECT password_hash, is_admin, disabled FROM users WHERE id = %s",
        (user_id,),
    )[0]


def live_refresh_tokens(stack, user_id: int) -> int:
    rows = stack.query(
        "user_service",
        "SELECT COUNT(*) AS n FROM refresh_tokens WHERE user_id = %s AND revoked_at IS NULL",
        (user_id,),
    )
    return rows[0]["n"]


async def test_a_password_change_stops_every_token_and_a_login_just_after_works(api, stack):
    account = await api.new_user()
    other = (await login(api, account.username)).body  # a second device
    await accepted_everywhere(api, account.token)
    reply = await change_password(api, account.token, PASSWORD, NEW_PASSWORD)
    assert reply.status == 204, reply
    # at once, in the same second as the change: the new password's token works everywhere
    fresh = await login(api, account.username, NEW_PASSWORD)
    assert fresh.status == 200, fresh
    assert_problem(await login(api, account.username), 401, "invalid_credentials")
    await refused_everywhere(api, account.token)
    await refused_everywhere(api, other["access_token"])
    await accepted_everywhere(api, fresh.body["access_token"])
    refresh = {"refresh_token": other["refresh_token"]}
    reply = await api.call("POST", "user_service", "/tokens/refresh", json=refresh)
    assert_problem(reply, 401, "invalid_grant")
    assert live_refresh_tokens(stack, account.id) == 1  # the fresh login's only
    with sync_client(stack.redis_url) as client:
        assert client.zscore(revocation_key(stack.prefix), account.id) is not None


async def test_logins_racing_a_password_change_keep_no_token_of_the_old_password(api, stack):
    """Logins that read the old password before the change and finish after it: none keeps a
    refresh token, and every access token they got is refused (checked in the database)."""
    account = await api.new_user()

    async def logins_every_millisecond() -> list:
        logins = []
        for _ in range(150):
            logins.append(asyncio.create_task(login(api, account.username)))
            await asyncio.sleep(0.001)
        return await asyncio.gather(*logins)

    logins = asyncio.create_task(logins_every_millisecond())
    await asyncio.sleep(0.03)
    change = await change_password(api, account.token, PASSWORD, NEW_PASSWORD)
    replies = await logins
    assert change.status == 204, change
    assert {r.status for r in replies} <= {200, 401}, replies
    assert live_refresh_tokens(stack, account.id) == 0
    # every token got is older than the mark (so refused), the newest refused everywhere
    with sync_client(stack.redis_url) as client:
        mark = client.zscore(revocation_key(stack.prefix), account.id)
    tokens = [r.body["access_token"] for r in replies if r.status == 200]
    issued = [jwt.decode(t, options={"verify_signature": False})["iat"] for t in tokens]
    if tokens:  # on a slow machine every login may come after the change
        assert max(issued) < mark / 1000, (mark, max(issued))
        await refused_everywhere(api, tokens[issued.index(max(issued))])


async def test_a_wrong_old_password_or_a_weak_new_one_changes_nothing(api, stack):
    account = await api.new_user()
    before = user_row(stack, account.id)
    wrong = await change_password(api, account.token, "not-my-password", NEW_PASSWORD)
    assert_problem(wrong, 403, "wrong_password")
    weak = await change_password(api, account.token, PASSWORD, "password")
    body = assert_problem(weak, 422, "weak_password")
    assert body["errors"][0]["field"] == "new_password"
    for bad in ({}, {"old_password": PASSWORD}, {"old_password": PASSWORD, "new_password": 5}):
        reply = await api.call(
            "PUT", "user_service", "/users/me/password", token=account.token, json=bad
        )
        assert_problem(reply, 422, "invalid_request")
    anonymous = await change_password(api, "", PASSWORD, NEW_PASSWORD)
    assert_problem(anonymous, 401)
    assert user_row(stack, account.id) == before
    await asyncio.sleep(1.5)  # past a poll of the list: nothing was revoked
    await accepted_everywhere(api, account.token)
    assert (await login(api, account.username)).status == 200


async def test_a_disabled_user_is_refused_everywhere_the_seckill_included(api, stack):
    activity = await api.create_activity(stock=5)
    account = await api.new_user()
    tokens = (await login(api, account.username)).body
    admin = await api.admin_token()
    reply = await patch_user(api, account.id, {"disabled": True}, admin)
    assert reply.status == 200 and reply.body["disabled"] is True, reply
    assert user_row(stack, account.id)["disabled"] == 1
    await refused_everywhere(api, account.token, activity["id"])
    assert_problem(await login(api, account.username), 403, "account_disabled")
    refresh = {"refresh_token": tokens["refresh_token"]}
    reply = await api.call("POST", "user_service", "/tokens/refresh", json=refresh)
    assert_problem(reply, 401, "invalid_grant")
    assert live_refresh_tokens(stack, account.id) == 0
    # enabled again: a new login works, the old tokens stay revoked
    reply = await patch_user(api, account.id, {"disabled": False}, admin)
    assert reply.status == 200 and reply.body["disabled"] is False
    again = await login(api, account.username)
    assert again.status == 200
    bought = await api.seckill(activity["id"], again.body["access_token"])
    assert bought.status in (200, 201) and bought.body["user_id"] == account.id, bought
    await refused_everywhere(api, account.token)


async def test_a_removed_admin_flag_stops_creating_activities(api, stack):
    account = await api.new_user()
    admin = await api.admin_token()
    reply = await patch_user(api, account.id, {"is_admin": True}, admin)
    assert reply.status == 200 and reply.body["is_admin"] is True
    promoted = (await login(api, account.username)).body["access_token"]
    body = {
        "name": "x",
        "product_name": "y",
        "price": "1.00",
        "stock": 1,
        "starts_at": "2030-01-01T00:00:00Z",
        "ends_at": "2030-01-02T00:00:00Z",
    }
    created = await api.call("POST", "activity_service", "/activities", token=promoted, json=body)
    assert created.status == 201, created
    reply = await patch_user(api, account.id, {"is_admin": False}, admin)
    assert reply.status == 200 and reply.body["is_admin"] is False

    async def refused() -> bool:
        reply = await api.call("POST", "activity_service", "/activities", token=promoted, json=body)
        return reply.status == 401 and reply.code == "token_revoked"

    await eventually(refused, WITHIN, "the former admin's token refused", 0.1)
    plain = (await login(api, account.username)).body["access_token"]
    reply = await api.call("POST", "activity_service", "/activities", token=plain, json=body)
    assert_problem(reply, 403, "forbidden")


async def test_granting_admin_or_a_change_to_nothing_revokes_nothing(api, stack):
    account = await api.new_user()
    admin = await api.admin_token()
    for body in ({"is_admin": False}, {"disabled": False}, {"is_admin": True}):
        assert (await patch_user(api, account.id, body, admin)).status == 200
    await asyncio.sleep(1.5)
    await accepted_everywhere(api, account.token)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"disabled": None},
        {"disabled": "yes"},
        {"disabled": 1},
        {"is_admin": True, "username": "x"},
        {"password_hash": "x"},
    ],
)
async def test_bad_patches_are_422_and_change_nothing(api, stack, body):
    account = await api.new_user()
    before = user_row(stack, account.id)
    reply = await patch_user(api, account.id, body, await api.admin_token())
    assert_problem(reply, 422, "invalid_request")
    assert user_row(stack, account.id) == before


async def test_only_an_admin_may_patch_a_user_and_only_a_known_one(api, stack):
    account, other = await api.new_user(), await api.new_user()
    before = user_row(stack, other.id)
    for token in (account.token, other.token):  # nobody may make themselves admin
        reply = await patch_user(api, other.id, {"is_admin": True}, token)
        assert_problem(reply, 403, "forbidden")
    assert_problem(await patch_user(api, other.id, {"disabled": True}, ""), 401)
    assert user_row(stack, other.id) == before
    unknown = await patch_user(api, 2**62, {"disabled": True}, await api.admin_token())
    assert_problem(unknown, 404, "not_found")
    reply = await api.call(
        "PATCH",
        "user_service",
        f"/users/{other.id}",
        token=await api.admin_token(),
        data="disabled=true",
        headers={"Content-Type": "application/json"},
    )
    assert_problem(reply, 400, "bad_request")
    assert user_row(stack, other.id) == before


async def test_without_redis_a_token_lives_on_elsewhere_until_it_expires(databases, caplog):
    """Documented: without Redis only user_service's own worker learns of the change; the
    other services accept the token until it expires (TOKEN_TTL_SECONDS)."""
    ttl = 4
    stack = InProcessStack(databases, REDIS_URL="", TOKEN_TTL_SECONDS=str(ttl))
    await stack.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(stack, session)
            account = await api.new_user()
            reply = await patch_user(api, account.id, {"disabled": True}, await api.admin_token())
            assert reply.status == 200
            await asyncio.sleep(1.5)
            for service in ("activity_service", "order_service"):
                reply = await probe(api, service, account.token)
                assert reply.status not in (401, 403), reply
            me = await probe(api, "user_service", account.token)
            assert_problem(me, 401, "token_revoked")  # the worker that made the change

            async def expired() -> bool:
                reply = await probe(api, "order_service", account.token)
                return reply.status == 401 and reply.code == "unauthorized"

            await eventually(expired, ttl + 2, "the token expired", 0.2)
    finally:
        await stack.stop()


async def test_with_redis_away_the_last_list_is_kept_and_requests_go_on(databases, caplog):
    server = RedisServer()
    server.start()
    stack = InProcessStack(databases, REDIS_URL=server.url)
    await stack.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(stack, session)
            revoked, kept = await api.new_user(), await api.new_user()
            reply = await patch_user(api, revoked.id, {"disabled": True}, await api.admin_token())
            assert reply.status == 200
            await refused_everywhere(api, revoked.token)
            with caplog.at_level(logging.WARNING, logger="seckill.revocations"):
                server.stop()
                await asyncio.sleep(2.5)  # a few polls without Redis
                for service in SERVICES:
                    assert_problem(await probe(api, service, revoked.token), 401, "token_revoked")
                await accepted_everywhere(api, kept.token)
                # a change made now is done; its revocation cannot be published, and says so
                late = await api.new_user()
                admin = await api.admin_token()
                reply = await patch_user(api, late.id, {"disabled": True}, admin)
                assert reply.status == 200 and user_row(stack, late.id)["disabled"] == 1
            away = [r for r in caplog.records if "cannot read" in r.getMessage()]
            # one line per following worker (three apps here), not one per poll
            assert 1 <= len(away) <= len(SERVICES), [r.getMessage() for r in away]
            unpublished = [r for r in caplog.records if "cannot publish" in r.getMessage()]
            assert len(unpublished) == 1 and str(late.id) in unpublished[0].getMessage()
    finally:
        await stack.stop()
        server.stop()


def test_the_revocation_key_is_under_the_prefix():
    prefix = "sktest_" + secrets.token_hex(4)
    assert revocation_key(prefix) == f"{prefix}:revoked_tokens"
