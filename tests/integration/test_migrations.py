"""Numbered migrations: an old database is brought up to the models in place, a new one is made
from the models and needs no step."""

import os
import secrets

import peewee
import pytest

from common.migrations import migrate
from deployment.services import SETTINGS
from deployment.stack import mysql_connect


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
def settings():
    env = {**os.environ, "SECKILL_DB_PREFIX": "sktest_" + secrets.token_hex(4)}
    settings = SETTINGS["order_service"].from_env(env | {"SERVICE_TOKEN": "unused"})
    yield settings
    with mysql_connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{settings.database}`")


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
