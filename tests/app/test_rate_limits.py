"""Rate limits in-process: 429 problem+json with Retry-After past each allowance, passing
again once it has passed; login throttling per username; the client's address behind a
trusted proxy. Memory mode here (one process); Redis and several instances further down.

The apps trust 127.0.0.1 as one proxy (PROXIES_COUNT=1), so each test speaks for clients
of its own through X-Forwarded-For and the tests share no allowance.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets

import aiohttp
import pytest
import pytest_asyncio

from activity_service import routes as activity_routes
from tests.support.apps import InProcessStack
from tests.support.factories import PASSWORD, Account, Api

WINDOW = 2  # seconds: every limit here is small, so a test waits it out
DASHBOARD_KEY = secrets.token_urlsafe(16)
LIMITS = {
    "RATE_LIMITS": "on",
    "PROXIES_COUNT": "1",
    "LIMIT_SIGNUPS_PER_IP": f"3/{WINDOW} seconds",
    "LIMIT_LOGINS_PER_IP": f"3/{WINDOW} seconds",
    "LIMIT_LOGIN_FAILURES_PER_USERNAME": f"2/{WINDOW} seconds",
    "LIMIT_SECKILL_PER_USER": f"3/{WINDOW} seconds",
    "LIMIT_SECKILL_PER_IP": f"5/{WINDOW} seconds",
    "LIMIT_CHALLENGES_PER_USER": f"3/{WINDOW} seconds",
    "LIMIT_CHALLENGES_PER_IP": f"5/{WINDOW} seconds",
    "LIMIT_REFRESHES_PER_IP": f"3/{WINDOW} seconds",
    "LIMIT_REVOCATIONS_PER_IP": f"3/{WINDOW} seconds",
    "LIMIT_DASHBOARD_KEY_FAILURES_PER_IP": f"3/{WINDOW} seconds",
    "DASHBOARD_KEY": DASHBOARD_KEY,
}
_addresses = itertools.count(1)


def new_client() -> dict[str, str]:
    """The headers of a client at an address no other test uses, via the trusted proxy."""
    n = next(_addresses)
    return {"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(databases):
    stack = InProcessStack(databases, **LIMITS)
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


async def register(api: Api, client: dict, username: str | None = None):
    username = username or "rl_" + secrets.token_hex(4)
    body = {"username": username, "password": PASSWORD}
    return await api.call("POST", "user_service", "/users", json=body, headers=client)


async def login(api: Api, client: dict, username: str, password: str = PASSWORD):
    body = {"username": username, "password": password}
    return await api.call("POST", "user_service", "/tokens", json=body, headers=client)


async def new_account(api: Api) -> Account:
    """A user registered and logged in from addresses of its own."""
    reply = await register(api, new_client())
    assert reply.status == 201, reply
    token = (await login(api, new_client(), reply.body["username"])).body["access_token"]
    return Account(reply.body["id"], reply.body["username"], token)


async def seckill(api: Api, client: dict, activity_id: int, token: str):
    path = f"/activities/{activity_id}/seckill"
    return await api.call("POST", "activity_service", path, token=token, headers=client)


async def get_challenge(api: Api, client: dict, activity_id: int, token: str):
    path = f"/activities/{activity_id}/challenge"
    return await api.call("GET", "activity_service", path, token=token, headers=client)


def assert_limited(reply) -> None:
    assert reply.status == 429, reply
    assert reply.code == "rate_limited"
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(reply.headers["Retry-After"]) <= WINDOW


async def test_signups_per_address_are_limited_and_pass_again_after_retry_after(api):
    client = new_client()
    for _ in range(3):
        assert (await register(api, client)).status == 201
    refused = await register(api, client)
    assert_limited(refused)
    assert (await register(api, new_client())).status == 201  # another address is not
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await register(api, client)).status == 201


async def test_logins_per_address_are_limited_and_pass_again_after_retry_after(api):
    account = await new_account(api)
    client = new_client()
    for _ in range(3):
        assert (await login(api, client, account.username)).status == 200
    refused = await login(api, client, account.username)
    assert_limited(refused)
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await login(api, client, account.username)).status == 200


async def test_failed_logins_throttle_the_username_even_for_the_right_password(api):
    account = await new_account(api)
    for _ in range(2):
        reply = await login(api, new_client(), account.username, "wrong-password-1")
        assert reply.status == 401
    refused = await login(api, new_client(), account.username)  # right password, new address
    assert_limited(refused)
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await login(api, new_client(), account.username)).status == 200


@pytest.mark.parametrize(
    "path, answered", [("/tokens/refresh", 401), ("/tokens/revoke", 204)], ids=["refresh", "revoke"]
)
async def test_token_refreshes_and_revocations_per_address_are_limited(api, path, answered):
    client = new_client()
    body = {"refresh_token": secrets.token_urlsafe(32)}
    for _ in range(3):
        reply = await api.call("POST", "user_service", path, json=body, headers=client)
        assert reply.status == answered, reply
    refused = await api.call("POST", "user_service", path, json=body, headers=client)
    assert_limited(refused)
    # The limit comes before the body is read: a body that would be a 422 is refused too.
    junk = {f"f{n}": n for n in range(100)}
    assert_limited(await api.call("POST", "user_service", path, json=junk, headers=client))
    other = await api.call("POST", "user_service", path, json=body, headers=new_client())
    assert other.status == answered
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    reply = await api.call("POST", "user_service", path, json=body, headers=client)
    assert reply.status == answered


async def ticket(api: Api, client: dict, key: str):
    headers = client | {"X-Dashboard-Key": key}
    return await api.call("POST", "activity_service", "/dashboard/tickets", headers=headers)


async def test_wrong_dashboard_keys_per_address_are_limited_even_before_the_right_one(api):
    client = new_client()
    assert (await ticket(api, client, DASHBOARD_KEY)).status == 200
    for guess in range(3):
        reply = await ticket(api, client, f"guess-{guess}-{secrets.token_urlsafe(16)}")
        assert reply.status == 401 and reply.code == "unauthorized", reply
    refused = await ticket(api, client, DASHBOARD_KEY)  # past the allowance: even the key
    assert_limited(refused)
    assert (await ticket(api, new_client(), DASHBOARD_KEY)).status == 200
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await ticket(api, client, DASHBOARD_KEY)).status == 200


def spellings(name: str) -> list[str]:
    """Every spelling of name in upper and lower case letters."""
    options = [{char.lower(), char.upper()} for char in name]
    return ["".join(chars) for chars in itertools.product(*options)]


async def test_failed_logins_are_counted_by_the_name_whatever_its_letter_case(api):
    name = "usrx" + str(secrets.randbelow(10**6)).zfill(6)
    reply = await register(api, new_client(), name)
    assert reply.status == 201, reply
    variants = spellings(name)
    assert len(variants) == 16
    # The lookup finds the account under any spelling: two failures under two of them...
    for spelling in (name.upper(), variants[5]):
        assert (await login(api, new_client(), spelling, "wrong-password-1")).status == 401
    # ...use up the one allowance of the name, under every spelling, even the right password.
    for spelling in variants:
        assert_limited(await login(api, new_client(), spelling))


async def test_an_unknown_username_is_throttled_the_same_way(api):
    username = "nobody_" + secrets.token_hex(4)
    for _ in range(2):
        assert (await login(api, new_client(), username, "wrong-password-1")).status == 401
    assert_limited(await login(api, new_client(), username, "wrong-password-1"))


async def test_seckill_tries_per_user_are_limited_and_pass_again(api):
    """Counted per user across activities, from any address."""
    account = await new_account(api)
    sales = [await api.create_activity(stock=5) for _ in range(4)]
    for sale in sales[:3]:
        assert (await seckill(api, new_client(), sale["id"], account.token)).status == 201
    refused = await seckill(api, new_client(), sales[3]["id"], account.token)
    assert_limited(refused)
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await seckill(api, new_client(), sales[3]["id"], account.token)).status == 201


async def test_seckill_tries_per_address_are_limited_and_pass_again(api):
    accounts = [await new_account(api) for _ in range(7)]
    activity = await api.create_activity(stock=100)
    client = new_client()
    statuses = [(await seckill(api, client, activity["id"], a.token)).status for a in accounts]
    assert statuses == [201] * 5 + [429] * 2
    refused = await seckill(api, client, activity["id"], accounts[-1].token)
    assert_limited(refused)
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await seckill(api, client, activity["id"], accounts[-1].token)).status == 201


async def test_challenges_per_user_are_limited_and_pass_again(api):
    """Counted per user across activities, from any address; each one costs an HMAC."""
    account = await new_account(api)
    sales = [await api.create_activity(stock=5, challenge=True) for _ in range(4)]
    for sale in sales[:3]:
        assert (await get_challenge(api, new_client(), sale["id"], account.token)).status == 200
    refused = await get_challenge(api, new_client(), sales[3]["id"], account.token)
    assert_limited(refused)
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await get_challenge(api, new_client(), sales[3]["id"], account.token)).status == 200


async def test_challenges_per_address_are_limited_and_pass_again(api):
    accounts = [await new_account(api) for _ in range(7)]
    activity = await api.create_activity(stock=100, challenge=True)
    client = new_client()
    statuses = [
        (await get_challenge(api, client, activity["id"], a.token)).status for a in accounts
    ]
    assert statuses == [200] * 5 + [429] * 2
    refused = await get_challenge(api, client, activity["id"], accounts[-1].token)
    assert_limited(refused)
    await asyncio.sleep(int(refused.headers["Retry-After"]))
    assert (await get_challenge(api, client, activity["id"], accounts[-1].token)).status == 200


async def test_an_order_already_held_is_answered_past_the_limit(api):
    """Memory's answer (your order) comes before the limits: it costs and writes nothing."""
    account = await new_account(api)
    activity = await api.create_activity(stock=5)
    client = new_client()
    assert (await seckill(api, client, activity["id"], account.token)).status == 201
    for _ in range(6):
        assert (await seckill(api, client, activity["id"], account.token)).status == 200


