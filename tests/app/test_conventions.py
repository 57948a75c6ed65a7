"""What holds for all three services: problem+json errors, request ids, limits, health.

The OpenAPI documents and the log lines are checked on real processes, in
tests/e2e/test_conventions.py.
"""

import asyncio

import aiohttp
import pytest

from tests.support.expect import assert_problem, call_with_orders_table_away

SERVICES = ("user_service", "activity_service", "order_service")
# One POST endpoint per service that reads a JSON body.
POSTS = {
    "user_service": "/users",
    "activity_service": "/activities",
    "order_service": "/internal/orders",
}


async def credentials(api, stack, service: str) -> dict:
    """Headers that get a POST past authorization to body parsing."""
    if service == "activity_service":
        return {"Authorization": f"Bearer {await api.admin_token()}"}
    if service == "order_service":
        return {"X-Service-Token": stack.service_token}
    return {}


@pytest.mark.parametrize("service", SERVICES)
async def test_health(api, service):
    reply = await api.call("GET", service, "/health")
    assert reply.status == 200 and reply.body == {"status": "ok"}


@pytest.mark.parametrize("service", SERVICES)
async def test_unknown_route_is_404(api, service):
    body = assert_problem(await api.call("GET", service, "/no/such/route"), 404, "not_found")
    assert "/no/such/route" in body["detail"]
    assert_problem(await api.call("POST", service, "/nope", json={}), 404, "not_found")


@pytest.mark.parametrize(
    "service, method, path, allowed",
    [
        ("user_service", "DELETE", "/users", "POST"),
        ("user_service", "PUT", "/tokens", "POST"),
        ("user_service", "POST", "/users/me", "GET"),
        ("user_service", "DELETE", "/users/1", "GET"),
        ("activity_service", "PUT", "/activities", "GET, POST"),
        ("activity_service", "POST", "/activities/1", "DELETE, GET, PATCH"),
        ("activity_service", "GET", "/activities/1/seckill", "POST"),
        ("order_service", "DELETE", "/orders", "GET"),
        ("order_service", "GET", "/orders/abc/pay", "POST"),
        ("order_service", "GET", "/internal/orders", "POST"),
        ("order_service", "POST", "/health", "GET"),
    ],
)
async def test_wrong_method_is_405_with_allow(api, service, method, path, allowed):
    reply = await api.call(method, service, path)
    assert_problem(reply, 405, "method_not_allowed")
    sent = {m.strip() for m in reply.headers.get("Allow", "").split(",")}
    assert set(allowed.split(", ")) <= sent and method not in sent, reply


@pytest.mark.parametrize("service", SERVICES)
async def test_body_over_one_mib_is_413(api, stack, service):
    headers = await credentials(api, stack, service)
    headers["Content-Type"] = "application/json"
    body = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'
    try:
        reply = await api.call("POST", service, POSTS[service], data=body, headers=headers)
    except aiohttp.ClientError:
        # The server may close the connection while the body is still being sent;
        # with Expect: 100-continue the answer comes before the body.
        reply = await api.call(
            "POST",
            service,
            POSTS[service],
            data=body,
            headers=headers | {"Expect": "100-continue"},
        )
    assert_problem(reply, 413, "payload_too_large")
    assert (await api.call("GET", service, "/health")).status == 200


async def test_a_body_of_exactly_one_mib_is_read(api):
    head, tail = b'{"username": "abc", "password": "', b'"}'
    body = head + b"p" * (1024 * 1024 - len(head) - len(tail)) + tail
    assert len(body) == 1024 * 1024
    reply = await api.call("POST", "user_service", "/users", data=body)
    assert_problem(reply, 422, "invalid_request")  # read and judged, not refused unread
    reply = await api.call(
        "POST",
        "user_service",
        "/users",
        data=body[:-2] + b'p"}',
        headers={"Expect": "100-continue"},
    )
    assert_problem(reply, 413, "payload_too_large")


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize(
    "raw", [b"{bad", b'{"username": "abc",}', b"\xff\xfe\x00", b'{"a": 1', b"nul\x00l", b"'x'"]
)
async def test_malformed_json_is_400(api, stack, service, raw):
    headers = await credentials(api, stack, service) | {"Content-Type": "application/json"}
    reply = await api.call("POST", service, POSTS[service], data=raw, headers=headers)
    assert_problem(reply, 400, "bad_request")


