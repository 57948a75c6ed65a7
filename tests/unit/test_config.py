"""Settings: read once from the environment; a missing or bad value stops start-up, named."""

import pytest

from common.config import ConfigError, Settings

BASE = {"SERVICE_TOKEN": "s3cret", "TOKEN_PRIVATE_KEY": "pem"}


def test_defaults():
    settings = Settings.from_env("activity_service", BASE)
    assert settings.port == 8002 and settings.database == "seckill_activity"
    assert settings.peer_urls == {
        "user_service": "http://127.0.0.1:8001",
        "activity_service": "http://127.0.0.1:8002",
        "order_service": "http://127.0.0.1:8003",
    }
    assert settings.db_pool_size == 10 and settings.mysql_host == "127.0.0.1"
    assert settings.consul_host is None and settings.otel_endpoint is None


def test_values_from_the_environment():
    env = BASE | {
        "SECKILL_DB_PREFIX": "shop_2",
        "ORDER_SERVICE_PORT": "9003",
        "DB_POOL_SIZE": "3",
        "USER_SERVICE_URL": "http://users.internal:80",
        "ACCESS_LOG": "off",
        "SECKILL_BATCH_WAIT_MS": "2.5",
    }
    settings = Settings.from_env("order_service", env)
    assert settings.port == 9003 and settings.database == "shop_2_order"
    assert settings.db_pool_size == 3 and settings.access_log is False
    assert settings.peer_urls["user_service"] == "http://users.internal:80"
    assert settings.peer_urls["order_service"] == "http://127.0.0.1:9003"
    assert settings.seckill_batch_wait_ms == 2.5


def test_user_service_needs_its_signing_key():
    with pytest.raises(ConfigError, match="TOKEN_PRIVATE_KEY"):
        Settings.from_env("user_service", {"SERVICE_TOKEN": "x"})


@pytest.mark.parametrize("service", ["activity_service", "order_service"])
def test_other_services_need_the_service_token(service):
    with pytest.raises(ConfigError, match="SERVICE_TOKEN"):
        Settings.from_env(service, {"TOKEN_PRIVATE_KEY": "pem"})


def test_other_services_do_not_need_the_signing_key():
    assert Settings.from_env("order_service", {"SERVICE_TOKEN": "x"}).token_private_key is None


def test_secrets_come_from_files(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    settings = Settings.from_env("order_service", {"SERVICE_TOKEN_FILE": str(token_file)})
    assert settings.service_token == "from-a-file"


def test_an_unreadable_secret_file_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="SERVICE_TOKEN_FILE") as info:
        Settings.from_env("order_service", {"SERVICE_TOKEN_FILE": str(missing)})
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("DB_POOL_SIZE", "ten"),
        ("DB_POOL_SIZE", "0"),
        ("MYSQL_PORT", "3306.5"),
        ("USER_SERVICE_PORT", "-1"),
        ("ACCESS_LOG", "maybe"),
        ("SECKILL_BATCH_WAIT_MS", "soon"),
        ("SECKILL_BATCH_MAX", "0"),
        ("PASSWORD_HASH_COST", "2"),
        ("SECKILL_DB_PREFIX", "x`; DROP DATABASE y"),
        ("SECKILL_DB_PREFIX", "my-shop"),
    ],
)
def test_bad_values_are_named(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env("activity_service", BASE | {name: value})


def test_config_error_stops_the_process_with_a_message():
    error = ConfigError("X must be set")
    assert isinstance(error, SystemExit)
    assert str(error.code) == "configuration error: X must be set"


def test_unknown_service():
    with pytest.raises(ConfigError, match="unknown service"):
        Settings.from_env("payment_service", BASE)


def test_settings_are_frozen():
    settings = Settings.from_env("order_service", BASE)
    with pytest.raises(AttributeError):
        settings.port = 1
