"""Bad input of every kind gets a clear 4xx problem+json, and changes nothing in any database."""

from __future__ import annotations

import asyncio
import time

import pytest_asyncio

from tests.support.expect import assert_problem, row_counts
from tests.support.factories import PASSWORD, window

SQLISH = [
    "x' OR '1'='1",
    "1; DROP TABLE users",
    "1' ; DROP TABLE activities; --",
    '" OR ""="',
    "1 UNION SELECT password_hash FROM users",
    "%' OR 1=1 #",
    "\\'; SELECT SLEEP(5); --",
]
HUGE_IDS = ["0", "-1", "-9223372036854775808", "9223372036854775808", "1" + "0" * 40, "9" * 400]
BAD_JSON = [
    b"{bad",
    b'{"username": "abc",}',
    b"\xff\xfe\xfd",
    b"nul\x00",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    b'{"username": "abc", "password": "password-123"',
    b'"unterminated',
]


@pytest_asyncio.fixture(loop_scope="module")
async def world(api, stack):
    """Accounts, an activity with an order; every table must be the same afterwards."""
    alice, bob = await api.new_users(2)
    activity = await api.create_activity(stock=5)
    upcoming = await api.create_activity(stock=5, **window(start_in=3600))
    bought = await api.seckill(activity["id"], alice.token)
    assert bought.status == 201, bought
    order = bought.body
    deadline = time.monotonic() + 30
    while pending := stack.query(
        "activity_service",
        "SELECT order_no FROM seckill_records WHERE delivered_at IS NULL LIMIT 5",
    ):
        assert time.monotonic() < deadline, f"the outbox did not drain: {pending}"
        await asyncio.sleep(0.1)
    world = {
        "alice": alice,
        "bob": bob,
        "admin": await api.admin_token(),
        "activity": activity,
        "upcoming": upcoming,
        "order": order,
    }
    before = snapshot(stack)
    while (settled := snapshot(stack)) != before:  # earlier tests' work may still be landing
        assert time.monotonic() < deadline, "the databases did not settle"
        before = settled
        await asyncio.sleep(0.5)
    yield world
    assert snapshot(stack) == before, "bad input changed the databases"


def snapshot(stack) -> dict:
    return {
        "counts": row_counts(stack),
        "activities": stack.query("activity_service", "SELECT * FROM activities ORDER BY id"),
        "orders": stack.query(
            "order_service", "SELECT order_no, status, paid_at FROM orders ORDER BY id"
        ),
        "users": stack.query("user_service", "SELECT id, username, is_admin FROM users"),
    }


async def expect_4xx(api, method, service, path, **kwargs) -> dict:
    reply = await api.call(method, service, path, **kwargs)
    assert 400 <= reply.status < 500, (method, service, path, reply)
    return assert_problem(reply, reply.status)


def json_endpoints(world) -> list[tuple[str, str, str, dict]]:
    admin = world["admin"]
    upcoming = world["upcoming"]["id"]
    return [
        ("POST", "user_service", "/users", {}),
        ("POST", "user_service", "/tokens", {}),
        ("POST", "activity_service", "/activities", {"token": admin}),
        ("PATCH", "activity_service", f"/activities/{upcoming}", {"token": admin}),
    ]


async def test_malformed_json_everywhere(api, stack, world):
    endpoints = json_endpoints(world) + [
        ("POST", "order_service", "/internal/orders", {"headers": {}}),
    ]
    for method, service, path, kwargs in endpoints:
        headers = {"Content-Type": "application/json"}
        if service == "order_service":
            headers["X-Service-Token"] = stack.service_token
        for raw in BAD_JSON:
            body = await expect_4xx(
                api, method, service, path, data=raw, headers=headers, token=kwargs.get("token")
            )
            assert body["code"] == "bad_request", (path, raw[:20], body)


WRONG_BODIES = [
    [],
    [1, 2],
    "a string",
    42,
    None,
    True,
    {"username": ["abc"], "password": {"a": 1}},
    {"name": {"$gt": ""}, "product_name": [], "price": [], "stock": "1", "starts_at": 0},
    {"stock": 10**400},
    {"stock": 1e308 * 10},
    {"price": "1e400"},
    {"price": "-0.00"},
    {"starts_at": "2026-13-45T25:61:61Z"},
    {"ends_at": "2026-01-01T00:00:00+99:00"},
    {"name": "n" * 200_000},
]


async def test_wrong_types_everywhere(api, world):
    for method, service, path, kwargs in json_endpoints(world):
        for body in WRONG_BODIES:
            problem = await expect_4xx(api, method, service, path, json=body, **kwargs)
            assert problem["code"] in ("invalid_request", "bad_request"), (path, body, problem)
            if problem["code"] == "invalid_request":
                assert problem["errors"] and all(e["field"] for e in problem["errors"])


