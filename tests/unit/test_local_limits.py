"""make run on loopback raises the per-address rate limits (every client there is one
address, make load's shoppers too), unless they are set; served elsewhere it leaves them."""

import pytest

from devtools import local


@pytest.fixture(autouse=True)
def no_files(monkeypatch):
    monkeypatch.setattr(local, "ensure_local_secrets", dict)
    monkeypatch.setattr(local, "read_env_file", lambda path, check_names=False: {})
    for key in ("SERVICE_HOST", *local.LOOPBACK_LIMITS):
        monkeypatch.delenv(key, raising=False)


def test_on_loopback_the_per_address_limits_are_raised():
    env = local.service_env()
    assert {key: env[key] for key in local.LOOPBACK_LIMITS} == local.LOOPBACK_LIMITS
    assert "LIMIT_SECKILL_PER_USER" not in env  # per-user limits keep their defaults


def test_a_limit_that_is_set_wins(monkeypatch):
    monkeypatch.setenv("LIMIT_SECKILL_PER_IP", "5/minute")
    assert local.service_env()["LIMIT_SECKILL_PER_IP"] == "5/minute"


def test_served_beyond_loopback_the_defaults_stand(monkeypatch):
    monkeypatch.setenv("SERVICE_HOST", "0.0.0.0")
    assert not set(local.LOOPBACK_LIMITS) & set(local.service_env())
