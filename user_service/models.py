"""user_service schema: peewee models and migrations only; queries live in repository.py."""

import peewee
import playhouse.migrate
from playhouse.migrate import MySQLMigrator

from common.config import Settings
from common.migrations import PreciseDateTimeField, migrate

database = peewee.MySQLDatabase(None)


class User(peewee.Model):
    id = peewee.BigAutoField()
    username = peewee.CharField(max_length=32, unique=True)
    password_hash = peewee.CharField(max_length=255)
    is_admin = peewee.BooleanField(default=False)
    # A disabled account cannot log in or refresh (PATCH /users/{id}, docs/api.md).
    disabled = peewee.BooleanField(default=False, constraints=[peewee.SQL("DEFAULT 0")])
    created_at = PreciseDateTimeField()

    class Meta:
        database = database
        table_name = "users"


class RefreshToken(peewee.Model):
    """One per refresh token, kept only as its SHA-256. A login starts a family; each refresh
    marks its token rotated and adds the next one to the family (docs/api.md)."""

    id = peewee.BigAutoField()
    token_hash = peewee.CharField(max_length=64, unique=True)
    family_id = peewee.CharField(max_length=32, index=True)
    user_id = peewee.BigIntegerField(index=True)
    created_at = PreciseDateTimeField()
    expires_at = PreciseDateTimeField()
    rotated_at = PreciseDateTimeField(null=True)
    revoked_at = PreciseDateTimeField(null=True)

    class Meta:
        database = database
        table_name = "refresh_tokens"


def add_disabled(migrator: MySQLMigrator) -> None:
    """1: accounts can be disabled; existing ones are not. (refresh_tokens is a new table,
    made from its model.)"""
    playhouse.migrate.migrate(migrator.add_column("users", "disabled", User.disabled))


MODELS = [User, RefreshToken]
MIGRATIONS: list = [(1, add_disabled)]


def run_migrations(settings: Settings) -> int:
    return migrate(settings, database, MODELS, MIGRATIONS)
