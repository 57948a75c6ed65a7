"""user_service's contract: registration, tokens, /users/me, /users/{id}, and token checks."""

import asyncio
import secrets

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from common.auth import ALGORITHM, ISSUER
from testkit.stack import ADMIN
from tests.support.expect import assert_field_error, assert_problem, mint_token, stack_key
from tests.support.factories import PASSWORD

SERVICES = ("user_service", "activity_service", "order_service")


def fresh_name() -> str:
    return "n_" + secrets.token_hex(6)


async def test_register_returns_the_user(api):
    name = fresh_name()
    reply = await api.register(name)
    assert reply.status == 201, reply
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.body
    assert set(body) == {"id", "username", "is_admin", "disabled", "created_at"}
    assert body["username"] == name and body["is_admin"] is False
    assert isinstance(body["id"], int) and body["id"] > 0
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == 20


async def test_password_is_stored_only_as_a_salted_hash(api, stack):
    first, second = fresh_name(), fresh_name()
    await api.register(first)
    await api.register(second)
    rows = stack.query(
        "user_service",
        "SELECT username, password_hash FROM users WHERE username IN (%s, %s)",
        (first, second),
    )
    hashes = [row["password_hash"] for row in rows]
    assert len(hashes) == 2 and hashes[0] != hashes[1]  # same password, different salt
    assert all(PASSWORD not in h for h in hashes)


async def test_username_taken(api):
    name = fresh_name()
    assert (await api.register(name)).status == 201
    assert_problem(await api.register(name), 409, "username_taken")
    assert_problem(await api.register(name, password="another-password"), 409, "username_taken")


async def test_concurrent_registrations_of_one_name(api, stack):
    name = fresh_name()
    twins = [name, name.upper(), name, name.upper()] * 3
    replies = await asyncio.gather(*(api.register(n) for n in twins))
    assert sorted(r.status for r in replies) == [201] + [409] * (len(twins) - 1), replies
    for reply in replies:
        if reply.status == 409:
            assert_problem(reply, 409, "username_taken")
    rows = stack.query("user_service", "SELECT id FROM users WHERE username = %s", (name,))
    assert len(rows) == 1


@pytest.mark.parametrize(
    "username",
    ["ab", "a" * 33, "has space", "semi;colon", "quote'", "x' OR '1'='1", "üser", "tab\tx", ""],
)
async def test_bad_usernames_are_422(api, username):
    body = {"username": username, "password": PASSWORD}
    assert_field_error(await api.call("POST", "user_service", "/users", json=body), "username")


@pytest.mark.parametrize("password", ["short", "1234567", "p" * 129, ""])
async def test_bad_passwords_are_422(api, password):
    assert_field_error(await api.register(fresh_name(), password=password), "password")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": fresh_name()}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": 12345, "password": PASSWORD}, "username"),
        ({"username": fresh_name(), "password": 12345678}, "password"),
        ({"username": fresh_name(), "password": PASSWORD, "is_admin": True}, "is_admin"),
    ],
)
async def test_register_body_must_validate(api, body, field):
    reply = await api.call("POST", "user_service", "/users", json=body)
    assert_field_error(reply, field)


async def test_boundary_lengths_are_accepted(api):
    assert (await api.register("a" + secrets.token_hex(1))).status == 201  # 3 characters
    long_name = ("b" * 20 + secrets.token_hex(6))[:32]
    strong_and_long = ("Kx9-" + secrets.token_urlsafe(96))[:128]
    assert (await api.register(long_name, password=strong_and_long)).status == 201
    # PASSWORD_MIN_LENGTH (10) characters, strong enough.
    assert (await api.register("x._-" + secrets.token_hex(3), password="Qz7#vL2pW!")).status == 201