async def test_rate_limits_off_turns_every_limit_off(databases, monkeypatch):
    """And a seckill or a challenge then never works out the client's address (Sanic's
    proxy headers parsed on every request: 2 to 3% of a worker's CPU in a sale)."""
    addresses = []
    monkeypatch.setattr(
        activity_routes, "client_ip", lambda request: addresses.append(request) or "192.0.2.1"
    )
    stack = InProcessStack(databases, **LIMITS | {"RATE_LIMITS": "off"})
    await stack.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(stack, session)
            client = new_client()
            for _ in range(5):
                assert (await register(api, client)).status == 201
            account = await new_account(api)
            guarded = await api.create_activity(stock=5, challenge=True)
            sale = await api.create_activity(stock=5)
            for number in range(7):
                reply = await get_challenge(api, client, guarded["id"], account.token)
                assert reply.status == 200
                reply = await seckill(api, client, sale["id"], account.token)
                assert reply.status == (201 if number == 0 else 200)
            body = {"refresh_token": secrets.token_urlsafe(32)}
            for _ in range(5):
                for path, answered in (("/tokens/refresh", 401), ("/tokens/revoke", 204)):
                    reply = await api.call("POST", "user_service", path, json=body, headers=client)
                    assert reply.status == answered, reply
    finally:
        await stack.stop()
    assert addresses == []
