"""The shop's page calls user_service and order_service from activity_service's origin:
those two answer that origin's preflights and let it read their answers (Retry-After
included), and give nothing to any other origin. The shop's own routes serve its files."""

from __future__ import annotations

import pytest

from activity_service.settings import ActivitySettings
from common.config import ConfigError
from user_service.settings import UserSettings


def shop_origin(api) -> str:
    return f"http://127.0.0.1:{api.stack.ports['activity_service']}"


@pytest.mark.parametrize(
    ("service", "path"), [("user_service", "/tokens"), ("order_service", "/orders")]
)
async def test_the_shops_origin_may_call_and_read_the_answers(api, service, path):
    origin = shop_origin(api)
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    preflight["Access-Control-Request-Headers"] = "authorization, content-type"
    reply = await api.call("OPTIONS", service, path, headers=preflight)
    assert reply.status in (200, 204), reply
    assert reply.headers["Access-Control-Allow-Origin"] == origin
    assert "Authorization" in reply.headers["Access-Control-Allow-Headers"]
    assert "POST" in reply.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in reply.headers

    reply = await api.call("GET", service, "/health", headers={"Origin": origin})
    assert reply.headers["Access-Control-Allow-Origin"] == origin
    assert "Retry-After" in reply.headers["Access-Control-Expose-Headers"]
    assert reply.headers["Vary"] == "Origin"


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1"])
async def test_any_other_origin_gets_no_cors_headers(api, origin):
    for service in ("user_service", "order_service", "activity_service"):
        preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        reply = await api.call("OPTIONS", service, "/health", headers=preflight)
        assert "Access-Control-Allow-Origin" not in reply.headers, (service, reply)


def test_shop_origins_are_origins_never_a_wildcard():
    env = {"TOKEN_PRIVATE_KEY": "x", "SHOP_ORIGINS": "http://a.example:8002, https://b.example"}
    assert UserSettings.from_env(env).shop_origins == ("http://a.example:8002", "https://b.example")
    for bad in ("*", "http://a.example/shop", "a.example", "http://*.example"):
        with pytest.raises(ConfigError, match="SHOP_ORIGINS"):
            UserSettings.from_env({"TOKEN_PRIVATE_KEY": "x", "SHOP_ORIGINS": bad})


async def test_the_shop_serves_its_page_files_and_config(api):
    reply = await api.call("GET", "activity_service", "/shop")
    assert reply.status == 200 and "<altcha-widget" not in reply.body  # made by the script
    policy = reply.headers["Content-Security-Policy"]
    user, order = api.stack.url("user_service"), api.stack.url("order_service")
    assert f"connect-src 'self' {user} {order};" in policy, policy
    assert "script-src 'self';" in policy and "worker-src blob:;" in policy
    config = (await api.call("GET", "activity_service", "/shop/config")).body
    assert config["user_service"] == user and config["order_service"] == order
    for name in ("main.js", "altcha.min.js", "shop.css"):
        reply = await api.call("GET", "activity_service", f"/shop/assets/{name}")
        assert reply.status == 200, name
    reply = await api.call("GET", "activity_service", "/shop/assets/..%2Fshop_routes.py")
    assert reply.status == 404 and reply.code == "not_found"


def test_the_shop_may_be_told_where_the_services_are():
    env = {"SERVICE_TOKEN": "x", "SHOP_USER_URL": "https://id.example"}
    assert ActivitySettings.from_env(env).shop_user_url == "https://id.example"