async def test_token_shape_and_use(api):
    name = fresh_name()
    await api.register(name)
    reply = await api.call(
        "POST", "user_service", "/tokens", json={"username": name, "password": PASSWORD}
    )
    assert reply.status == 200, reply
    assert set(reply.body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert reply.body["token_type"] == "bearer"
    assert len(reply.body["refresh_token"]) >= 43  # 256 random bits, base64url
    assert isinstance(reply.body["expires_in"], int) and reply.body["expires_in"] > 0
    me = await api.call("GET", "user_service", "/users/me", token=reply.body["access_token"])
    assert me.status == 200 and me.body["username"] == name


async def test_wrong_password_and_unknown_user_are_alike(api):
    name = fresh_name()
    await api.register(name)
    wrong = await api.call(
        "POST", "user_service", "/tokens", json={"username": name, "password": "not-the-password"}
    )
    unknown = await api.call(
        "POST", "user_service", "/tokens", json={"username": fresh_name(), "password": PASSWORD}
    )
    assert_problem(wrong, 401, "invalid_credentials")
    assert_problem(unknown, 401, "invalid_credentials")
    assert wrong.body["detail"] == unknown.body["detail"]


async def test_token_body_must_validate(api):
    reply = await api.call("POST", "user_service", "/tokens", json={"username": "abc"})
    assert_field_error(reply, "password")


async def test_me_and_own_account(api):
    user = await api.new_user()
    me = await api.call("GET", "user_service", "/users/me", token=user.token)
    assert me.status == 200, me
    assert me.body["id"] == user.id and me.body["username"] == user.username
    own = await api.call("GET", "user_service", f"/users/{user.id}", token=user.token)
    assert own.status == 200 and own.body == me.body


async def test_admin_sees_any_account_and_is_admin(api):
    user = await api.new_user()
    admin = await api.admin_token()
    reply = await api.call("GET", "user_service", f"/users/{user.id}", token=admin)
    assert reply.status == 200 and reply.body["username"] == user.username
    me = await api.call("GET", "user_service", "/users/me", token=admin)
    assert me.body["username"] == ADMIN[0] and me.body["is_admin"] is True


async def test_another_users_account_is_forbidden(api):
    alice, bob = await api.new_users(2)
    reply = await api.call("GET", "user_service", f"/users/{bob.id}", token=alice.token)
    assert_problem(reply, 403, "forbidden")


@pytest.mark.parametrize("user_id", [0, -1, 999_999_999, 2**63 - 1, 2**63, 10**30])
async def test_unknown_account_is_404_for_admin(api, user_id):
    admin = await api.admin_token()
    reply = await api.call("GET", "user_service", f"/users/{user_id}", token=admin)
    assert_problem(reply, 404, "not_found")


@pytest.mark.parametrize("service", SERVICES)
async def test_forged_token_is_401(api, stack, service):
    user = await api.new_user()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = mint_token(stack, user.id, is_admin=True, key=other_key)
    path = "/users/me" if service == "user_service" else "/orders"
    if service == "activity_service":
        activity = await api.create_activity()
        path = f"/activities/{activity['id']}/seckill"
    method = "POST" if service == "activity_service" else "GET"
    assert_problem(await api.call(method, service, path, token=forged), 401, "unauthorized")
    genuine = mint_token(stack, user.id)
    assert (await api.call(method, service, path, token=genuine)).status in (200, 201)


@pytest.mark.parametrize("service", SERVICES)
async def test_expired_token_is_401(api, stack, service):
    user = await api.new_user()
    expired = mint_token(stack, user.id, ttl=-5)
    path = {"user_service": "/users/me", "order_service": "/orders"}.get(service)
    if path is None:
        activity = await api.create_activity()
        reply = await api.call(
            "POST", service, f"/activities/{activity['id']}/seckill", token=expired
        )
    else:
        reply = await api.call("GET", service, path, token=expired)
    assert_problem(reply, 401, "unauthorized")


def _claims(**changes):
    claims = {"sub": "1", "adm": True, "iat": 1, "exp": 4_000_000_000, "iss": ISSUER}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    "claims",
    [
        _claims(iss="someone-else"),
        _claims(exp=None),
        _claims(sub=None),
        _claims(sub="not-a-number"),
    ],
    ids=["wrong-issuer", "no-exp", "no-sub", "bad-sub"],
)
async def test_tokens_with_bad_claims_are_401(api, stack, claims):
    token = jwt.encode(claims, stack_key(stack), algorithm=ALGORITHM)
    for service, path in (("user_service", "/users/me"), ("order_service", "/orders")):
        assert_problem(await api.call("GET", service, path, token=token), 401, "unauthorized")


async def test_unsigned_and_hmac_tokens_are_401(api, stack):
    unsigned = jwt.encode(_claims(), None, algorithm="none")
    hmac_token = jwt.encode(_claims(), "s" * 32, algorithm="HS256")
    for token in (unsigned, hmac_token):
        for service, path in (("user_service", "/users/me"), ("order_service", "/orders")):
            reply = await api.call("GET", service, path, token=token)
            assert_problem(reply, 401, "unauthorized")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer abc.def.ghi",
        "Bearer not-a-jwt",
        "Bearer a b c",
    ],
)
@pytest.mark.parametrize("service", SERVICES)
async def test_malformed_authorization_is_401(api, service, header):
    headers = {} if header is None else {"Authorization": header}
    path = {
        "user_service": ("GET", "/users/me"),
        "activity_service": ("POST", "/activities/1/seckill"),
        "order_service": ("GET", "/orders"),
    }[service]
    reply = await api.call(path[0], service, path[1], headers=headers)
    assert_problem(reply, 401, "unauthorized")


async def test_tampered_token_is_401(api):
    user = await api.new_user()
    header, payload, signature = user.token.split(".")
    other = await api.new_user()
    _, other_payload, _ = other.token.split(".")
    swapped = ".".join([header, other_payload, signature])
    assert_problem(
        await api.call("GET", "user_service", "/users/me", token=swapped), 401, "unauthorized"
    )


@pytest.mark.parametrize("service", SERVICES)
async def test_a_signature_spelled_another_way_is_401_on_every_service(api, service):
    user = await api.new_user()
    head, _, signature = user.token.rpartition(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # RS256-2048: 342 characters, the last of which carries 2 bits; its 4 others are unused.
    respelled = alphabet[alphabet.index(signature[-1]) ^ 1]
    token = f"{head}.{signature[:-1]}{respelled}"
    method, path = {
        "user_service": ("GET", "/users/me"),
        "activity_service": ("GET", "/activities/0/challenge"),
        "order_service": ("GET", "/orders"),
    }[service]
    assert_problem(await api.call(method, service, path, token=token), 401, "unauthorized")
    assert (await api.call(method, service, path, token=user.token)).status != 401
