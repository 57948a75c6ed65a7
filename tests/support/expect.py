"""Shared assertions for the end-to-end tests: problem+json shape, minted tokens, row counts."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from common.auth import issue_token, load_private_key
from testkit.stack import Stack
from tests.support.factories import Reply

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}
TABLES = {
    "user_service": ("users",),
    "activity_service": ("activities", "seckill_records"),
    "order_service": ("orders", "release_outbox"),
}


def assert_problem(reply: Reply, status: int, code: str | None = None) -> dict:
    """An RFC 9457 answer with the given status (and code), no stack trace, and a request id."""
    assert reply.status == status, reply
    assert reply.headers.get("Content-Type", "").startswith("application/problem+json"), reply
    body = reply.body
    assert isinstance(body, dict) and PROBLEM_KEYS <= body.keys(), reply
    assert body["status"] == status and body["type"] == "about:blank", reply
    assert isinstance(body["title"], str) and body["title"], reply
    assert isinstance(body["detail"], str) and body["detail"], reply
    assert "Traceback" not in str(body) and 'File "' not in str(body), reply
    if code is not None:
        assert body["code"] == code, reply
    assert reply.headers.get("X-Request-ID"), reply
    return body


def assert_field_error(reply: Reply, field: str) -> None:
    """A 422 invalid_request naming `field` among its errors."""
    body = assert_problem(reply, 422, "invalid_request")
    fields = [error["field"] for error in body["errors"]]
    assert all(isinstance(error["message"], str) for error in body["errors"]), reply
    assert field in fields, (field, reply)


def stack_key(stack: Stack) -> RSAPrivateKey:
    return load_private_key((stack.tmp / "token_key.pem").read_text())


def mint_token(
    stack: Stack,
    user_id: int,
    is_admin: bool = False,
    ttl: int = 3600,
    key: RSAPrivateKey | None = None,
) -> str:
    """A token as user_service would sign it; with another key it is a forgery."""
    return issue_token(key or stack_key(stack), user_id, is_admin, ttl)


def row_counts(stack: Stack) -> dict[str, int]:
    """Rows in every table of the stack's three databases."""
    counts = {}
    for service, tables in TABLES.items():
        for table in tables:
            counts[table] = stack.query(service, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]
    return counts


ORDER_KEYS = {
    "order_no",
    "activity_id",
    "user_id",
    "amount",
    "status",
    "created_at",
    "expires_at",
}
ACTIVITY_KEYS = {
    "id",
    "name",
    "product_name",
    "price",
    "stock",
    "remaining",
    "starts_at",
    "ends_at",
    "pay_within_seconds",
    "status",
    "challenge",
    "challenge_difficulty",
}


async def call_with_orders_table_away(api, stack, token: str):
    """GET /orders while order_service's table is renamed away: an unexpected error, 500."""
    stack.query("order_service", "RENAME TABLE orders TO orders_away")
    try:
        return await api.call(
            "GET", "order_service", "/orders", token=token, headers={"X-Request-ID": "boom-1"}
        )
    finally:
        stack.query("order_service", "RENAME TABLE orders_away TO orders")
