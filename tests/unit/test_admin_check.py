"""The admin's credentials are checked at start-up against the rules registration uses."""

import pytest

from common.auth import new_private_key_pem
from deploy import entrypoint
from testkit.stack import ADMIN
from user_service.settings import UserSettings

KEY = new_private_key_pem().decode()


def admin_settings(username: str, password: str, **env: str) -> UserSettings:
    return UserSettings.from_env(
        {"TOKEN_PRIVATE_KEY": KEY, "ADMIN_USERNAME": username, "ADMIN_PASSWORD": password, **env}
    )


@pytest.mark.parametrize(
    ("username", "password", "rule"),
    [
        (
            "admin",
            "short",
            "ADMIN_PASSWORD breaks the rule every login follows: string should have at least 8",
        ),
        ("ad", "Vx7-tulip-orbit-52", "ADMIN_USERNAME breaks the rule"),
        ("the admin", "Vx7-tulip-orbit-52", "ADMIN_USERNAME breaks the rule"),
        (
            "admin",
            "x" * 129,
            "ADMIN_PASSWORD breaks the rule every login follows: string should have at most 128",
        ),
        # The password policy, as at registration.
        ("admin", "admin-password", "ADMIN_PASSWORD breaks the password policy: it must not"),
        ("admin", "password123", "ADMIN_PASSWORD breaks the password policy: it is too easy"),
        ("admin", "long-enough", "ADMIN_PASSWORD breaks the password policy: it is too easy"),
        ("admin", "Qz7#vL2pW", "ADMIN_PASSWORD breaks the password policy: it must be at least"),
    ],
)
def test_the_container_stops_before_mysql_naming_the_rule(monkeypatch, username, password, rule):
    monkeypatch.setenv("SERVICE", "user_service")
    monkeypatch.setenv("TOKEN_PRIVATE_KEY", KEY)
    monkeypatch.setenv("ADMIN_USERNAME", username)
    monkeypatch.setenv("ADMIN_PASSWORD", password)
    monkeypatch.setenv("MYSQL_PORT", "1")  # nothing listens: the check must come first
    monkeypatch.setenv("MYSQL_WAIT_TIMEOUT", "0")
    with pytest.raises(SystemExit) as stopped:
        entrypoint.main(["migrate"])
    assert str(stopped.value.code).startswith(f"entrypoint: {rule}")
    assert "change it in .env" in str(stopped.value.code)


def test_credentials_that_can_register_and_log_in_pass():
    assert entrypoint.admin_problem(admin_settings("admin", "Vx7-tulip-orbit-52")) is None
    assert entrypoint.admin_problem(admin_settings(*ADMIN)) is None
    long_one = ("Kx9-tulip-" * 13)[:128]
    assert entrypoint.admin_problem(admin_settings("ops.admin-2", long_one)) is None


def test_the_policy_settings_apply():
    weak_by_default = admin_settings("admin", "password123")
    assert entrypoint.admin_problem(weak_by_default) is not None
    lenient = admin_settings("admin", "password123", PASSWORD_MIN_SCORE="0")
    assert entrypoint.admin_problem(lenient) is None


def test_the_password_make_run_generates_passes(tmp_path, monkeypatch):
    from devtools import local

    monkeypatch.setattr(local, "LOCAL", tmp_path)
    for _ in range(20):
        (tmp_path / "secrets.env").unlink(missing_ok=True)
        values = local.ensure_local_secrets()
        settings = admin_settings(values["ADMIN_USERNAME"], values["ADMIN_PASSWORD"])
        assert entrypoint.admin_problem(settings) is None
