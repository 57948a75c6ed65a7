"""Numbered migrations: an old database is brought up to the models in place, a new one is made
from the models and needs no step."""

import importlib
import os
import secrets
from datetime import datetime, timedelta

import peewee
import pymysql
import pytest

from activity_service import models as activity_models
from common.auth import new_private_key_pem
from common.migrations import migrate
from deploy.services import SETTINGS
from testkit.stack import mysql_connect
from user_service import models as user_models


def add_note(migrator) -> None:
    from playhouse.migrate import migrate as run

    run(migrator.add_column("things", "note", peewee.CharField(max_length=20, default="")))


def model(database: peewee.Database, with_note: bool) -> type[peewee.Model]:
    attrs = {"name": peewee.CharField(max_length=20)}
    if with_note:
        attrs["note"] = peewee.CharField(max_length=20, default="")
    attrs["Meta"] = type("Meta", (), {"database": database, "table_name": "things"})
    return type("Thing", (peewee.Model,), attrs)


@pytest.fixture
def scratch():
    """scratch(service): that service's settings under a fresh prefix; dropped afterwards."""
    made = []

    def settings_of(service: str):
        env = {**os.environ, "SECKILL_DB_PREFIX": "sktest_" + secrets.token_hex(4)}
        env |= {"SERVICE_TOKEN": "unused"}
        if service == "user_service":  # it does not start without a signing key
            env |= {"TOKEN_PRIVATE_KEY": new_private_key_pem().decode()}
        made.append(SETTINGS[service].from_env(env))
        return made[-1]

    yield settings_of
    with mysql_connect() as conn, conn.cursor() as cur:
        for settings in made:
            cur.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")


@pytest.fixture
def settings(scratch):
    return scratch("order_service")


def columns(settings) -> set[str]:
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute("SHOW COLUMNS FROM things")
        return {row["Field"] for row in cur.fetchall()}


def test_a_new_database_is_made_from_the_models_and_records_every_step_as_applied(settings):
    database = peewee.MySQLDatabase(None)
    assert migrate(settings, database, [model(database, with_note=True)], [(1, add_note)]) == 1
    assert columns(settings) == {"id", "name", "note"}
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_version")
        assert [row["version"] for row in cur.fetchall()] == [1]


def test_an_old_database_gets_the_step_and_keeps_its_rows(settings):
    old = peewee.MySQLDatabase(None)
    migrate(settings, old, [model(old, with_note=False)])
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO things (name) VALUES (%s)", ("kept",))
    new = peewee.MySQLDatabase(None)
    assert migrate(settings, new, [model(new, with_note=True)], [(1, add_note)]) == 1
    assert columns(settings) == {"id", "name", "note"}
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, note FROM things")
        assert cur.fetchall() == [{"name": "kept", "note": ""}]
    # and once more changes nothing
    again = peewee.MySQLDatabase(None)
    assert migrate(settings, again, [model(again, with_note=True)], [(1, add_note)]) == 1


# The services' own migration 1: the order lifecycle, on databases made before it.

# activity_service's records and outbox as they were before migration 3, as peewee made them.
BEFORE_MIGRATION_3 = [
    "ALTER TABLE seckill_records DROP PRIMARY KEY, "
    "DROP INDEX seckillrecord_delivered_at_created_at, DROP COLUMN delivered_at, "
    "ADD COLUMN id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY FIRST, "
    "ADD UNIQUE INDEX seckillrecord_activity_id_user_id (activity_id, user_id)",
    "CREATE TABLE outbox (order_no VARCHAR(32) NOT NULL PRIMARY KEY, "
    "created_at DATETIME(6) NOT NULL, INDEX outbox_created_at (created_at))",
]

OLD_SCHEMA = {
    "order_service": [
        "DROP TABLE release_outbox",
        "DROP INDEX order_status_expires_at ON orders",
        "ALTER TABLE orders DROP COLUMN expires_at, DROP COLUMN closed_at",
    ],
    "activity_service": [
        *BEFORE_MIGRATION_3,
        "ALTER TABLE activities DROP COLUMN pay_within_seconds, DROP COLUMN released, "
        "DROP COLUMN challenge, DROP COLUMN challenge_difficulty",
        "ALTER TABLE seckill_records DROP COLUMN expires_at, DROP COLUMN released_as, "
        "DROP COLUMN released_at",
    ],
}
OLD_ROWS = {
    "order_service": [
        "INSERT INTO orders (order_no, activity_id, user_id, amount, status, created_at) "
        "VALUES ('abc1', 1, 7, 1.00, 'created', '2026-11-26 15:00:00.250000'), "
        "('abc2', 1, 8, 1.00, 'paid', '2026-11-26 15:00:01')"
    ],
    "activity_service": [
        "INSERT INTO activities (name, product_name, price, stock, remaining, starts_at, "
        "ends_at, created_at, updated_at) VALUES ('a', 'p', 1.00, 5, 3, '2026-11-26 14:00:00', "
        "'2026-11-26 16:00:00', '2026-11-26 13:00:00', '2026-11-26 13:00:00')",
        "INSERT INTO seckill_records (activity_id, user_id, order_no, amount, created_at) "
        "VALUES (1, 7, 'abc1', 1.00, '2026-11-26 15:00:00.250000'), "
        "(1, 8, 'abc2', 1.00, '2026-11-26 15:00:01')",
    ],
}


