"""MySQL away: every route answers 503 with Retry-After (never 500), and the services come
back by themselves when it returns. Against a MariaDB of this module's own, on a port of
its own, that the test stops and starts (tests/support/mariadb_server.py)."""

import os
import secrets

import pytest
import pytest_asyncio

from testkit.poll import eventually
from testkit.stack import ADMIN
from tests.support.apps import Databases, InProcessStack
from tests.support.factories import PASSWORD
from tests.support.mariadb_server import MariaDBServer
from tests.support.routes import app_routes

SERVICES = ("user_service", "activity_service", "order_service")


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    server = MariaDBServer(tmp_path_factory.mktemp("mariadb"))
    server.install()
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(mariadb, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        # Databases, migrations and the services all reach this server, not the shared one.
        patch.setitem(os.environ, "MYSQL_HOST", "127.0.0.1")
        patch.setitem(os.environ, "MYSQL_PORT", str(mariadb.port))
        patch.setitem(os.environ, "MYSQL_USER", "root")
        patch.setitem(os.environ, "MYSQL_PASSWORD", "")
        databases = Databases(tmp_path_factory.mktemp("outage"))
        databases.migrate()
        async with InProcessStack(databases) as stack:
            yield stack


def must_be_503(user, buyer, admin, activity, order_no) -> list[tuple]:
    """(service, method, path, token, body) of requests that need the database."""
    new_name = "o_" + secrets.token_hex(4)
    refresh = {"refresh_token": secrets.token_urlsafe(32)}
    sale = f"/activities/{activity}"
    return [
        ("user_service", "POST", "/users", None, {"username": new_name, "password": PASSWORD}),
        (
            "user_service",
            "POST",
            "/tokens",
            None,
            {"username": user.username, "password": PASSWORD},
        ),
        ("user_service", "POST", "/tokens/refresh", None, refresh),
        ("user_service", "POST", "/tokens/revoke", None, refresh),
        ("user_service", "GET", "/users/me", user.token, None),
        ("user_service", "GET", f"/users/{user.id}", admin, None),
        ("user_service", "PATCH", f"/users/{user.id}", admin, {"disabled": False}),
        (
            "user_service",
            "PUT",
            "/users/me/password",
            user.token,
            {"old_password": PASSWORD, "new_password": "another-Pass-9035"},
        ),
        ("activity_service", "GET", "/activities", None, None),
        ("activity_service", "GET", sale, None, None),
        ("activity_service", "PATCH", sale, admin, {"name": "renamed"}),
        ("activity_service", "DELETE", sale, admin, None),
        ("activity_service", "GET", f"{sale}/challenge", user.token, None),
        ("activity_service", "POST", f"{sale}/seckill", user.token, None),
        ("order_service", "GET", "/orders", buyer.token, None),
        ("order_service", "GET", f"/orders/{order_no}", buyer.token, None),
        ("order_service", "POST", f"/orders/{order_no}/pay", buyer.token, None),
        ("order_service", "POST", f"/orders/{order_no}/cancel", buyer.token, None),
        *((service, "GET", "/health", None, None) for service in SERVICES),
    ]


def assert_unavailable(reply, what) -> None:
    assert reply.status == 503, (what, reply)
    assert "Retry-After" in reply.headers, (what, reply)
    assert reply.headers["Content-Type"] == "application/problem+json", what
    assert int(reply.headers["Retry-After"]) >= 1, (what, reply.headers)


async def test_mysql_away_is_503_with_retry_after_everywhere_and_passes_by_itself(
    api, stack, mariadb
):
    admin = await api.login(*ADMIN)
    activity = await api.create_activity(stock=5)
    buyer = await api.new_user()
    order = await api.seckill(activity["id"], buyer.token)
    assert order.status == 201, order
    user = await api.new_user()
    checks = must_be_503(user, buyer, admin, activity["id"], order.body["order_no"])

    mariadb.stop()
    try:
        for service, method, path, token, body in checks:
            reply = await api.call(method, service, path, token=token, json=body)
            assert_unavailable(reply, (method, path))
        # Every other route: never a 500; a 5xx is a 503 with Retry-After.
        ids = {"activity_id": activity["id"], "user_id": user.id}
        ids["order_no"] = order.body["order_no"]
        headers = {"X-Service-Token": stack.service_token}
        for service in SERVICES:
            for method, template in sorted(app_routes(service, stack.env)):
                if "{__" in template or "{name}" in template:  # static files (docs, shop)
                    continue
                path = template.format(**ids)
                reply = await api.call(method, service, path, token=admin, headers=headers)
                assert reply.status != 500, (method, path, reply)
                if reply.status >= 500:
                    assert_unavailable(reply, (method, path))
    finally:
        mariadb.start()

    async def back() -> bool:
        reply = await api.call(
            "POST",
            "user_service",
            "/tokens",
            json={
                "username": user.username,
                "password": PASSWORD,
            },
        )
        return reply.status == 200

    await eventually(back, 60, "POST /tokens answering again once MySQL is back")
    for service, method, path, token, _ in checks:
        if method == "GET":
            reply = await api.call(method, service, path, token=token)
            assert reply.status == 200, (method, path, reply)
    late = await api.new_user()
    assert (await api.seckill(activity["id"], late.token)).status == 201
