"""Conventions checked on real processes: each service's own OpenAPI document, and its logs.

sanic-ext builds OpenAPI documents in one process-wide builder, so a test process
holding apps of all three services would not see each service's document as its own
process serves it; and logging is configured by the runner, not by create_app.
"""

import pytest

from tests.support.expect import ACTIVITY_KEYS, assert_problem, call_with_orders_table_away

SERVICES = ("user_service", "activity_service", "order_service")
CONTRACT_PATHS = {
    "user_service": {"/users", "/tokens", "/users/me", "/users/{user_id}"},
    "activity_service": {
        "/activities",
        "/activities/{activity_id}",
        "/activities/{activity_id}/seckill",
    },
    "order_service": {
        "/orders",
        "/orders/{order_no}",
        "/orders/{order_no}/pay",
        "/orders/{order_no}/cancel",
    },
}
ACTIVITY_BODY = {
    "name",
    "product_name",
    "price",
    "stock",
    "starts_at",
    "ends_at",
    "pay_within_seconds",
    "challenge",
    "challenge_difficulty",
}


@pytest.mark.parametrize("service", SERVICES)
async def test_openapi_document_lists_the_contract(api, service):
    reply = await api.call("GET", service, "/docs/openapi.json")
    assert reply.status == 200, reply
    assert reply.body["openapi"].startswith("3.")
    assert CONTRACT_PATHS[service] <= set(reply.body["paths"]), reply.body["paths"].keys()


async def test_internal_error_is_logged_with_its_request_id(api, stack):
    """The answer is checked in-process (tests/app); here, the service's own log line."""
    user = await api.new_user()
    reply = await call_with_orders_table_away(api, stack, user.token)
    assert_problem(reply, 500, "internal_error")
    assert "boom-1" in (stack.tmp / "order_service.log").read_text(errors="replace")


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


@pytest.mark.parametrize(
    "service, method, path, body_fields, status, answer_fields",
    [
        (
            "user_service",
            "post",
            "/users",
            {"username", "password"},
            "201",
            {"id", "username", "is_admin", "disabled", "created_at"},
        ),
        (
            "user_service",
            "post",
            "/tokens",
            {"username", "password"},
            "200",
            {"access_token", "token_type", "expires_in", "refresh_token"},
        ),
        (
            "user_service",
            "post",
            "/tokens/refresh",
            {"refresh_token"},
            "200",
            {"access_token", "token_type", "expires_in", "refresh_token"},
        ),
        (
            "user_service",
            "patch",
            "/users/{user_id}",
            {"disabled", "is_admin"},
            "200",
            {"id", "username", "is_admin", "disabled", "created_at"},
        ),
        (
            "user_service",
            "put",
            "/users/me/password",
            {"old_password", "new_password"},
            None,
            None,
        ),
        (
            "activity_service",
            "post",
            "/activities",
            ACTIVITY_BODY,
            "201",
            ACTIVITY_KEYS,
        ),
        (
            "activity_service",
            "patch",
            "/activities/{activity_id}",
            ACTIVITY_BODY,
            "200",
            None,
        ),
        ("order_service", "post", "/internal/orders", {"orders"}, "200", {"accepted"}),
        ("activity_service", "post", "/internal/releases", {"releases"}, "200", {"accepted"}),
        ("order_service", "get", "/orders", None, "200", {"items", "total"}),
    ],
)
async def test_openapi_schemas_describe_the_wire(
    api, service, method, path, body_fields, status, answer_fields
):
    """Bodies and answers are described by their JSON schemas, not by the Python classes."""
    document = (await api.call("GET", service, "/docs/openapi.json")).body
    operation = document["paths"][path][method]
    if body_fields:
        body = resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
        assert set(body["properties"]) == body_fields, body
    if answer_fields:
        answer = resolve(
            document, operation["responses"][status]["content"]["application/json"]["schema"]
        )
        assert set(answer["properties"]) == answer_fields, answer
    problems = [r for code, r in operation["responses"].items() if code.startswith(("4", "5"))]
    for problem in problems:
        schema = resolve(document, problem["content"]["application/problem+json"]["schema"])
        assert {"type", "title", "status", "detail", "code"} <= set(schema["properties"])


async def test_openapi_money_and_status_are_typed(api):
    document = (await api.call("GET", "activity_service", "/docs/openapi.json")).body
    schemas = document["components"]["schemas"]
    assert schemas["ActivityCreate"]["properties"]["price"]["type"] == "string"
    assert schemas["Activity"]["properties"]["status"]["enum"] == [
        "upcoming",
        "active",
        "sold_out",
        "ended",
    ]
