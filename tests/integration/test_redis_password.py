"""A Redis that asks for a password: REDIS_PASSWORD (or REDIS_PASSWORD_FILE) is what the
services log in with (common/redis.py), as Kubernetes gives it to them."""

from __future__ import annotations

import pytest
from redis.exceptions import AuthenticationError, ResponseError

from activity_service.settings import ActivitySettings
from common.redis import new_redis
from tests.support.redis_server import RedisServer


@pytest.fixture
def guarded():
    server = RedisServer(password="s3cret-redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_password_setting_logs_in_and_without_it_redis_refuses(guarded, tmp_path):
    secret = tmp_path / "redis_password"
    secret.write_text("s3cret-redis\n")
    settings = ActivitySettings.from_env(
        {"SERVICE_TOKEN": "t" * 32, "REDIS_URL": guarded.url, "REDIS_PASSWORD_FILE": str(secret)}
    )
    assert settings.redis_password == "s3cret-redis"
    redis = new_redis(settings.redis_url, settings.redis_password)
    try:
        assert await redis.ping()
    finally:
        await redis.aclose()
    anonymous = new_redis(guarded.url)
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.ping()
    finally:
        await anonymous.aclose()
