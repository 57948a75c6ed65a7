"""The discovery settings read from the environment."""

import pytest

from common.config import ConfigError
from order_service.settings import OrderSettings

BASE = {"SERVICE_TOKEN": "t"}


def test_consul_settings_default_to_off_and_to_the_bind_host():
    settings = OrderSettings.from_env({**BASE, "SERVICE_HOST": "10.0.0.5"})
    assert settings.consul_host is None
    assert settings.advertise_host == "10.0.0.5"
    assert settings.consul_tags == ("seckill",)
    assert (settings.consul_check_interval, settings.consul_check_timeout) == (5.0, 2.0)
    assert settings.consul_deregister_after == 60.0


def test_consul_settings_from_the_environment():
    settings = OrderSettings.from_env(
        {
            **BASE,
            "CONSUL_HOST": "consul",
            "CONSUL_PORT": "8501",
            "SERVICE_ADVERTISE_HOST": "orders-2",
            "CONSUL_TAGS": "seckill, blue ,",
            "CONSUL_CHECK_INTERVAL": "0.5",
        },
    )
    assert (settings.consul_host, settings.consul_port) == ("consul", 8501)
    assert settings.advertise_host == "orders-2"
    assert settings.consul_tags == ("seckill", "blue")
    assert settings.consul_check_interval == 0.5


@pytest.mark.parametrize("value", ["soon", "0", "-1"])
def test_a_bad_check_interval_stops_start_up_naming_it(value):
    with pytest.raises(ConfigError, match="CONSUL_CHECK_INTERVAL"):
        OrderSettings.from_env({**BASE, "CONSUL_CHECK_INTERVAL": value})
