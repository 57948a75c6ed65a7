"""Settings: read once from the environment; a missing or bad value stops start-up, named."""

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from activity_service.settings import ActivitySettings
from common.config import ConfigError, Settings
from order_service.settings import OrderSettings
from user_service.settings import UserSettings

BASE = {"SERVICE_TOKEN": "s3cret"}
USER = {"TOKEN_PRIVATE_KEY": "pem"}
COMMON = Path(__file__).resolve().parents[2] / "common"


def test_defaults():
    settings = ActivitySettings.from_env(BASE)
    assert settings.port == 8002 and settings.database == "seckill_activity"
    assert settings.peer_urls == {
        "user_service": "http://127.0.0.1:8001",
        "activity_service": "http://127.0.0.1:8002",
        "order_service": "http://127.0.0.1:8003",
    }
    assert settings.db_pool_size == 10 and settings.mysql_host == "127.0.0.1"
    assert settings.consul_host is None and settings.otel_endpoint is None
    assert (settings.seckill_batch_max, settings.seckill_batch_wait_ms) == (200, 0.0)
    user = UserSettings.from_env(USER)
    assert (user.token_ttl_seconds, user.password_hash_cost) == (900, 14)
    assert user.token_max_ttl_seconds == 3600
    assert user.admin_username is None and user.admin_password is None
    assert user.service_token is None and user.port == 8001


def test_values_from_the_environment():
    env = BASE | {
        "SECKILL_DB_PREFIX": "shop_2",
        "ORDER_SERVICE_PORT": "9003",
        "DB_POOL_SIZE": "3",
        "USER_SERVICE_URL": "http://users.internal:80",
        "ACCESS_LOG": "off",
        "SECKILL_BATCH_WAIT_MS": "2.5",
        "SECKILL_BATCH_MAX": "50",
    }
    settings = OrderSettings.from_env(env)
    assert settings.port == 9003 and settings.database == "shop_2_order"
    assert settings.db_pool_size == 3 and settings.access_log is False
    assert settings.peer_urls["user_service"] == "http://users.internal:80"
    assert settings.peer_urls["order_service"] == "http://127.0.0.1:9003"
    activity = ActivitySettings.from_env(env)
    assert (activity.seckill_batch_max, activity.seckill_batch_wait_ms) == (50, 2.5)
    user = UserSettings.from_env(
        USER | {"TOKEN_TTL_SECONDS": "60", "PASSWORD_HASH_COST": "10", "ADMIN_USERNAME": "root"}
    )
    assert (user.token_ttl_seconds, user.password_hash_cost, user.admin_username) == (
        60,
        10,
        "root",
    )


def test_an_empty_variable_counts_as_unset():
    settings = OrderSettings.from_env(BASE | {"DB_POOL_SIZE": "", "CONSUL_HOST": ""})
    assert settings.db_pool_size == 10 and settings.consul_host is None


def test_user_service_needs_its_signing_key():
    with pytest.raises(ConfigError, match="TOKEN_PRIVATE_KEY") as info:
        UserSettings.from_env({"SERVICE_TOKEN": "x"})
    assert str(info.value.code) == (
        "configuration error: TOKEN_PRIVATE_KEY (or TOKEN_PRIVATE_KEY_FILE) must be set"
    )


@pytest.mark.parametrize("settings_class", [ActivitySettings, OrderSettings])
def test_other_services_need_the_service_token(settings_class):
    with pytest.raises(ConfigError, match="SERVICE_TOKEN"):
        settings_class.from_env({"TOKEN_PRIVATE_KEY": "pem"})


@pytest.mark.parametrize("settings_class", [ActivitySettings, OrderSettings])
def test_other_services_have_no_signing_key(settings_class):
    settings = settings_class.from_env({"SERVICE_TOKEN": "x"})
    assert not hasattr(settings, "token_private_key")
    assert not hasattr(settings, "admin_password")


def test_secrets_come_from_files(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    settings = OrderSettings.from_env({"SERVICE_TOKEN_FILE": str(token_file)})
    assert settings.service_token == "from-a-file"


@pytest.mark.parametrize(
    "name, attribute",
    [
        ("TOKEN_PRIVATE_KEY", "token_private_key"),
        ("ADMIN_PASSWORD", "admin_password"),
        ("MYSQL_PASSWORD", "mysql_password"),
    ],
)
def test_user_service_secrets_come_from_files(tmp_path, name, attribute):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n")
    env = {"TOKEN_PRIVATE_KEY": "pem", f"{name}_FILE": str(secret_file)}
    env.pop(name, None)
    assert getattr(UserSettings.from_env(env), attribute) == "from-a-file"


def test_a_secret_set_directly_wins_over_its_file(tmp_path):
    missing = tmp_path / "nope"
    settings = OrderSettings.from_env(
        {"SERVICE_TOKEN": "direct", "SERVICE_TOKEN_FILE": str(missing)}
    )
    assert settings.service_token == "direct"


def test_admin_username_has_no_file_form(tmp_path):
    name_file = tmp_path / "name"
    name_file.write_text("admin")
    assert (
        UserSettings.from_env(USER | {"ADMIN_USERNAME_FILE": str(name_file)}).admin_username is None
    )


def test_secrets_do_not_show_in_the_repr():
    settings = UserSettings.from_env(
        {
            "TOKEN_PRIVATE_KEY": "pem-secret",
            "ADMIN_PASSWORD": "pw-secret",
            "MYSQL_PASSWORD": "db-pw",
        }
    )
    assert not {"pem-secret", "pw-secret", "db-pw"} & set(repr(settings).split("'"))


def test_an_unreadable_secret_file_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="SERVICE_TOKEN_FILE") as info:
        OrderSettings.from_env({"SERVICE_TOKEN_FILE": str(missing)})
    assert str(missing) in str(info.value)
    assert "must be set" not in str(info.value)  # the unreadable file is the one problem


