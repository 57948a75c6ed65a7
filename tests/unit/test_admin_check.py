"""The admin's credentials are checked at start-up against the rules registration uses."""

import pytest

from deployment import entrypoint


@pytest.mark.parametrize(
    ("username", "password", "rule"),
    [
        (
            "admin",
            "short",
            "ADMIN_PASSWORD breaks the rule every login follows: string should have at least 8",
        ),
        ("ad", "long-enough", "ADMIN_USERNAME breaks the rule"),
        ("the admin", "long-enough", "ADMIN_USERNAME breaks the rule"),
        (
            "admin",
            "x" * 129,
            "ADMIN_PASSWORD breaks the rule every login follows: string should have at most 128",
        ),
    ],
)
def test_the_container_stops_before_mysql_naming_the_rule(monkeypatch, username, password, rule):
    monkeypatch.setenv("SERVICE", "user_service")
    monkeypatch.setenv("TOKEN_PRIVATE_KEY", "not read before the check")
    monkeypatch.setenv("ADMIN_USERNAME", username)
    monkeypatch.setenv("ADMIN_PASSWORD", password)
    monkeypatch.setenv("MYSQL_PORT", "1")  # nothing listens: the check must come first
    monkeypatch.setenv("MYSQL_WAIT_TIMEOUT", "0")
    with pytest.raises(SystemExit) as stopped:
        entrypoint.main(["migrate"])
    assert str(stopped.value.code).startswith(f"entrypoint: {rule}")
    assert "change it in .env" in str(stopped.value.code)


def test_credentials_that_can_log_in_pass():
    assert entrypoint.admin_problem("admin", "long-enough") is None
    assert entrypoint.admin_problem("ops.admin-2", "x" * 128) is None