@pytest.mark.parametrize("service", ["order_service", "activity_service"])
def test_migration_1_keeps_every_order_and_gives_it_the_default_deadline(scratch, service):
    models = importlib.import_module(f"{service}.models")
    settings = scratch(service)
    models.run_migrations(settings)
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        for sql in OLD_SCHEMA[service] + ["DELETE FROM schema_version"] + OLD_ROWS[service]:
            cur.execute(sql)
    every = [version for version, _ in models.MIGRATIONS]
    assert models.run_migrations(settings) == max(every)
    table = "orders" if service == "order_service" else "seckill_records"
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT order_no, created_at, expires_at FROM {table} ORDER BY order_no")
        rows = cur.fetchall()
        cur.execute("SELECT version FROM schema_version")
        assert sorted(row["version"] for row in cur.fetchall()) == every
        if service == "activity_service":
            cur.execute("SELECT pay_within_seconds, released, remaining FROM activities")
            kept = {"pay_within_seconds": 900, "released": 0, "remaining": 3}
            assert cur.fetchall() == [kept]
    assert [row["order_no"] for row in rows] == ["abc1", "abc2"]
    assert rows[0]["expires_at"] == datetime(2026, 11, 26, 15, 15, 0, 250000)
    assert all(r["expires_at"] - r["created_at"] == timedelta(seconds=900) for r in rows)


# activity_service's migration 2: an activities table from before the challenge gets its two
# columns, off and at the default difficulty for the activities it already holds.


def test_an_activity_table_from_before_the_challenge_gets_it_off(scratch):
    settings = scratch("activity_service")
    activity_models.run_migrations(settings)
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
    activity_models.run_migrations(settings)
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, challenge, challenge_difficulty FROM activities")
        assert cur.fetchall() == [{"name": "old", "challenge": 0, "challenge_difficulty": 50_000}]
        cur.execute("SELECT version FROM schema_version WHERE version = 2")
        assert cur.fetchall() == [{"version": 2}]


# activity_service's migration 3: records keyed by (activity, user) without an AUTO_INCREMENT
# id, and the outbox table folded into a delivered mark on each record.


def test_records_get_the_natural_key_and_the_outbox_becomes_their_delivered_mark(scratch):
    settings = scratch("activity_service")
    activity_models.run_migrations(settings)
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        for sql in BEFORE_MIGRATION_3:
            cur.execute(sql)
        cur.execute("DELETE FROM schema_version WHERE version = 3")
        # Two orders acknowledged by order_service, one still in the outbox.
        cur.execute(
            "INSERT INTO seckill_records (activity_id, user_id, order_no, amount, created_at, "
            "expires_at, released_as) VALUES "
            "(1, 7, 'abc1', 1.00, '2026-11-26 15:00:00.25', '2026-11-26 15:15:00.25', NULL), "
            "(1, 8, 'abc2', 2.00, '2026-11-26 15:00:01', '2026-11-26 15:15:01', 'expired'), "
            "(2, 7, 'abc3', 3.00, '2026-11-26 15:00:02', '2026-11-26 15:15:02', NULL)"
        )
        cur.execute("INSERT INTO outbox (order_no, created_at) VALUES ('abc3', NOW(6))")
    assert activity_models.run_migrations(settings) == 3
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT activity_id, user_id, order_no, amount, created_at, expires_at, released_as, "
            "delivered_at IS NULL AS undelivered FROM seckill_records ORDER BY order_no"
        )
        kept = cur.fetchall()
        cur.execute("SHOW TABLES LIKE 'outbox'")
        assert cur.fetchall() == ()
        cur.execute("SHOW KEYS FROM seckill_records WHERE key_name = 'PRIMARY'")
        assert [k["Column_name"] for k in cur.fetchall()] == ["activity_id", "user_id"]
        cur.execute("SHOW COLUMNS FROM seckill_records WHERE Field = 'id'")
        assert cur.fetchall() == ()
        # Still one record per user and activity.
        with pytest.raises(pymysql.err.IntegrityError):
            cur.execute(
                "INSERT INTO seckill_records (activity_id, user_id, order_no, amount, "
                "created_at, expires_at) VALUES (1, 7, 'abc9', 1.00, NOW(6), NOW(6))"
            )
    assert [(r["order_no"], r["user_id"], str(r["amount"]), r["released_as"]) for r in kept] == [
        ("abc1", 7, "1.00", None),
        ("abc2", 8, "2.00", "expired"),
        ("abc3", 7, "3.00", None),
    ]
    assert kept[0]["created_at"] == datetime(2026, 11, 26, 15, 0, 0, 250000)
    # What was in the outbox is what the relay still sends; the rest was delivered.
    assert [r["order_no"] for r in kept if r["undelivered"]] == ["abc3"]
    assert activity_models.run_migrations(settings) == 3  # and once more changes nothing


# user_service's migration 1: accounts that can be disabled, and the refresh tokens' table.


def test_a_user_table_from_before_disabling_keeps_its_accounts_enabled(scratch):
    settings = scratch("user_service")
    assert user_models.run_migrations(settings) == 1
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_version")
        assert cur.fetchall() == [{"version": 1}]  # a new database: recorded, not run
        # As the database was before migration 1, with an account in it.
        cur.execute("DROP TABLE refresh_tokens")
        cur.execute("ALTER TABLE users DROP COLUMN disabled")
        cur.execute("DELETE FROM schema_version")
        cur.execute(
            "INSERT INTO users (username, password_hash, is_admin, created_at) "
            "VALUES ('old', 'scrypt$x', 1, NOW())"
        )
    assert user_models.run_migrations(settings) == 1
    with mysql_connect(settings.database) as conn, conn.cursor() as cur:
        cur.execute("SELECT username, is_admin, disabled FROM users")
        assert cur.fetchall() == [{"username": "old", "is_admin": 1, "disabled": 0}]
        cur.execute("SELECT COUNT(*) AS n FROM refresh_tokens")
        assert cur.fetchall() == [{"n": 0}]
        cur.execute("SELECT version FROM schema_version")
        assert cur.fetchall() == [{"version": 1}]