async def test_huge_bodies(api, stack, world):
    big = b'{"name": "' + b"n" * (1024 * 1024 + 10) + b'"}'
    for method, service, path, kwargs in json_endpoints(world):
        headers = {"Content-Type": "application/json", "Expect": "100-continue"}
        body = await expect_4xx(api, method, service, path, data=big, headers=headers, **kwargs)
        assert body["code"] == "payload_too_large"
    # Just under the limit: parsed, and refused for what it says.
    almost = {"username": "u" * (1024 * 1000), "password": PASSWORD}
    body = await expect_4xx(api, "POST", "user_service", "/users", json=almost)
    assert body["code"] == "invalid_request"


async def test_bad_ids_in_paths(api, world):
    admin, alice = world["admin"], world["alice"]
    for bad in HUGE_IDS + ["abc", "1.5", "1e3", "0x10", "%20", "1%3B%20DROP%20TABLE%20users"]:
        await expect_4xx(api, "GET", "user_service", f"/users/{bad}", token=admin)
        await expect_4xx(api, "GET", "activity_service", f"/activities/{bad}")
        await expect_4xx(
            api,
            "PATCH",
            "activity_service",
            f"/activities/{bad}",
            token=admin,
            json={"name": "changed"},
        )
        await expect_4xx(api, "DELETE", "activity_service", f"/activities/{bad}", token=admin)
        await expect_4xx(
            api, "POST", "activity_service", f"/activities/{bad}/seckill", token=alice.token
        )


async def test_bad_ids_in_queries(api, world):
    admin = world["admin"]
    for bad in HUGE_IDS + ["abc", "1.5", "1e3", "[1]", "1,2", *SQLISH]:
        valid = {"offset"} if bad == "0" else set()
        for name in {"limit", "offset"} - valid:
            reply = await api.call("GET", "activity_service", f"/activities?{name}={bad}")
            assert_problem(reply, 422, "invalid_request")
        for name in {"activity_id", "user_id", "limit", "offset"} - valid:
            reply = await api.call("GET", "order_service", f"/orders?{name}={bad}", token=admin)
            assert_problem(reply, 422, "invalid_request")


async def test_sql_looking_strings(api, stack, world):
    admin, alice = world["admin"], world["alice"]
    order_no = world["order"]["order_no"]
    for text in SQLISH:
        body = await expect_4xx(
            api, "POST", "user_service", "/users", json={"username": text, "password": PASSWORD}
        )
        assert body["code"] == "invalid_request"
        for username, password in ((text, PASSWORD), (alice.username, text), ("admin", text)):
            await expect_4xx(
                api,
                "POST",
                "user_service",
                "/tokens",
                json={"username": username, "password": password},
            )
        for path in (f"/orders/{text}", f"/orders/{order_no}{text}", f"/orders/{text}/pay"):
            await expect_4xx(api, "GET", "order_service", path, token=admin)
            await expect_4xx(api, "POST", "order_service", path + "/pay", token=alice.token)
        await expect_4xx(api, "GET", "activity_service", f"/activities/{text}")
        await expect_4xx(
            api,
            "PATCH",
            "activity_service",
            f"/activities/{world['upcoming']['id']}",
            token=admin,
            json={"stock": text},
        )
        reply = await api.call(
            "GET", "order_service", "/orders", token=admin, headers={"X-Request-ID": text}
        )
        assert reply.status == 200 and reply.headers["X-Request-ID"] != text
    # The order and the account they aimed at are as they were.
    fetched = await api.call("GET", "order_service", f"/orders/{order_no}", token=alice.token)
    assert fetched.body == world["order"]


async def test_sql_looking_names_are_stored_as_text(api, stack):
    before = row_counts(stack)
    names = {}
    for text in SQLISH:
        activity = await api.create_activity(name=text, product_name=text[::-1])
        names[activity["id"]] = text
        fetched = await api.call("GET", "activity_service", f"/activities/{activity['id']}")
        assert fetched.body["name"] == text and fetched.body["product_name"] == text[::-1]
    after = row_counts(stack)
    assert after["activities"] == before["activities"] + len(SQLISH)
    assert {k: v for k, v in after.items() if k != "activities"} == {
        k: v for k, v in before.items() if k != "activities"
    }


async def test_bad_tokens_write_nothing(api, world):
    activity = world["activity"]["id"]
    for token in ["' OR 1=1 --", "a" * 20_000, "eyJ" + "A" * 500 + ".e30.", "\u00e9"]:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            reply = await api.call(
                "POST", "activity_service", f"/activities/{activity}/seckill", headers=headers
            )
        except UnicodeEncodeError:
            continue  # the client library refuses to send it at all
        assert 400 <= reply.status < 500, reply
        assert_problem(reply, reply.status)