@pytest.mark.parametrize("service", SERVICES)
async def test_missing_body_is_400(api, stack, service):
    headers = await credentials(api, stack, service)
    reply = await api.call("POST", service, POSTS[service], headers=headers)
    assert_problem(reply, 400, "bad_request")


@pytest.mark.parametrize("service", SERVICES)
async def test_request_id_is_echoed_on_every_answer(api, stack, service):
    for method, path in (("GET", "/health"), ("GET", "/nowhere"), ("PUT", POSTS[service])):
        sent = f"req-{service}-{method}-1"
        reply = await api.call(method, service, path, headers={"X-Request-ID": sent})
        assert reply.headers.get("X-Request-ID") == sent, reply
    headers = await credentials(api, stack, service) | {"X-Request-ID": "bad-body"}
    reply = await api.call("POST", service, POSTS[service], headers=headers)
    assert reply.status == 400 and reply.headers["X-Request-ID"] == "bad-body"


@pytest.mark.parametrize("service", SERVICES)
async def test_request_id_is_made_when_missing_or_unusable(api, service):
    first = await api.call("GET", service, "/health")
    second = await api.call("GET", service, "/health")
    assert first.headers["X-Request-ID"] and second.headers["X-Request-ID"]
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
    for unusable in ("has spaces in it", "x" * 500, "semi;colon"):
        reply = await api.call("GET", service, "/health", headers={"X-Request-ID": unusable})
        assert reply.headers["X-Request-ID"] not in ("", unusable), reply


async def test_request_id_reaches_logs_and_answers_of_401_403_422(api):
    user = await api.new_user()
    cases = [
        ("GET", "order_service", "/orders", None, None, 401),
        ("POST", "activity_service", "/activities", user.token, {}, 403),
        ("GET", "activity_service", "/activities?limit=0", None, None, 422),
    ]
    for method, service, path, token, json, status in cases:
        sent = f"rid-{status}"
        reply = await api.call(
            method, service, path, token=token, json=json, headers={"X-Request-ID": sent}
        )
        assert reply.status == status and reply.headers["X-Request-ID"] == sent, reply


async def test_internal_error_is_500_without_a_stack_trace(api, stack):
    """A broken database (its table renamed away) must not leak a trace to the client."""
    user = await api.new_user()
    reply = await call_with_orders_table_away(api, stack, user.token)
    body = assert_problem(reply, 500, "internal_error")
    assert reply.headers["X-Request-ID"] == "boom-1"
    assert "orders_away" not in str(body) and "pymysql" not in str(body).lower()
    assert (await api.call("GET", "order_service", "/orders", token=user.token)).status == 200
    # the log line with the request id is checked on a real process: tests/e2e/test_conventions.py


async def raw_exchange(port: int, request: bytes) -> bytes:
    """One request on a raw socket; the server may reset it while refusing a body, so retry."""
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(65536), timeout=30)
            if answer:
                return answer
        except ConnectionError:
            pass
        finally:
            writer.close()
    raise AssertionError("no answer in five attempts")


@pytest.mark.parametrize("service", SERVICES)
async def test_broken_http_is_a_problem_too(stack, service):
    port = stack.ports[service]
    garbage = await raw_exchange(port, b"GARBAGE\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400")
    chunk = b"a" * 65536
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17)) + b"0\r\n\r\n"
    too_big = await raw_exchange(
        port,
        b"POST " + POSTS[service].encode() + b" HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n" + chunked,
    )
    assert too_big.startswith(b"HTTP/1.1 413")
    for answer in (garbage, too_big):
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"content-type: application/problem+json" in head.lower()
        assert b"x-request-id: " in head.lower()
        assert b'"code":"' in body and b"Traceback" not in body
