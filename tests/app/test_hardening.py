"""Security headers on every answer, JSON as the only body type, no-store on tokens."""

import pytest

from tests.support.expect import assert_problem
from tests.support.factories import PASSWORD

FRAMING = "frame-ancestors 'none'"


def assert_hardened(headers: dict) -> None:
    assert headers.get("X-Content-Type-Options") == "nosniff", headers
    assert headers.get("X-Frame-Options") == "DENY", headers
    assert FRAMING in headers.get("Content-Security-Policy", ""), headers


@pytest.mark.parametrize(
    "service, method, path",
    [
        ("user_service", "GET", "/health"),
        ("user_service", "GET", "/.well-known/jwks.json"),
        ("activity_service", "GET", "/activities"),
        ("activity_service", "GET", "/nowhere"),  # a 404 problem
        ("order_service", "GET", "/orders"),  # a 401 problem
        ("order_service", "DELETE", "/orders"),  # a 405 problem
        ("order_service", "GET", "/docs/openapi.json"),
    ],
)
async def test_every_answer_carries_the_security_headers(api, service, method, path):
    reply = await api.call(method, service, path)
    assert_hardened(reply.headers)
    assert reply.headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_the_seckill_answer_carries_them_too(api):
    activity = await api.create_activity(stock=1)
    buyer = await api.new_user()
    reply = await api.seckill(activity["id"], buyer.token)
    assert reply.status == 201
    assert_hardened(reply.headers)


@pytest.mark.parametrize("service", ["user_service", "activity_service", "order_service"])
async def test_the_docs_page_has_a_policy_without_inline_scripts(api, service):
    reply = await api.call("GET", service, "/docs")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/html")
    assert_hardened(reply.headers)
    policy = dict(
        part.strip().split(" ", 1) for part in reply.headers["Content-Security-Policy"].split(";")
    )
    assert policy["script-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert "<script>" not in reply.body  # the start script is a file: no inline script runs
    start = await api.call("GET", service, "/docs/swagger-init.js")
    assert start.status == 200 and "persistAuthorization: false" in start.body


async def test_a_token_answer_is_never_stored(api):
    account = await api.new_user()
    reply = await api.call(
        "POST",
        "user_service",
        "/tokens",
        json={"username": account.username, "password": PASSWORD},
    )
    assert reply.status == 200 and "access_token" in reply.body
    assert reply.headers.get("Cache-Control") == "no-store"
    assert reply.headers.get("Pragma") == "no-cache"


BODY = b'{"username": "%s", "password": "' + PASSWORD.encode() + b'"}'


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",  # what `curl -d` sends
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        None,  # a body with no type at all
    ],
)
async def test_a_body_that_is_not_sent_as_json_is_415(api, stack, content_type):
    username = f"ctype_{abs(hash(content_type)) % 10**8}"
    url = stack.url("user_service") + "/users"
    headers = {} if content_type is None else {"Content-Type": content_type}
    async with api.session.post(
        url, data=BODY % username.encode(), headers=headers, skip_auto_headers=["Content-Type"]
    ) as response:
        body = await response.json(content_type=None)
        status = response.status
        assert response.headers["Content-Type"] == "application/problem+json"
    assert status == 415 and body["code"] == "unsupported_media_type", body
    rows = stack.query("user_service", "SELECT 1 FROM users WHERE username = %s", (username,))
    assert rows == []


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
async def test_json_with_or_without_a_charset_is_accepted(api, content_type):
    username = f"json_{abs(hash(content_type)) % 10**8}"
    reply = await api.call(
        "POST",
        "user_service",
        "/users",
        data=BODY % username.encode(),
        headers={"Content-Type": content_type},
    )
    assert reply.status == 201, reply


async def test_a_patch_sent_as_a_form_is_415_and_changes_nothing(api):
    activity = await api.create_activity(stock=3)
    path = f"/activities/{activity['id']}"
    reply = await api.call(
        "PATCH",
        "activity_service",
        path,
        token=await api.admin_token(),
        data=b'{"name": "changed"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(reply, 415, "unsupported_media_type")
    assert (await api.call("GET", "activity_service", path)).body == activity
