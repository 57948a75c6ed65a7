"""user_service schema: peewee models and migrations only; queries live in repository.py."""

import peewee

from common.config import Settings
from common.migrations import PreciseDateTimeField, migrate

database = peewee.MySQLDatabase(None)


class User(peewee.Model):
    id = peewee.BigAutoField()
    username = peewee.CharField(max_length=32, unique=True)
    password_hash = peewee.CharField(max_length=255)
    is_admin = peewee.BooleanField(default=False)
    created_at = PreciseDateTimeField()

    class Meta:
        database = database
        table_name = "users"


MODELS = [User]
MIGRATIONS: list = []


def run_migrations(settings: Settings) -> int:
    return migrate(settings, database, MODELS, MIGRATIONS)