@pytest.mark.parametrize(
    "settings_class, env",
    [(ActivitySettings, BASE), (OrderSettings, BASE), (UserSettings, USER)],
)
@pytest.mark.parametrize(
    "name, value",
    [
        ("DB_POOL_SIZE", "ten"),
        ("DB_POOL_SIZE", "0"),
        ("MYSQL_PORT", "3306.5"),
        ("USER_SERVICE_PORT", "-1"),
        ("SECKILL_WORKERS", "0"),
        ("ACCESS_LOG", "maybe"),
        ("CONSUL_DEREGISTER_AFTER", "0.5"),
        ("SECKILL_DB_PREFIX", "x`; DROP DATABASE y"),
        ("SECKILL_DB_PREFIX", "my-shop"),
    ],
)
def test_bad_common_values_are_named(settings_class, env, name, value):
    with pytest.raises(ConfigError, match=name):
        settings_class.from_env(env | {name: value})


@pytest.mark.parametrize(
    "settings_class, env, name, value",
    [
        (ActivitySettings, BASE, "SECKILL_BATCH_WAIT_MS", "soon"),
        (ActivitySettings, BASE, "SECKILL_BATCH_MAX", "0"),
        (UserSettings, USER, "PASSWORD_HASH_COST", "2"),
        (UserSettings, USER, "TOKEN_TTL_SECONDS", "0"),
        (UserSettings, USER, "TOKEN_TTL_SECONDS", "an hour"),
        # Tokens longer than the verifiers' cap would all be refused.
        (UserSettings, USER, "TOKEN_TTL_SECONDS", "3601"),
        (UserSettings, USER | {"TOKEN_TTL_SECONDS": "900"}, "TOKEN_MAX_TTL_SECONDS", "899"),
    ],
)
def test_bad_values_of_a_service_are_named(settings_class, env, name, value):
    with pytest.raises(ConfigError, match=name):
        settings_class.from_env(env | {name: value})


def test_each_bad_variable_gets_a_line_of_its_own():
    with pytest.raises(ConfigError) as info:
        ActivitySettings.from_env({"DB_POOL_SIZE": "0", "SECKILL_BATCH_MAX": "many"})
    lines = str(info.value.code).splitlines()
    assert len(lines) == 3 and all(line.startswith("configuration error: ") for line in lines)
    assert [line.split()[2] for line in lines] == [
        "SERVICE_TOKEN",
        "DB_POOL_SIZE",
        "SECKILL_BATCH_MAX",
    ]


def test_config_error_stops_the_process_with_a_message():
    error = ConfigError("X must be set")
    assert isinstance(error, SystemExit)
    assert str(error.code) == "configuration error: X must be set"


def test_unknown_service():
    class PaymentSettings(Settings):
        service_name = "payment_service"

    with pytest.raises(ConfigError, match="unknown service"):
        PaymentSettings.from_env(BASE)


def test_settings_are_frozen():
    settings = OrderSettings.from_env(BASE)
    with pytest.raises(ValidationError):
        settings.db_pool_size = 1


def test_from_env_reads_only_the_mapping_it_is_given(monkeypatch):
    monkeypatch.setenv("SERVICE_TOKEN", "from-os-environ")
    monkeypatch.setenv("DB_POOL_SIZE", "7")
    settings = OrderSettings.from_env({"SERVICE_TOKEN": "given"})
    assert (settings.service_token, settings.db_pool_size) == ("given", 10)


def test_common_imports_no_service():
    services = {"user_service", "activity_service", "order_service"}
    for module in COMMON.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & services, module.name


@pytest.mark.parametrize(
    "key",
    ["q7Z", "k3y-for-sale", "0123456789abcdef0123456789abcde", "a" * 64, "Board-key-2026!"],
    ids=["three", "base64url-12", "hex-31", "one-letter", "printable-15"],
)
def test_a_dashboard_key_under_128_bits_stops_start_up_in_one_line(key):
    with pytest.raises(ConfigError) as refused:
        ActivitySettings.from_env(BASE | {"DASHBOARD_KEY": key})
    message = str(refused.value.code)
    assert message.count("\n") == 0 and "DASHBOARD_KEY must carry at least 128 bits" in message
    assert key not in message  # a secret is never written out


@pytest.mark.parametrize(
    "key",
    ["0123456789abcdef0123456789abcdef", "oX8q7AprGuFajNm0TdXgkw", "k3y-for-the-sale-board"],
    ids=["hex-32", "token_urlsafe-16", "base64url-22"],
)
def test_a_dashboard_key_of_128_bits_or_more_is_taken(key):
    assert ActivitySettings.from_env(BASE | {"DASHBOARD_KEY": key}).dashboard_key == key


def test_no_dashboard_key_is_no_key():
    assert ActivitySettings.from_env(BASE | {"DASHBOARD_KEY": ""}).dashboard_key is None
    assert ActivitySettings.from_env(BASE).dashboard_key is None
