"""Create a service's database and bring its tables up to date through its peewee models.

Idempotent: safe to run any number of times, and by several instances at once
(MySQL's GET_LOCK serialises them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import peewee
import pymysql
from playhouse.migrate import MySQLMigrator

from common.config import Settings

logger = logging.getLogger("seckill.migrations")

Migration = tuple[int, Callable[[MySQLMigrator], None]]


class SchemaVersion(peewee.Model):
    version = peewee.IntegerField(primary_key=True)

    class Meta:
        table_name = "schema_version"


def ensure_database(settings: Settings) -> None:
    conn = pymysql.connect(
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password,
        charset="utf8mb4",
    )
    try:
        with conn.cursor() as cur:
            # Identifiers cannot be parameters; the prefix is validated in config.
            cur.execute(
                f"CREATE DATABASE IF NOT EXISTS `{settings.database}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        conn.close()


def migrate(
    settings: Settings,
    database: peewee.Database,
    models: Sequence[type[peewee.Model]],
    migrations: Sequence[Migration] = (),
) -> int:
    """Create missing tables, apply the numbered migrations not yet applied; return the version.

    Models always describe the latest schema. A migration step brings a database made by an
    earlier version up to it; a database created now from the models records every step as
    applied without running it.
    """
    ensure_database(settings)
    database.init(
        settings.database,
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password,
        charset="utf8mb4",
    )
    with database.connection_context():
        database.execute_sql("SELECT GET_LOCK(%s, 60)", (f"{settings.database}.migrate",))
        try:
            SchemaVersion.bind(database)
            fresh = not SchemaVersion.table_exists()
            database.create_tables([SchemaVersion, *models], safe=True)
            if fresh and migrations:
                # Tables created just now from the models already have the latest schema:
                # record every step as applied; the steps are for databases made before them.
                SchemaVersion.insert_many([{"version": v} for v, _ in migrations]).execute()
            applied = {row.version for row in SchemaVersion.select()}
            migrator = MySQLMigrator(database)
            for version, step in sorted(migrations, key=lambda m: m[0]):
                if version in applied:
                    continue
                with database.atomic():
                    step(migrator)
                    SchemaVersion.create(version=version)
                logger.info("applied migration %s to %s", version, settings.database)
            current = max([0, *applied, *(v for v, _ in migrations)])
        finally:
            database.execute_sql("SELECT RELEASE_LOCK(%s)", (f"{settings.database}.migrate",))
    if fresh:
        logger.info("created the tables of database %s", settings.database)
    else:
        logger.info("database %s is at schema version %s", settings.database, current)
    return current


class PreciseDateTimeField(peewee.DateTimeField):
    """DATETIME(6): microseconds, so 'newest first' has a stable order."""

    field_type = "DATETIME(6)"
