"""Registration applies the password policy; accounts made under older rules still log in."""

import pytest

from tests.support.expect import assert_problem
from tests.support.factories import PASSWORD
from user_service.passwords import hash_password_sync


@pytest.mark.parametrize(
    "password, field_says",
    [
        ("password", "at least 10 characters"),
        ("12345678", "at least 10 characters"),
        ("        ", "at least 10 characters"),
        ("password123", "too easy to guess"),
        ("{name}-Vq8#tulip", "must not contain the username"),
        ("{name}", "must not contain the username"),
    ],
)
async def test_a_weak_password_is_422_saying_why_and_makes_no_account(
    api, stack, password, field_says
):
    name = f"weak_{abs(hash(password)) % 10**6}"
    reply = await api.register(name, password=password.format(name=name))
    body = assert_problem(reply, 422, "weak_password")
    assert body["errors"][0]["field"] == "password"
    assert field_says in body["errors"][0]["message"] and field_says in body["detail"]
    assert stack.query("user_service", "SELECT 1 FROM users WHERE username = %s", (name,)) == []


async def test_a_password_equal_to_the_username_is_refused(api):
    reply = await api.register("longusername1", password="longusername1")
    body = assert_problem(reply, 422, "weak_password")
    assert "username" in body["detail"]


async def test_an_account_made_under_older_rules_still_logs_in(api, stack):
    """The policy applies when a password is chosen, never at login."""
    old_password = "password"  # 8 characters: what the old rules accepted
    encoded = hash_password_sync(old_password, 4)
    stack.query(
        "user_service",
        "INSERT INTO users (username, password_hash, is_admin, created_at) "
        "VALUES (%s, %s, 0, NOW())",
        ("old_rules_user", encoded),
    )
    token = await api.login("old_rules_user", old_password)
    me = await api.call("GET", "user_service", "/users/me", token=token)
    assert me.status == 200 and me.body["username"] == "old_rules_user"


async def test_the_factories_password_passes(api):
    assert (await api.register(password=PASSWORD)).status == 201
