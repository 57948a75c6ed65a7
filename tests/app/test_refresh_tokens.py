"""Refresh tokens: rotation, reuse detection, a race of refreshes, logout; checked in the DB."""

import asyncio
import hashlib

import pytest

from tests.support.expect import assert_problem
from tests.support.factories import PASSWORD

NO_STORE = "no-store"


async def login(api, username: str, password: str = PASSWORD):
    body = {"username": username, "password": password}
    return await api.call("POST", "user_service", "/tokens", json=body)


async def refresh(api, refresh_token):
    body = {"refresh_token": refresh_token}
    return await api.call("POST", "user_service", "/tokens/refresh", json=body)


async def logout(api, refresh_token):
    body = {"refresh_token": refresh_token}
    return await api.call("POST", "user_service", "/tokens/revoke", json=body)


async def session(api):
    """A new account, logged in: (its account, the login's token response)."""
    account = await api.new_user()
    reply = await login(api, account.username)
    assert reply.status == 200, reply
    return account, reply.body


def family_rows(stack, refresh_token: str) -> list[dict]:
    digest = hashlib.sha256(refresh_token.encode()).hexdigest()
    return stack.query(
        "user_service",
        "SELECT token_hash, rotated_at, revoked_at FROM refresh_tokens WHERE family_id = "
        "(SELECT family_id FROM refresh_tokens WHERE token_hash = %s) ORDER BY id",
        (digest,),
    )


async def test_login_answers_a_refresh_token_stored_only_as_its_hash(api, stack):
    account, tokens = await session(api)
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    rows = family_rows(stack, tokens["refresh_token"])
    assert len(rows) == 1 and rows[0]["rotated_at"] is None and rows[0]["revoked_at"] is None
    stored = stack.query(
        "user_service", "SELECT * FROM refresh_tokens WHERE user_id = %s", (account.id,)
    )
    assert tokens["refresh_token"] not in str(stored)


async def test_a_refresh_rotates_and_every_token_answer_is_no_store(api, stack):
    account, first = await session(api)
    reply = await refresh(api, first["refresh_token"])
    assert reply.status == 200, reply
    assert reply.headers["Cache-Control"] == NO_STORE
    second = reply.body
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert second["refresh_token"] != first["refresh_token"]
    me = await api.call("GET", "user_service", "/users/me", token=second["access_token"])
    assert me.status == 200 and me.body["id"] == account.id
    rows = family_rows(stack, first["refresh_token"])
    assert len(rows) == 2
    assert rows[0]["rotated_at"] is not None and rows[1]["rotated_at"] is None
    assert all(row["revoked_at"] is None for row in rows)
    # and the next one rotates in turn
    third = await refresh(api, second["refresh_token"])
    assert third.status == 200 and third.headers["Cache-Control"] == NO_STORE
    assert (await login(api, account.username)).headers["Cache-Control"] == NO_STORE


async def test_reuse_of_a_rotated_token_revokes_its_whole_family(api, stack):
    _, first = await session(api)
    second = (await refresh(api, first["refresh_token"])).body
    reused = await refresh(api, first["refresh_token"])
    assert_problem(reused, 401, "refresh_token_reused")
    # the thief's (or the client's) newer token is gone too
    assert_problem(await refresh(api, second["refresh_token"]), 401, "invalid_grant")
    rows = family_rows(stack, first["refresh_token"])
    assert len(rows) == 2 and all(row["revoked_at"] is not None for row in rows)


async def test_other_logins_of_the_user_survive_a_reuse(api):
    account, first = await session(api)
    other = (await login(api, account.username)).body
    await refresh(api, first["refresh_token"])
    assert (await refresh(api, first["refresh_token"])).status == 401
    assert (await refresh(api, other["refresh_token"])).status == 200


async def test_concurrent_refreshes_of_one_token_let_exactly_one_through(api, stack):
    for _ in range(3):
        _, tokens = await session(api)
        replies = await asyncio.gather(*(refresh(api, tokens["refresh_token"]) for _ in range(8)))
        statuses = sorted(reply.status for reply in replies)
        assert statuses == [200] + [401] * 7, replies
        assert {r.code for r in replies if r.status == 401} == {"refresh_token_reused"}
        rows = family_rows(stack, tokens["refresh_token"])
        # one successor made, and the losers' reuse revoked the family, successor included
        assert len(rows) == 2, rows
        assert rows[0]["rotated_at"] is not None and rows[1]["rotated_at"] is None
        assert all(row["revoked_at"] is not None for row in rows)


async def test_logout_revokes_the_family_and_unknown_tokens_are_not_an_error(api, stack):
    _, first = await session(api)
    second = (await refresh(api, first["refresh_token"])).body
    reply = await logout(api, second["refresh_token"])
    assert reply.status == 204 and reply.body is None
    assert reply.headers["Cache-Control"] == NO_STORE
    assert_problem(await refresh(api, second["refresh_token"]), 401, "invalid_grant")
    assert all(row["revoked_at"] is not None for row in family_rows(stack, first["refresh_token"]))
    assert (await logout(api, "not-a-token-we-know")).status == 204  # RFC 7009
    assert (await logout(api, second["refresh_token"])).status == 204  # twice is fine


async def test_an_expired_refresh_token_is_refused(api, stack):
    _, tokens = await session(api)
    digest = hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()
    stack.query(
        "user_service",
        "UPDATE refresh_tokens SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE token_hash = %s",
        (digest,),
    )
    assert_problem(await refresh(api, tokens["refresh_token"]), 401, "invalid_grant")
    assert family_rows(stack, tokens["refresh_token"])[0]["rotated_at"] is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"refresh_token": ""}, 422),
        ({"refresh_token": 5}, 422),
        ({"refresh_token": "x" * 257}, 422),
        ({"refresh_token": "x", "scope": "all"}, 422),
        ("not json", 400),
    ],
)
@pytest.mark.parametrize("path", ["/tokens/refresh", "/tokens/revoke"])
async def test_bad_refresh_bodies_are_4xx_and_change_nothing(api, stack, body, status, path):
    _, tokens = await session(api)
    if isinstance(body, str):
        reply = await api.call("POST", "user_service", path, data=body)
    else:
        reply = await api.call("POST", "user_service", path, json=body)
    assert_problem(reply, status, "invalid_request" if status == 422 else "bad_request")
    rows = family_rows(stack, tokens["refresh_token"])
    assert rows[0]["rotated_at"] is None and rows[0]["revoked_at"] is None


async def test_an_unknown_refresh_token_is_invalid_grant(api):
    assert_problem(await refresh(api, "x" * 43), 401, "invalid_grant")
