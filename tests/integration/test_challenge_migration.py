"""activity_service's migration 2: an activities table from before the challenge gets its
two columns, off and at the default difficulty for the activities it already holds."""

import os
import secrets

import pytest

from activity_service.models import run_migrations
from deployment.services import SETTINGS
from deployment.stack import mysql_connect


@pytest.fixture
def settings():
    env = {**os.environ, "SECKILL_DB_PREFIX": "sktest_" + secrets.token_hex(4)}
    settings = SETTINGS["activity_service"].from_env(env | {"SERVICE_TOKEN": "unused"})
    yield settings
    with mysql_connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")


def test_an_activity_table_from_before_the_challenge_gets_it_off(settings):
    run_migrations(settings)
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        # As the table was before migration 2, with an activity in it.
        cur.execute(
            "ALTER TABLE activities DROP COLUMN challenge, DROP COLUMN challenge_difficulty"
        )
        cur.execute("DELETE FROM schema_version WHERE version = 2")
        cur.execute(
            "INSERT INTO activities (name, product_name, price, stock, remaining, starts_at, "
            "ends_at, created_at, updated_at) VALUES ('old', 'thing', 1, 5, 5, NOW(), NOW(), "
            "NOW(), NOW())"
        )
    run_migrations(settings)
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, challenge, challenge_difficulty FROM activities")
        assert cur.fetchall() == [{"name": "old", "challenge": 0, "challenge_difficulty": 50_000}]
        cur.execute("SELECT version FROM schema_version WHERE version = 2")
        assert cur.fetchall() == [{"version": 2}]
